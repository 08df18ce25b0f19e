"""Placement: small programs built to hit one documented rule each, placed on the five shipped profiles,
land on the units the rules say, with reasons naming the rule; the cost model prices units and
crossings; a deploy reports the per-op table and the summary line."""
from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from onnx import helper
from rich.console import Console

from edgeopt.device_profiles import load_profile, parse_profile
from edgeopt.errors import ProfileError, UnsupportedOpError
from edgeopt.pipeline.calibrate import calibrate
from edgeopt.workflows.deploy import deploy
from edgeopt.pipeline.frontend.load import load
from edgeopt.pipeline.lower import lower
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.place import place
from edgeopt.pipeline.quantize.minmax import quantize_minmax
from edgeopt.pipeline.report import render
from edgeopt.qprogram import QOp, QProgram, QTensor
from edgeopt.runtimes.cost import estimate
from tests.builders.onnx_models import model

A78, HOST, HTP, TPU, VELA = ("arm-cortex-a78-xnnpack", "host", "snapdragon-8-gen-2-htp", "google-coral-edgetpu",
                             "arm-ethos-u55-vela")
PROFILES = (A78, HOST, HTP, TPU, VELA)


class Prog:
    """Builds a QProgram op by op; placement and the cost model read shapes, dtypes and options only."""

    def __init__(self, shape: tuple[int, ...], dtype: str = "int8") -> None:
        self.tensors = {"x": QTensor("x", shape, dtype)}
        self.ops: list[QOp] = []
        self.last = "x"

    def op(self, kind: str, shape: tuple[int, ...], consts: tuple[tuple[tuple[int, ...], str, object], ...] = (),
           dtype: str = "int8", inputs: tuple[str, ...] | None = None, **options: object) -> Prog:
        name = f"t{len(self.ops)}"
        const_names = []
        for i, (cshape, cdtype, data) in enumerate(consts):
            cname = f"{name}_c{i}"
            value = np.zeros(cshape, cdtype) if data is None else np.asarray(data, cdtype).reshape(cshape)
            self.tensors[cname] = QTensor(cname, cshape, cdtype, data=value)
            const_names.append(cname)
        self.tensors[name] = QTensor(name, shape, dtype)
        self.ops.append(QOp(kind, (*(inputs or (self.last,)), *const_names), (name,), options,
                            source=f"node{len(self.ops)}"))
        self.last = name
        return self

    def conv(self, cout: int, kernel: int, *, depthwise: bool = False, dilation: int = 1, stride: int = 1,
             padding: str = "SAME") -> Prog:
        n, h, w, cin = self.tensors[self.last].shape
        w_shape = (1, kernel, kernel, cin) if depthwise else (cout, kernel, kernel, cin)
        options = {"padding": padding, "stride_h": stride, "stride_w": stride, "dilation_h_factor": dilation,
                   "dilation_w_factor": dilation, "fused_activation_function": "NONE"}
        if depthwise:
            options["depth_multiplier"] = 1
        out = (n, h // stride, w // stride, cin if depthwise else cout)
        return self.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", out,
                       ((w_shape, "int8", None), ((out[3],), "int32", None)), **options)

    def pool(self, kind: str, kernel: int, stride: int = 1, padding: str = "SAME") -> Prog:
        n, h, w, c = self.tensors[self.last].shape
        return self.op(kind, (n, h // stride, w // stride, c), padding=padding, stride_h=stride, stride_w=stride,
                       filter_height=kernel, filter_width=kernel, fused_activation_function="NONE")

    def build(self) -> QProgram:
        return QProgram("test", self.tensors, self.ops, ("x",), (self.last,))


def _five_d_add() -> QProgram:
    p = Prog((1, 2, 3, 4, 5))
    return p.op("ADD", (1, 2, 3, 4, 5), inputs=("x", "x"), fused_activation_function="NONE").build()


def _gelu_island() -> QProgram:
    p = Prog((1, 8, 8, 16))
    p.op("DEQUANTIZE", (1, 8, 8, 16), dtype="float32").op("GELU", (1, 8, 8, 16), dtype="float32", approximate=False)
    return p.op("QUANTIZE", (1, 8, 8, 16)).build()


def _mean(axes: list[int]) -> QProgram:
    out = tuple(1 if i in axes else d for i, d in enumerate((1, 8, 8, 16)))
    return Prog((1, 8, 8, 16)).op("MEAN", out, (((len(axes),), "int32", axes),), keep_dims=True).build()


def _strided_slice(stride: int) -> QProgram:
    consts = (((4,), "int32", [0, 0, 0, 0]), ((4,), "int32", [1, 8, 8, 16]), ((4,), "int32", [1, stride, stride, 1]))
    return Prog((1, 8, 8, 16)).op("STRIDED_SLICE", (1, 8 // stride, 8 // stride, 16), consts).build()


def _resize(size: int, out: int) -> QProgram:
    return Prog((1, size, size, 8)).op("RESIZE_NEAREST_NEIGHBOR", (1, out, out, 8), (((2,), "int32", [out, out]),),
                                       align_corners=False, half_pixel_centers=False).build()


# Case → the program, and the unit of its last op on each profile (a78, host, htp, edgetpu, vela), as the
# documents say: see each profile's TOML for the rule and its source.
CASES = {
    "dilated-depthwise": (lambda: Prog((1, 16, 16, 8)).conv(8, 3, depthwise=True, dilation=2).build(),
                          ("cpu", "cpu", "npu", "cpu", "npu")),
    "depthwise": (lambda: Prog((1, 16, 16, 8)).conv(8, 3, depthwise=True).build(),
                  ("cpu", "cpu", "npu", "npu", "npu")),
    "conv-9x9": (lambda: Prog((1, 16, 16, 8)).conv(8, 9).build(), ("cpu", "cpu", "npu", "npu", "npu")),
    "conv-9x9-dilation-8": (lambda: Prog((1, 80, 80, 8)).conv(8, 9, dilation=8).build(),
                            ("cpu", "cpu", "npu", "npu", "cpu")),
    "conv-stride-5": (lambda: Prog((1, 20, 20, 8)).conv(8, 5, stride=5, padding="VALID").build(),
                      ("cpu", "cpu", "npu", "npu", "cpu")),
    "avgpool-9x9-same": (lambda: Prog((1, 16, 16, 8)).pool("AVERAGE_POOL_2D", 9).build(),
                         ("cpu", "cpu", "npu", "npu", "cpu")),
    "avgpool-9x9-valid": (lambda: Prog((1, 9, 9, 8)).pool("AVERAGE_POOL_2D", 9, padding="VALID").build(),
                          ("cpu", "cpu", "npu", "npu", "npu")),
    "5d-add": (_five_d_add, ("cpu", "cpu", "npu", "cpu", "cpu")),
    "hard-swish": (lambda: Prog((1, 8, 8, 16)).op("HARD_SWISH", (1, 8, 8, 16)).build(),
                   ("cpu", "cpu", "npu", "cpu", "npu")),
    "softmax-10": (lambda: Prog((1, 10)).op("SOFTMAX", (1, 10), beta=1.0).build(),
                   ("cpu", "cpu", "npu", "npu", "npu")),
    "softmax-20000": (lambda: Prog((1, 20000)).op("SOFTMAX", (1, 20000), beta=1.0).build(),
                      ("cpu", "cpu", "npu", "cpu", "npu")),
    "transpose": (lambda: Prog((1, 4, 6, 8)).op("TRANSPOSE", (1, 6, 4, 8), (((4,), "int32", [0, 2, 1, 3]),)).build(),
                  ("cpu", "cpu", "npu", "cpu", "cpu")),
    "mean-hw": (lambda: _mean([1, 2]), ("cpu", "cpu", "npu", "npu", "npu")),
    "mean-channels": (lambda: _mean([3]), ("cpu", "cpu", "npu", "cpu", "cpu")),
    "gelu-island-quantize": (_gelu_island, ("cpu", "cpu", "npu", "cpu", "npu")),
    "strided-slice-1": (lambda: _strided_slice(1), ("cpu", "cpu", "npu", "npu", "npu")),
    "strided-slice-2": (lambda: _strided_slice(2), ("cpu", "cpu", "npu", "cpu", "cpu")),
    "resize-2x": (lambda: _resize(8, 16), ("cpu", "cpu", "npu", "npu", "npu")),
    "resize-3x": (lambda: _resize(8, 24), ("cpu", "cpu", "npu", "npu", "cpu")),
    "resize-from-1x1": (lambda: _resize(1, 5), ("cpu", "cpu", "npu", "npu", "npu")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_placements_differ_where_the_documented_rules_differ(case: str) -> None:
    build, expected = CASES[case]
    program = build()
    got = tuple(place(program, load_profile(name)).ops[-1].unit for name in PROFILES)
    assert dict(zip(PROFILES, got)) == dict(zip(PROFILES, expected))


def test_reason_names_the_rule() -> None:
    program = CASES["dilated-depthwise"][0]()
    where = place(program, load_profile(TPU)).ops[0]
    assert where.reason == ("DEPTHWISE_CONV_2D: dilation 2 not supported on Edge TPU "
                            "(rule compute_units.npu.ops.DEPTHWISE_CONV_2D.dilation = [1])")
    vela = place(CASES["avgpool-9x9-same"][0](), load_profile(VELA)).ops[0]
    assert vela.reason == ("AVERAGE_POOL_2D: kernel 9x9 not supported on Ethos-U55 "
                           "(rule compute_units.npu.ops.AVERAGE_POOL_2D.max_kernel_same = [8, 8])")
    five_d = place(_five_d_add(), load_profile(VELA)).ops[0]
    assert "a 5-D tensor not supported on Ethos-U55 (rule compute_units.npu.defaults.max_rank = 4)" in five_d.reason
    missing = place(CASES["hard-swish"][0](), load_profile(TPU)).ops[0]
    assert missing.reason == "HARD_SWISH: not supported on Edge TPU (rule compute_units.npu.ops has no HARD_SWISH)"
    gelu = place(_gelu_island(), load_profile(HTP)).ops[1]
    assert gelu.reason.startswith("GELU: dtype fp32 not supported on Hexagon HTP")
    assert place(CASES["depthwise"][0](), load_profile(TPU)).ops[0].reason == ""
    sliced = place(_strided_slice(2), load_profile(VELA)).ops[0]
    assert sliced.reason == ("STRIDED_SLICE: slice stride 2 not supported on Ethos-U55 "
                             "(rule compute_units.npu.ops.STRIDED_SLICE.slice_strides = [1])")
    resized = place(_resize(8, 24), load_profile(VELA)).ops[0]
    assert resized.reason == ("RESIZE_NEAREST_NEIGHBOR: resize 8x8 to 24x24 not supported on Ethos-U55 "
                              "(rule compute_units.npu.ops.RESIZE_NEAREST_NEIGHBOR.resize_factors = [2, 4, 8])")


def test_edge_tpu_partitions_once_the_htp_does_not() -> None:
    p = Prog((1, 8, 8, 16)).conv(16, 3).op("HARD_SWISH", (1, 8, 8, 16)).conv(16, 3).conv(16, 1)
    program = p.build()
    tpu = place(program, load_profile(TPU))
    assert [o.unit for o in tpu.ops] == ["npu", "cpu", "cpu", "cpu"]
    assert "single_partition = true" in tpu.ops[2].reason and "HARD_SWISH ('node1')" in tpu.ops[2].reason
    assert tpu.summary() == "NPU 1 op | CPU 3 ops"
    assert [o.unit for o in place(program, load_profile(HTP)).ops] == ["npu"] * 4


def test_placement_only_tags() -> None:
    program = CASES["hard-swish"][0]()
    before = (program.ops, dict(program.tensors))
    place(program, load_profile(TPU))
    assert (program.ops, dict(program.tensors)) == before


def test_cost_prices_each_unit_and_the_crossings() -> None:
    program = Prog((1, 16, 16, 8)).conv(8, 3).pool("AVERAGE_POOL_2D", 9).conv(8, 3).build()
    # One unit with the top-level numbers (and their measured refinements): the placed estimate is the unplaced one.
    for name in (A78, HOST):
        one = load_profile(name)
        placed_one = estimate(program, one, place(program, one))
        assert placed_one.latency_ms == pytest.approx(estimate(program, one).latency_ms)
        assert placed_one.energy_mj == pytest.approx(estimate(program, one).energy_mj)
    vela = load_profile(VELA)
    placed = estimate(program, vela, place(program, vela))
    assert [(c.unit, c.crossing_s > 0) for c in placed.ops] == [("npu", False), ("cpu", True), ("npu", True)]
    crossing = vela.crossing
    assert crossing is not None
    hop = 16 * 16 * 8  # int8 bytes of the tensor crossing each boundary
    assert placed.ops[1].crossing_s == pytest.approx(crossing.overhead_s + hop / crossing.bandwidth_bytes_per_s)
    cpu = vela.units()["cpu"].performance
    assert cpu is not None
    assert placed.ops[1].time_s == pytest.approx(max(0, placed.ops[1].bytes / cpu.memory_bandwidth_bytes_per_s)
                                                 + cpu.per_op_overhead_s + placed.ops[1].crossing_s)


def _shipped(name: str) -> str:
    return resources.files("edgeopt.device_profiles").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def test_unpriced_dtype_is_a_profile_error() -> None:
    # Without its int16 keys the A78's CPU unit inherits int8 and fp32 numbers only: an int16 op has no price.
    text = _shipped(A78).replace("peak_int16_macs_per_s = 2.42e9\n", "").replace("int16_mac_j = 413.0e-12\n", "")
    a78 = parse_profile(text, "no-int16.toml")
    program = Prog((1, 8, 8, 16), dtype="int16").op("RELU", (1, 8, 8, 16), dtype="int16").build()
    with pytest.raises(ProfileError, match="compute_units.cpu has no peak_macs_per_s or mac_j for int16"):
        estimate(program, a78, place(program, a78))
    priced = load_profile(A78)
    cost = estimate(program, priced, place(program, priced))
    assert cost.ops[0].dtype == "int16" and cost.ops[0].unit == "cpu"


def test_op_no_unit_runs_is_an_unsupported_op_error() -> None:
    text = _shipped(A78).replace('ops = { "*" = {} }', "ops = { CONV_2D = {} }")
    profile = parse_profile(text, "only-conv.toml")
    with pytest.raises(UnsupportedOpError, match=r"HARD_SWISH.*node0.*no compute unit of arm-cortex-a78-xnnpack"):
        place(CASES["hard-swish"][0](), profile)


def _dilated_depthwise_onnx(path: Path) -> None:
    rng = np.random.default_rng(0)
    inits = {"dw": rng.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32), "db": np.zeros(8, np.float32),
             "fc": rng.normal(0, 0.3, (10, 8)).astype(np.float32), "fb": np.zeros(10, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "dw", "db"], ["c"], name="dw_dilated", group=8, dilations=[2, 2],
                         pads=[2, 2, 2, 2]),
        helper.make_node("HardSwish", ["c"], ["h"], name="hswish"),
        helper.make_node("GlobalAveragePool", ["h"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["l"], name="fc", transB=1),
        helper.make_node("Softmax", ["l"], ["y"], name="softmax"),
    ]
    path.write_bytes(model(nodes, inits, [1, 8, 12, 12], [1, 10]).SerializeToString())


def test_onnx_model_lowered_and_placed_on_the_five_profiles(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    _dilated_depthwise_onnx(path)
    graph = optimize(load(str(path)).graph)
    x = np.random.default_rng(1).normal(size=(16, 8, 12, 12)).astype(np.float32)
    program = lower(quantize_minmax(graph, calibrate(graph, x)))
    by_source = {name: {op.source: where.unit for op, where in zip(program.ops, place(program, load_profile(name)).ops)}
                 for name in PROFILES}
    assert set(by_source[A78].values()) == set(by_source[HOST].values()) == {"cpu"}
    assert set(by_source[HTP].values()) == {"npu"}
    # Edge TPU: the dilated depthwise conv is refused, and the compiler's one cut sends the rest after it.
    assert set(by_source[TPU].values()) == {"cpu"}
    # Ethos-U55: the dilated depthwise conv (dilated kernel 5x5) and the hard-swish run on the NPU.
    assert by_source[VELA]["dw_dilated"] == "npu" and by_source[VELA]["hswish"] == "npu"


def test_deploy_reports_the_placement_table_and_summary(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    _dilated_depthwise_onnx(path)
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(1).normal(size=(20, 8, 12, 12)).astype(np.float32))
    result = deploy(str(path), TPU, data=tmp_path / "d.npz", out=tmp_path / "out")
    section = result.report["placement"]
    assert section["summary"] == "CPU 6 ops"
    assert len(section["ops"]) == len(result.program.ops)
    first, _, third = section["ops"][:3]
    assert set(first) == {"op", "node", "unit", "dtype", "macs", "time_us", "energy_uj", "reason"}
    assert (first["op"], first["node"], first["unit"], first["dtype"]) == ("DEPTHWISE_CONV_2D", "dw_dilated", "cpu", "int8")
    assert first["macs"] == 12 * 12 * 8 * 9 and "DEPTHWISE_CONV_2D.dilation = [1]" in first["reason"]
    assert "single_partition" in third["reason"]
    assert sum(r["time_us"] for r in section["ops"]) / 1e3 == pytest.approx(result.report["latency_ms"]["int8"], rel=1e-3)
    out = io.StringIO()
    render(result.report, Console(file=out, width=250))
    assert "placement: CPU 6 ops" in out.getvalue()
    assert "dw_dilated → cpu: DEPTHWISE_CONV_2D: dilation 2 not supported on Edge TPU" in out.getvalue()
    vela = deploy(str(path), VELA, data=tmp_path / "d.npz", out=tmp_path / "vela")
    assert vela.report["placement"]["summary"] == "NPU 6 ops"
