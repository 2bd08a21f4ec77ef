"""The neural field: an encoding of normalised coordinates → a ReLU MLP trunk → contrast heads.

Shapes: coordinates ``(N, 3)`` in normalised units (see :mod:`inrsr.geometry`); outputs
``(N, C)``, one column per contrast, in network intensity units (see :mod:`inrsr.samples.intensity`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from inrsr.config import FitConfig
from inrsr.field.base import BaseVolume
from inrsr.field.encodings import Encoding, FourierFeatures, level_cells_mm, make_hash_grid

if TYPE_CHECKING:
    from inrsr.field.correction import StackResiduals

__all__ = ["Field", "build_field", "build_encoding"]


def build_encoding(config: FitConfig, mm_per_unit: float, generator: torch.Generator | None = None) -> Encoding:
    """The encoding named by ``config.encoding``; ``mm_per_unit`` converts grid cell sizes to mm."""
    if config.encoding == "fourier":
        return FourierFeatures(config.n_frequencies, config.ff_scale, generator, mm_per_unit)
    cells = level_cells_mm(config.grid_levels, config.grid_coarsest_mm, config.grid_finest_mm)
    return make_hash_grid(cells, config.grid_features, config.grid_log2_table, mm_per_unit, config.grid_backend, generator)


def _mlp(in_dim: int, width: int, n_hidden: int) -> nn.Sequential:
    """Input layer ``in_dim → width`` then ``n_hidden`` layers ``width → width``, all with ReLU
    (in place: on a CPU the activations of a batch outgrow the cache, and each copy costs)."""
    layers: list[nn.Module] = [nn.Linear(in_dim, width), nn.ReLU(inplace=True)]
    for _ in range(n_hidden):
        layers += [nn.Linear(width, width), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _head(width: int, head_width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, head_width), nn.ReLU(inplace=True), nn.Linear(head_width, 1))


class Field(nn.Module):
    """Encoding → trunk → heads, in one of three variants.

    * ``split``: one shared trunk, one head ``width → head_width → 1`` per contrast (the paper's
      model); a loss on contrast *c* sends no gradient into the other contrasts' heads.
    * ``vanilla``: one shared trunk and one shared output layer ``width → C``.
    * ``single``: an independent encoding+trunk+head per contrast (each contrast fitted alone).

    With a ``base`` (:class:`~inrsr.field.base.BaseVolume`), the network's output is added to
    ``config.base_weight`` times the base's interpolated values, contrast by contrast (at weight 1
    the network learns only what the base misses). After the fit, ``correction`` may hold the stacks'
    back-projected residuals (:class:`~inrsr.field.correction.StackResiduals`), also added.
    """

    def __init__(
        self,
        contrasts: list[str],
        config: FitConfig,
        mm_per_unit: float,
        generator: torch.Generator | None = None,
        base: BaseVolume | None = None,
    ):
        super().__init__()
        self.contrasts = list(contrasts)
        self.base = base
        self.correction: "StackResiduals | None" = None  # set after the fit (see inrsr.field.correction)
        self.base_weight = config.base_weight
        self.variant = config.variant
        n_c = len(self.contrasts)

        def encoder_and_trunk() -> tuple[Encoding, nn.Sequential]:
            enc = build_encoding(config, mm_per_unit, generator)
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

    def set_detail_mm(self, cut_mm: float | None) -> None:
        """Coarse-to-fine: hold back encoded detail finer than ``cut_mm`` (``None``: release it)."""
        for module in self.modules():
            if isinstance(module, Encoding):
                module.set_detail_mm(cut_mm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All contrasts at every point: ``(N, 3)`` → ``(N, C)``."""
        return self.plus_fixed(self.network_output(x), x)

    def plus_fixed(self, out: torch.Tensor, x: torch.Tensor, contrast_id: torch.Tensor | None = None) -> torch.Tensor:
        """``out`` plus the parts of the field that gradients do not train: ``base_weight`` times the
        base at ``x``, and the back-projected residuals once the fit has set them (kept within each
        contrast's measured range, see :meth:`~inrsr.field.correction.StackResiduals.corrected`).
        Every contrast ``(N, C)``, or each point's own ``(N,)`` when ``contrast_id`` is given."""
        if self.base is not None:
            values = self.base(x)
            if contrast_id is not None:
                values = values.gather(1, contrast_id[:, None])[:, 0]
            out = out.float() + self.base_weight * values
        return out if self.correction is None else self.correction.corrected(out, x, contrast_id)

    @contextmanager
    def without_correction(self) -> Iterator["Field"]:
        """The field without its back-projected residuals for the duration (the network and its base alone)."""
        saved, self.correction = self.correction, None
        try:
            yield self
        finally:
            self.correction = saved

    def network_output(self, x: torch.Tensor) -> torch.Tensor:
        """The network's part of every contrast, without the base: ``(N, 3)`` → ``(N, C)``."""
        if self.variant == "single":
            cols = [h(t(e(x))) for e, t, h in zip(self.encodings, self.trunks, self.heads)]
            return torch.cat(cols, dim=1)
        h = self.trunk(self.encoding(x))
        return self._split_heads(h) if self.variant == "split" else self.out(h)

    def _split_heads(self, h: torch.Tensor) -> torch.Tensor:
        """Every head at every point, as one matrix product per layer: ``(N, width)`` → ``(N, C)``.

        The same function as applying each head in turn; a point's output in column *c* depends
        only on head *c*, so a loss on it sends no gradient into the other heads."""
        first = [head[0] for head in self.heads]
        hidden = F.linear(h, torch.cat([l.weight for l in first]), torch.cat([l.bias for l in first])).relu_()
        last = [head[2] for head in self.heads]  # block-diagonal: column c reads head c's hidden units only
        return F.linear(hidden, torch.block_diag(*[l.weight for l in last]), torch.cat([l.bias for l in last]))

    def forward_own(self, x: torch.Tensor, contrast_id: torch.Tensor) -> torch.Tensor:
        """Each point's own contrast only: ``(N, 3)``, ``(N,)`` int → ``(N,)``.

        ``single`` evaluates each network only on its own points; the shared-trunk variants evaluate
        every head and keep each point's own (selecting points costs more than the small heads).
        """
        if self.variant != "single":  # the heads are cheap next to selecting each one's points
            return self(x).gather(1, contrast_id[:, None])[:, 0]
        out = x.new_empty(x.shape[0])
        for c in range(self.n_contrasts):
            sel = (contrast_id == c).nonzero(as_tuple=True)[0]
            if sel.numel() > 0:
                out[sel] = self.heads[c](self.trunks[c](self.encodings[c](x[sel])))[:, 0].to(out.dtype)
        return self.plus_fixed(out, x, contrast_id)


def build_field(
    contrasts: list[str], config: FitConfig, mm_per_unit: float, base: BaseVolume | None = None
) -> Field:
    """A freshly initialised field; its parameters depend only on ``config.seed``.

    ``mm_per_unit`` is the normaliser's scale (world mm per normalised unit), which fixes the
    hash grid's cell sizes in mm; ``base`` is the prior the network adds to (none by default).
    """
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Field(contrasts, config, mm_per_unit, generator, base)
