"""ONNX → Graph: fix the batch to 1, infer static shapes, fold constant subgraphs, keep tensor names.

Constant folding evaluates each node whose inputs are all known with ONNX's own reference evaluator,
and turns ``Shape`` of a statically shaped tensor into a constant, so that the shape arithmetic
exporters emit (Shape → Gather → Unsqueeze → Concat → Reshape) collapses into one constant.

Shape inference and folding alternate until neither changes anything: PyTorch's TorchScript exporter
writes ``F.pad`` as a Pad whose pads come from a ConstantOfShape/Concat/Slice/Transpose/Cast/Reshape
chain, and ONNX shape inference cannot see through that chain, so the Pad's output shape (and the shape
of everything after it, including a later ``Shape`` to fold) is only known once the chain is folded.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from edgeopt.errors import ModelLoadError, UnsupportedOpError, first_line
from edgeopt.ir import Graph, Node, TensorInfo, topological_order
from edgeopt.pipeline.frontend.batch_norm_stats import attach_stats

log = logging.getLogger(__name__)

MIN_OPSET = 13
# Ops that only forward their first input at inference time (and Casts to the input's own type).
PASSTHROUGH_OPS = {"Identity", "Dropout"}


InputShape = tuple[int, ...] | Mapping[str, tuple[int, ...]]
"""Static input shapes given by the user: one shape for a single-input model, or shapes by input name."""


def onnx_to_graph(model: onnx.ModelProto, name: str, input_shape: InputShape | None = None) -> Graph:
    """Convert an ONNX model into a float Graph with static shapes and folded constants.

    Args:
        model: the ONNX model (not modified).
        name: the model's name for reports and file names.
        input_shape: a shape for the (single) graph input, or shapes by input name, overriding the
            declared ones; needed when a declared shape has unknown dimensions other than the batch.

    Raises:
        ModelLoadError: the model is invalid, or some tensor's shape cannot be made static.
    """
    model = _normalized(model)
    _fix_input_shapes(model, input_shape)
    model, consts = _folded_to_fixed_point(model, name)
    opset = _default_opset(model)
    infos = _value_infos(model)
    nodes: list[Node] = []
    alias: dict[str, str] = {}
    for i, proto in enumerate(model.graph.node):
        node = _node_from_proto(proto, i, alias)
        if node.op in PASSTHROUGH_OPS or _is_noop_cast(node, infos):
            alias[node.outputs[0]] = node.inputs[0]
            continue
        nodes.append(node)

    graph_inputs = [i for i in model.graph.input if i.name not in consts]
    outputs = [alias.get(o.name, o.name) for o in model.graph.output]
    if alias and any(o.name in alias for o in model.graph.output):
        # An Identity feeding a graph output: keep the output's own name by renaming the producer's.
        nodes = _rename_outputs(nodes, {alias[o.name]: o.name for o in model.graph.output if o.name in alias})
        outputs = [o.name for o in model.graph.output]
    tensors: dict[str, TensorInfo] = {}
    for tensor in [i.name for i in graph_inputs] + [t for n in nodes for t in n.outputs]:
        info = infos.get(tensor)
        if info is None or any(d <= 0 for d in info.shape):
            producer = next((n.name for n in nodes if tensor in n.outputs), "graph input")
            raise ModelLoadError(
                f"cannot infer a static shape for tensor '{tensor}' (node '{producer}'); "
                "pass --input-shape with every dimension fixed"
            )
        tensors[tensor] = info
    used = {t for n in nodes for t in n.inputs}
    graph = Graph(
        name=name,
        nodes=topological_order(nodes, [i.name for i in graph_inputs] + list(consts)),
        inputs=tuple(tensors[i.name] for i in graph_inputs),
        outputs=tuple(tensors[o] for o in outputs),
        initializers={k: v for k, v in consts.items() if k in used},
        tensors=tensors,
        opset=opset,
    )
    log.info("loaded %s: %d nodes, %d weights", name, len(graph.nodes), len(graph.initializers))
    return attach_stats(graph, model)  # batch-norm statistics an exporter folded away (batch_norm_stats)


def _folded_to_fixed_point(model: onnx.ModelProto, name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``model`` (modified) with shapes inferred and constants folded until nothing more folds.

    Every round but the last folds at least one node away, so the loop ends after at most as many
    rounds as the model has nodes; in practice after one round per computed chain in sequence.

    Returns:
        The model, its shapes inferred and no node left whose outputs are known before the inputs
        arrive, and the values of all its initializers.

    Raises:
        ModelLoadError: shape inference fails, or an initializer is unreadable.
    """
    try:
        consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    except (ValueError, KeyError, TypeError) as exc:  # a corrupt initializer: wrong size or unknown type
        raise ModelLoadError(f"'{name}' has an unreadable initializer (corrupt file?): {first_line(exc)}") from exc
    opset = _default_opset(model)
    while True:
        # Shapes a previous round could not infer would otherwise be merged into this round's.
        del model.graph.value_info[:]
        try:
            model = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except Exception as exc:  # onnx raises several unrelated types here
            raise ModelLoadError(f"ONNX shape inference failed for '{name}': {first_line(exc)}") from exc
        infos = _value_infos(model)
        kept: list[onnx.NodeProto] = []
        folded: dict[str, np.ndarray] = {}
        for proto in model.graph.node:
            values = _try_fold(proto, consts, infos, opset)
            if values is None:
                kept.append(proto)
                continue
            consts.update(values)
            folded.update(values)
        if not folded:
            return model, consts
        del model.graph.node[:]
        model.graph.node.extend(kept)
        model.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in folded.items())


