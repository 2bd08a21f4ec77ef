"""Slice thickness of stacks that share a contrast, judged where their slices cross; no fit.

Where a slice of stack A crosses a slice of stack B (slice normals far apart), both hold the same
line of the subject: A blurred across its slice (along A's normal), B blurred across its own (along
B's normal), and each sharp along the other's normal, which lies in its plane. A's line sampled
along B's normal and averaged through B's profile of width ``wB``, and B's averaged along A's
normal through ``wA``, are then the same signal blurred alike in both directions exactly when
``wA`` and ``wB`` are the true widths. Of one contrast, the two differ at most by a scale and an
offset, so the widths are those that maximise the correlation of the two over all crossing points.
The partner's in-plane voxels already average the subject over their own extent, so the judge sees
the part of a profile beyond them; the slice thickness adds that extent back
(:func:`as_thickness_mm`). Across contrasts no intensity map measured kept this judge unbiased, so
it serves only stacks of one contrast (docs/design.md, "Slice thickness estimation").

Widths are slice thicknesses in mm (FWHM for ``gaussian``) along each stack's slice normal; points
are world coordinates in mm.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.ndimage import map_coordinates, spline_filter

from inrsr.acquisition.profiles import profile_density
from inrsr.errors import InputWarning
from inrsr.geometry import FWHM_PER_SIGMA, apply_affine, direction_cosines, slice_normal
from inrsr.io.stack import Stack
from inrsr.samples.training_set import stack_foregrounds

__all__ = ["MAX_COS", "MIN_POINTS", "MIN_AGREEMENT", "crossing_points", "pair_widths_mm", "pixel_width_mm",
           "as_thickness_mm", "crossing_widths_mm"]

# Two stacks' slices cross usably when their normals are at least 60 degrees apart.
MAX_COS = 0.5
# Fewer crossing points than this (foreground voxels on the lines where slices cross) give no
# estimate.
MIN_POINTS = 2000
# Crossing points used per pair at most (a random subset, fixed by the seed).
MAX_POINTS = 20000
# Candidate widths span 0 to this many slice spacings, in steps of 1/WIDTH_STEPS spacing.
MAX_SPACINGS, WIDTH_STEPS = 2.0, 16
# Distance (mm) along the crossing line between the points whose products make the agreement.
LAG_MM = 2.0
# Below this agreement at the best widths, two stacks do not show the same subject where their
# slices cross (moved by 1 mm or more between them gave 0.96-0.98; 0.5 mm, 0.992-0.996; noise and a
# Gaussian judged as a box, 0.9997-1; docs/experiment-log.md, 2026-12-02): no width is judged.
MIN_AGREEMENT = 0.99


def crossing_points(a: Stack, b: Stack, seed: int = 0, chunk_voxels: int = 1 << 20,
                    foregrounds: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points (mm, ``(N, 3)``) on the lines where ``a``'s slices cross ``b``'s, inside both
    stacks' foregrounds, with each point's slice index in ``a`` and in ``b``.

    They are ``b``'s foreground voxel centres within half an in-plane voxel of one of ``a``'s slice
    planes, moved onto that plane along ``a``'s normal; at most :data:`MAX_POINTS`, drawn at
    random with ``seed``. ``b``'s voxels are visited a few planes of its first array axis at a
    time, about ``chunk_voxels`` voxels (some 80 bytes each), so that only the points kept are held
    for all of it; the points do not depend on it. ``foregrounds``: the two stacks' foregrounds
    (:func:`~inrsr.samples.training_set.stack_foregrounds`) when the caller has them."""
    fg_a, fg_b = foregrounds if foregrounds is not None else stack_foregrounds([a, b])
    inverse_a, normal_a, upper_a = np.linalg.inv(a.affine), slice_normal(a.affine), np.array(a.shape) - 0.5
    ax = a.slice_axis
    limit_mm = 0.5 * float(b.spacing_mm[b.in_plane_axes].min())
    chunk = max(1, chunk_voxels // max(1, fg_b[0].size))
    kept_world, kept_k_a, kept_k_b = [], [], []
    for start in range(0, fg_b.shape[0], chunk):
        ijk_b = np.argwhere(fg_b[start:start + chunk])
        ijk_b[:, 0] += start
        world = apply_affine(b.affine, ijk_b.astype(np.float64))
        ijk_a = apply_affine(inverse_a, world)
        k_a = np.round(ijk_a[:, ax])
        delta_mm = (ijk_a[:, ax] - k_a) * a.slice_spacing_mm
        inside = np.all((ijk_a > -0.5) & (ijk_a < upper_a), axis=1)
        keep = np.flatnonzero((np.abs(delta_mm) <= limit_mm) & inside)
        keep = keep[fg_a[tuple(np.round(ijk_a[keep]).astype(int).T)]]
        kept_world.append(world[keep] - delta_mm[keep, None] * normal_a[None, :])
        kept_k_a.append(k_a[keep].astype(int))
        kept_k_b.append(ijk_b[keep, b.slice_axis])
    points, k_a, k_b = (np.concatenate(x) for x in (kept_world, kept_k_a, kept_k_b))
    if len(points) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), MAX_POINTS, replace=False))
        points, k_a, k_b = points[keep], k_a[keep], k_b[keep]
    return points, k_a, k_b


