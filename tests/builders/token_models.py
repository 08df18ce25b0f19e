"""A tiny text model with two integer inputs, as a user's ONNX file: token ids through an Embedding, an
attention mask that both zeroes padded positions (multiplicative) and masks the scores with
``finfo.min`` (additive, as Hugging Face's BERT writes it), a Linear, a softmax over the sequence, and
the first token's features as a second output (a class token, ``h[:, 0]``)."""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import torch
from torch import nn

VOCAB, SEQ, DIM, HEADS = 50, 12, 16, 8
INPUTS = ("input_ids", "attention_mask")


class TokenModel(nn.Module):
    """Embedding + mask + Linear + masked softmax; outputs ``(probs [1, HEADS, SEQ], first [1, DIM])``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.linear = nn.Linear(DIM, HEADS)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(input_ids) * attention_mask.unsqueeze(-1).float()
        additive = (1.0 - attention_mask.float()) * torch.finfo(torch.float32).min
        scores = self.linear(h).transpose(1, 2) + additive[:, None, :]
        return torch.softmax(scores, dim=-1), h[:, 0]


def token_model(seed: int = 0) -> TokenModel:
    torch.manual_seed(seed)
    return TokenModel().eval()


def export_token_model(seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """``token_model(seed)`` through ``torch.onnx.export(dynamo=False)``, int64 inputs of shape [1, SEQ]."""
    ids = torch.zeros(1, SEQ, dtype=torch.int64)
    mask = torch.ones(1, SEQ, dtype=torch.int64)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(token_model(seed), (ids, mask), buffer, dynamo=False, opset_version=opset,
                          input_names=list(INPUTS), output_names=["probs", "first"])
    return onnx.load_from_string(buffer.getvalue())


def token_data(seed: int, n: int) -> dict[str, np.ndarray]:
    """``n`` samples keyed by input name: random token ids, masks with a random number of padded positions
    at the end (at least one token kept)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (n, SEQ)).astype(np.int64)
    kept = rng.integers(1, SEQ + 1, n)
    mask = (np.arange(SEQ)[None, :] < kept[:, None]).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}


class BoolMaskModel(nn.Module):
    """The boolean attention mask Hugging Face's exporters write: ``Cast(mask, bool)``, ``And`` with a
    constant, ``Expand``, ``Where(mask, 0, finfo.min)`` added to the scores; output ``[1, SEQ, SEQ]``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.query = nn.Linear(DIM, DIM)
        self.register_buffer("allowed", torch.ones(1, SEQ, SEQ, dtype=torch.bool).tril(diagonal=SEQ // 2))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids)
        scores = self.query(h) @ h.transpose(1, 2)
        keep = (attention_mask.bool()[:, None, :] & self.allowed).expand(1, SEQ, SEQ)
        additive = torch.where(keep, 0.0, torch.finfo(torch.float32).min)
        return torch.softmax(scores + additive, dim=-1)


def export_bool_mask_model(seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """``BoolMaskModel`` through ``torch.onnx.export(dynamo=False)``, int64 inputs of shape [1, SEQ]."""
    torch.manual_seed(seed)
    ids = torch.zeros(1, SEQ, dtype=torch.int64)
    mask = torch.ones(1, SEQ, dtype=torch.int64)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(BoolMaskModel().eval(), (ids, mask), buffer, dynamo=False, opset_version=opset,
                          input_names=list(INPUTS), output_names=["probs"])
    return onnx.load_from_string(buffer.getvalue())
