"""Figures: the MI curve of a fit and three-plane views of volumes (matplotlib, no display)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from inrsr.io.files import atomic_path  # noqa: E402

__all__ = ["plot_mi_curve", "plot_three_planes"]


def _save(fig: "plt.Figure", path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_mi_curve(
    mi_curve: list[dict], path: str | os.PathLike, stopped_early: bool, truth_mi: float | None = None
) -> Path:
    """MI between predicted contrasts against epochs; marks the early-stopping point."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if mi_curve:
        x = [m["epoch"] for m in mi_curve]
        for key in sorted(k for k in mi_curve[0] if k.startswith("mi_")):
            ax.plot(x, [m[key] for m in mi_curve], lw=1, label=key[3:].replace("_", " / "))
        if stopped_early:
            ax.axvline(x[-1], color="k", ls="--", lw=1, label="early stop")
    if truth_mi is not None:
        ax.axhline(truth_mi, color="grey", ls=":", label="MI of the truths")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MI between predicted contrasts (nats)")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8)
    else:  # one contrast: there is no pair to monitor
        ax.text(0.5, 0.5, "one contrast: no MI to monitor", ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_three_planes(
    rows: dict[str, np.ndarray], path: str | os.PathLike, titles: list[str] | None = None
) -> Path:
    """One row per named volume (all on the same grid), columns: middle slice along each array axis.

    Intensities are shown between each row's 1st and 99.5th percentiles.
    """
    names = list(rows)
    fig, axes = plt.subplots(len(names), 3, figsize=(9, 3 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        vol = rows[name]
        lo, hi = np.percentile(vol, [1, 99.5])
        for a in range(3):
            sl = np.take(vol, vol.shape[a] // 2, axis=a)
            axes[r, a].imshow(np.rot90(sl), cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            axes[r, a].set_xticks([])
            axes[r, a].set_yticks([])
            if r == 0 and titles:
                axes[r, a].set_title(titles[a], fontsize=9)
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
