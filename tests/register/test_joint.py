"""Registration's outputs: stacks moved by the world matrices the fit found."""

from __future__ import annotations

import numpy as np

from inrsr.io.stack import Stack
from inrsr.register.joint import registered_stacks


def test_registered_stacks_apply_each_matrix():
    s = Stack(np.ones((4, 4, 2), np.float32), np.diag([1.0, 1.0, 3.0, 1.0]), "t1")
    m = np.eye(4)
    m[:3, 3] = [1.0, 2.0, 3.0]
    moved = registered_stacks([s, s], [np.eye(4), m])
    np.testing.assert_array_equal(moved[1].affine[:3, 3], [1.0, 2.0, 3.0])
    assert moved[0].affine is not None and registered_stacks([s], None)[0] is s
