"""``edgeopt.equalize``: batch-norm folding and cross-layer equalization, in place on a torch module.

The work is done by the pipeline's own passes on the exported Graph (the exporter folds inference
batch norms; ``fold_batch_norm`` folds any it left; ``cross_layer_equalization`` equalizes, with
high-bias absorption from the batch-norm statistics), and the results are mapped back to the module by
tensor name: the exporter keeps a layer's parameter name (``features.0.weight``) as its ONNX
initializer name, and graph passes keep node names, so each Conv/Gemm node of the final graph is
traced to the module parameter its weight came from. The module then gets the new weights and biases
(a layer without a bias gets one), and each folded ``BatchNorm`` module is replaced by ``nn.Identity``.

Limits: a layer whose weight is not a module parameter (a functional conv with a computed weight), or
one used at several places, cannot be written back and raises ``ModelLoadError``; only batch norms
that are module attributes used once are replaced (a functional batch norm cannot be removed).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgeopt.errors import ModelLoadError
from edgeopt.ir import Graph, Node, weight_out_axis
from edgeopt.pipeline.frontend.load import export_torch
from edgeopt.pipeline.frontend.onnx import onnx_to_graph
from edgeopt.pipeline.optimize import optimize
from edgeopt.pipeline.optimize.cross_layer_equalization import cross_layer_equalization

LAYER_OPS = ("Conv", "Gemm")


def equalize(model: nn.Module, example_input: Any, *, relu6: str = "exact") -> nn.Module:
    """Fold batch norms into the layers before them and equalize weight ranges, in place.

    Args:
        model: the float model; put in eval mode, and returned.
        example_input: an input tensor (or a tuple of them) for the exporter.
        relu6: the ReLU6 policy of ``cross_layer_equalization`` ("exact" keeps outputs unchanged).

    Raises:
        ModelLoadError: the export failed, or a changed layer cannot be traced to a module parameter.
    """
    model.eval()
    example = example_input if isinstance(example_input, tuple) else (example_input,)
    batch_norms = _batch_norms_after_layers(model, example)
    raw = onnx_to_graph(export_torch(model, *example), type(model).__name__, None)
    final = cross_layer_equalization(optimize(raw, ("fold_batch_norm", "fuse_activation")), relu6=relu6)
    source = {n.name: n for n in raw.nodes if n.op in LAYER_OPS and len(n.inputs) > 1}
    params = dict(model.named_parameters())
    folded_in_graph = {bn.inputs[1] for bn in raw.nodes if bn.op == "BatchNormalization"}
    with torch.no_grad():
        for node in final.nodes:
            if node.op not in LAYER_OPS or node.name not in source:
                continue
            weight_name = source[node.name].inputs[1]
            if weight_name in params:  # written even when unchanged by CLE: the exporter may have folded a BN
                _write_layer(model, weight_name, node, final)
            elif node.inputs[1:] != source[node.name].inputs[1:]:
                raise ModelLoadError(f"equalize cannot map layer '{node.name}' back to a module parameter "
                                     f"(its weight '{weight_name}' is not one)")
    for layer_weight, bn_path in batch_norms.items():
        _replace_module(model, bn_path, nn.Identity())
    for gamma_name in folded_in_graph:
        _replace_module(model, gamma_name.rsplit(".", 1)[0], nn.Identity())
    return model


def _write_layer(model: nn.Module, weight_name: str, node: Node, graph: Graph) -> None:
    module_path, _, _ = weight_name.rpartition(".")
    module = model.get_submodule(module_path)
    param = module.get_parameter("weight")
    weight = torch.from_numpy(graph.initializers[node.inputs[1]].copy())
    if weight_out_axis(node) == 1:  # a Gemm's (K, N): the module's weight is (N, K)
        weight = weight.T
    if tuple(weight.shape) != tuple(param.shape):
        raise ModelLoadError(f"equalize cannot map layer '{node.name}': weight shape {tuple(weight.shape)} "
                             f"differs from '{weight_name}' {tuple(param.shape)}")
    param.copy_(weight)
    if len(node.inputs) > 2 and node.inputs[2]:
        bias = torch.from_numpy(graph.initializers[node.inputs[2]].copy()).reshape(-1)
        if getattr(module, "bias", None) is None:
            module.bias = nn.Parameter(bias.to(param.dtype))
        else:
            module.bias.copy_(bias)


def _batch_norms_after_layers(model: nn.Module, example: tuple[Any, ...]) -> dict[str, str]:
    """``{layer weight parameter: batch-norm module path}`` for the batch norms the exporter folds."""
    from edgeopt.pipeline.frontend import batch_norm_stats as bn_stats

    try:
        program = torch.export.export(model, example, strict=False)
    except Exception:  # the exporter's other strategies fold nothing we could trace
        return {}
    params = program.graph_signature.inputs_to_parameters
    buffers = program.graph_signature.inputs_to_buffers
    found: dict[str, str] = {}
    for bn in program.graph.nodes:
        if (bn.op != "call_function" or bn_stats.aten_name(bn.target) not in bn_stats.BATCH_NORM_OPS
                or bn_stats.is_training(bn)):
            continue
        layer = bn.args[0]
        if getattr(layer, "op", None) != "call_function" or bn_stats.aten_name(layer.target) not in bn_stats.LAYER_OPS:
            continue
        if len(layer.users) != 1 or str(layer.args[1]) not in params:
            continue
        mean = str(bn.args[3])
        if mean in buffers:
            found[params[str(layer.args[1])]] = buffers[mean].rsplit(".", 1)[0]
    return found


def _replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if isinstance(getattr(parent, name, None), nn.modules.batchnorm._BatchNorm):
        setattr(parent, name, new)
