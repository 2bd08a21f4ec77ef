"""Hash grid encoding: exact hashing, exact trilinear interpolation, gradients, level layout, and the
compiled CPU kernel (the same numbers as the PyTorch path, and a fallback when it cannot be built)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from inrsr.field import native
from inrsr.field.encodings import HashGrid, _GridGather, hash_corners, level_cells_mm, make_hash_grid

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


@pytest.mark.parametrize("use_native", [False, True])
@pytest.mark.parametrize("cell_mm,log2,half", [(30.0, 16, 0.5), (1.0, 20, 0.03)])  # dense; hashed
def test_trilinear_interpolation_reproduces_linear_functions(cell_mm, log2, half, use_native):
    grid = HashGrid([cell_mm], 2, log2, MM, native=use_native)
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


@pytest.mark.parametrize("use_native", [False, True])
def test_gradients_reach_coordinates_and_tables(use_native):
    grid = HashGrid(level_cells_mm(4, 32.0, 4.0), 2, 14, MM, init_scale=0.1, native=use_native)
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


def _paired_grids(cells: list[float], features: int, log2: int) -> tuple[HashGrid, HashGrid]:
    torch_grid = HashGrid(cells, features, log2, MM, init_scale=0.5, generator=torch.Generator().manual_seed(3))
    native_grid = HashGrid(cells, features, log2, MM, native=True)
    native_grid.load_state_dict(torch_grid.state_dict())
    return torch_grid, native_grid


def test_compiled_kernel_gives_the_pytorch_path_numbers():
    # dense and hashed levels; points inside, on the edge of and outside the [-1, 1] box
    torch_grid, native_grid = _paired_grids(level_cells_mm(12, 40.0, 0.8), 3, 15)
    assert 0 < native_grid.n_dense < native_grid.levels
    x = torch.rand(5000, 3, generator=torch.Generator().manual_seed(1)) * 2.4 - 1.2
    x[:3] = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, -1.0, 1.0]])
    x_torch, x_native = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    expected, got = torch_grid(x_torch), native_grid(x_native)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    grad_out = torch.randn(expected.shape, generator=torch.Generator().manual_seed(2))
    expected.backward(grad_out)
    got.backward(grad_out)
    torch.testing.assert_close(native_grid.table.grad, torch_grid.table.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x_native.grad, x_torch.grad, rtol=1e-4, atol=1e-4)


def test_compiled_kernel_does_not_depend_on_the_thread_count():
    _, grid = _paired_grids(level_cells_mm(6, 32.0, 1.0), 2, 14)
    x = torch.rand(3000, 3, generator=torch.Generator().manual_seed(4)) * 2 - 1
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            grid.table.grad = None
            out = grid(x)
            out.square().sum().backward()
            results.append((out.detach().clone(), grid.table.grad.clone()))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def _grid_pass(cells: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """A native grid's features and table gradient on fixed points."""
    grid = HashGrid(cells, 2, 14, MM, init_scale=0.5, generator=torch.Generator().manual_seed(7), native=True)
    x = torch.rand(4000, 3, generator=torch.Generator().manual_seed(8)) * 2.2 - 1.1
    out = grid(x)
    out.square().sum().backward()
    return out.detach(), grid.table.grad


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps (Linux only)")
def test_compiled_kernel_runs_on_the_openmp_runtime_pytorch_loaded():
    """Threads of the kernel's own would compete with PyTorch's spinning OpenMP workers for the
    cores: the kernel is built with OpenMP, and the process holds one OpenMP runtime."""
    lib = native.load_hashgrid()
    assert lib.inrsr_hashgrid_openmp() == 1
    with open("/proc/self/maps") as maps:
        runtimes = {line.split()[-1] for line in maps if "libgomp" in line or "libomp" in line or "libiomp" in line}
    assert len(runtimes) == 1, runtimes


