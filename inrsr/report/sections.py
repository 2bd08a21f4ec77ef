"""The sections of the report, each built from an :class:`~inrsr.report.evidence.Evidence`:
pictures of the inputs and outputs, detail, masks, support, registration, slice profiles,
self-consistency, training curves and the run's resources."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from inrsr.geometry import apply_affine, voxel_sizes_mm, world_to_voxel_matrix
from inrsr.report.coverage import SUPPORT_THRESHOLDS_MM, MeasuredBox, distance_to_measured_mm, support_summary
from inrsr.report.evidence import Evidence
from inrsr.report.figures import (
    Contour, PlaneRow, crops_png, curves_png, grey_limits, mask_slices_png, plane_rows_png,
)
from inrsr.report.page import Section, escape, image_tag, paragraph, table
from inrsr.report.planes import Plane, display_planes, on_plane, plane_world_points, prefiltered, sample_on_plane

__all__ = ["Views", "build_sections", "brain_support"]

# Points of the output grid on which the support fractions are counted, at most (a regular subset).
SUPPORT_POINTS = 1 << 19


@dataclass
class Views:
    """The three planes and every volume shown on them (pictures are ``(across, up)``, NaN
    outside a volume's field of view)."""

    planes: list[Plane]
    nearest: list[list[np.ndarray]]  # per stack, the voxels as acquired (nearest neighbour)
    cubic: list[list[np.ndarray]]  # per stack, cubic B-spline interpolation
    masks: list[list[np.ndarray]]  # per stack, its foreground mask
    outputs: dict[str, list[np.ndarray]]  # per contrast, the output volume
    foreground: list[np.ndarray]  # union of the stacks' foregrounds

    @classmethod
    def of(cls, ev: Evidence) -> "Views":
        planes = display_planes(ev.grid.shape, ev.grid.affine, ev.point_mm)
        nearest, cubic, masks = [], [], []
        for s, m in zip(ev.stacks, ev.masks):
            coeffs = prefiltered(s.data, 3)
            nearest.append([on_plane(s.data, s.affine, p, 0) for p in planes])
            cubic.append([sample_on_plane(coeffs, s.affine, p, 3) for p in planes])
            masks.append([np.nan_to_num(on_plane(m.astype(np.float32), s.affine, p, 0)) > 0.5 for p in planes])
        outputs = {c: [on_plane(v, ev.grid.affine, p, 1) for p in planes] for c, v in ev.volumes.items()}
        foreground = [np.any([mk[k] for mk in masks], axis=0) for k in range(len(planes))]
        return cls(planes, nearest, cubic, masks, outputs, foreground)

    def cubic_of(self, ev: Evidence, contrast: str) -> list[np.ndarray]:
        """Cubic interpolation of a contrast: the mean of its stacks' where they overlap."""
        members = ev.stacks_of(contrast)
        return [_nanmean([self.cubic[k][p] for k in members]) for p in range(len(self.planes))]


def _nanmean(images: list[np.ndarray]) -> np.ndarray:
    stack = np.stack(images)
    count = np.isfinite(stack).sum(axis=0)
    total = np.nansum(stack, axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def _name(s) -> str:
    return Path(s.path).name


def _point_text(point_mm: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in point_mm) + ") mm"


# -- pictures of the volumes ------------------------------------------------------------------


def inputs_and_outputs(ev: Evidence, views: Views) -> Section:
    parts = [paragraph(
        f"Three world-aligned planes through {_point_text(ev.point_mm)} (left of the subject on the left). Each "
        "input stack is shown as acquired (nearest neighbour: its thick slices appear as blocks across its slice "
        "axis), then cubic B-spline interpolation of the same stacks, the inrsr output, and the difference output − "
        "cubic. Dark blue: outside that volume's field of view.", "guide")]
    for c in ev.contrasts:
        out = views.outputs[c]
        limits = grey_limits(np.concatenate([o[f] for o, f in zip(out, views.foreground)]))
        cubic = views.cubic_of(ev, c)
        rows = [PlaneRow(f"stack {k + 1}: {_name(ev.stacks[k])}"[:40], views.nearest[k], *limits)
                for k in ev.stacks_of(c)]
        rows.append(PlaneRow("cubic", cubic, *limits))
        rows.append(PlaneRow(f"inrsr ({c})", out, *limits))
        diff = [np.where(f, o - q, np.nan) for o, q, f in zip(out, cubic, views.foreground)]
        finite = np.concatenate([np.abs(d[np.isfinite(d)]) for d in diff])
        span = float(np.percentile(finite, 99)) if finite.size else 1.0
        rows.append(PlaneRow("inrsr − cubic", diff, -span, span, cmap="RdBu_r", colorbar="intensity difference"))
        parts.append(f"<h3>{c}</h3>" + image_tag(plane_rows_png(rows, views.planes), f"{c}: inputs, cubic and output"))
    return Section("volumes", "Inputs and outputs", "".join(parts))


def _crop_centre(diff: np.ndarray, size: int) -> tuple[int, int]:
    """Pixel where the mean absolute difference over a ``size`` window is largest."""
    score = ndimage.uniform_filter(np.nan_to_num(np.abs(diff)), size=size, mode="constant")
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(score)), score.shape))  # type: ignore[return-value]


