"""A synthetic two-contrast head phantom on an isotropic 1 mm grid (for the demo and tests).

Tissues (scalp, skull, CSF, cortex with sulci, white matter, deep grey matter, ventricles and
small lesions) get T1-like and T2-like intensities; each contrast has its own smooth bias field
and a little noise. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from inrsr.geometry import apply_affine

__all__ = ["TISSUES", "head_phantom"]

# tissue: (T1-weighted, T2-weighted) intensity
TISSUES: dict[str, tuple[float, float]] = {
    "background": (0.0, 0.0),
    "scalp": (0.80, 0.55),
    "skull": (0.06, 0.05),
    "csf": (0.15, 1.00),
    "grey": (0.55, 0.62),
    "white": (0.85, 0.38),
    "deep_grey": (0.65, 0.50),
    "lesion": (0.35, 0.90),
}


def head_phantom(
    shape: tuple[int, int, int] = (96, 112, 96), seed: int = 0, noise: float = 0.01
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Build the phantom.

    Returns ``({"t1": array, "t2": array}, affine, brain_mask)``; arrays are float32 on a 1 mm
    grid in LAS orientation (array axis 0 points to the subject's left), centred on the world
    origin. ``brain_mask`` covers the intracranial tissues (for evaluation).
    """
    rng = np.random.default_rng(seed)
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [(shape[0] - 1) / 2.0, -(shape[1] - 1) / 2.0, -(shape[2] - 1) / 2.0]
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    x, y, z = np.moveaxis(apply_affine(affine, idx), -1, 0)
    half = np.array(shape, dtype=np.float64) / 2.0

    def ellipsoid(c: tuple[float, float, float], r: tuple[float, float, float]) -> np.ndarray:
        return np.sqrt(((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2)

    head = ellipsoid((0, 0, 0), tuple(0.9 * half))
    brain_r = tuple(0.76 * half)
    folds = 1.0 + 0.035 * np.sin(x / 4.0) * np.sin(y / 5.0 + 1.0) * np.sin(z / 4.5 + 0.5)
    brain = ellipsoid((0, 0, 0), brain_r) * folds
    label = np.zeros(shape, dtype=np.int8)
    names = list(TISSUES)
    label[head <= 1.0] = names.index("scalp")
    label[head <= 0.93] = names.index("skull")
    label[head <= 0.87] = names.index("csf")
    label[brain <= 1.0] = names.index("grey")
    label[brain <= 0.86] = names.index("white")
    sulci = (np.sin(x / 3.0) * np.sin(y / 3.5 + 0.7) * np.sin(z / 3.2 + 0.3) > 0.55) & (brain > 0.88) & (brain <= 1.0)
    label[sulci] = names.index("csf")
    for sx in (-1, 1):
        label[ellipsoid((sx * 0.16 * half[0], 0.05 * half[1], 0.02 * half[2]), (0.12 * half[0], 0.3 * half[1], 0.16 * half[2])) <= 1] = names.index("deep_grey")
        label[ellipsoid((sx * 0.08 * half[0], 0.0, 0.2 * half[2]), (0.05 * half[0], 0.34 * half[1], 0.1 * half[2])) <= 1] = names.index("csf")
    white = label == names.index("white")
    centres = np.argwhere(white)
    for _ in range(6):
        pick = centres[rng.integers(len(centres))]
        centre = (x[tuple(pick)], y[tuple(pick)], z[tuple(pick)])
        r = float(rng.uniform(1.5, 4.0))
        label[(ellipsoid(centre, (r, r * 1.3, r)) <= 1) & white] = names.index("lesion")
    brain_mask = np.isin(label, [names.index(n) for n in ("csf", "grey", "white", "deep_grey", "lesion")]) & (head <= 0.87)

    volumes = {}
    for c, key in enumerate(("t1", "t2")):
        lut = np.array([TISSUES[n][c] for n in names], dtype=np.float64)
        vol = lut[label]
        vol = ndimage.gaussian_filter(vol, 0.6)
        coeffs = rng.uniform(-0.06, 0.06, size=3)
        bias = 1.0 + coeffs[0] * x / half[0] + coeffs[1] * y / half[1] + coeffs[2] * z / half[2]
        vol = vol * bias + rng.normal(0.0, noise, size=shape) * (head <= 1.0)
        volumes[key] = (1000.0 * np.clip(vol, 0, None)).astype(np.float32)
    return volumes, affine, brain_mask
