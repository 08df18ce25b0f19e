"""Distillation's label-free views: mixup gives convex combinations of two images of the batch, cutmix pastes
a box of another image at the same place, and both keep the batch's shape."""
from __future__ import annotations

import pytest
import torch

from edgeopt.torch.views import cutmix, mixup, view


def _batch() -> torch.Tensor:
    return torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_mixup_gives_convex_combinations_of_two_images() -> None:
    x = _batch()
    mixed = mixup(x, torch.Generator().manual_seed(1))
    assert not torch.equal(mixed, x)
    for sample in mixed:
        found = False
        for a in x:
            for b in x:
                # sample = lam * a + (1 - lam) * b  <=>  sample - b = lam * (a - b)
                d = (a - b).flatten()
                lam = float(torch.dot(sample.flatten() - b.flatten(), d) / torch.dot(d, d)) if d.any() else 1.0
                close = torch.allclose(lam * a + (1 - lam) * b, sample, atol=1e-5)
                found = found or (close and -1e-6 <= lam <= 1 + 1e-6)
        assert found


def test_cutmix_pastes_a_box_of_another_image_at_the_same_place() -> None:
    x = _batch()
    mixed = cutmix(x, torch.Generator().manual_seed(2))
    pasted = 0
    for i, sample in enumerate(mixed):
        changed = (sample != x[i]).any(0)  # (H, W)
        if not changed.any():
            continue
        pasted += 1
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        box = torch.zeros_like(changed)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
        assert torch.equal(changed, box)
        assert any(torch.equal(sample[:, box], other[:, box]) for other in x)
        assert torch.equal(sample[:, ~box], x[i][:, ~box])
    assert pasted >= 3


@pytest.mark.parametrize("mix", [None, "mixup", "cutmix"])
def test_views_keep_the_batch_shape_and_are_reproducible(mix: str | None) -> None:
    x = _batch()
    a = view(x, torch.Generator().manual_seed(3), augment=True, mix=mix)
    b = view(x, torch.Generator().manual_seed(3), augment=True, mix=mix)
    assert a.shape == x.shape and torch.equal(a, b)