def _crop(image: np.ndarray, centre: tuple[int, int], size: int) -> np.ndarray:
    lo = [int(np.clip(c - size // 2, 0, max(n - size, 0))) for c, n in zip(centre, image.shape)]
    return image[lo[0] : lo[0] + size, lo[1] : lo[1] + size]


def detail(ev: Evidence, views: Views) -> Section:
    parts = [paragraph(
        "Zoomed crops (a quarter of the field of view) where the output differs most from cubic interpolation, "
        "in each plane: the first stack of the contrast as acquired, cubic, and the output, on one grey scale.",
        "guide")]
    for c in ev.contrasts:
        first = ev.stacks_of(c)[0]
        cubic, out = views.cubic_of(ev, c), views.outputs[c]
        columns: dict[str, list[np.ndarray]] = {"as acquired": [], "cubic": [], "inrsr": []}
        for p, plane in enumerate(views.planes):
            size = max(8, min(plane.grid.shape[:2]) // 4)
            centre = _crop_centre(np.where(views.foreground[p], out[p] - cubic[p], 0.0), size)
            for name, image in (("as acquired", views.nearest[first][p]), ("cubic", cubic[p]), ("inrsr", out[p])):
                columns[name].append(_crop(image, centre, size))
        limits = grey_limits(np.concatenate([x.ravel() for x in columns["inrsr"]]))
        parts.append(f"<h3>{c}</h3>" + image_tag(crops_png(columns, limits, [p.name for p in views.planes]),
                                                 f"{c}: zoomed detail"))
    return Section("detail", "Detail", "".join(parts))


def masks(ev: Evidence) -> Section:
    panels = []
    for k, (s, m) in enumerate(zip(ev.stacks, ev.masks)):
        ax = s.slice_axis
        centre = apply_affine(world_to_voxel_matrix(s.affine), ev.point_mm)
        i = int(np.clip(np.rint(centre[ax]), 0, s.shape[ax] - 1))
        panels.append((f"stack {k + 1}: {_name(s)}, slice {i + 1}/{s.shape[ax]}", np.take(s.data, i, axis=ax),
                       np.take(m, i, axis=ax)))
    body = paragraph(
        "Each stack's slice nearest the point, in its own orientation, with the outline (red) of the foreground "
        "the fit trained on and rendered in. The outline should follow the head; a mask that cuts into the brain "
        "or takes in large parts of the background points to a problem with the input.", "guide")
    return Section("masks", "Foreground masks", body + image_tag(mask_slices_png(panels), "foreground masks"))


# -- support ----------------------------------------------------------------------------------


def _boxes(ev: Evidence, contrast: str) -> list[MeasuredBox]:
    return [MeasuredBox(s.shape, s.affine, s.slice_axis, s.slice_thickness_mm)
            for k, s in enumerate(ev.stacks) if s.contrast == contrast]


def brain_support(ev: Evidence) -> dict[str, dict[str, float]]:
    """Per contrast, :func:`~inrsr.report.coverage.support_summary` of the distances to its
    measured voxels over the output voxels inside some stack's foreground (on a regular subset
    of at most :data:`SUPPORT_POINTS` of the grid's voxels)."""
    shape = np.asarray(ev.grid.shape)
    stride = max(1, int(np.ceil((shape.prod() / SUPPORT_POINTS) ** (1 / 3))))
    axes = [np.arange(0, n, stride) for n in shape]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    world = apply_affine(ev.grid.affine, ijk)
    inside = np.zeros(world.shape[0], dtype=bool)
    for s, m in zip(ev.stacks, ev.masks):
        vox = np.rint(apply_affine(world_to_voxel_matrix(s.affine), world)).astype(np.int64)
        ok = np.all((vox >= 0) & (vox < np.asarray(s.shape)), axis=1)
        inside[ok] |= m[tuple(vox[ok].T)]
    world = world[inside]
    return {c: support_summary(distance_to_measured_mm(world, _boxes(ev, c))) for c in ev.contrasts}


def support(ev: Evidence, views: Views) -> Section:
    if ev.support is None:
        ev.support = brain_support(ev)
    rows, summary = [], ev.support
    for c in ev.contrasts:
        boxes = _boxes(ev, c)
        maps = [distance_to_measured_mm(plane_world_points(p).reshape(-1, 3), boxes).reshape(p.grid.shape[:2])
                for p in views.planes]
        outline = [[Contour(f.astype(np.float32), 0.5, "white")] for f in views.foreground]
        top = max(5.0, float(max(np.percentile(m, 99) for m in maps)))
        rows.append(PlaneRow(f"{c}: distance", maps, 0.0, top, cmap="magma", colorbar="mm to nearest measured voxel",
                             contours=outline))
    head = ["contrast", "foreground points", "median mm", "95th percentile mm"] + [
        f"beyond {t:g} mm" for t in SUPPORT_THRESHOLDS_MM]
    table_rows = [[c, s["points"], s.get("median_mm", float("nan")), s.get("p95_mm", float("nan"))]
                  + [f"{100 * s.get(f'beyond_{t:g}mm', float('nan')):.1f} %" for t in SUPPORT_THRESHOLDS_MM]
                  for c, s in summary.items()]
    guide = paragraph(
        "How far each output point lies from the nearest point that a voxel of that contrast measured (a voxel "
        "measures its in-plane square and its slice thickness across). 0 (black): inside measured slices. "
        f"Between thin slices with gaps and beyond the stacks' fields of view the field interpolates (up to "
        f"{SUPPORT_THRESHOLDS_MM[0]:g} mm) or invents from the other contrasts and its prior (beyond "
        f"{SUPPORT_THRESHOLDS_MM[1]:g} mm): trust those regions least. White: the union of the stacks' "
        "foregrounds, over which the fractions are counted.", "guide")
    img = image_tag(plane_rows_png(rows, views.planes), "support: distance to the nearest measured voxel")
    return Section("support", "Support of the field", guide + table(head, table_rows) + img)


# -- registration -----------------------------------------------------------------------------


def registration(ev: Evidence, views: Views) -> Section:
    transforms = ev.log["transforms"]
    head = ["stack", "contrast", "role", "rotation °", "centre shift mm"]
    rows = [[f"{k + 1}: {Path(t['path']).name}", t["contrast"], "reference" if t["reference"] else "moved",
             float(t["rotation_deg"]), float(t["centre_shift_mm"])] for k, t in enumerate(transforms)]
    fixed = next((k for k, t in enumerate(transforms) if t["reference"]), 0)
    ref = ev.stacks[fixed]
    ref_views = [on_plane(ref.data, ref.affine, p, 1) for p in views.planes]
    limits = grey_limits(np.concatenate([v.ravel() for v in ref_views]))
    figs = []
    for k, s in enumerate(ev.stacks):
        if k == fixed:
            continue
        level = float(threshold_otsu(s.data[ev.masks[k]])) if ev.masks[k].any() else float(np.mean(s.data))
        coeffs = prefiltered(s.data, 1)
        before = [Contour(sample_on_plane(coeffs, ev.file_affines[k], p, 1), level, "#ff3b30") for p in views.planes]
        after = [Contour(sample_on_plane(coeffs, s.affine, p, 1), level, "#30d158") for p in views.planes]
        plot_rows = [PlaneRow("before (header)", ref_views, *limits, contours=[[c] for c in before]),
                     PlaneRow("after (registered)", ref_views, *limits, contours=[[c] for c in after])]
        figs.append(f"<h3>stack {k + 1}: {escape(_name(s))} over stack {fixed + 1}: {escape(_name(ref))}</h3>"
                    + image_tag(plane_rows_png(plot_rows, views.planes), f"edges of stack {k + 1} on the reference"))
    guide = paragraph(
        "Rigid transforms found by --register (each stack against the reference stack), and the edges of each "
        "moved stack (its Otsu iso-intensity line) over the reference: red where the headers placed it, green "
        "where registration placed it. After registration the green lines should follow the reference's edges.",
        "guide")
    return Section("registration", "Registration", guide + table(head, rows) + "".join(figs))


# -- numbers ----------------------------------------------------------------------------------


def profiles(ev: Evidence) -> Section:
    records = ev.log.get("stacks", [])
    head = ["stack", "contrast", "voxels", "spacing mm", "slice axis", "thickness mm", "thickness from",
            "estimated mm", "estimated by", "profile", "training voxels"]
    rows = []
    for k, s in enumerate(ev.stacks):
        rec = records[k] if k < len(records) else {}
        rows.append([f"{k + 1}: {_name(s)}", s.contrast, "×".join(map(str, s.shape)),
                     "×".join(f"{v:.3g}" for v in voxel_sizes_mm(ev.file_affines[k])), s.slice_axis,
                     float(s.slice_thickness_mm), rec.get("thickness_source", "–"),
                     "–" if rec.get("estimated_thickness_mm") is None else float(rec["estimated_thickness_mm"]),
                     rec.get("thickness_estimator") or "–", ev.config.slice_profile,
                     rec.get("n_train_points", "–")])
    guide = paragraph(
        f"The forward model makes each voxel as the '{ev.config.slice_profile}' profile of its slice thickness "
        "across the slice. 'thickness from': a BIDS sidecar's SliceThickness, --thickness, the estimate made from "
        "the voxels before the fit (when neither was given, or with --thickness-estimate always), or the slice "
        "spacing (estimation off, or the point profile). 'estimated mm': "
        "that estimate, when one was made; a given thickness far from it is a warning. 'estimated by': 'crossings' "
        "where the stack's slices cross those of a stack of its contrast and the two were compared there, 'fit' "
        "where its width was learned by a short fit of the field.", "guide")
    return Section("profiles", "Stacks and slice profiles", guide + table(head, rows))


def consistency(ev: Evidence) -> Section:
    head = ["stack", "contrast", "PSNR dB", "nRMSE", "correlation", "voxels scored"]
    rows = [[f"{k + 1}: {_name(s)}", s.contrast, float(sc["psnr"]), float(sc["nrmse"]), float(sc["corr"]),
             int(sc["voxels"])] for k, (s, sc) in enumerate(zip(ev.stacks, ev.consistency))]
    guide = paragraph(
        "Each stack re-simulated from the field through its own slice profile and position, against its voxels "
        "(foreground; the network alone, without the back-projected residuals). Reading guide: above about 35 dB "
        "and correlation above 0.99 the field explains the stack; one stack far below the others points to motion "
        "or misregistration in it. This says nothing about what lies between the slices (see Support). "
        "Scored on a random subset of each foreground; `inrsr check` scores every voxel.", "guide")
    return Section("consistency", "Self-consistency", guide + table(head, rows))


def training(ev: Evidence) -> Section:
    log, parts = ev.log, []
    curve = log.get("mi_curve") or []
    if curve:
        series = {k[3:].replace("_", " / "): ([m["step"] for m in curve], [m[k] for m in curve])
                  for k in curve[0] if k.startswith("mi_")}
        stop = curve[-1]["step"] if log.get("stopped_early") else None
        parts.append(image_tag(curves_png(series, "step", "MI between predicted contrasts (nats)", stop,
                                          "early stop (MI plateau)"), "MI curve"))
    losses = log.get("loss_curve") or []
    if losses:
        keys = [k for k in losses[0] if k.startswith("loss_")]
        series = {k[5:]: ([r["step"] for r in losses], [r[k] for r in losses]) for k in keys}
        parts.append(image_tag(curves_png(series, "step", "training loss (mean squared error)", log_y=True),
                               "loss curves"))
    stopped = {"mi": "MI early stopping", "time": "the time limit"}.get(log.get("stopped_by"), "the step/epoch limit")
    text = (f"{log.get('steps', '?')} steps, stopped by {stopped}; final MI "
            f"{log['final_mi']:.4f} nats." if log.get("final_mi") is not None else
            f"{log.get('steps', '?')} steps, stopped by {stopped}; one contrast, so no MI to monitor.")
    return Section("training", "Training", paragraph(text) + "".join(parts))


def run(ev: Evidence) -> Section:
    log = ev.log
    seconds = log.get("seconds", {})
    rows = [[k.replace("_", " "), float(v)] for k, v in seconds.items() if isinstance(v, (int, float))]
    rows += [[k.replace("_", " "), log[k]] for k in ("device", "threads", "peak_rss_gb", "version", "date",
                                                     "command_line") if log.get(k) is not None]
    grid = ev.grid
    rows.append(["output grid", f"{'×'.join(map(str, grid.shape))} voxels of "
                 f"{'×'.join(f'{v:.3g}' for v in voxel_sizes_mm(grid.affine))} mm"])
    options = table(["option", "value"], [[k, str(v)] for k, v in ev.config.to_dict().items()])
    details = f"<details><summary>All options</summary>{options}</details>"
    return Section("run", "Run", table(["item", "value"], rows) + details)


def build_sections(ev: Evidence) -> list[Section]:
    """Every section of the report, in page order."""
    views = Views.of(ev)
    sections = [inputs_and_outputs(ev, views), detail(ev, views), masks(ev), support(ev, views)]
    if ev.registered:
        sections.append(registration(ev, views))
    return sections + [profiles(ev), consistency(ev), training(ev), run(ev)]