def _normalized(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, UnicodeDecodeError) as exc:  # the latter: a corrupt name
        raise ModelLoadError(f"invalid ONNX model: {first_line(exc)}") from exc
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if _default_opset(model) < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:
            raise ModelLoadError(
                f"ONNX opset {_default_opset(model)} could not be upgraded to {MIN_OPSET}: {first_line(exc)}"
            ) from exc
    # Initializers listed as graph inputs (old exporters) are constants, not inputs.
    init_names = {t.name for t in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in init_names]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _fix_input_shapes(model: onnx.ModelProto, input_shape: InputShape | None) -> None:
    """Give every graph input a static shape: the one ``input_shape`` gives it (a bare shape: the single
    input's; a mapping: by input name), else its own with batch 1.

    Raises:
        ModelLoadError: a bare shape for a model with several inputs, a name that is no input, a rank that
            differs from the declared one, or an unknown dimension other than the batch left unset.
    """
    inputs = [value.name for value in model.graph.input]
    if input_shape is not None and not isinstance(input_shape, Mapping):
        if len(inputs) != 1:
            raise ModelLoadError(f"--input-shape {_text(input_shape)} is one shape but the model has {len(inputs)} "
                                 f"inputs ({', '.join(inputs)}); give one per input as NAME=SHAPE")
        input_shape = {inputs[0]: tuple(input_shape)}
    shapes = dict(input_shape or {})
    unknown = [name for name in shapes if name not in inputs]
    if unknown:
        raise ModelLoadError(f"--input-shape names '{unknown[0]}', which is no input of the model "
                             f"(its inputs: {', '.join(inputs)})")
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        shape = shapes.get(value.name)
        if shape is not None:
            if len(dims) and len(dims) != len(shape):
                raise ModelLoadError(
                    f"--input-shape {value.name}={_text(shape)} has rank {len(shape)} "
                    f"but input '{value.name}' has rank {len(dims)}"
                )
            del dims[:]
            for d in shape:
                dims.add().dim_value = d
            continue
        for axis, dim in enumerate(dims):
            if dim.dim_value <= 0:
                if axis != 0:
                    raise ModelLoadError(
                        f"input '{value.name}' has an unknown dimension {axis} ('{dim.dim_param}'); "
                        f"pass --input-shape {value.name}=..."
                    )
                dim.Clear()
                dim.dim_value = 1


def _text(shape: tuple[int, ...]) -> str:
    return ",".join(map(str, shape))


def _value_infos(model: onnx.ModelProto) -> dict[str, TensorInfo]:
    infos = {}
    for v in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        t = v.type.tensor_type
        if not t.HasField("shape"):
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "float32"
        infos[v.name] = TensorInfo(v.name, shape, dtype)
    return infos