def _along(coeffs: np.ndarray, stack: Stack, points: np.ndarray, k: np.ndarray, direction: np.ndarray,
           offsets_mm: np.ndarray) -> np.ndarray:
    """``stack``'s intensity (cubic spline coefficients ``coeffs``) at ``points + offset · direction``
    for every offset (mm), within slice ``k`` of each point: shape ``(len(offsets_mm), N)``."""
    inverse = np.linalg.inv(stack.affine)
    out = np.empty((len(offsets_mm), len(points)))
    for i, off in enumerate(offsets_mm):
        ijk = apply_affine(inverse, points + off * direction[None, :])
        ijk[:, stack.slice_axis] = k
        out[i] = map_coordinates(coeffs, ijk.T, order=3, mode="mirror", prefilter=False)
    return out


def _in_plane_view(stack: Stack, points: np.ndarray, direction: np.ndarray, offsets_mm: np.ndarray) -> np.ndarray:
    """Whether ``points + offset · direction`` lies within ``stack``'s in-plane field of view (its
    first to last voxel centre) for every offset (mm) of ``offsets_mm``; the field of view is
    convex, so the two ends of a line decide."""
    inverse = np.linalg.inv(stack.affine)
    in_plane = stack.in_plane_axes
    last = np.array(stack.shape, dtype=np.float64)[in_plane] - 1.0
    inside = np.ones(len(points), dtype=bool)
    for off in offsets_mm:
        ijk = apply_affine(inverse, points + off * direction[None, :])[:, in_plane]
        inside &= np.all((ijk >= 0.0) & (ijk <= last), axis=1)
    return inside


def _profile_matrix(widths_mm: np.ndarray, offsets_mm: np.ndarray, kind: str) -> np.ndarray:
    """Weights (``(len(widths_mm), len(offsets_mm))``, rows summing to 1) that average samples at
    ``offsets_mm`` through a profile of each width; width 0 takes the sample at offset 0."""
    step = offsets_mm[1] - offsets_mm[0]
    rows = []
    for w in widths_mm:
        if w < step / 2:
            row = (np.abs(offsets_mm) < step / 2).astype(np.float64)
        elif kind == "box":  # the trapezoid rule over [-w/2, w/2]
            row = np.clip((w / 2 - np.abs(offsets_mm)) / step + 0.5, 0.0, 1.0)
        else:
            row = profile_density(offsets_mm, w, kind)
        rows.append(row / row.sum())
    return np.array(rows)


def pair_widths_mm(a: Stack, b: Stack, profile: str, seed: int = 0,
                   foregrounds: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, float, int, float]:
    """The widths (mm) of ``a``'s and ``b``'s profiles (one contrast, slices crossing) under
    ``profile`` (``box`` or ``gaussian``) beyond the other stack's in-plane voxels, at which their
    crossing lines agree best (see the module's description), the number of crossing points whose
    lines stay within both stacks' fields of view (beyond, the in-plane splines would mirror the
    data), and the agreement there (1 when the two match exactly); ``nan`` widths and agreement
    with fewer than :data:`MIN_POINTS` such points. ``foregrounds``: as :func:`crossing_points`'s.

    Agreement is a correlation taken between points :data:`LAG_MM` apart along the crossing line,
    in both stacks' sharp directions: noise, independent from pixel to pixel, then adds nothing to
    it, whereas averaging noise away would raise a plain correlation with every width."""
    points, k_a, k_b = crossing_points(a, b, seed, foregrounds=foregrounds)
    line = np.cross(slice_normal(a.affine), slice_normal(b.affine))
    shifted = points + LAG_MM * (line / np.linalg.norm(line))[None, :]
    sides = []
    for judged, other in ((a, b), (b, a)):
        # ``other`` sampled across ``judged``'s slices, in ``other``'s own plane
        spacing = judged.slice_spacing_mm
        widths = np.arange(WIDTH_STEPS * MAX_SPACINGS + 1) * spacing / WIDTH_STEPS
        half = widths[-1] if profile == "gaussian" else widths[-1] / 2
        step = spacing / (2 * WIDTH_STEPS)
        offsets = np.arange(-round(half / step), round(half / step) + 1) * step
        sides.append((other, slice_normal(judged.affine), widths, offsets))
    # only lines that stay within the other stack's field of view: beyond it a spline mirrors the data
    keep = np.ones(len(points), dtype=bool)
    for other, direction, _, offsets in sides:
        for pts in (points, shifted):
            keep &= _in_plane_view(other, pts, direction, offsets[[0, -1]])
    points, shifted, k_a, k_b = points[keep], shifted[keep], k_a[keep], k_b[keep]
    if len(points) < MIN_POINTS:
        return float("nan"), float("nan"), len(points), float("nan")
    grids, samples = [], []
    for (other, direction, widths, offsets), k_other in zip(sides, (k_b, k_a)):
        coeffs = spline_filter(other.data.astype(np.float64), order=3, mode="mirror")
        weights = _profile_matrix(widths, offsets, profile)
        grids.append(widths)
        samples.append([weights @ _along(coeffs, other, pts, k_other, direction, offsets) for pts in (points, shifted)])
    (b0, b1), (a0, a1) = [[x - x.mean(axis=1, keepdims=True) for x in pair] for pair in samples]
    n = b0.shape[1]
    cross = (b0 @ a1.T + b1 @ a0.T) / (2 * n)  # b through a's widths (rows) against a through b's
    auto_b, auto_a = (b0 * b1).mean(axis=1), (a0 * a1).mean(axis=1)
    agreement = cross / np.sqrt(np.maximum(auto_b, 1e-30)[:, None] * np.maximum(auto_a, 1e-30)[None, :])
    i, j = np.unravel_index(np.argmax(agreement), agreement.shape)
    return float(grids[0][i]), float(grids[1][j]), len(points), float(agreement[i, j])


