"""Coordinate encodings: ``(N, 3)`` normalised coordinates → ``(N, out_dim)`` features.

Siblings behind one interface (:class:`Encoding`): Gaussian Fourier features (the paper's) and a
multiresolution hash grid (Müller et al. 2022) in PyTorch, run by a compiled C kernel on the CPU
when one can be built (:mod:`inrsr.field.native`) and by tinycudann on CUDA when it imports. Grid
resolutions are given in mm and converted with ``mm_per_unit``, the normaliser's scale (world mm
per normalised unit), so that a level's cell size means the same thing on every subject.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from inrsr.field.native import NativeUnavailable, load_hashgrid

__all__ = ["Encoding", "detail_weights", "FourierFeatures", "HashGrid", "level_cells_mm", "hash_corners", "make_hash_grid"]

# Spatial-hash primes of Teschner et al. (2003), as used by instant-NGP; the first is 1.
_PRIMES = (1, 2654435761, 805459861)

# Largest |position| in cells that the hash grid turns into a vertex index (2^24, the kernel's
# MAX_CELLS): every float32 that large is an integer, so the clamp moves no in-range point.
_MAX_CELLS = float(1 << 24)


class Encoding(nn.Module):
    """Base class: maps ``(N, 3)`` coordinates to ``(N, out_dim)`` features."""

    out_dim: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def set_detail_mm(self, cut_mm: float | None) -> None:
        """Coarse-to-fine training: damp the features finer than ``cut_mm`` (``None``: none)."""


def detail_weights(scales_mm: torch.Tensor, cut_mm: float | None) -> torch.Tensor:
    """Weight of a feature whose spatial scale (cell size or wavelength) is ``scales_mm`` when
    detail finer than ``cut_mm`` is being held back: 1 at or above the cut, 0 at half of it and
    below, linear in log2 scale in between; all ones when ``cut_mm`` is ``None``."""
    if cut_mm is None:
        return torch.ones_like(scales_mm)
    return torch.clamp(1.0 + torch.log2(scales_mm / cut_mm), 0.0, 1.0)


class FourierFeatures(Encoding):
    """Gaussian random Fourier features ``[sin(2π x Bᵀ), cos(2π x Bᵀ)]`` with ``B ~ N(0, scale²)``.

    ``B`` has shape ``(n_frequencies, 3)`` in cycles per normalised unit and is a fixed buffer
    (saved in checkpoints).
    """

    def __init__(
        self, n_frequencies: int, scale: float, generator: torch.Generator | None = None, mm_per_unit: float = 1.0
    ):
        super().__init__()
        b = torch.randn(n_frequencies, 3, generator=generator) * scale
        self.register_buffer("B", b)
        self.out_dim = 2 * n_frequencies
        self.mm_per_unit = float(mm_per_unit)
        self.register_buffer("weights", torch.ones(n_frequencies), persistent=False)

    def set_detail_mm(self, cut_mm: float | None) -> None:
        """Damp frequencies whose wavelength (mm) is below ``cut_mm`` (see :func:`detail_weights`)."""
        wavelength_mm = self.mm_per_unit / self.B.norm(dim=1).clamp(min=1e-12)
        self.weights.copy_(detail_weights(wavelength_mm, cut_mm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Phases reach hundreds of radians: computed in fp32 even under bf16 autocast, whose
        # 8-bit mantissa would scramble them.
        with torch.autocast(x.device.type, enabled=False):
            proj = (2.0 * math.pi) * (x.float() @ self.B.T)
            out = torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
            return out * self.weights.repeat(2) if bool((self.weights < 1).any()) else out


def level_cells_mm(levels: int, coarsest_mm: float, finest_mm: float) -> list[float]:
    """Cell sizes (mm) of ``levels`` grid levels in geometric progression, coarsest first."""
    if levels == 1:
        return [float(finest_mm)]
    ratio = (finest_mm / coarsest_mm) ** (1.0 / (levels - 1))
    return [float(coarsest_mm * ratio**lvl) for lvl in range(levels)]


def _to_int32(p: int) -> int:
    """The int32 with the same low 32 bits as ``p`` (two's complement wrap)."""
    p &= 0xFFFFFFFF
    return p - (1 << 32) if p >= 1 << 31 else p


def hash_corners(corner: torch.Tensor, table_size: int) -> torch.Tensor:
    """Spatial hash of integer vertex coordinates ``(..., 3)`` int32 into ``[0, table_size)``.

    ``xor_d(c_d · π_d) mod table_size`` with ``table_size`` a power of two. Products wrap in int32,
    which leaves their low bits, and hence the result, equal to exact integer arithmetic.
    """
    h = corner[..., 0] * _to_int32(_PRIMES[0])
    for d in (1, 2):
        h = torch.bitwise_xor(h, corner[..., d] * _to_int32(_PRIMES[d]))
    return torch.bitwise_and(h, table_size - 1)


class HashGrid(Encoding):
    """Multiresolution hash grid in pure PyTorch: trilinear interpolation of learned vertex features.

    Level ``l`` is a lattice with cubic cells of ``cells_mm[l]`` mm (anchored at normalised
    ``-1``). A level whose vertices over ``[-1, 1]³`` fit in the table is stored densely (one entry
    per vertex, coordinates clamped to the lattice, so it takes only as many rows as it has
    vertices); finer levels are hashed into ``table_size`` entries. The levels' rows follow each
    other in one ``(rows, features)`` table, from ``level_offset``. Output: ``levels × features``
    values, coarsest level first.

    Parameters
    ----------
    cells_mm : cell size per level, mm.
    features : features per level.
    log2_table_size : entries per level = ``2**log2_table_size``.
    mm_per_unit : world mm per normalised coordinate unit.
    init_scale : table entries start uniform in ``±init_scale``.
    native : run the forward and backward passes (to the table and to the points) through the
        compiled C kernel of :mod:`inrsr.field.native` for float32 tables on the CPU.

    Coordinates are expected in about ``[-1, 1]`` but any float is safe, on both paths alike (the
    same numbers; see ``hashgrid.c``): a point's position in cells of each level is clamped to
    ``±2**24`` cells before it becomes a vertex index, so finite points far outside the grid give
    finite features (the edge vertex of a dense level, a hashed vertex of a fine one), and ``±inf``
    is treated as a huge finite value (clamped, finite features). A NaN coordinate gives NaN
    features for that point: its weights are NaN, its rows those of cell 0 along that axis (valid
    rows), and the NaN weights carry on into the gradients (the table rows it touches, the point's
    gradient along its other, unclamped axes). The gradient with respect to the points is zero
    along a clamped axis.
    """

    def __init__(
        self,
        cells_mm: list[float],
        features: int,
        log2_table_size: int,
        mm_per_unit: float,
        init_scale: float = 1e-4,
        generator: torch.Generator | None = None,
        native: bool = False,
    ):
        super().__init__()
        # The compiled CPU kernel (raises NativeUnavailable when it cannot be built); not state.
        self._kernel = load_hashgrid() if native else None
        self.levels, self.features = len(cells_mm), int(features)
        self.table_size = 1 << int(log2_table_size)
        # The layout is computed on the CPU whatever the default device, so that the grid can also
        # be built on PyTorch's "meta" device (shapes only, to check a model file before loading it).
        inv_cell = torch.tensor([mm_per_unit / c for c in cells_mm], dtype=torch.float32, device="cpu")  # cells/unit
        verts = torch.floor(2.0 * inv_cell).to(torch.int64) + 2  # vertices per axis over [-1, 1]
        dense = verts.double() ** 3 <= self.table_size  # in float64: verts**3 overflows int64 past 2^21
        self.register_buffer("inv_cell", inv_cell)
        self.register_buffer("verts", verts.to(torch.int32))
        self.register_buffer("dense", dense)
        rows = torch.where(dense, verts**3, torch.full_like(verts, self.table_size))  # rows per level
        offset = torch.cumsum(rows, 0) - rows
        self.register_buffer("level_offset", offset.to(torch.int32))
        self.register_buffer("strides", torch.stack([torch.ones_like(verts), verts, verts * verts], -1).to(torch.int32))
        self.register_buffer("primes", torch.tensor([_to_int32(p) for p in _PRIMES], dtype=torch.int32, device="cpu"))
        if not bool(dense[: int(dense.sum())].all()):
            raise ValueError("grid levels must be ordered coarsest first")
        self.n_dense = int(dense.sum())
        self._uniform_rows = self.levels * self.table_size  # the layout before compaction (old checkpoints)
        table = (torch.rand(int(rows.sum()), self.features, generator=generator) * 2 - 1) * init_scale
        self.table = nn.Parameter(table)
        self.out_dim = self.levels * self.features
        self.register_buffer("cells_mm", torch.tensor(cells_mm, dtype=torch.float32), persistent=False)
        self.register_buffer("level_weights", torch.ones(self.levels), persistent=False)

    def set_detail_mm(self, cut_mm: float | None) -> None:
        """Damp the levels whose cells are below ``cut_mm`` (see :func:`detail_weights`)."""
        self.level_weights.copy_(detail_weights(self.cells_mm, cut_mm))

    def __getstate__(self) -> dict:
        """For ``copy.deepcopy`` and pickling: the compiled kernel's handle is not copied but
        loaded again by the copy (:meth:`__setstate__`)."""
        state = self.__dict__.copy()
        state["_kernel"] = None
        state["_native"] = self._kernel is not None
        return state

    def __setstate__(self, state: dict) -> None:
        native = state.pop("_native", False)
        super().__setstate__(state)
        self._kernel = load_hashgrid() if native else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001 - torch's hook
        """Accept tables saved before the compact layout (``table_size`` rows for every level):
        each level keeps the rows it uses, and the offsets are this layout's."""
        table = state_dict.get(prefix + "table")
        if table is not None and table.shape[0] == self._uniform_rows != self.table.shape[0]:
            sizes = torch.diff(torch.cat([self.level_offset.long(), torch.tensor([self.table.shape[0]])]))
            state_dict[prefix + "table"] = torch.cat(
                [table[lvl * self.table_size : lvl * self.table_size + int(n)] for lvl, n in enumerate(sizes)]
            )
            state_dict[prefix + "level_offset"] = self.level_offset.clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def corners(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Table rows ``(N, L, 8)`` int64 and trilinear weights ``(N, L, 8)`` of each point's cell corners.

        Works per axis on the two candidate vertex coordinates and combines the axes by
        broadcasting, so that only the final ``(N, L, 8)`` tensors are ever that large.
        """
        pos = (x.float()[:, None, :] + 1.0) * self.inv_cell[None, :, None]  # (N, L, 3) in cells
        far = not _near_cells(x, self.inv_cell)  # the clamps below change nothing for near points
        if far:
            pos = _clamp_cells(pos)
        base_f = torch.floor(pos)
        frac = pos - base_f  # NaN where pos is NaN
        lo = (torch.nan_to_num(base_f, nan=0.0) if far else base_f).to(torch.int32)  # in ±2^24; 0 for NaN
        both = torch.stack([lo, lo + 1], dim=-1)  # (N, L, 3, 2) vertex coordinate per axis
        nd = self.n_dense
        idx = torch.empty(*lo.shape[:2], 8, dtype=torch.int64, device=x.device)
        if nd:  # dense levels: row = i + j·V + k·V², coordinates clamped to the lattice
            last = (self.verts[:nd] - 1)[None, :, None, None]
            term = torch.minimum(torch.clamp(both[:, :nd], min=0), last) * self.strides[None, :nd, :, None]
            idx[:, :nd] = _combine_axes(term, torch.add) + self.level_offset[None, :nd, None]
        if nd < self.levels:  # hashed levels: xor of coordinate × prime per axis
            term = both[:, nd:] * self.primes[None, None, :, None]
            rows = torch.bitwise_and(_combine_axes(term, torch.bitwise_xor), self.table_size - 1)
            idx[:, nd:] = rows + self.level_offset[None, nd:, None]
        wts = torch.stack([1.0 - frac, frac], dim=-1)  # (N, L, 3, 2)
        w = _combine_axes(wts, torch.mul)
        return idx, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._kernel is not None and x.device.type == "cpu" and self.table.dtype == torch.float32:
            out = _NativeGather.apply(self.table, x.float().contiguous(), self)
            out = out.view(x.shape[0], self.levels, self.features)
        else:
            idx, w = self.corners(x)
            out = _GridGather.apply(self.table, idx, w)  # (N, L, F)
        if bool((self.level_weights < 1).any()):
            out = out * self.level_weights[None, :, None].to(out.dtype)
        return out.reshape(x.shape[0], self.out_dim)


def _near_cells(x: torch.Tensor, inv_cell: torch.Tensor) -> bool:
    """Whether every point ``(N, 3)`` lies within ``2**24`` cells of the origin at every level (no
    NaN, no infinity): float rounding is monotonic, so ``|(x + 1)·inv| ≤ |(x + 1)·max|inv||`` for
    each level's cells per unit ``inv`` (as ``hashgrid.c``'s ``point_near``)."""
    inv_max = inv_cell.abs().max()
    return bool((((x.float() + 1.0) * inv_max).abs() <= _MAX_CELLS).all())


def _clamp_cells(pos: torch.Tensor) -> torch.Tensor:
    """Positions in cells clamped to ``±2**24`` (``±inf`` too); NaN stays NaN and keeps its gradient,
    a clamped value gets none (as ``hashgrid.c``'s ``split_cell``)."""
    return torch.where(pos.abs() > _MAX_CELLS, pos.detach().clamp(-_MAX_CELLS, _MAX_CELLS), pos)


def _combine_axes(t: torch.Tensor, op) -> torch.Tensor:
    """``(N, L, 3, 2)`` per-axis terms → ``(N, L, 8)`` with ``op`` over axes; corner ``k`` takes
    the ``(k >> d) & 1``-th term along axis ``d``."""
    xy = op(t[..., 0, None, :], t[..., 1, :, None])  # (N, L, 2[y], 2[x])
    return op(xy[..., None, :, :], t[..., 2, :, None, None]).flatten(-3)  # (N, L, 2[z], 2[y], 2[x])


class _GridGather(torch.autograd.Function):
    """``out[n, l] = Σ_k w[n, l, k] · table[idx[n, l, k]]`` with a scatter-add backward.

    Much faster on CPU than autograd through ``embedding`` (whose backward sorts the indices).
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        rows = table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[1])
        ctx.save_for_backward(idx, w, rows if w.requires_grad else None)
        ctx.n_rows, ctx.table_dtype = table.shape[0], table.dtype
        return torch.matmul(w[..., None, :], rows)[..., 0, :]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        idx, w, rows = ctx.saved_tensors
        grad_table = grad_w = None
        if ctx.needs_input_grad[0]:
            contrib = (w[..., :, None] * grad_out[..., None, :]).reshape(-1, grad_out.shape[-1])
            # the table's own dtype: under bf16 autocast grad_out is bfloat16 while the table is float32
            grad_table = grad_out.new_zeros(ctx.n_rows, grad_out.shape[-1], dtype=ctx.table_dtype)
            grad_table.index_add_(0, idx.reshape(-1), contrib.to(ctx.table_dtype))
        if ctx.needs_input_grad[2]:
            grad_w = (rows * grad_out[..., None, :]).sum(-1)
        return grad_table, None, grad_w


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _kernel_geometry(grid: "HashGrid") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The level arrays the C kernel reads: cells per unit (float32), vertices per axis (int32) and
    first table row (int64) of each level, contiguous."""
    return grid.inv_cell.contiguous(), grid.verts.contiguous(), grid.level_offset.to(torch.int64).contiguous()


class _NativeGather(torch.autograd.Function):
    """:class:`HashGrid`'s encoding by the compiled kernel: ``(N, 3)`` → ``(N, L·F)``; the
    backward pass scatters into the table and, when they need one, gives the points' gradient."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, x: torch.Tensor, grid: "HashGrid") -> torch.Tensor:
        table, inv_cell, verts, offset = table.contiguous(), *_kernel_geometry(grid)
        out = torch.empty(x.shape[0], grid.levels * grid.features, dtype=torch.float32)
        grid._kernel.inrsr_hashgrid_forward(
            _ptr(x), x.shape[0], _ptr(inv_cell), _ptr(verts), _ptr(offset), grid.levels, grid.n_dense,
            grid.table_size, grid.features, _ptr(table), _ptr(out), torch.get_num_threads(),
        )
        ctx.save_for_backward(x, table)
        ctx.grid = grid
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, table = ctx.saved_tensors
        grid = ctx.grid
        grad_out = grad_out.float().contiguous()
        inv_cell, verts, offset = _kernel_geometry(grid)
        common = (_ptr(x), x.shape[0], _ptr(inv_cell), _ptr(verts), _ptr(offset), grid.levels, grid.n_dense,
                  grid.table_size, grid.features)
        grad_table = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_table = torch.zeros_like(table, memory_format=torch.contiguous_format)
            grid._kernel.inrsr_hashgrid_backward(*common, _ptr(grad_out), _ptr(grad_table), torch.get_num_threads())
        if ctx.needs_input_grad[1]:
            grad_x = torch.empty_like(x)
            grid._kernel.inrsr_hashgrid_backward_points(
                *common, _ptr(table), _ptr(grad_out), _ptr(grad_x), torch.get_num_threads()
            )
        return grad_table, grad_x, None


class _TcnnHashGrid(Encoding):
    """The same hash grid run by tinycudann (CUDA only). Cells follow instant-NGP's geometric
    progression, so its levels match :func:`level_cells_mm` up to tcnn's rounding."""

    def __init__(self, cells_mm: list[float], features: int, log2_table_size: int, mm_per_unit: float):
        super().__init__()
        import tinycudann as tcnn  # noqa: F401 - optional dependency

        levels = len(cells_mm)
        # tcnn takes inputs in [0, 1]: one unit there is 2 normalised units, 2·mm_per_unit mm.
        base_res = 2.0 * mm_per_unit / cells_mm[0]
        scale = (cells_mm[0] / cells_mm[-1]) ** (1.0 / max(levels - 1, 1))
        self.enc = tcnn.Encoding(3, {
            "otype": "HashGrid", "n_levels": levels, "n_features_per_level": features,
            "log2_hashmap_size": log2_table_size, "base_resolution": max(1, int(round(base_res))),
            "per_level_scale": scale,
        })
        self.out_dim = levels * features
        self.features = features
        self.register_buffer("cells_mm", torch.tensor(cells_mm, dtype=torch.float32), persistent=False)
        self.register_buffer("level_weights", torch.ones(levels), persistent=False)

    def set_detail_mm(self, cut_mm: float | None) -> None:
        self.level_weights.copy_(detail_weights(self.cells_mm, cut_mm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.enc(((x + 1.0) / 2.0).clamp(0.0, 1.0)).float()
        weights = self.level_weights.repeat_interleave(self.features)
        return out * weights[None, :]


def make_hash_grid(
    cells_mm: list[float],
    features: int,
    log2_table_size: int,
    mm_per_unit: float,
    backend: str,
    generator: torch.Generator | None = None,
) -> Encoding:
    """A hash grid from ``backend``: ``torch`` (pure PyTorch); ``native`` (the compiled CPU kernel
    of :mod:`inrsr.field.native`, error if it cannot be built); ``tcnn`` (error if unavailable); ``auto``
    (tcnn when CUDA is present and it imports, else the compiled kernel when it builds, else pure
    PyTorch, with a warning naming what failed). The table's contents depend only on
    ``generator``, not on the backend."""
    if backend in ("auto", "tcnn") and torch.cuda.is_available():
        try:
            return _TcnnHashGrid(cells_mm, features, log2_table_size, mm_per_unit)
        except ImportError as exc:
            if backend == "tcnn":
                raise
            warnings.warn(f"tinycudann unavailable ({exc}); using the PyTorch hash grid", stacklevel=2)
    elif backend == "tcnn":
        raise RuntimeError("the tcnn hash-grid backend needs CUDA")
    native = backend == "native"
    if backend == "auto":
        try:
            load_hashgrid()
            native = True
        except NativeUnavailable as exc:
            warnings.warn(f"compiled hash-grid kernel unavailable ({exc}); using the pure-PyTorch path", stacklevel=2)
    return HashGrid(cells_mm, features, log2_table_size, mm_per_unit, generator=generator, native=native)