def _is_noop_cast(node: Node, infos: dict[str, TensorInfo]) -> bool:
    """Whether ``node`` is a Cast to its input's own type (the TorchScript exporter writes float→float
    Casts after HF attention softmaxes): it forwards its input, like an Identity."""
    if node.op != "Cast" or node.inputs[0] not in infos:
        return False
    return infos[node.inputs[0]].dtype == onnx.helper.tensor_dtype_to_np_dtype(int(node.attrs["to"])).name


def _node_from_proto(proto: onnx.NodeProto, index: int, alias: dict[str, str]) -> Node:
    if proto.domain not in ("", "ai.onnx"):
        raise UnsupportedOpError(f"{proto.domain}.{proto.op_type}", proto.name or f"#{index}",
                                 "custom-domain ops are not supported")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
    return Node(
        op=proto.op_type,
        name=proto.name or f"{proto.op_type}_{index}",
        inputs=tuple(alias.get(t, t) for t in proto.input),
        outputs=tuple(proto.output),
        attrs=attrs,
    )


def _try_fold(proto: onnx.NodeProto, consts: dict[str, np.ndarray], infos: dict[str, TensorInfo],
              opset: int) -> dict[str, np.ndarray] | None:
    """Values of ``proto``'s outputs when they are known before any input arrives, else None."""
    if proto.domain not in ("", "ai.onnx"):
        return None  # refused with its name when the Graph is built
    if proto.op_type == "Constant":
        return {proto.output[0]: np.asarray(ReferenceEvaluator(_single_node_model(proto, [], [])).run(None, {})[0])}
    if proto.op_type == "Shape" and proto.input[0] in infos and all(d > 0 for d in infos[proto.input[0]].shape):
        attrs = {a.name: a.i for a in proto.attribute}
        shape = np.array(infos[proto.input[0]].shape, dtype=np.int64)
        return {proto.output[0]: shape[attrs.get("start", 0):attrs.get("end", None)]}
    if proto.op_type in ("QuantizeLinear", "DequantizeLinear") or not proto.input:
        return None
    if not all(t == "" or t in consts for t in proto.input):
        return None
    if proto.op_type == "GatherElements":
        return {proto.output[0]: _gather_elements(consts[proto.input[0]], consts[proto.input[1]], proto)}
    feeds = {t: consts[t] for t in proto.input if t}
    model = _single_node_model(proto, list(feeds.items()), list(proto.output), opset)
    try:
        values = ReferenceEvaluator(model).run(None, feeds)
    except Exception as exc:  # the reference evaluator's own failures vary in type
        # Left as a node: it is then lowered or refused by name like any other.
        log.debug("not folding %s '%s': %s", proto.op_type, proto.name, first_line(exc))
        return None
    return {name: np.asarray(v) for name, v in zip(proto.output, values) if name}  # "": an unused optional output


def _gather_elements(data: np.ndarray, indices: np.ndarray, proto: onnx.NodeProto) -> np.ndarray:
    """ONNX GatherElements: ``out[i][j] = data[indices[i][j]][j]`` along ``axis`` (here 0), ``indices`` no
    larger than ``data`` on the other axes. onnx 1.23's reference evaluator mis-shapes its result when
    ``indices`` is shorter than ``data`` along ``axis`` (BERT's ``token_type_ids.gather``)."""
    axis = next((a.i for a in proto.attribute if a.name == "axis"), 0) % data.ndim
    data = data[tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(indices.shape))]
    return np.take_along_axis(data, np.where(indices < 0, indices + data.shape[axis], indices), axis)


def _single_node_model(proto: onnx.NodeProto, feeds: list[tuple[str, np.ndarray]],
                       outputs: list[str], opset: int = 18) -> onnx.ModelProto:
    inputs = [
        onnx.helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for k, v in feeds
    ]
    outs = [onnx.helper.make_empty_tensor_value_info(o) for o in (outputs or list(proto.output))]
    graph = onnx.helper.make_graph([proto], "fold", inputs, outs)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])


def _rename_outputs(nodes: list[Node], renames: dict[str, str]) -> list[Node]:
    def fix(ts: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(renames.get(t, t) for t in ts)

    return [n.with_(inputs=fix(n.inputs), outputs=fix(n.outputs)) for n in nodes]
