"""Peak memory of the largest render the memory budget admits, against the budget's estimate.

Fits a small model to the synthetic head phantom (two contrasts), finds the finest isotropic
spacing whose output grid passes ``inrsr sample``'s memory check (``--max-memory GB``, default:
the memory available now), renders it with ``inrsr sample`` a little coarser than that limit,
and records the child process's peak RSS (``os.wait4``) beside the budget and the estimate
(``inrsr.resources.render_bytes``). Writes
``experiments/results/render_memory.md`` and ``.json``.

    python experiments/render_memory.py [--max-memory GB] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import nibabel as nib

from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack
from inrsr.geometry import isotropic_grid, union_box
from inrsr.io.files import write_json, write_text
from inrsr.resources import format_bytes, memory_budget_bytes, render_bytes

RESULTS = Path(__file__).resolve().parent / "results"


def run(args: list[str], cwd: Path) -> tuple[int, float, float, str]:
    """``python -m inrsr ARGS`` in ``cwd``: exit status, peak RSS (bytes), seconds, stderr."""
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "inrsr", *args], cwd=cwd, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    stderr = child.stderr.read() if child.stderr else ""
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss * 1024.0, time.perf_counter() - t0, stderr


def finest_admitted_spacing(box, n_volumes: int, budget: int) -> float:
    """The smallest isotropic spacing (mm, to 0.1 %) whose grid over ``box`` fits ``budget`` bytes."""
    lo, hi = 1e-3, 10.0
    while hi / lo > 1.001:
        mid = (lo * hi) ** 0.5
        fits = render_bytes(isotropic_grid(box, mid).n_vox, n_volumes) <= budget
        lo, hi = (lo, mid) if fits else (mid, hi)
    return hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-memory", type=float, help="GB (default: what is available now)")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="inrsr-render-memory-"))
    work.mkdir(parents=True, exist_ok=True)

    vols, aff, _ = head_phantom((40, 48, 40), seed=4)
    stacks = []
    for name, contrast, axis in (("t1ax", "t1", 2), ("t2cor", "t2", 1)):
        data, affine = simulate_stack(vols[contrast], aff, axis, 4, "box")
        nib.save(nib.Nifti1Image(data, affine), str(work / f"{name}.nii.gz"))
        stacks.append((data.shape, affine))
    code, fit_rss, fit_s, err = run(["fit", "--t1", "t1ax.nii.gz", "--t2", "t2cor.nii.gz", "-o", "fit", "--overwrite",
                                     "--preset", "fast", "--max-steps", "50", "--quiet"], work)
    if code != 0:
        sys.exit(f"the fit failed: {err}")

    budget = memory_budget_bytes(args.max_memory)
    spacing = finest_admitted_spacing(union_box(stacks), 2, budget) * 1.01
    grid = isotropic_grid(union_box(stacks), spacing)
    estimate = render_bytes(grid.n_vox, 2)
    limit = [] if args.max_memory is None else ["--max-memory", str(args.max_memory)]
    code, rss, seconds, err = run(["sample", "--model", "fit/model.pt", "-o", "render", "--overwrite",
                                   "--resolution", f"{spacing:.6f}", *limit], work)
    refused = run(["sample", "--model", "fit/model.pt", "-o", "refused", "--resolution", f"{spacing * 0.97:.6f}",
                   *limit], work)
    result = {
        "date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "budget_bytes": budget, "max_memory_gb": args.max_memory, "spacing_mm": spacing, "grid": list(grid.shape),
        "voxels": grid.n_vox, "estimate_bytes": estimate, "exit": code, "peak_rss_bytes": rss, "seconds": seconds,
        "stderr": err.strip(), "three_percent_finer": {"exit": refused[0], "peak_rss_bytes": refused[1],
                                                       "seconds": refused[2], "stderr": refused[3].strip()},
    }
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "render_memory.json", result)
    source = "`--max-memory " + f"{args.max_memory:g}`" if args.max_memory is not None else "the memory available"
    write_text(RESULTS / "render_memory.md", "\n".join([
        f"# Largest render the memory budget admits ({result['date']}, {result['machine']})",
        "",
        f"Written by `experiments/render_memory.py`. Two contrasts of the phantom model, budget: {source} "
        f"({format_bytes(budget)}).",
        "",
        "| | spacing mm | grid | voxels | estimate | peak RSS | seconds | exit |",
        "|---|---|---|---|---|---|---|---|",
        f"| largest admitted | {spacing:.4f} | {'×'.join(map(str, grid.shape))} | {grid.n_vox:,} | "
        f"{format_bytes(estimate)} | {format_bytes(rss)} | {seconds:.0f} | {code} |",
        f"| 3 % finer | {spacing * 0.97:.4f} | | | | {format_bytes(refused[1])} | {refused[2]:.1f} | {refused[0]} |",
        "",
        f"The finer grid is refused before rendering: `{refused[3].strip()}`",
        "",
    ]))
    print((RESULTS / "render_memory.md").read_text())


if __name__ == "__main__":
    main()
