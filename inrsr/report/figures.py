"""The report's pictures, each returned as PNG bytes (matplotlib, no display): rows of three
planes, zoomed crops, masks over their slices and training curves."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from inrsr.report.planes import Plane  # noqa: E402

__all__ = ["PlaneRow", "Contour", "png_bytes", "plane_rows_png", "crops_png", "mask_slices_png", "curves_png",
           "grey_limits", "OUTSIDE_COLOUR"]

# Colour of pixels outside a volume's field of view (NaN), distinct from a dark background.
OUTSIDE_COLOUR = "#1b2a4a"
DPI = 85


@dataclass
class Contour:
    """A line drawn over a picture: where ``image`` (same shape as the picture) crosses ``level``."""

    image: np.ndarray
    level: float
    colour: str


@dataclass
class PlaneRow:
    """One row of a plane figure: a label and one picture per plane, shown with ``cmap`` between
    ``vmin`` and ``vmax``; ``colorbar`` labels a colour bar when given; ``contours`` per plane."""

    label: str
    images: list[np.ndarray]
    vmin: float
    vmax: float
    cmap: str = "gray"
    colorbar: str | None = None
    contours: list[list[Contour]] = field(default_factory=list)


def png_bytes(fig: "plt.Figure") -> bytes:
    """The figure as PNG bytes; closes it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def grey_limits(values: np.ndarray) -> tuple[float, float]:
    """Display range of an image: its finite values' 1st and 99.5th percentiles."""
    v = np.asarray(values)[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _cmap(name: str) -> matplotlib.colors.Colormap:
    return matplotlib.colormaps[name].with_extremes(bad=OUTSIDE_COLOUR)


def _show(ax: "plt.Axes", image: np.ndarray, extent: tuple, cmap: str, vmin: float, vmax: float) -> object:
    """Draw an ``(across, up)`` picture the right way up in world mm."""
    handle = ax.imshow(np.asarray(image).T, origin="lower", extent=extent, cmap=_cmap(cmap), vmin=vmin, vmax=vmax,
                       interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return handle


def _contours(ax: "plt.Axes", lines: list[Contour], extent: tuple) -> None:
    for c in lines:
        img = np.nan_to_num(np.asarray(c.image, dtype=np.float32).T, nan=np.nanmin(c.image) if np.isfinite(c.image).any() else 0.0)
        if img.min() < c.level < img.max():
            ax.contour(img, levels=[c.level], colors=[c.colour], linewidths=0.8, origin="lower", extent=extent)


def plane_rows_png(rows: list[PlaneRow], planes: list[Plane], size_in: float = 3.2) -> bytes:
    """One row per :class:`PlaneRow`, one column per plane (titled with the plane's name and
    orientation letters)."""
    aspect = [p.grid.shape[1] / p.grid.shape[0] for p in planes]
    fig, axes = plt.subplots(len(rows), len(planes), figsize=(size_in * len(planes) + 0.8,
                                                              size_in * max(aspect) * len(rows) + 0.4),
                             squeeze=False)
    for r, row in enumerate(rows):
        for k, plane in enumerate(planes):
            ax = axes[r, k]
            handle = _show(ax, row.images[k], plane.extent_mm, row.cmap, row.vmin, row.vmax)
            if row.contours:
                _contours(ax, row.contours[k], plane.extent_mm)
            if r == 0:
                ax.set_title({"axial": "axial (L ← → R)", "coronal": "coronal (L ← → R)",
                              "sagittal": "sagittal (P ← → A)"}[plane.name], fontsize=9)
        axes[r, 0].set_ylabel(row.label, fontsize=9)
        if row.colorbar:
            fig.colorbar(handle, ax=list(axes[r]), fraction=0.02, pad=0.01).set_label(row.colorbar, fontsize=8)
    return png_bytes(fig)


def crops_png(columns: dict[str, list[np.ndarray]], limits: tuple[float, float], plane_names: list[str],
              size_in: float = 2.8) -> bytes:
    """Zoomed crops: one column per named method (each a list of ``(across, up)`` crops, one per
    plane), one row per plane, all on the same grey range."""
    names = list(columns)
    fig, axes = plt.subplots(len(plane_names), len(names), figsize=(size_in * len(names), size_in * len(plane_names)),
                             squeeze=False)
    for c, name in enumerate(names):
        for r, crop in enumerate(columns[name]):
            ax = axes[r, c]
            _show(ax, crop, (0, crop.shape[0], 0, crop.shape[1]), "gray", *limits)
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(plane_names[r], fontsize=9)
    return png_bytes(fig)


def mask_slices_png(panels: list[tuple[str, np.ndarray, np.ndarray]], size_in: float = 2.6) -> bytes:
    """Each stack's slice (in its own array orientation) with its foreground mask's outline:
    ``panels`` of ``(title, slice, mask slice)``."""
    n = len(panels)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size_in * cols, size_in * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, image, mask) in zip(axes.ravel(), panels):
        extent = (0, image.shape[0], 0, image.shape[1])
        _show(ax, image, extent, "gray", *grey_limits(image))
        _contours(ax, [Contour(mask.astype(np.float32), 0.5, "#ff3b30")], extent)
        ax.set_title(title, fontsize=8)
    return png_bytes(fig)


def curves_png(series: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str,
               marker_x: float | None = None, marker_label: str = "", log_y: bool = False) -> bytes:
    """Named ``(x, y)`` curves on one axis; a dashed vertical line at ``marker_x`` (e.g. the
    early stop)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    for name, (x, y) in series.items():
        ax.plot(x, y, lw=1.2, label=name)
    if marker_x is not None:
        ax.axvline(marker_x, color="k", ls="--", lw=1, label=marker_label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return png_bytes(fig)
