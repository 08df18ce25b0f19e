"""Small random but valid int8 QPrograms, one per TFLite op kind and a few chains, and their float meaning.

Every builder draws what a quantized model would hold: activation scales in 0.01..0.1 with zero points
anywhere in [-128, 127] (in the lower part where a fused activation would otherwise clamp most of a
random input), int8 weights in [-127, 127] with per-channel scales (axis 0, or 3 for depthwise),
int32 biases with scale ``input_scale * weight_scale[c]`` (float32) and zero point 0, and output
encodings set from the float range of the op on random int8 inputs (min/max, zero included), so that
outputs use most of the int8 range. Ops that only move data (RESHAPE, PAD, STRIDED_SLICE, TRANSPOSE) and
AVERAGE_POOL_2D keep their input's encoding, as TFLite's int8 kernels require.

``float_forward`` runs a program in float64, NHWC: each op dequantizes its inputs and constants,
computes the op's real-number formula, and the result is quantized with the output's encoding (round
half away from zero, saturate). A correct int8 implementation lands within one step of it.

``QOp.params`` stays empty: ``edgeopt.runtimes.reference.prepare`` fills it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from edgeopt.ir import QParams
from edgeopt.qprogram import QOp, QProgram, QTensor

CALIBRATION_SAMPLES = 8
ACTIVATION_SCALE_RANGE = (0.01, 0.1)
# Standard deviation of a weighted op's pre-activation output, by fused activation: wide enough that
# RELU6 clips only the tails, narrow for RELU_N1_TO_1 whose layers live near [-1, 1].
PRE_ACTIVATION_STD = {"NONE": 2.0, "RELU": 2.0, "RELU6": 2.0, "RELU_N1_TO_1": 0.4}
# Input scales of an ADD whose sum a fused RELU6 or RELU_N1_TO_1 would otherwise mostly clip.
ADD_INPUT_SCALE_RANGE = {"RELU6": (0.01, 0.012), "RELU_N1_TO_1": (0.002, 0.003)}

FloatOp = Callable[[QOp, list[np.ndarray]], np.ndarray]
FLOAT_OPS: dict[str, FloatOp] = {}


def _float_op(kind: str) -> Callable[[FloatOp], FloatOp]:
    def add(fn: FloatOp) -> FloatOp:
        FLOAT_OPS[kind] = fn
        return fn

    return add


# ---------------------------------------------------------------------------------------------------
# Float semantics (float64, NHWC, TFLite's padding and layout conventions)


def dequantize64(qparams: QParams, q: np.ndarray) -> np.ndarray:
    """``scale * (q - zero_point)`` in float64 (QParams.dequantize rounds to float32)."""
    q = np.asarray(q)
    scale, zp = qparams.scale.astype(np.float64), qparams.zero_point
    if qparams.axis is not None:
        shape = [1] * q.ndim
        shape[qparams.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    else:
        scale, zp = scale.reshape(()), zp.reshape(())
    return (q.astype(np.int64) - zp) * scale


def output_size(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    """Output length and leading padding of a window op, as TFLite computes them.

    SAME gives ``ceil(size / stride)`` outputs and puts the odd padding element after the data.
    """
    effective = (kernel - 1) * dilation + 1
    if padding == "SAME":
        out = -(-size // stride)
        return out, max((out - 1) * stride + effective - size, 0) // 2
    return (size - effective) // stride + 1, 0


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
             padding: str) -> np.ndarray:
    """Zero-padded windows of ``x`` [N,H,W,C] as [N,OH,OW,KH,KW,C]."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh, top = output_size(h, kh, sh, dh, padding)
    ow, left = output_size(w, kw, sw, dw, padding)
    rows = max(top + h, (oh - 1) * sh + (kh - 1) * dh + 1)
    cols = max(left + w, (ow - 1) * sw + (kw - 1) * dw + 1)
    padded = np.zeros((n, rows, cols, c), dtype=x.dtype)
    padded[:, top : top + h, left : left + w] = x
    out = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j] = padded[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh,
                                        j * dw : j * dw + (ow - 1) * sw + 1 : sw]
    return out