def test_kernel_falls_back_to_posix_threads_with_the_same_numbers(monkeypatch, tmp_path):
    """A compiler without OpenMP: the kernel is built with POSIX threads and gives the same features
    and gradients, bit for bit."""
    cells = level_cells_mm(6, 32.0, 1.0)
    expected = _grid_pass(cells)
    compiler = tmp_path / "cc-without-openmp"
    compiler.write_text('#!/bin/sh\ncase "$*" in *-fopenmp*) echo "no OpenMP here" >&2; exit 1;; esac\n'
                        f'exec {native.find_compiler()} "$@"\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("INRSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(compiler))
    native.load_hashgrid.cache_clear()
    try:
        assert native.load_hashgrid().inrsr_hashgrid_openmp() == 0
        got = _grid_pass(cells)
    finally:
        native.load_hashgrid.cache_clear()
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """A fresh, empty kernel cache and a compiler that always fails."""
    monkeypatch.setenv("INRSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "false")
    native.load_hashgrid.cache_clear()
    yield
    native.load_hashgrid.cache_clear()


def test_auto_backend_falls_back_to_pytorch_when_the_kernel_cannot_be_built(no_compiler):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU choice")
    with pytest.warns(UserWarning, match="compiled hash-grid kernel unavailable .*false failed on hashgrid.c"):
        grid = make_hash_grid([8.0, 2.0], 2, 12, MM, "auto")
    assert grid._kernel is None
    assert grid(torch.zeros(4, 3)).shape == (4, 4)
    with pytest.raises(native.NativeUnavailable, match="false failed"):
        make_hash_grid([8.0], 2, 12, MM, "native")


def test_dense_levels_take_only_their_vertices_and_old_tables_still_load():
    grid = HashGrid(level_cells_mm(6, 40.0, 2.0), 2, 14, MM, init_scale=0.5, generator=torch.Generator().manual_seed(5))
    per_level = torch.diff(torch.cat([grid.level_offset.long(), torch.tensor([grid.table.shape[0]])]))
    expected = torch.where(grid.dense, grid.verts.long() ** 3, torch.full_like(per_level, grid.table_size))
    assert torch.equal(per_level, expected) and grid.table.shape[0] < grid.levels * grid.table_size
    # a table saved with table_size rows for every level (before the compact layout)
    old = grid.state_dict()
    uniform = torch.zeros(grid.levels * grid.table_size, 2)
    for lvl, n in enumerate(per_level.tolist()):
        start = int(grid.level_offset[lvl])
        uniform[lvl * grid.table_size : lvl * grid.table_size + n] = grid.table.detach()[start : start + n]
    old["table"] = uniform
    old["level_offset"] = (torch.arange(grid.levels) * grid.table_size).to(torch.int32)
    loaded = HashGrid(level_cells_mm(6, 40.0, 2.0), 2, 14, MM)
    loaded.load_state_dict(old)
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(6)) * 2 - 1
    assert torch.equal(loaded(x), grid(x))


def test_torch_hash_grid_trains_under_bf16_autocast():
    """The pure-torch hash grid's backward under bfloat16 autocast gives the float32 table a
    float32 gradient, close to the fp32 one (it used to stop on a dtype mismatch)."""
    grid = HashGrid([8.0, 2.0], 2, 12, 50.0, generator=torch.Generator().manual_seed(0))
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    grads = []
    for enabled in (False, True):
        grid.table.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            out = grid(x)
        out.float().square().sum().backward()
        grads.append(grid.table.grad.clone())
    assert grads[1].dtype == torch.float32 and bool(torch.isfinite(grads[1]).all())
    assert float(grads[0].abs().max()) > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=0.05, atol=1e-2 * float(grads[0].abs().max()))


# Coordinates far outside [-1, 1] and non-finite ones (the grid's contract, see HashGrid): each value
# alone on each axis of a normal point, on all three axes, and mixed with others. Rows are built so
# that the 1e30 and inf rows (and -1e30 and -inf) differ only in that value.
_EXTREMES = (1e30, -1e30, 3e9, -3e9, math.inf, -math.inf, math.nan)
_N_NORMAL = 64


def _extreme_batch() -> torch.Tensor:
    """``_N_NORMAL`` points in ``[-1.2, 1.2]³`` followed by rows holding extreme values."""
    normal = torch.rand(_N_NORMAL, 3, generator=torch.Generator().manual_seed(7)) * 2.4 - 1.2
    rows = []
    for value in _EXTREMES:
        for d in range(3):
            row = normal[d].clone()
            row[d] = value
            rows.append(row)
        rows.append(torch.full((3,), value))
    rows += [torch.tensor([1e30, -math.inf, 0.5]), torch.tensor([math.nan, 3e9, -1e30]),
             torch.tensor([-0.3, math.inf, math.nan])]
    return torch.cat([normal, torch.stack(rows)])


def _extreme_run(use_native: bool) -> dict[str, torch.Tensor]:
    """Forward, backward to the table and backward to the points of one backend on
    :func:`_extreme_batch` (``*``), on its NaN-free rows (``*_finite``) and on its normal points
    alone (``*_normal``). Dense and hashed levels; the table depends only on the seed."""
    grid = HashGrid(level_cells_mm(12, 40.0, 0.8), 3, 15, MM, init_scale=0.5,
                    generator=torch.Generator().manual_seed(3), native=use_native)
    assert 0 < grid.n_dense < grid.levels
    batch = _extreme_batch()
    grad_out = torch.randn(batch.shape[0], grid.out_dim, generator=torch.Generator().manual_seed(2))
    results = {}
    keep = ~torch.isnan(batch).any(1)
    for name, rows in (("", slice(None)), ("_finite", keep), ("_normal", slice(0, _N_NORMAL))):
        grid.table.grad = None
        x = batch[rows].clone().requires_grad_(True)
        out = grid(x)
        out.backward(grad_out[rows])
        results.update({"out" + name: out.detach(), "grad_table" + name: grid.table.grad.clone(),
                        "grad_x" + name: x.grad.clone()})
    return results