def pixel_width_mm(stack: Stack, direction: np.ndarray) -> float:
    """The extent (mm) of ``stack``'s voxels along the unit world ``direction``, over its in-plane
    axes: the width its in-plane sampling already gives a line sampled along ``direction``."""
    cosines = np.abs(direction @ direction_cosines(stack.affine))
    in_plane = stack.in_plane_axes
    return float(np.sum(cosines[in_plane] * stack.spacing_mm[in_plane]))


def as_thickness_mm(width_mm: float, pixel_mm: float, profile: str) -> float:
    """A width judged against a partner's in-plane voxels of extent ``pixel_mm`` as a slice
    thickness (mm): the partner's voxels already average the subject over ``pixel_mm`` along the
    judged normal, so the judge sees only the part of the profile beyond them; the two are added as
    variances (a box of ``pixel_mm``; the FWHM for ``gaussian``)."""
    # the pixel as a width of the same profile: a box of pixel_mm, or the FWHM of its variance
    pixel_width = pixel_mm * FWHM_PER_SIGMA / np.sqrt(12.0) if profile == "gaussian" else pixel_mm
    return float(np.hypot(width_mm, pixel_width))


def crossing_widths_mm(stacks: list[Stack], profile: str, seed: int = 0,
                       foregrounds: list[np.ndarray] | None = None) -> list[float | None]:
    """Per stack, its slice thickness (mm) judged where its slices cross those of another stack of
    its contrast (:func:`pair_widths_mm`, made a thickness by :func:`as_thickness_mm`); of several
    such partners, the one with the most crossing points decides. ``None`` for a stack with no
    partner whose normal is at least 60 degrees from its own (:data:`MAX_COS`), whose crossings
    hold :data:`MIN_POINTS` points and agree to :data:`MIN_AGREEMENT`; a pair that agrees less
    gets an :class:`~inrsr.errors.InputWarning`. ``foregrounds``: every stack's
    (:func:`~inrsr.samples.training_set.stack_foregrounds`), when the caller has them."""
    best: list[tuple[int, float] | None] = [None] * len(stacks)
    normals = [slice_normal(s.affine) for s in stacks]
    for i in range(len(stacks)):
        for j in range(i + 1, len(stacks)):
            if stacks[i].contrast != stacks[j].contrast or abs(float(normals[i] @ normals[j])) > MAX_COS:
                continue
            pair = None if foregrounds is None else (foregrounds[i], foregrounds[j])
            wi, wj, n, agreement = pair_widths_mm(stacks[i], stacks[j], profile, seed, pair)
            if n < MIN_POINTS:
                continue
            if agreement < MIN_AGREEMENT:
                warnings.warn(f"{stacks[i].path} and {stacks[j].path}: where their slices cross, the two "
                              f"{stacks[i].contrast} stacks agree to only {agreement:.3f} (below {MIN_AGREEMENT}): "
                              f"moved between the scans, or not one contrast; their crossings are not used to judge "
                              f"a slice thickness", InputWarning, stacklevel=2)
                continue
            for k, partner, w in ((i, j, wi), (j, i, wj)):
                if best[k] is None or n > best[k][0]:
                    best[k] = (n, as_thickness_mm(w, pixel_width_mm(stacks[partner], normals[k]), profile))
    return [None if b is None else b[1] for b in best]
