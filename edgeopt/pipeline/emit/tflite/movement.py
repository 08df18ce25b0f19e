"""TFLite writers for the pooling, data-movement and resizing ops: AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE,
TRANSPOSE, TILE, DEPTH_TO_SPACE, SPACE_TO_DEPTH, UNPACK, STRIDED_SLICE, CONCATENATION, PAD, PADV2, MIRROR_PAD,
RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR.

TFLite runs all of them but CONCATENATION on the raw int8 values, so each refuses an output encoding
that differs from its input's (``require_same_encoding``); CONCATENATION checks every input.

Versions follow ``tensorflow/lite/tools/versioning/op_version.cc``: 2 for int8 data (1 for float32),
except RESHAPE (a single version) and TILE (3 for int8); PAD, STRIDED_SLICE and TRANSPOSE beyond 4-D are 4
(TRANSPOSE beyond 5-D 6), STRIDED_SLICE with ellipsis or new-axis masks 6 and with ``offset`` 8; RESIZE_BILINEAR 3 with
half-pixel centers; RESIZE_NEAREST_NEIGHBOR 3 with half-pixel centers or aligned corners.
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from edgeopt.errors import InternalError
from edgeopt.pipeline.emit.tflite.options import (
    OP_WRITERS,
    REQUIRED,
    OpEncoding,
    activation,
    enum_option,
    input_rank,
    int8_version,
    option,
    padding,
    require_same_encoding,
)
from edgeopt.qprogram import QOp, QProgram


def _pool_options(op: QOp) -> schema.Pool2DOptionsT:
    opts = schema.Pool2DOptionsT()
    opts.padding = padding(op)
    opts.strideH = int(option(op, "stride_h"))
    opts.strideW = int(option(op, "stride_w"))
    opts.filterHeight = int(option(op, "filter_height"))
    opts.filterWidth = int(option(op, "filter_width"))
    opts.fusedActivationFunction = activation(op)
    return opts


@OP_WRITERS.register("AVERAGE_POOL_2D", "MAX_POOL_2D")
def _pool_2d(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    code = getattr(schema.BuiltinOperator, op.kind)
    return OpEncoding(code, int8_version(program, op), schema.BuiltinOptions.Pool2DOptions, _pool_options(op))


@OP_WRITERS.register("RESHAPE")
def _reshape(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    # A program read from another converter's file may carry the shape only as the constant input.
    shape = program.tensors[op.inputs[1]].data if len(op.inputs) > 1 else None
    opts = schema.ReshapeOptionsT()
    opts.newShape = [int(d) for d in option(op, "new_shape", REQUIRED if shape is None else shape)]
    # RESHAPE has a single version for every type.
    return OpEncoding(schema.BuiltinOperator.RESHAPE, 1, schema.BuiltinOptions.ReshapeOptions, opts)


@OP_WRITERS.register("TRANSPOSE")
def _transpose(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    rank = input_rank(program, op)
    if rank > 5:
        version = 6
    elif rank > 4:
        version = 4
    else:
        version = int8_version(program, op)
    return OpEncoding(
        schema.BuiltinOperator.TRANSPOSE, version, schema.BuiltinOptions.TransposeOptions, schema.TransposeOptionsT()
    )


@OP_WRITERS.register("TILE")
def _tile(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    version = 3 if program.tensors[op.inputs[0]].dtype == "int8" else 1
    return OpEncoding(schema.BuiltinOperator.TILE, version, schema.BuiltinOptions.TileOptions, schema.TileOptionsT())


def _block_rearrangement(kind: str, operator: int, options_type: int, options_class: type) -> None:
    """Register the writer of DEPTH_TO_SPACE or SPACE_TO_DEPTH: the same encoding in and out, a block size."""

    def write(op: QOp, program: QProgram) -> OpEncoding:
        require_same_encoding(op, program)
        opts = options_class()
        opts.blockSize = int(option(op, "block_size"))
        return OpEncoding(operator, int8_version(program, op), options_type, opts)

    OP_WRITERS.register(kind)(write)


_block_rearrangement("DEPTH_TO_SPACE", schema.BuiltinOperator.DEPTH_TO_SPACE,
                     schema.BuiltinOptions.DepthToSpaceOptions, schema.DepthToSpaceOptionsT)
_block_rearrangement("SPACE_TO_DEPTH", schema.BuiltinOperator.SPACE_TO_DEPTH,
                     schema.BuiltinOptions.SpaceToDepthOptions, schema.SpaceToDepthOptionsT)


@OP_WRITERS.register("UNPACK")
def _unpack(op: QOp, program: QProgram) -> OpEncoding:
    for out in op.outputs:
        require_same_encoding(QOp(op.kind, op.inputs, (out,), source=op.source), program)
    opts = schema.UnpackOptionsT()
    opts.num = len(op.outputs)
    opts.axis = int(option(op, "axis", 0))
    return OpEncoding(schema.BuiltinOperator.UNPACK, int8_version(program, op), schema.BuiltinOptions.UnpackOptions,
                      opts)


@OP_WRITERS.register("STRIDED_SLICE")
def _strided_slice(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    opts = schema.StridedSliceOptionsT()
    opts.beginMask = int(option(op, "begin_mask", 0))
    opts.endMask = int(option(op, "end_mask", 0))
    opts.ellipsisMask = int(option(op, "ellipsis_mask", 0))
    opts.newAxisMask = int(option(op, "new_axis_mask", 0))
    opts.shrinkAxisMask = int(option(op, "shrink_axis_mask", 0))
    opts.offset = bool(option(op, "offset", False))
    if opts.offset:
        version = 8
    elif opts.ellipsisMask or opts.newAxisMask:
        version = 6
    elif input_rank(program, op) > 4:
        version = 4
    else:
        version = int8_version(program, op)
    return OpEncoding(
        schema.BuiltinOperator.STRIDED_SLICE, version, schema.BuiltinOptions.StridedSliceOptions, opts
    )


@OP_WRITERS.register("CONCATENATION")
def _concatenation(op: QOp, program: QProgram) -> OpEncoding:
    out = program.tensors[op.outputs[0]].qparams
    for name in op.inputs:
        q = program.tensors[name].qparams
        if q is not None and out is not None and not q.same_as(out):
            raise InternalError(f"CONCATENATION op '{op.source}': input '{name}' is not quantized like its output")
    opts = schema.ConcatenationOptionsT()
    opts.axis = int(option(op, "axis"))
    opts.fusedActivationFunction = activation(op)
    return OpEncoding(schema.BuiltinOperator.CONCATENATION, int8_version(program, op),
                      schema.BuiltinOptions.ConcatenationOptions, opts)


@OP_WRITERS.register("PAD")
def _pad(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    version = 4 if input_rank(program, op) > 4 else int8_version(program, op)
    return OpEncoding(schema.BuiltinOperator.PAD, version, schema.BuiltinOptions.PadOptions, schema.PadOptionsT())


@OP_WRITERS.register("PADV2")
def _pad_v2(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    return OpEncoding(schema.BuiltinOperator.PADV2, int8_version(program, op), schema.BuiltinOptions.PadV2Options,
                      schema.PadV2OptionsT())


@OP_WRITERS.register("MIRROR_PAD")
def _mirror_pad(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    opts = schema.MirrorPadOptionsT()
    opts.mode = enum_option(op, "mode", schema.MirrorPadMode, ("REFLECT", "SYMMETRIC"))
    return OpEncoding(schema.BuiltinOperator.MIRROR_PAD, int8_version(program, op),
                      schema.BuiltinOptions.MirrorPadOptions, opts)


@OP_WRITERS.register("RESIZE_BILINEAR")
def _resize_bilinear(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    opts = schema.ResizeBilinearOptionsT()
    opts.alignCorners = bool(option(op, "align_corners", False))
    opts.halfPixelCenters = bool(option(op, "half_pixel_centers", False))
    version = 3 if opts.halfPixelCenters else int8_version(program, op)
    return OpEncoding(schema.BuiltinOperator.RESIZE_BILINEAR, version,
                      schema.BuiltinOptions.ResizeBilinearOptions, opts)


@OP_WRITERS.register("RESIZE_NEAREST_NEIGHBOR")
def _resize_nearest_neighbor(op: QOp, program: QProgram) -> OpEncoding:
    require_same_encoding(op, program)
    opts = schema.ResizeNearestNeighborOptionsT()
    opts.alignCorners = bool(option(op, "align_corners", False))
    opts.halfPixelCenters = bool(option(op, "half_pixel_centers", False))
    version = 3 if opts.halfPixelCenters or opts.alignCorners else int8_version(program, op)
    return OpEncoding(schema.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR, version,
                      schema.BuiltinOptions.ResizeNearestNeighborOptions, opts)
