"""Shared by the SMORE tests: an oblique thick stack's affine."""

from __future__ import annotations

import numpy as np

# An oblique stack whose thick axis is array axis 1: 3.3 mm slices, 1.0 × 1.02 mm pixels (r ≈ 3.27).
ROT = np.array([[0.0, 0.6, 0.8], [1.0, 0.0, 0.0], [0.0, 0.8, -0.6]])
OBLIQUE = np.eye(4)
OBLIQUE[:3, :3] = ROT * np.array([1.0, 3.3, 1.02])
OBLIQUE[:3, 3] = [10.0, -20.0, 5.0]
