"""QuantSim: the int8 program's quantization as a trainable torch module (quantization-aware training).

``QuantSim(model, example_input, device)`` takes the model through the pipeline's own front half
(``export_torch`` → ONNX → Graph → ``optimize``: batch norms folded, activations fused) and builds a
torch module that computes that Graph with fake quantizers exactly where the int8 program quantizes:

* the graph input and every node output (after a fused activation: one quantizer per fused group),
  with the encodings the ``Target`` (``pipeline.target``, the very object ``deploy`` quantizes with)
  gives them: data-movement/pooling ops and Concat share their input's encoding (one quantizer object
  for the whole group, so learned scales stay tied), softmax and logistic keep TFLite's fixed output
  encodings, outputs the profile wants symmetric have zero point 0;
* Conv/Gemm/MatMul weights symmetric per output channel on ``[-127, 127]``, or ``[-128, 127]`` where the
  profile says ``strict_symmetric = false`` (one scale per tensor where it says
  ``per_channel_quantization = false``), recomputed from the current weight by ``Target.weight_encoding``
  (with the input's current encoding and the current bias: scales widened where the bias would overflow int32);
  biases int32 on scale ``input_scale · weight_scale``, constant operands of Add/Sub/Mul per tensor.

Rounding is half away from zero, as the converter and the kernels; gradients use the straight-through
estimator (``fake_quant``). The forward value is the integer program's own wherever its kernel
requantizes: Conv/ConvTranspose/Gemm/MatMul/Add/Sub/Mul take the kernel's fixed-point (or, for
FULLY_CONNECTED, double-precision) requantization of the exact accumulator, in the program's rounding
("single"/"double"), int8 and 16x8 (``quantsim_requantize``); average pooling and bilinear resizing
round the raw values as their kernels do (``quantsim_integer``). Backward, the fake-quantized float path
gives the gradients (``exact + (soft - soft.detach())``), learned scales included. Not reproduced: the
look-up tables and fixed-point polynomials of softmax/logistic/tanh/hard-swish, the MEAN of other axes,
the int8 <-> int16 QUANTIZE, and RELU ops not fused into their producer, whose outputs may differ from
the executor's by a step near a rounding boundary. Measured on ResNet-20 (``benchmarks/sim_gap.py``,
CIFAR-10 test1000): identical outputs to the integer executor under both roundings.

Without autograd (``torch.no_grad()``, evaluation) a requantizing node computes its exact value only:
the fake-quantized float path would add ``soft - soft.detach() == 0`` to it. Its kernel's constants
(integer weights and bias, multipliers) are kept while the weights and encodings stay the same, its
output integers go straight to the next kernel, and the activations no later node reads are dropped.

w8a16 plans (``precision``) run the quantized graph's requantizing nodes and int16 quantizers; nodes in
``QuantizedGraph.float_nodes`` (and the lowering's float-island ops) compute in float with unquantized
weights, and their outputs are quantized only where the program QUANTIZEs them (int8 readers, outputs).

``sim.compute_encodings(batches)`` calibrates and quantizes through the target (``Target.ranges``, with
a range method of ``quantize.range_setting``, and ``Target.quantize``); ``sim.model`` is then trained or
evaluated in the user's loop; ``sim.export()`` returns the QuantizedGraph (trained weights, and the learned encodings when
``learn_ranges``) that ``lower``/``edgeopt.deploy`` turn into the int8 program and files.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeopt.device_profiles import load_profile
from edgeopt.errors import DataError, InternalError, UnsupportedOpError
from edgeopt.torch.fake_quant import ActivationQuantizer, WeightQuantizer, fake_quant_bias
from edgeopt.ir import Graph, Node, QParams, QuantizedGraph, weight_out_axis
from edgeopt.pipeline.frontend.load import export_torch
from edgeopt.pipeline.lower import check_lowerable, lower
from edgeopt.pipeline.lower.float_island import FLOAT_ISLAND_OPS
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import DEFAULT_PASSES, optimize
from edgeopt.pipeline.quantize.encodings import bias_qparams, weight_qparams
from edgeopt.pipeline.quantize.precision import ActivationDtype, Precision
from edgeopt.pipeline.quantize.spec import (
    CONSTANT_OPERAND_OPS,
    FIXED_OUTPUT,
    SHARED_OPERAND_OPS,
    SHARED_SCALE_OPS,
    WEIGHTED_OPS,
)
from edgeopt.pipeline.target import Target
from edgeopt.qprogram import QProgram
from edgeopt.torch.integer import INTEGER_OPS
from edgeopt.torch.ops import ACTIVATIONS, TORCH_OPS
from edgeopt.torch.requantize import (BINARY_KINDS, REQUANTIZED_OPS, Exact, WeightedKernel, binary_output,
                                         weighted_kernel, weighted_output)

DEFAULT_DEVICE = "arm-cortex-a78-xnnpack"


def _check_ops(graph: Graph) -> None:
    for node in graph.nodes:
        if node.op not in TORCH_OPS:
            raise UnsupportedOpError(node.op, node.name,
                                     f"QuantSim has no torch implementation (supported: {', '.join(sorted(TORCH_OPS))})")


def _weighted(graph: Graph) -> dict[str, Node]:
    return {n.name: n for n in graph.nodes
            if n.op in WEIGHTED_OPS and len(n.inputs) > 1 and n.inputs[1] in graph.initializers}


def _dead_after(graph: Graph) -> list[list[str]]:
    """Per node, the activations that no later node reads and that are not graph outputs (the forward
    drops them, so that a large batch holds only the live ones)."""
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        last.update((t, i) for t in (*node.inputs, *node.outputs) if t)
    outputs = {t.name for t in graph.outputs}
    dead: list[list[str]] = [[] for _ in graph.nodes]
    for name, i in last.items():
        if name not in outputs and name not in graph.initializers:
            dead[i].append(name)
    return dead


class QuantSimModule(nn.Module):
    """The float Graph in torch with fake quantizers at the int8 program's quantizer positions.

    Float (no quantizer active) until ``load_encodings``. Trainable parameters: the weights and biases
    of Conv/Gemm/MatMul/ConvTranspose, plus the quantizer scales when ``learn_ranges``.
    """

    def __init__(self, graph: Graph, learn_ranges: bool = False, target: Target | None = None,
                 rounding: str = "double") -> None:
        super().__init__()
        _check_ops(graph)
        self.source = graph  # the float structure (what calibration runs)
        self.graph = graph  # the structure run: the quantized graph's once encodings load (requantizing nodes)
        self.learn_ranges = learn_ranges
        self.rounding = rounding
        self.weighted = _weighted(graph)
        self.float_nodes: frozenset[str] = frozenset()
        trainable = {t for n in self.weighted.values() for t in n.inputs[1:3] if t in graph.initializers}
        self.keys: dict[str, str] = {}  # initializer name → its key in params/buffers (names may hold dots)
        self.params = nn.ParameterDict()
        for i, (name, value) in enumerate(graph.initializers.items()):
            key = f"t{i}"
            self.keys[name] = key
            tensor = torch.from_numpy(np.array(value, copy=True))
            if name in trainable:
                self.params[key] = nn.Parameter(tensor.float())
            else:
                self.register_buffer(key, tensor)
        self.target = target
        self.weight_q = nn.ModuleDict({self.keys[n.inputs[1]]: self._weight_quantizer(n, learn_ranges)
                                       for n in self.weighted.values()})
        self.act_q = nn.ModuleDict()
        self.groups: dict[str, str] = {}  # activation tensor → key of its quantizer in act_q
        self.encodings: dict[str, QParams] = {}
        self._kernels: dict[str, WeightedKernel] = {}  # node name → its kernel, kept while it holds

    def _weight_quantizer(self, node: Node, learn_ranges: bool) -> WeightQuantizer:
        """The fake quantizer of ``node``'s weight on the target's grid (without a target: TFLite's spec, int8
        per-channel weights in [-127, 127])."""
        axis = weight_out_axis(node)
        channels = self.source.initializers[node.inputs[1]].shape[axis]
        if self.target is None:
            return WeightQuantizer(axis, channels, partial(weight_qparams, axis=axis), (-127, 127), learn_ranges)
        return WeightQuantizer(axis, channels, partial(self._weight_encoding, node.name), self.target.weight_range,
                               learn_ranges, self.target.rules.per_channel(node.op))

    def _weight_encoding(self, name: str, weight: np.ndarray) -> QParams:
        """``Target.weight_encoding`` of node ``name``'s weight at the value ``weight``, from the encoding its
        input's quantizer holds now and its current bias, as ``Target.quantize`` gives it (the scale widened
        where the bias would not fit int32). Values only: the straight-through estimator passes no
        gradient through the scale."""
        node = self.weighted[name]
        bias = node.inputs[2] if len(node.inputs) > 2 else ""
        if not bias or not self.groups:  # before encodings load, nothing quantizes the input yet
            return self.target.weight_encoding(node, weight)
        return self.target.weight_encoding(node, weight, self._qparams(node.inputs[0]),
                                           self.constant(bias).detach().cpu().numpy())

    def constant(self, name: str) -> torch.Tensor:
        key = self.keys[name]
        return self.params[key] if key in self.params else getattr(self, key)

    def current_graph(self, source: bool = False) -> Graph:
        """The Graph run (``source``: the float Graph before quantization) with the current weights."""
        graph = self.source if source else self.graph
        inits = dict(graph.initializers)
        for name, key in self.keys.items():
            if key in self.params and name in inits:
                inits[name] = self.params[key].detach().cpu().numpy().astype(np.float32)
        return graph.replace(initializers=inits)

    def load_encodings(self, qgraph: QuantizedGraph, hold_weight_encodings: bool = False) -> None:
        """Set every quantizer from ``qgraph`` (``quantize_minmax``'s, possibly through ``apply_precision``,
        with its ``float_nodes``) and enable it.

        Args:
            qgraph: the quantized form of this module's graph: same initializers; its node list (e.g. with
                the requantizing nodes of a w8a16 plan) becomes the one the module runs.
            hold_weight_encodings: keep the weight encodings of ``qgraph`` (e.g. AdaRound's) instead of
                recomputing each weight's min/max scale from the current weight on every call.

        Raises:
            InternalError: ``qgraph`` has initializers this module does not hold.
        """
        _check_ops(qgraph.graph)
        unknown = set(qgraph.graph.initializers) - set(self.keys)
        if unknown:
            raise InternalError(f"the quantized graph has constants the QuantSim module lacks: {sorted(unknown)[:5]}")
        self.graph = qgraph.graph
        self.weighted = _weighted(qgraph.graph)
        # Float islands run in float32 in the int8 program: the ones the lowering always makes and the
        # ones the quantized graph asks for.
        self.float_nodes = frozenset(qgraph.float_nodes) | {n.name for n in qgraph.graph.nodes if n.op in FLOAT_ISLAND_OPS}
        encodings = qgraph.encodings
        self.encodings = dict(encodings)
        self.groups = self._activation_groups(encodings)
        fixed = {out for n in self.graph.nodes if n.op in FIXED_OUTPUT for out in n.outputs}
        quantizers: dict[str, ActivationQuantizer] = {}
        for tensor, key in self.groups.items():
            if key not in quantizers:
                q = ActivationQuantizer(self.learn_ranges, fixed=encodings[tensor] if tensor in fixed else None)
                q.load(encodings[tensor])
                quantizers[key] = q
            elif tensor in fixed:  # a fixed encoding in a tied group fixes the whole group
                quantizers[key].learn_scale = False
                quantizers[key].scale.requires_grad_(False)
        self.act_q = nn.ModuleDict(quantizers)
        for node in self.weighted.values():
            w = node.inputs[1]
            self.weight_q[self.keys[w]].load(self.constant(w), encodings.get(w) if hold_weight_encodings else None)

    def _activation_groups(self, encodings: Mapping[str, QParams]) -> dict[str, str]:
        """Tensors that must keep one encoding (shared-scale ops, Concat) → one quantizer key each."""
        activations = [t.name for t in self.graph.inputs] + [o for n in self.graph.nodes for o in n.outputs if o]
        parent = {t: t for t in activations}

        def root(t: str) -> str:
            while parent[t] != t:
                t = parent[t]
            return t

        for node in self.graph.nodes:
            if node.op not in SHARED_SCALE_OPS:
                continue
            tied = [t for t in node.inputs if t in parent] if node.op == "Concat" else node.inputs[:1]
            for a in tied:
                for b in node.outputs:
                    if a in parent and b in parent and encodings[a].same_as(encodings[b]):
                        parent[root(a)] = root(b)
        roots = {root(t) for t in activations}
        keys = {r: f"a{i}" for i, r in enumerate(sorted(roots, key=activations.index))}
        return {t: keys[root(t)] for t in activations}

    def activation_scale(self, tensor: str) -> torch.Tensor:
        return self.act_q[self.groups[tensor]].scale.abs()

    def _operand(self, node: Node, index: int, env: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        name = node.inputs[index]
        if name == "":
            return None
        if name in env:
            return env[name]
        value = self.constant(name)
        if not self.groups or node.name in self.float_nodes:
            return value
        if node.name in self.weighted and index == 1:
            return self.weight_q[self.keys[name]](value)
        if node.name in self.weighted and index == 2:
            w = self.constant(node.inputs[1])
            q = self.encodings.get(name)
            return fake_quant_bias(value, self.activation_scale(node.inputs[0]),
                                   self.weight_q[self.keys[node.inputs[1]]].current_scale(w),
                                   "int32" if q is None else q.dtype)
        if node.op in CONSTANT_OPERAND_OPS or node.op in SHARED_OPERAND_OPS:
            q = self.encodings[name]
            # np.asarray: numpy returns a scalar, not an array, for a rank-0 constant
            return torch.from_numpy(np.asarray(q.dequantize(q.quantize(value.detach().cpu().numpy())))).to(value.device)
        return value

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        env: dict[str, torch.Tensor] = {}  # tensors as the program's int8/int16 ops read them (quantized)
        floats: dict[str, torch.Tensor] = {}  # float-island outputs as float readers take them (not re-quantized)
        centred: dict[str, torch.Tensor] = {}  # exact outputs as integers q - zp (runs without autograd)
        for info, x in zip(self.graph.inputs, inputs):
            env[info.name] = self._quantize(info.name, x.float())
        for node, dead in zip(self.graph.nodes, _dead_after(self.graph)):
            quantized, unquantized = self.run_node(node, {**env, **floats} if node.name in self.float_nodes else env,
                                                   centred)
            env.update(quantized)
            floats.update(unquantized)
            for values in (env, floats, centred):  # a batch holds only the activations still to be read
                for name in dead:
                    values.pop(name, None)
        outputs = tuple(env[t.name].contiguous() for t in self.graph.outputs)
        return outputs[0] if len(outputs) == 1 else outputs

    def run_node(self, node: Node, env: Mapping[str, torch.Tensor], centred: dict[str, torch.Tensor] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One node on the activations ``env``: its outputs fake-quantized to their encodings, and (for a
        float-island node) as float readers take them, unquantized.

        ``centred``: integers ``q - zp`` of the activations in ``env`` that exact kernels gave in this run,
        which the kernels reading them take as they are; this node's are added (without autograd only).
        """
        if not torch.is_grad_enabled() and self._requantizes(node):
            # Without autograd the fake-quantized float path adds only ``soft - soft.detach() == 0`` to
            # the exact value: skip it (and the fake quantization of the weights).
            exact = self._requantized(node, [self._operand(node, i, env) if i == 0 or node.name not in self.weighted
                                             else None for i in range(len(node.inputs))], centred)
            if exact is not None:
                if centred is not None:
                    centred[node.outputs[0]] = exact.centred
                return {node.outputs[0]: exact.value}, {}
        # The exact kernels leave 4-D values in NHWC memory; the float ops take them in the NCHW memory
        # they always had, so that their float results (summation orders) stay as they were.
        args = [self._operand(node, i, env) for i in range(len(node.inputs))]
        args = [None if a is None else a.contiguous() for a in args]
        y = TORCH_OPS[node.op](node, args, self.graph)
        if node.op in INTEGER_OPS and self.groups and node.name not in self.float_nodes:
            y = self._integer_forward(node, args[0], y)
        quantized, unquantized = {}, {}
        for out, value in zip(node.outputs, y if isinstance(y, tuple) else (y,)):
            if not out:
                continue
            if "fused_activation" in node.attrs:
                value = ACTIVATIONS[node.attrs["fused_activation"]](value)
            if node.name in self.float_nodes:
                unquantized[out] = value
            # Where an int8 op reads a float island's output (or it is a graph output), the program
            # QUANTIZEs it at the island's edge.
            quantized[out] = self._quantize(out, value)
        if self._requantizes(node):
            soft = quantized[node.outputs[0]]
            exact = self._requantized(node, args)
            if exact is not None:  # exact forward (x - x is exactly 0), the soft path's gradient backward
                quantized[node.outputs[0]] = exact.value + (soft - soft.detach())
        return quantized, unquantized

    def _requantizes(self, node: Node) -> bool:
        """Whether ``node`` runs a requantizing integer kernel, whose exact output ``_requantized`` gives."""
        return node.op in REQUANTIZED_OPS and bool(self.groups) and node.name not in self.float_nodes

    def _requantized(self, node: Node, args: list[torch.Tensor | None],
                     centred: Mapping[str, torch.Tensor] | None = None) -> Exact | None:
        """The integer kernel's exact output of a requantizing node (``quantsim_requantize``), from the
        encodings the program would be lowered with now; None where it has no such kernel. Reads the
        activation operands from ``args`` (a weighted node's weight and bias from the module), or their
        integers from ``centred`` where it holds them."""
        out_q = self._qparams(node.outputs[0])
        known = centred or {}
        with torch.no_grad():
            if node.op in BINARY_KINDS:
                operands = [(a, self._qparams(t), known.get(t)) for t, a in zip(node.inputs, args)]
                return binary_output(node, operands, out_q, self.rounding)
            if node.name not in self.weighted:
                return None  # a MatMul of two activations: BATCH_MATMUL
            kernel = self._weighted_kernel(node, out_q)
            return None if kernel is None else weighted_output(node, self.graph, args[0], kernel,
                                                               known.get(node.inputs[0]))

    def _weighted_kernel(self, node: Node, out_q: QParams) -> WeightedKernel | None:
        """The node's ``WeightedKernel`` for the current weights and encodings: the one kept from an
        earlier batch while it still holds (the weights and encodings compare equal), else a new one."""
        w = self.constant(node.inputs[1])
        b = self.constant(node.inputs[2]).detach().cpu().numpy() if len(node.inputs) > 2 and node.inputs[2] else None
        w_np = w.detach().cpu().numpy()
        args = (self._qparams(node.inputs[0]), w_np, self.weight_q[self.keys[node.inputs[1]]].qparams(w), b, out_q,
                self.rounding)
        kernel = self._kernels.get(node.name)
        if kernel is None or not kernel.holds(*args):
            kernel = weighted_kernel(node, self.graph, *args)
            if kernel is not None:
                self._kernels[node.name] = kernel
        return kernel

    def _qparams(self, tensor: str) -> QParams:
        """The encoding of an activation as its quantizer now holds it, or of a constant operand."""
        return self.act_q[self.groups[tensor]].qparams() if tensor in self.groups else self.encodings[tensor]

    def _integer_forward(self, node: Node, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` with the int8 kernel's exact value forward (``quantsim_integer``) and the float op's
        gradient backward, where input and output share one encoding (as these kernels require)."""
        q = self.act_q[self.groups[node.inputs[0]]].qparams()
        if self.groups[node.inputs[0]] != self.groups[node.outputs[0]]:
            return y
        exact = INTEGER_OPS[node.op](node, x, q, self.graph, self.rounding)
        return y if exact is None else exact + (y - y.detach())

    def _quantize(self, tensor: str, x: torch.Tensor) -> torch.Tensor:
        return self.act_q[self.groups[tensor]](x) if self.groups else x

    def export(self) -> QuantizedGraph:
        """The Graph with the trained weights and the encodings the quantizers now hold.

        Raises:
            DataError: no encodings yet (``load_encodings`` was never called).
        """
        if not self.groups:
            raise DataError("QuantSim has no encodings yet: call sim.compute_encodings(calibration_batches) first")
        graph = self.current_graph()
        enc = dict(self.encodings)
        if self.learn_ranges:
            for tensor, key in self.groups.items():
                enc[tensor] = self.act_q[key].qparams()
        for node in self.weighted.values():
            if node.name in self.float_nodes:
                continue
            w_name = node.inputs[1]
            enc[w_name] = self.weight_q[self.keys[w_name]].qparams(self.constant(w_name))
            if len(node.inputs) > 2 and node.inputs[2]:
                enc[node.inputs[2]] = bias_qparams(enc[node.inputs[0]], enc[w_name])
        return QuantizedGraph(graph=graph, encodings=enc, float_nodes=self.float_nodes)


def simulate(qgraph: QuantizedGraph, target: Target | None = None, rounding: str = "double") -> QuantSimModule:
    """The simulation of an already quantized graph, as it stands (its weights, weight encodings,
    activation encodings and float nodes; no calibration): e.g. to measure a PTQ recipe's simulated
    accuracy next to the integer executor's.

    Args:
        qgraph: from ``quantize_minmax`` (then AdaRound, ``apply_precision`` …) or ``QuantSim.export``.
        target: the target it was quantized for (its weight range; per-tensor weights where its profile says
            so); None: TFLite's spec (int8 per-channel weights in [-127, 127]).
        rounding: the requantization rounding of the program it stands for ("single" or "double").

    Raises:
        UnsupportedOpError: an op has no torch implementation here.
    """
    module = QuantSimModule(qgraph.graph, target=target, rounding=rounding)
    module.load_encodings(qgraph, hold_weight_encodings=True)
    return module.eval()


class QuantSim:
    """Quantization simulation of ``model`` as the int8 program for ``device`` will run it.

    Example::

        sim = edgeopt.QuantSim(model, example_input, device="arm-cortex-a78-xnnpack")
        sim.compute_encodings(calibration_batches)
        evaluate(sim.model)          # simulated int8; train it like any nn.Module for QAT
        result = edgeopt.deploy(sim, device="arm-cortex-a78-xnnpack", data="val.npz")
    """

    def __init__(self, model: nn.Module, example_input: Any, device: str = DEFAULT_DEVICE, *,
                 learn_ranges: bool = False, passes: tuple[str, ...] = DEFAULT_PASSES, weight_bits: int = 8,
                 precision: Precision | None = None, precision_overrides: Mapping[str, ActivationDtype] | None = None,
                 float_nodes: Iterable[str] = ()) -> None:
        """Export ``model`` and build the simulation module.

        Args:
            model: the float torch model (exported in eval mode; it is not modified).
            example_input: an input tensor (or a tuple of them) for the exporter.
            device: device profile name or .toml path; its requantization rounding is used by ``program``,
                its quantization rules are checked and applied as ``edgeopt deploy`` does (``Target``).
            learn_ranges: make the activation and weight quantizer scales trainable parameters.
            passes: optimization passes applied before quantization (the pipeline's by default).
            weight_bits: bit width of the Conv/Gemm/MatMul/ConvTranspose weights (4 for W4A8).
            precision: ``"w8a8"`` or ``"w8a16"`` (int16 activations where a 16x8 kernel exists and the
                profile allows it), as ``edgeopt deploy --precision``; None: the profile's default kernel per
                op type, as ``edgeopt deploy`` without ``--precision``.
            precision_overrides: node name or op type → ``"int8"``/``"int16"``, applied on top.
            float_nodes: names of nodes the int8 program keeps in float32 (a float island).

        Raises:
            ModelLoadError: the export failed.
            ProfileError: the profile asks for what a TFLite program cannot do.
            UnsupportedOpError: an op has no int8 lowering or no torch implementation here, the
                precision plan asks for int16 where there is no 16x8 kernel or the profile forbids it, or
                the profile's ``supported_kernels`` allow no ``weight_bits`` weights.
        """
        self.profile = load_profile(device)
        self.target = Target(self.profile, weight_bits, precision, precision_overrides or {})
        example = example_input if isinstance(example_input, tuple) else (example_input,)
        was_training = model.training
        onnx_model = export_torch(model.eval(), *example)
        model.train(was_training)
        graph = optimize(onnx_to_graph(onnx_model, type(model).__name__, None), passes)
        check_lowerable(graph)
        self.plan = self.target.check(graph).plan
        self.float_nodes = frozenset(float_nodes)
        unknown = self.float_nodes - {n.name for n in graph.nodes}
        if unknown:
            raise UnsupportedOpError("float_nodes", ", ".join(sorted(unknown)),
                                     "no node of the optimized graph has this name (names are the ONNX node names)")
        self.model = QuantSimModule(graph, learn_ranges, self.target, self.target.rounding)

    @property
    def graph(self) -> Graph:
        """The float Graph (before quantization) with the current weights."""
        return self.model.current_graph(source=True)

    def compute_encodings(self, batches: Iterable[Any] | np.ndarray | torch.Tensor, range_method: str = "minmax") -> None:
        """Calibrate on ``batches`` and load the encodings into the quantizers.

        Args:
            batches: an array/tensor of samples, or an iterable of batches (arrays, tensors, or tuples
                whose first element is the input, as a DataLoader yields them).
            range_method: a method of ``quantize.range_setting`` ("minmax" by default).

        Raises:
            DataError: no samples.
        """
        x = _stack(batches)
        graph = self.graph
        target = replace(self.target, range_method=range_method)
        qgraph = target.quantize(graph, target.ranges(graph, x), self.plan)
        self.model.load_encodings(QuantizedGraph(qgraph.graph, qgraph.encodings, qgraph.float_nodes | self.float_nodes))

    def export(self) -> QuantizedGraph:
        """The quantized Graph (trained weights, current encodings) that lowers to the int8 program."""
        return self.model.export()

    def program(self, rounding: str | None = None) -> QProgram:
        """The int8 program, lowered with ``rounding`` ("single"/"double"; the device profile's by default)."""
        return lower(self.export(), rounding=rounding or self.profile.runtime.requantization_rounding)


def _stack(batches: Iterable[Any] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(batches, (np.ndarray, torch.Tensor)):
        batches = [batches]
    parts = []
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        parts.append(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
    if not parts or sum(len(p) for p in parts) == 0:
        raise DataError("compute_encodings got no calibration samples")
    return np.concatenate(parts).astype(np.float32)
