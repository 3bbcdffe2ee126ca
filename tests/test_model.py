"""The transforms' building blocks: GDN learns its cross-channel terms; wider models grow from narrow ones."""

from __future__ import annotations

from dataclasses import replace

import torch

from aecompress.model import GDN, GDN_CROSS_TERM_START, AutoEncoder
from aecompress.presets import PRESETS


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    return matrix[~torch.eye(matrix.shape[0], dtype=torch.bool)]


def _fit(layer: GDN, steps: int = 30) -> None:
    """Fit a target that only cross-channel normalization can produce: each channel divided by the others' size."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, 8, 8, generator=generator)
    target = x / (1 + x.abs().mean(dim=1, keepdim=True))
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = (layer(x) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_gdn_learns_its_cross_channel_terms():
    layer = GDN(6)
    _fit(layer)
    moved = (_off_diagonal(layer.gamma_raw.detach()) - GDN_CROSS_TERM_START).abs()
    assert moved.max() > 20 * GDN_CROSS_TERM_START  # at exactly 0 they would not move at all


def test_stuck_cross_terms_are_freed_without_changing_the_output():
    layer = GDN(6)
    with torch.no_grad():
        layer.gamma_raw.copy_(torch.diag(torch.linspace(0.2, 0.6, 6)))  # a model from before the fix
    stuck = GDN(6)
    stuck.load_state_dict(layer.state_dict())
    _fit(stuck)
    assert (_off_diagonal(stuck.gamma_raw.detach()) == 0).all()  # the bug: no gradient at 0

    x = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(1))
    before = layer(x).detach()
    assert layer.free_cross_terms() == 6 * 5
    assert layer.free_cross_terms() == 0  # nothing left to free
    assert torch.allclose(layer(x), before, rtol=1e-4, atol=1e-5)
    _fit(layer)
    assert (_off_diagonal(layer.gamma_raw.detach()) != GDN_CROSS_TERM_START).all()


def test_a_wider_model_grown_from_a_narrow_one_computes_the_same():
    narrow = AutoEncoder(PRESETS["tiny-hp"])
    with torch.no_grad():  # a trained-looking model: no parameter at its initial value
        for parameter in narrow.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(parameter.numel())))
    wide = AutoEncoder(replace(PRESETS["tiny-hp"], N=24, name="wide"))
    assert wide.can_grow_from(narrow) and not narrow.can_grow_from(wide)
    taken = wide.load_transforms(narrow)
    assert len(taken) == len(wide.state_dict())  # everything comes from the narrow model, grown or copied

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    quality = torch.tensor([0, 3])
    with torch.no_grad():
        y_narrow, y_wide = narrow.analysis(x, quality), wide.analysis(x, quality)
        assert torch.allclose(y_wide, y_narrow, atol=1e-3, rtol=1e-3)
        assert torch.allclose(wide.h_a(y_narrow), narrow.h_a(y_narrow), atol=1e-4, rtol=1e-4)
        y_hat = torch.round(y_narrow)
        assert torch.allclose(wide.synthesis(y_hat, quality), narrow.synthesis(y_hat, quality), atol=1e-3, rtol=1e-3)


def test_growing_needs_the_same_latent():
    narrow = AutoEncoder(PRESETS["tiny-hp"])
    assert not AutoEncoder(replace(PRESETS["tiny-hp"], N=24, M=40)).can_grow_from(narrow)
    assert not AutoEncoder(replace(PRESETS["tiny"], N=24)).can_grow_from(narrow)