def _window_args(op: QOp) -> tuple[tuple[int, int], tuple[int, int], str]:
    o = op.options
    return (o["stride_h"], o["stride_w"]), (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)), o["padding"]


def apply_activation(y: np.ndarray, activation: str) -> np.ndarray:
    bounds = {"NONE": (-np.inf, np.inf), "RELU": (0.0, np.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
    lo, hi = bounds[activation]
    return np.clip(y, lo, hi)


def _fused(op: QOp, y: np.ndarray) -> np.ndarray:
    return apply_activation(y, op.options.get("fused_activation_function", "NONE"))


@_float_op("CONV_2D")
def _conv_2d(op: QOp, xs: list[np.ndarray]) -> np.ndarray:
    x, w, b = xs
    stride, dilation, padding = _window_args(op)
    patches = _windows(x, w.shape[1:3], stride, dilation, padding)
    return _fused(op, np.einsum("nhwijc,oijc->nhwo", patches, w) + b)


@_float_op("DEPTHWISE_CONV_2D")
def _depthwise_conv_2d(op: QOp, xs: list[np.ndarray]) -> np.ndarray:
    x, w, b = xs
    stride, dilation, padding = _window_args(op)
    # Output channel c reads input channel c // depth_multiplier.
    x = np.repeat(x, w.shape[3] // x.shape[3], axis=3)
    patches = _windows(x, w.shape[1:3], stride, dilation, padding)
    return _fused(op, np.einsum("nhwijc,ijc->nhwc", patches, w[0]) + b)


@_float_op("FULLY_CONNECTED")
def _fully_connected(op: QOp, xs: list[np.ndarray]) -> np.ndarray:
    x, w, b = xs
    return _fused(op, x.reshape(-1, w.shape[1]) @ w.T + b)


@_float_op("ADD")
def _add(op: QOp, xs: list[np.ndarray]) -> np.ndarray:
    return _fused(op, xs[0] + xs[1])


@_float_op("AVERAGE_POOL_2D")
def _average_pool_2d(op: QOp, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    kernel = (op.options["filter_height"], op.options["filter_width"])
    stride, _, padding = _window_args(op)
    total = _windows(x, kernel, stride, (1, 1), padding).sum(axis=(3, 4))
    # TFLite divides by the number of window elements inside the input, not by the filter size.
    count = _windows(np.ones_like(x[:1, :, :, :1]), kernel, stride, (1, 1), padding).sum(axis=(3, 4))
    return _fused(op, total / count)


@_float_op("RESHAPE")
def _reshape(op: QOp, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0].reshape(tuple(int(d) for d in xs[1]))


@_float_op("PAD")
def _pad(op: QOp, xs: list[np.ndarray]) -> np.ndarray:
    return np.pad(xs[0], [tuple(int(v) for v in row) for row in xs[1]])


@_float_op("STRIDED_SLICE")
def _strided_slice(op: QOp, xs: list[np.ndarray]) -> np.ndarray:
    x, begin, end, strides = xs
    return x[tuple(slice(int(b), int(e), int(s)) for b, e, s in zip(begin, end, strides))]


@_float_op("TRANSPOSE")
def _transpose(op: QOp, xs: list[np.ndarray]) -> np.ndarray:
    return np.transpose(xs[0], tuple(int(p) for p in xs[1]))


def _value(tensor: QTensor, q: np.ndarray | None) -> np.ndarray:
    """The real value a kernel input stands for: dequantized if quantized, raw (shapes, indices) if not."""
    data = tensor.data if tensor.is_constant else q
    return dequantize64(tensor.qparams, data) if tensor.qparams is not None else np.asarray(data)


def float_op(program: QProgram, op: QOp, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """The int8 output of ``op`` computed in float64 from ``values``, the int8 values of its activations.

    Constants come from the program. Comparing this with an implementation's output, fed that
    implementation's own inputs, checks one op at a time however long the chain before it.
    """
    xs = [_value(program.tensors[name], values.get(name)) for name in op.inputs]
    return program.tensors[op.outputs[0]].qparams.quantize(FLOAT_OPS[op.kind](op, xs))


def _forward_one(program: QProgram, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    values = dict(zip(program.inputs, inputs))
    for op in program.ops:
        values[op.outputs[0]] = float_op(program, op, values)
    return [values[name] for name in program.outputs]


def float_forward(program: QProgram, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Quantized outputs of ``program`` computed in float64, each activation stored as int8 on the way.

    Args:
        program: A program of the op kinds in FLOAT_OPS.
        inputs: int8 arrays whose first dimension is any multiple of the program's batch.

    Returns:
        The int8 outputs, model-sized chunks stacked along the first dimension.
    """
    batch = program.tensors[program.inputs[0]].shape[0]
    chunks = len(inputs[0]) // batch
    results = [_forward_one(program, [x[i * batch : (i + 1) * batch] for x in inputs]) for i in range(chunks)]
    return [np.concatenate(parts, axis=0) for parts in zip(*results)]


# ---------------------------------------------------------------------------------------------------
# Random encodings and data


def random_activation_qparams(rng: np.random.Generator,
                              scale_range: tuple[float, float] = ACTIVATION_SCALE_RANGE,
                              zero_point_range: tuple[int, int] = (-128, 127)) -> QParams:
    """Per-tensor int8 encoding: log-uniform scale in ``scale_range``, uniform zero point in ``zero_point_range``."""
    lo, hi = np.log(scale_range)
    zero_point = int(rng.integers(zero_point_range[0], zero_point_range[1] + 1))
    return QParams(scale=np.exp(rng.uniform(lo, hi)), zero_point=zero_point)


def range_qparams(values: np.ndarray) -> QParams:
    """Asymmetric int8 encoding covering ``values`` and zero (zero must be exact, as TFLite requires)."""
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    scale = max(hi - lo, 1e-6) / 255.0
    zero_point = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return QParams(scale=scale, zero_point=zero_point)


def random_int8(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    return rng.integers(-128, 128, size=tuple(shape), dtype=np.int8)


def random_inputs(rng: np.random.Generator, program: QProgram, batches: int = 1) -> list[np.ndarray]:
    """Uniform int8 data for every program input, ``batches`` model-sized chunks each."""
    out = []
    for name in program.inputs:
        shape = program.tensors[name].shape
        out.append(random_int8(rng, (shape[0] * batches, *shape[1:])))
    return out


# ---------------------------------------------------------------------------------------------------
# Program builder


class ProgramBuilder:
    """Grows a program op by op, each new activation encoded from its float range on random inputs.

    The builder keeps CALIBRATION_SAMPLES int8 values of every activation (random for graph inputs,
    computed by ``FLOAT_OPS`` for op outputs) to choose the next op's biases and output encoding.
    """

    def __init__(self, rng: np.random.Generator, name: str) -> None:
        self.rng = rng
        self.name = name
        self.tensors: dict[str, QTensor] = {}
        self.ops: list[QOp] = []
        self.inputs: list[str] = []
        self._samples: dict[str, list[np.ndarray]] = {}
        self._count = 0

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def input(self, shape: Sequence[int], scale_range: tuple[float, float] = ACTIVATION_SCALE_RANGE,
              zero_point_range: tuple[int, int] = (-128, 127)) -> str:
        name = f"input_{len(self.inputs)}"
        qparams = random_activation_qparams(self.rng, scale_range, zero_point_range)
        self.tensors[name] = QTensor(name, tuple(shape), "int8", qparams)
        self._samples[name] = [random_int8(self.rng, shape) for _ in range(CALIBRATION_SAMPLES)]
        self.inputs.append(name)
        return name

    def build(self, outputs: Sequence[str]) -> QProgram:
        return QProgram(self.name, self.tensors, self.ops, self.inputs, tuple(outputs))

    def conv(self, x: str, cout: int, kernel: tuple[int, int] = (3, 3), stride: tuple[int, int] = (1, 1),
             dilation: tuple[int, int] = (1, 1), padding: str = "SAME", activation: str = "NONE",
             depthwise: bool = False, depth_multiplier: int = 1) -> str:
        """CONV_2D (w [Co,KH,KW,Ci], axis 0) or DEPTHWISE_CONV_2D (w [1,KH,KW,Ci*multiplier], axis 3)."""
        cin = self.shape(x)[3]
        kh, kw = kernel
        if depthwise:
            kind, cout, axis = "DEPTHWISE_CONV_2D", cin * depth_multiplier, 3
            w_shape = (1, kh, kw, cout)
        else:
            kind, axis = "CONV_2D", 0
            w_shape = (cout, kh, kw, cin)
        options = {
            "padding": padding, "stride_h": stride[0], "stride_w": stride[1],
            "dilation_h_factor": dilation[0], "dilation_w_factor": dilation[1],
            "fused_activation_function": activation,
        }
        if depthwise:
            options["depth_multiplier"] = depth_multiplier
        return self._weighted(kind, x, w_shape, axis, options)

    def fully_connected(self, x: str, cout: int, activation: str = "NONE") -> str:
        cin = self.shape(x)[-1]
        options = {"fused_activation_function": activation}
        return self._weighted("FULLY_CONNECTED", x, (cout, cin), 0, options)

    def add(self, a: str, b: str, activation: str = "NONE") -> str:
        return self._op(self._next_name("ADD"), "ADD", [a, b], {"fused_activation_function": activation})

    def average_pool(self, x: str, kernel: tuple[int, int], stride: tuple[int, int], padding: str = "VALID",
                     activation: str = "NONE") -> str:
        options = {
            "padding": padding, "stride_h": stride[0], "stride_w": stride[1],
            "filter_height": kernel[0], "filter_width": kernel[1], "fused_activation_function": activation,
        }
        return self._op(self._next_name("AVERAGE_POOL_2D"), "AVERAGE_POOL_2D", [x], options, keep_encoding=True)

    def reshape(self, x: str, new_shape: Sequence[int]) -> str:
        name = self._next_name("RESHAPE")
        shape = self._int32_constant(f"{name}/shape", new_shape)
        return self._op(name, "RESHAPE", [x, shape], {"new_shape": tuple(int(d) for d in new_shape)},
                        keep_encoding=True)

    def pad(self, x: str, paddings: Sequence[Sequence[int]]) -> str:
        name = self._next_name("PAD")
        return self._op(name, "PAD", [x, self._int32_constant(f"{name}/paddings", paddings)], {}, keep_encoding=True)

    def strided_slice(self, x: str, begin: Sequence[int], end: Sequence[int], strides: Sequence[int]) -> str:
        name = self._next_name("STRIDED_SLICE")
        consts = [self._int32_constant(f"{name}/{stem}", v)
                  for stem, v in (("begin", begin), ("end", end), ("strides", strides))]
        return self._op(name, "STRIDED_SLICE", [x, *consts], {"begin_mask": 0, "end_mask": 0}, keep_encoding=True)

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        name = self._next_name("TRANSPOSE")
        return self._op(name, "TRANSPOSE", [x, self._int32_constant(f"{name}/perm", perm)], {}, keep_encoding=True)

    def _next_name(self, kind: str) -> str:
        self._count += 1
        return f"{kind.lower()}_{self._count}"

    def _int32_constant(self, name: str, values: Sequence[int] | Sequence[Sequence[int]]) -> str:
        data = np.asarray(values, dtype=np.int32)
        self.tensors[name] = QTensor(name, data.shape, "int32", data=data)
        return name

    def _weighted(self, kind: str, x: str, w_shape: tuple[int, ...], axis: int, options: dict[str, object]) -> str:
        """An op with per-channel int8 weights and an int32 bias (CONV_2D, DEPTHWISE_CONV_2D, FC)."""
        rng, name = self.rng, self._next_name(kind)
        channels = w_shape[axis]
        channel_shape = [1] * len(w_shape)
        channel_shape[axis] = channels
        # Normal weights with a spread that varies per channel, so per-channel scales differ by up to 4x.
        std = rng.uniform(0.5, 2.0, channels).reshape(channel_shape)
        w_float = rng.normal(0.0, 1.0, w_shape) * std
        w_scale = np.abs(w_float).max(axis=tuple(d for d in range(len(w_shape)) if d != axis)) / 127.0
        w_ints = QParams(scale=w_scale, zero_point=np.zeros(channels), axis=axis).quantize(w_float)

        # The op is linear in the weight scales: scaling them all by k scales the output by k with the
        # same int8 weights. Pick k so that pre-activations spread like a trained layer's.
        probe = QOp(kind, (), (), {**options, "fused_activation_function": "NONE"})
        unit = dequantize64(QParams(scale=w_scale, zero_point=np.zeros(channels), axis=axis), w_ints)
        spread = np.concatenate([
            FLOAT_OPS[kind](probe, [self._value(x, i), unit, np.zeros(channels)]).reshape(-1, channels)
            for i in range(CALIBRATION_SAMPLES)
        ]).std(axis=0)
        k = PRE_ACTIVATION_STD[str(options["fused_activation_function"])] / max(float(spread.mean()), 1e-12)
        w_qparams = QParams(scale=w_scale * k, zero_point=np.zeros(channels), axis=axis)
        weights = QTensor(f"{name}/weights", w_shape, "int8", w_qparams, w_ints)

        # Biases a fraction of the spread the weights produce, as in a trained layer.
        in_scale = self.tensors[x].qparams.scale[0]
        b_qparams = QParams(scale=(in_scale * w_qparams.scale).astype(np.float32), zero_point=np.zeros(channels),
                            dtype="int32", axis=0)
        bias = QTensor(f"{name}/bias", (channels,), "int32", b_qparams,
                       b_qparams.quantize(rng.normal(0.0, 0.5, channels) * spread * k))
        self.tensors[weights.name], self.tensors[bias.name] = weights, bias
        return self._op(name, kind, [x, weights.name, bias.name], options)

    def _value(self, name: str, sample: int) -> np.ndarray:
        return _value(self.tensors[name], self._samples[name][sample] if name in self._samples else None)

    def _op(self, name: str, kind: str, inputs: list[str], options: dict[str, object],
            keep_encoding: bool = False) -> str:
        """Append an op; its output encoding is its input's, or set from its float range on the samples."""
        op = QOp(kind, tuple(inputs), (name,), options, source=name)
        floats = [FLOAT_OPS[kind](op, [self._value(n, i) for n in inputs]) for i in range(CALIBRATION_SAMPLES)]
        qparams = self.tensors[inputs[0]].qparams if keep_encoding else range_qparams(np.stack(floats))
        self.tensors[name] = QTensor(name, floats[0].shape, "int8", qparams)
        self._samples[name] = [qparams.quantize(f) for f in floats]
        self.ops.append(op)
        return name


# ---------------------------------------------------------------------------------------------------
# One program per op kind


def _zero_points_for(activation: str) -> tuple[int, int]:
    """Input zero points for an op whose fused activation would otherwise clamp most of a random input."""
    return (-128, 127) if activation == "NONE" else (-128, -32)


def conv2d_program(rng: np.random.Generator, n: int = 1, h: int = 9, w: int = 9, cin: int = 3, cout: int = 5,
                   kh: int = 3, kw: int = 3, stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1),
                   padding: str = "SAME", activation: str = "NONE", depthwise: bool = False,
                   depth_multiplier: int = 1) -> QProgram:
    """One CONV_2D, or one DEPTHWISE_CONV_2D (then ``cout`` is ``cin * depth_multiplier``)."""
    b = ProgramBuilder(rng, "depthwise_conv2d" if depthwise else "conv2d")
    y = b.conv(b.input((n, h, w, cin)), cout, (kh, kw), stride, dilation, padding, activation,
               depthwise, depth_multiplier)
    return b.build([y])


def fully_connected_program(rng: np.random.Generator, n: int = 1, cin: int = 16, cout: int = 10,
                            activation: str = "NONE") -> QProgram:
    """One FULLY_CONNECTED on x [N, Ci]."""
    b = ProgramBuilder(rng, "fully_connected")
    return b.build([b.fully_connected(b.input((n, cin)), cout, activation)])


def add_program(rng: np.random.Generator, shape: tuple[int, ...] = (1, 5, 5, 4), activation: str = "NONE") -> QProgram:
    """One ADD of two graph inputs with different scales and zero points."""
    b = ProgramBuilder(rng, "add")
    scales = ADD_INPUT_SCALE_RANGE.get(activation, ACTIVATION_SCALE_RANGE)
    zero_points = _zero_points_for(activation)
    return b.build([b.add(b.input(shape, scales, zero_points), b.input(shape, scales, zero_points), activation)])


def avg_pool_program(rng: np.random.Generator, n: int = 1, h: int = 8, w: int = 8, c: int = 4,
                     kernel: tuple[int, int] = (3, 3), stride: tuple[int, int] = (2, 2), padding: str = "SAME",
                     activation: str = "NONE") -> QProgram:
    """One AVERAGE_POOL_2D (output encoding = input encoding, as TFLite's int8 kernel assumes)."""
    b = ProgramBuilder(rng, "average_pool_2d")
    x = b.input((n, h, w, c), zero_point_range=_zero_points_for(activation))
    return b.build([b.average_pool(x, kernel, stride, padding, activation)])


def reshape_program(rng: np.random.Generator, shape: tuple[int, ...] = (1, 4, 4, 6),
                    new_shape: tuple[int, ...] = (1, 96)) -> QProgram:
    b = ProgramBuilder(rng, "reshape")
    return b.build([b.reshape(b.input(shape), new_shape)])


def pad_program(rng: np.random.Generator, shape: tuple[int, ...] = (1, 5, 5, 3),
                paddings: tuple[tuple[int, int], ...] = ((0, 0), (1, 2), (2, 1), (0, 0))) -> QProgram:
    b = ProgramBuilder(rng, "pad")
    return b.build([b.pad(b.input(shape), paddings)])


def strided_slice_program(rng: np.random.Generator, shape: tuple[int, ...] = (1, 8, 8, 6),
                          begin: tuple[int, ...] = (0, 1, 0, 1), end: tuple[int, ...] = (1, 8, 7, 6),
                          strides: tuple[int, ...] = (1, 2, 1, 2)) -> QProgram:
    b = ProgramBuilder(rng, "strided_slice")
    return b.build([b.strided_slice(b.input(shape), begin, end, strides)])


def transpose_program(rng: np.random.Generator, shape: tuple[int, ...] = (1, 4, 5, 6),
                      perm: tuple[int, ...] = (0, 3, 1, 2)) -> QProgram:
    b = ProgramBuilder(rng, "transpose")
    return b.build([b.transpose(b.input(shape), perm)])


# ---------------------------------------------------------------------------------------------------
# Chains


def chain_program(rng: np.random.Generator, h: int = 12, w: int = 12, cin: int = 3, width: int = 8,
                  classes: int = 5) -> QProgram:
    """A MobileNet-like block: conv (stride 2, RELU6) -> depthwise (RELU6) -> 1x1 conv -> ADD (residual,
    RELU) -> global AVERAGE_POOL_2D -> RESHAPE -> FULLY_CONNECTED."""
    b = ProgramBuilder(rng, "chain")
    stem = b.conv(b.input((1, h, w, cin)), width, stride=(2, 2), activation="RELU6")
    dw = b.conv(stem, width, depthwise=True, activation="RELU6")
    project = b.conv(dw, width, kernel=(1, 1))
    residual = b.add(project, stem, activation="RELU")
    _, fh, fw, _ = b.shape(residual)
    pooled = b.average_pool(residual, (fh, fw), (1, 1), "VALID")
    flat = b.reshape(pooled, (1, width))
    return b.build([b.fully_connected(flat, classes)])


def layout_chain_program(rng: np.random.Generator) -> QProgram:
    """PAD -> conv (VALID, stride (2, 1)) -> STRIDED_SLICE -> TRANSPOSE, with two outputs."""
    b = ProgramBuilder(rng, "layout_chain")
    padded = b.pad(b.input((1, 7, 6, 4)), ((0, 0), (1, 1), (2, 0), (0, 0)))
    conv = b.conv(padded, 6, kernel=(3, 2), stride=(2, 1), padding="VALID", activation="RELU")
    sliced = b.strided_slice(conv, (0, 0, 1, 0), (1, 4, 7, 6), (1, 1, 2, 1))
    return b.build([b.transpose(sliced, (0, 3, 1, 2)), conv])


CASES: dict[str, Callable[[np.random.Generator], QProgram]] = {
    "conv": lambda rng: conv2d_program(rng),
    "conv_valid_stride2_relu": lambda rng: conv2d_program(rng, h=10, w=7, stride=(2, 2), padding="VALID",
                                                          activation="RELU"),
    "conv_asymmetric_relu6": lambda rng: conv2d_program(rng, h=8, w=11, cin=4, cout=6, kh=3, kw=2,
                                                        stride=(2, 1), activation="RELU6"),
    "conv_dilated_n1_to_1": lambda rng: conv2d_program(rng, h=10, w=9, dilation=(2, 1),
                                                       activation="RELU_N1_TO_1"),
    "conv_1x1_batch2": lambda rng: conv2d_program(rng, n=2, h=5, w=4, cin=8, cout=16, kh=1, kw=1),
    "depthwise": lambda rng: conv2d_program(rng, cin=6, depthwise=True),
    "depthwise_multiplier2_stride2": lambda rng: conv2d_program(rng, h=9, w=8, cin=3, depthwise=True,
                                                                depth_multiplier=2, stride=(2, 2),
                                                                activation="RELU6"),
    "depthwise_valid_dilated": lambda rng: conv2d_program(rng, h=9, w=10, cin=4, kh=2, kw=3, depthwise=True,
                                                          dilation=(1, 2), padding="VALID", activation="RELU"),
    "fully_connected": lambda rng: fully_connected_program(rng),
    "fully_connected_relu": lambda rng: fully_connected_program(rng, cin=24, cout=7, activation="RELU"),
    "add": lambda rng: add_program(rng),
    "add_relu6": lambda rng: add_program(rng, shape=(1, 3, 4, 7), activation="RELU6"),
    "avg_pool_same": lambda rng: avg_pool_program(rng),
    "avg_pool_valid_relu": lambda rng: avg_pool_program(rng, h=7, w=9, kernel=(2, 3), stride=(1, 2),
                                                        padding="VALID", activation="RELU"),
    "reshape": lambda rng: reshape_program(rng),
    "pad": lambda rng: pad_program(rng),
    "strided_slice": lambda rng: strided_slice_program(rng),
    "transpose": lambda rng: transpose_program(rng),
    "chain": lambda rng: chain_program(rng),
    "layout_chain": lambda rng: layout_chain_program(rng),
}
"""Named programs covering every op kind and the option combinations that catch layout bugs."""


def binary_program(rng: np.random.Generator, kind: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...], *,
                   constant: bool, activation: str, name: str) -> QProgram:
    """ADD/SUB/MUL of ``a`` and ``b`` (a constant when ``constant``) broadcast to their common shape.

    Scales are log-uniform (0.005..0.1 for the operands, ..0.5 for the output), zero points uniform.
    """
    def qparams(hi: float) -> QParams:
        return QParams(np.exp(rng.uniform(np.log(0.005), np.log(hi))), int(rng.integers(-128, 128)))

    tensors = {
        "a": QTensor("a", a_shape, "int8", qparams(0.1)),
        "b": QTensor("b", b_shape, "int8", qparams(0.1), rng.integers(-128, 128, b_shape) if constant else None),
        "y": QTensor("y", np.broadcast_shapes(a_shape, b_shape), "int8", qparams(0.5)),
    }
    op = QOp(kind, ("a", "b"), ("y",), {"fused_activation_function": activation})
    return QProgram(name, tensors, [op], ("a",) if constant else ("a", "b"), ("y",))
