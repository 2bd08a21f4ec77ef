"""The smoothness penalty: finite differences of the field between random points and their
neighbours, which fills the space between sampled slice planes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from inrsr.field.network import Field

__all__ = ["smoothness_points", "smoothness_of", "smoothness_penalty"]


def smoothness_points(centres: torch.Tensor, jitter: float, step: float, generator: torch.Generator) -> torch.Tensor:
    """``(2n, 3)`` points for the smoothness penalty: ``n`` random points and, after them, each
    one's neighbour ``step`` away in a random direction (normalised units).

    The points are ``centres`` (n, 3) moved uniformly within ``±jitter`` per axis, so that they
    fill the space between sampled planes.
    """
    n = centres.shape[0]
    noise = torch.rand(n, 3, generator=generator).to(centres.device)
    p = centres + (2.0 * noise - 1.0) * jitter
    d = torch.randn(n, 3, generator=generator).to(centres.device)
    d = d / d.norm(dim=1, keepdim=True).clamp(min=1e-12) * step
    return torch.cat([p, p + d])


def smoothness_of(values: torch.Tensor, norm: str) -> torch.Tensor:
    """The smoothness penalty from the field's values ``(2n, C)`` at :func:`smoothness_points`.

    ``l1`` penalises ``|Δf|`` of each contrast (total variation, keeps edges), ``l2`` penalises
    ``Δf²``, ``joint`` penalises ``√(mean_c Δf_c²)`` per point (joint total variation: an edge
    costs less where the other contrasts have one too; equal to ``l1`` for one contrast).
    """
    pair = values.view(2, values.shape[0] // 2, -1)
    diff = pair[1] - pair[0]
    if norm == "joint":
        return (diff.float().square().mean(dim=1) + 1e-12).sqrt().mean()
    return diff.abs().mean() if norm == "l1" else diff.square().mean()


def smoothness_penalty(
    model: "Field", centres: torch.Tensor, jitter: float, step: float, norm: str, generator: torch.Generator
) -> torch.Tensor:
    """Mean finite difference of every contrast between random points near ``centres`` and their
    neighbours (:func:`smoothness_points`, :func:`smoothness_of`)."""
    return smoothness_of(model(smoothness_points(centres, jitter, step, generator)), norm)
