"""TFLite writers for the data-movement, max-pooling and resizing ops (``OP_WRITERS`` entries).

Versions follow ``tensorflow/lite/tools/versioning/op_version.cc`` for int8 data: CONCATENATION, PADV2,
MAX_POOL_2D and MIRROR_PAD 2; RESIZE_BILINEAR 3 with half-pixel centers, else 2;
RESIZE_NEAREST_NEIGHBOR 3 with half-pixel centers or aligned corners, else 2 (float data: 1 where
those options are off).
"""
from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from edgeopt.errors import InternalError
from edgeopt.pipeline.emit.tflite import (
    OP_WRITERS,
    OpEncoding,
    pool_options,
    _activation,
    _enum,
    _int8,
    _option,
    _require_same_encoding,
)
from edgeopt.qprogram import QOp, QProgram


def _int8_version(op: QOp, program: QProgram) -> int:
    return 2 if _int8(program, op) else 1


@OP_WRITERS.register("CONCATENATION")
def _concatenation(op: QOp, program: QProgram) -> OpEncoding:
    out = program.tensors[op.outputs[0]].qparams
    for name in op.inputs:
        q = program.tensors[name].qparams
        if q is not None and out is not None and not q.same_as(out):
            raise InternalError(f"CONCATENATION op '{op.source}': input '{name}' is not quantized like its output")
    opts = schema.ConcatenationOptionsT()
    opts.axis = int(_option(op, "axis"))
    opts.fusedActivationFunction = _activation(op)
    return OpEncoding(schema.BuiltinOperator.CONCATENATION, _int8_version(op, program),
                      schema.BuiltinOptions.ConcatenationOptions, opts)


@OP_WRITERS.register("MAX_POOL_2D")
def _max_pool_2d(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    return OpEncoding(schema.BuiltinOperator.MAX_POOL_2D, _int8_version(op, program),
                      schema.BuiltinOptions.Pool2DOptions, pool_options(op))


@OP_WRITERS.register("RESIZE_BILINEAR")
def _resize_bilinear(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    opts = schema.ResizeBilinearOptionsT()
    opts.alignCorners = bool(_option(op, "align_corners", False))
    opts.halfPixelCenters = bool(_option(op, "half_pixel_centers", False))
    version = 3 if opts.halfPixelCenters else _int8_version(op, program)
    return OpEncoding(schema.BuiltinOperator.RESIZE_BILINEAR, version,
                      schema.BuiltinOptions.ResizeBilinearOptions, opts)


@OP_WRITERS.register("RESIZE_NEAREST_NEIGHBOR")
def _resize_nearest_neighbor(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    opts = schema.ResizeNearestNeighborOptionsT()
    opts.alignCorners = bool(_option(op, "align_corners", False))
    opts.halfPixelCenters = bool(_option(op, "half_pixel_centers", False))
    version = 3 if opts.halfPixelCenters or opts.alignCorners else _int8_version(op, program)
    return OpEncoding(schema.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR, version,
                      schema.BuiltinOptions.ResizeNearestNeighborOptions, opts)


@OP_WRITERS.register("MIRROR_PAD")
def _mirror_pad(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    opts = schema.MirrorPadOptionsT()
    opts.mode = _enum(op, "mode", schema.MirrorPadMode, ("REFLECT", "SYMMETRIC"))
    return OpEncoding(schema.BuiltinOperator.MIRROR_PAD, _int8_version(op, program),
                      schema.BuiltinOptions.MirrorPadOptions, opts)


@OP_WRITERS.register("PADV2")
def _pad_v2(op: QOp, program: QProgram) -> OpEncoding:
    _require_same_encoding(op, program)
    return OpEncoding(schema.BuiltinOperator.PADV2, _int8_version(op, program), schema.BuiltinOptions.PadV2Options,
                      schema.PadV2OptionsT())
