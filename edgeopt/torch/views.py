"""Random label-free views of a batch of images for distillation: flips and shifts, mixup, cutmix.

The teacher is run on the very view the student sees ("consistent" teaching, Beyer et al. 2022,
"Knowledge distillation: A good teacher is patient and consistent"), so none of these needs labels:
mixing two images only asks the student to match the teacher's function between them ("function
matching"). All randomness comes from the ``generator`` passed in, so runs are reproducible.
"""
from __future__ import annotations

import torch

MIXES = ("mixup", "cutmix")


def augmented(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W) with each sample flipped left-right with probability 1/2 and shifted by up to
    H/8 rows and W/8 columns (zero fill), the flips and shifts drawn from ``generator``.

    One gather over the zero-padded batch crops every sample at its own offset (no per-sample loop).
    """
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    ph, pw = max(1, h // 8), max(1, w // 8)
    padded = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    dy = torch.randint(0, 2 * ph + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pw + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
    return padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]


def mixup(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zhang et al. 2018, "mixup": sample i becomes ``lam_i * x[i] + (1 - lam_i) * x[p(i)]`` with ``lam_i``
    uniform in [0, 1] (Beta(1, 1)) and ``p`` a random permutation of the batch."""
    lam = torch.rand(len(x), generator=generator)[:, None, None, None]
    partner = x[torch.randperm(len(x), generator=generator)]
    return lam * x + (1 - lam) * partner


def cutmix(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Yun et al. 2019, "CutMix": sample i gets a box of ``x[p(i)]`` pasted at the same place, the box's
    area a uniform fraction of the image (sides ``sqrt(area)`` of H and W), its centre uniform over the
    image (the box clipped at the borders); ``p`` a random permutation of the batch."""
    n, _, h, w = x.shape
    side = torch.sqrt(torch.rand(n, generator=generator))
    bh, bw = (side * h).round().long(), (side * w).round().long()
    cy, cx = (torch.rand(n, generator=generator) * h).long(), (torch.rand(n, generator=generator) * w).long()
    y0, y1 = (cy - bh // 2).clamp(0, h), (cy - bh // 2 + bh).clamp(0, h)
    x0, x1 = (cx - bw // 2).clamp(0, w), (cx - bw // 2 + bw).clamp(0, w)
    r, c = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    box = (r >= y0[:, None, None]) & (r < y1[:, None, None]) & (c >= x0[:, None, None]) & (c < x1[:, None, None])
    partner = x[torch.randperm(n, generator=generator)]
    return torch.where(box[:, None], partner, x)


def view(x: torch.Tensor, generator: torch.Generator, *, augment: bool, mix: str | None) -> torch.Tensor:
    """``x`` flipped and shifted (``augment``), then mixed (``mix``: one of ``MIXES`` or None)."""
    if augment:
        x = augmented(x, generator)
    if mix == "mixup":
        x = mixup(x, generator)
    elif mix == "cutmix":
        x = cutmix(x, generator)
    return x
