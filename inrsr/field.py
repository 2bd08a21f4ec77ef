"""The neural field: an encoding of normalised coordinates → a ReLU MLP trunk → contrast heads.

Shapes: coordinates ``(N, 3)`` in normalised units (see :mod:`inrsr.geometry`); outputs
``(N, C)``, one column per contrast, in network intensity units (see :mod:`inrsr.intensity`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import FitConfig

__all__ = ["Encoding", "FourierFeatures", "Field", "build_field"]


class Encoding(nn.Module):
    """Base class: maps ``(N, 3)`` coordinates to ``(N, out_dim)`` features."""

    out_dim: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class FourierFeatures(Encoding):
    """Gaussian random Fourier features ``[sin(2π x Bᵀ), cos(2π x Bᵀ)]`` with ``B ~ N(0, scale²)``.

    ``B`` has shape ``(n_frequencies, 3)`` and is a fixed buffer (saved in checkpoints).
    """

    def __init__(self, n_frequencies: int, scale: float, generator: torch.Generator | None = None):
        super().__init__()
        b = torch.randn(n_frequencies, 3, generator=generator) * scale
        self.register_buffer("B", b)
        self.out_dim = 2 * n_frequencies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = (2.0 * math.pi) * (x @ self.B.T)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def _mlp(in_dim: int, width: int, n_hidden: int) -> nn.Sequential:
    """Input layer ``in_dim → width`` then ``n_hidden`` layers ``width → width``, all with ReLU."""
    layers: list[nn.Module] = [nn.Linear(in_dim, width), nn.ReLU()]
    for _ in range(n_hidden):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def _head(width: int, head_width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, head_width), nn.ReLU(), nn.Linear(head_width, 1))


class Field(nn.Module):
    """Encoding → trunk → heads, in one of three variants.

    * ``split``: one shared trunk, one head ``width → head_width → 1`` per contrast (the paper's
      model); a loss on contrast *c* sends no gradient into the other contrasts' heads.
    * ``vanilla``: one shared trunk and one shared output layer ``width → C``.
    * ``single``: an independent encoding+trunk+head per contrast (each contrast fitted alone).
    """

    def __init__(self, contrasts: list[str], config: FitConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.contrasts = list(contrasts)
        self.variant = config.variant
        n_c = len(self.contrasts)

        def encoder_and_trunk() -> tuple[Encoding, nn.Sequential]:
            enc = FourierFeatures(config.n_frequencies, config.ff_scale, generator)
            return enc, _mlp(enc.out_dim, config.width, config.depth)

        if self.variant == "single":
            parts = [encoder_and_trunk() for _ in range(n_c)]
            self.encodings = nn.ModuleList(p[0] for p in parts)
            self.trunks = nn.ModuleList(p[1] for p in parts)
            self.heads = nn.ModuleList(_head(config.width, config.head_width) for _ in range(n_c))
        else:
            self.encoding, self.trunk = encoder_and_trunk()
            if self.variant == "split":
                self.heads = nn.ModuleList(_head(config.width, config.head_width) for _ in range(n_c))
            elif self.variant == "vanilla":
                self.out = nn.Linear(config.width, n_c)
            else:
                raise ValueError(f"unknown variant {self.variant!r}")

    @property
    def n_contrasts(self) -> int:
        return len(self.contrasts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All contrasts at every point: ``(N, 3)`` → ``(N, C)``."""
        if self.variant == "single":
            cols = [h(t(e(x))) for e, t, h in zip(self.encodings, self.trunks, self.heads)]
            return torch.cat(cols, dim=1)
        h = self.trunk(self.encoding(x))
        if self.variant == "split":
            return torch.cat([head(h) for head in self.heads], dim=1)
        return self.out(h)

    def forward_own(self, x: torch.Tensor, contrast_id: torch.Tensor) -> torch.Tensor:
        """Each point's own contrast only: ``(N, 3)``, ``(N,)`` int → ``(N,)``.

        Evaluates each head (or each network, for ``single``) only on its own points, which is what
        training needs and saves the work of the other heads.
        """
        if self.variant == "vanilla":
            return self.out(self.trunk(self.encoding(x))).gather(1, contrast_id[:, None])[:, 0]
        out = x.new_empty(x.shape[0])
        h = self.trunk(self.encoding(x)) if self.variant == "split" else None
        for c in range(self.n_contrasts):
            sel = (contrast_id == c).nonzero(as_tuple=True)[0]
            if sel.numel() == 0:
                continue
            if h is not None:
                out[sel] = self.heads[c](h[sel])[:, 0]
            else:
                out[sel] = self.heads[c](self.trunks[c](self.encodings[c](x[sel])))[:, 0]
        return out


def build_field(contrasts: list[str], config: FitConfig) -> Field:
    """A freshly initialised field; weights and Fourier frequencies depend only on ``config.seed``."""
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Field(contrasts, config, generator)
