"""Hash grid encoding: exact hashing, exact trilinear interpolation, gradients, level layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrsr.encodings import HashGrid, _GridGather, hash_corners, level_cells_mm, make_hash_grid

MM = 120.0  # mm per normalised unit, as for a 240 mm box


def test_level_cells_are_geometric_in_mm():
    cells = level_cells_mm(5, 16.0, 1.0)
    np.testing.assert_allclose(cells, [16.0, 8.0, 4.0, 2.0, 1.0])
    assert level_cells_mm(1, 16.0, 2.0) == [2.0]


def test_int32_hash_equals_exact_integer_hash():
    c = torch.randint(-100_000, 100_000, (5000, 3), dtype=torch.int32)
    exact = (c[:, 0].long() * 1) ^ (c[:, 1].long() * 2654435761) ^ (c[:, 2].long() * 805459861)
    for log2 in (12, 19, 24):
        np.testing.assert_array_equal(hash_corners(c, 1 << log2).long().numpy(), (exact & ((1 << log2) - 1)).numpy())


@pytest.mark.parametrize("cell_mm,log2,half", [(30.0, 16, 0.5), (1.0, 20, 0.03)])  # dense; hashed
def test_trilinear_interpolation_reproduces_linear_functions(cell_mm, log2, half):
    grid = HashGrid([cell_mm], 2, log2, MM)
    assert bool(grid.dense[0]) == (cell_mm == 30.0)
    x = (torch.rand(2000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1) * half
    lo = torch.floor((x.min(0).values + 1) * grid.inv_cell[0].double()).int()
    hi = torch.floor((x.max(0).values + 1) * grid.inv_cell[0].double()).int() + 1
    ijk = torch.stack(torch.meshgrid(*[torch.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1)
    ijk = ijk.reshape(-1, 3).int()
    if bool(grid.dense[0]):
        rows = (ijk.long() * grid.strides[0].long()).sum(-1)
    else:
        rows = hash_corners(ijk, grid.table_size).long()
        assert rows.unique().numel() == rows.numel(), "the test's vertices must not collide"
    coeffs = torch.tensor([[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]], dtype=torch.float64)
    pos = ijk.double() / grid.inv_cell[0].double() - 1.0  # each vertex's normalised coordinate
    with torch.no_grad():
        grid.table[rows] = (pos @ coeffs).float()
    np.testing.assert_allclose(grid(x.float()).detach().double().numpy(), (x @ coeffs).numpy(), atol=2e-5)


def test_gather_gradients_match_finite_differences():
    table = torch.randn(50, 3, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 50, (7, 2, 8))
    w = torch.rand(7, 2, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_GridGather.apply, (table, idx, w))


def test_gradients_reach_coordinates_and_tables():
    grid = HashGrid(level_cells_mm(4, 32.0, 4.0), 2, 14, MM, init_scale=0.1)
    x = (torch.rand(64, 3) * 1.6 - 0.8).requires_grad_(True)
    grid(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert grid.table.grad.abs().sum() > 0


def test_dense_levels_first_and_outputs():
    grid = HashGrid(level_cells_mm(8, 64.0, 1.0), 4, 16, MM)
    assert grid.out_dim == 32
    dense = grid.dense.tolist()
    assert dense == sorted(dense, reverse=True) and dense[0] and not dense[-1]
    assert grid(torch.zeros(3, 3)).shape == (3, 32)
    x = torch.tensor([[-1.2, 0.0, 1.3]])  # outside the box: clamped (dense) or hashed, never an error
    assert torch.isfinite(grid(x)).all()


def test_backend_choice_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    assert isinstance(make_hash_grid([8.0], 2, 12, MM, "auto"), HashGrid)
    with pytest.raises(RuntimeError, match="needs CUDA"):
        make_hash_grid([8.0], 2, 12, MM, "tcnn")