@pytest.fixture(scope="module")
def extreme_runs(tmp_path_factory) -> dict:
    """Each backend's :func:`_extreme_run`; the compiled kernel's in a child process, so that a
    crash there fails the tests instead of killing pytest (then: the child's exit code and stderr)."""
    saved = tmp_path_factory.mktemp("extremes") / "native.pt"
    child = (
        "import importlib.util, sys, torch\n"
        "spec = importlib.util.spec_from_file_location('encoding_tests', sys.argv[1])\n"
        "tests = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(tests)\n"
        "torch.save(tests._extreme_run(use_native=True), sys.argv[2])\n"
    )
    done = subprocess.run([sys.executable, "-c", child, __file__, str(saved)], capture_output=True, text=True,
                          timeout=600)
    native_run = torch.load(saved) if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-3000:]}"
    return {"torch": _extreme_run(use_native=False), "native": native_run}


def _backend_run(extreme_runs: dict, backend: str) -> dict[str, torch.Tensor]:
    run = extreme_runs[backend]
    if isinstance(run, str):
        pytest.fail(f"the compiled kernel's child process died on extreme coordinates ({run})")
    return run


def test_extreme_coordinates_do_not_crash_the_compiled_kernel(extreme_runs):
    """Forward and both backward passes of the C kernel on ±1e30, ±3e9, ±inf and NaN (they used to
    index outside the table: SIGSEGV)."""
    _backend_run(extreme_runs, "native")


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_extreme_coordinates_give_finite_features_and_nan_only_for_nan(extreme_runs, backend):
    run = _backend_run(extreme_runs, backend)
    batch = _extreme_batch()
    has_nan = torch.isnan(batch).any(1)
    # features: finite for every point without a NaN (±inf included: clamped), all NaN for the others
    assert bool(torch.isfinite(run["out"][~has_nan]).all())
    assert bool(torch.isnan(run["out"][has_nan]).all())
    # gradients: finite for NaN-free points; NaN through the weights of a point that is all NaN
    assert bool(torch.isfinite(run["grad_x"][~has_nan]).all())
    assert bool(torch.isnan(run["grad_x"][torch.isnan(batch).all(1)]).all())
    assert bool(torch.isfinite(run["grad_table_finite"]).all())
    assert bool(torch.isfinite(run["grad_x_finite"]).all())
    assert not bool(torch.isfinite(run["grad_table"]).all())  # the NaN points' rows
    # ±inf is a huge finite value: the rows that differ only in inf vs 1e30 (-inf vs -1e30) agree
    rows_of = {value: _N_NORMAL + 4 * i + torch.arange(4) for i, value in enumerate(_EXTREMES)}
    for huge, inf in ((1e30, math.inf), (-1e30, -math.inf)):
        assert torch.equal(run["out"][rows_of[inf]], run["out"][rows_of[huge]])


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_extreme_coordinates_leave_normal_points_in_the_batch_alone(extreme_runs, backend):
    run = _backend_run(extreme_runs, backend)
    torch.testing.assert_close(run["out"][:_N_NORMAL], run["out_normal"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(run["grad_x"][:_N_NORMAL], run["grad_x_normal"], rtol=1e-6, atol=1e-7)


def test_extreme_coordinates_give_the_same_numbers_on_both_backends(extreme_runs):
    expected, got = _backend_run(extreme_runs, "torch"), _backend_run(extreme_runs, "native")
    for name in ("", "_finite"):
        torch.testing.assert_close(got["out" + name], expected["out" + name], rtol=1e-6, atol=1e-7, equal_nan=True)
        torch.testing.assert_close(got["grad_table" + name], expected["grad_table" + name], rtol=1e-5, atol=1e-6,
                                   equal_nan=True)
        torch.testing.assert_close(got["grad_x" + name], expected["grad_x" + name], rtol=1e-4, atol=1e-4,
                                   equal_nan=True)


def test_levels_too_fine_for_the_dense_layout_are_hashed_even_in_huge_boxes():
    """The dense-level test counts a level's vertices in float64: verts³ used to overflow int64 for
    more than 2^21 vertices per axis, which called such a level dense (and stopped on the order)."""
    grid = HashGrid(level_cells_mm(16, 32.0, 0.5), 2, 14, 1e6)
    assert grid.n_dense == 0 and grid.table.shape[0] == grid.levels * grid.table_size
    assert bool(torch.isfinite(grid(torch.rand(10, 3) * 2 - 1)).all())


@pytest.mark.parametrize("use_native", [False, True])
def test_a_deep_copy_or_pickle_of_the_grid_computes_what_the_grid_does(use_native):
    """The compiled kernel's handle cannot be copied: a copy loads the kernel again and gives the
    same features (a copy of a model is what moves it to another device while keeping the original)."""
    import copy
    import pickle

    grid = HashGrid(level_cells_mm(4, 16.0, 2.0), 2, 12, 50.0, init_scale=0.1,
                    generator=torch.Generator().manual_seed(1), native=use_native)
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(2)) * 2 - 1
    for other in (copy.deepcopy(grid), pickle.loads(pickle.dumps(grid))):
        assert (other._kernel is not None) == use_native
        torch.testing.assert_close(other(x), grid(x), rtol=0, atol=0)
