"""Figures of ``make exp``: three-plane views with a zoomed inset and error maps, MI curves, PSNR vs time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

PLANES = ("sagittal", "coronal", "axial")  # planes across world x (L–R), y (A–P), z (S–I)
ZOOM = 40  # voxels on a side of the zoomed inset
INR = ("single", "vanilla", "split", "default")


def _show(ax, img: np.ndarray, lo: float, hi: float, cmap: str = "gray") -> None:
    ax.imshow(np.rot90(img), cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _zoom_box(truth: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
    """Corner of the ZOOM×ZOOM window inside the brain with the most truth gradient energy."""
    gy, gx = np.gradient(truth.astype(np.float64))
    energy = (gx**2 + gy**2) * mask
    best, corner = -1.0, (0, 0)
    step = ZOOM // 4
    for i in range(0, max(truth.shape[0] - ZOOM, 0) + 1, step):
        for j in range(0, max(truth.shape[1] - ZOOM, 0) + 1, step):
            e = energy[i : i + ZOOM, j : j + ZOOM].sum()
            if mask[i : i + ZOOM, j : j + ZOOM].mean() > 0.9 and e > best:
                best, corner = e, (i, j)
    return corner


def plot_views(rows: list[dict], contrast: str, labels: dict[str, str], path: Path) -> None:
    """One row per method (truth first): three planes, a zoom of the axial plane, |error| in three planes."""
    planes = {r["method"]: np.load(r["planes"]) for r in rows}
    first = next(iter(planes.values()))
    truth = [first[f"truth_{contrast}_{w}"] for w in range(3)]
    masks = [first[f"mask_{w}"] for w in range(3)]
    lo, hi = np.percentile(np.concatenate([t[m] for t, m in zip(truth, masks)]), [0.5, 99.5])
    err_hi = 0.25 * (hi - lo)
    zi, zj = _zoom_box(truth[2], masks[2])
    names = ["truth"] + [r["method"] for r in rows]
    fig, axes = plt.subplots(len(names), 7, figsize=(14, 2.1 * len(names)), squeeze=False)
    for k, name in enumerate(names):
        vols = truth if name == "truth" else [planes[name][f"pred_{contrast}_{w}"] for w in range(3)]
        for w in range(3):
            _show(axes[k, w], vols[w], lo, hi)
            if w == 2:
                # np.rot90 turns (i, j) into display (x = i, y = n_j - 1 - j)
                n_j = vols[w].shape[1]
                axes[k, w].add_patch(Rectangle((zi - 0.5, n_j - zj - ZOOM - 0.5), ZOOM, ZOOM, fill=False, ec="y", lw=0.8))
            if name == "truth":
                axes[k, 4 + w].axis("off")
            else:
                _show(axes[k, 4 + w], np.abs(vols[w] - truth[w]) * masks[w], 0, err_hi, cmap="magma")
        _show(axes[k, 3], vols[2][zi : zi + ZOOM, zj : zj + ZOOM], lo, hi)
        label = "truth" if name == "truth" else labels.get(name, name)
        if name != "truth":
            r = next(r for r in rows if r["method"] == name)
            label += f"\n{r[f'psnr_{contrast}']:.2f} dB / {r[f'ssim_{contrast}']:.3f}"
        axes[k, 0].set_ylabel(label, fontsize=8)
    for w, title in enumerate(PLANES):
        axes[0, w].set_title(title, fontsize=9)
        axes[0, 4 + w].set_title(f"|error| {title}", fontsize=9)
    axes[0, 3].set_title("axial zoom", fontsize=9)
    r0 = rows[0]
    fig.suptitle(f"{r0['case']} — {r0['protocol']} protocol — {contrast} (error maps: 0 to 25 % of the range)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _settings(rows: list[dict]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r["case"], r["protocol"]) for r in rows))


def plot_mi_curves(rows: list[dict], labels: dict[str, str], path: Path) -> None:
    """MI between predicted contrasts vs epoch per INR method, early-stopping points and the truths' MI."""
    settings = _settings(rows)
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.4), squeeze=False)
    for ax, (case, protocol) in zip(axes[0], settings):
        sel = [r for r in rows if r["case"] == case and r["protocol"] == protocol and r["method"] in INR]
        for r in sel:
            spe = r["steps"] / max(r["epochs"], 1e-12)
            own = r.get("mi_curve") or []
            curve = own if own else [{"epoch": p["step"] / spe, "mi": p["mi_pred"]} for p in r["probe"]]
            line, = ax.plot([m["epoch"] for m in curve], [m["mi"] for m in curve], marker=".", lw=1,
                            label=labels.get(r["method"], r["method"]))
            if r.get("stopped_by") == "mi":
                ax.plot(curve[-1]["epoch"], curve[-1]["mi"], "o", ms=8, mfc="none", mec=line.get_color())
        if sel:
            ax.axhline(sel[0]["truth_mi_points"], color="k", ls=":", lw=1, label="MI of the truths")
        ax.set_xscale("log")
        ax.set_title(f"{case} — {protocol}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("MI between predicted contrasts (nats)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("MI between the predicted contrasts during fitting (circle: MI early stop)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_psnr_vs_time(rows: list[dict], labels: dict[str, str], path: Path) -> None:
    """PSNR inside the brain vs training time: INR curves (10k-voxel sample), SMORE points, cubic lines."""
    settings = _settings(rows)
    fig, axes = plt.subplots(2, len(settings), figsize=(4.2 * len(settings), 6.4), squeeze=False)
    for col, (case, protocol) in enumerate(settings):
        sel = [r for r in rows if r["case"] == case and r["protocol"] == protocol]
        for k, c in enumerate(sel[0]["contrasts"]):
            ax = axes[k, col]
            for r in sel:
                name = labels.get(r["method"], r["method"])
                if r["method"] == "cubic":
                    ax.axhline(r[f"psnr_{c}"], color="k", ls="--", lw=1, label=name)
                elif r["method"] == "smore":
                    ax.plot(r["fit_s"] + r["render_s"], r[f"psnr_{c}"], "s", label=f"{name} (train + infer)")
                else:
                    ax.plot([p["seconds"] for p in r["probe"]], [p[f"psnr_{c}"] for p in r["probe"]], marker=".",
                            lw=1, label=name)
            ax.set_xscale("log")
            ax.set_title(f"{case} — {protocol} — {c}", fontsize=9)
            ax.set_xlabel("training seconds (2 CPU cores)")
            ax.grid(alpha=0.3)
        axes[0, col].set_ylabel("PSNR in brain (dB)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
