"""Wall time of the BIDS App on the test study (tests/jobs/bids_cohort.py: two real subjects and a
broken one, 48 × 48 × 32 mm crops, `fast` preset), three ways on this machine's cores:

- no Dask (``--n-workers 0``): the subjects one after another in the command's own process,
  each fit on ``--threads-per-worker`` = all cores;
- Dask, one worker of all cores: the same work, through the engine: the difference per subject
  is the engine's overhead (starting the cluster, shipping the job, collecting the record);
- Dask, one worker per core, one thread each: the subjects in parallel.

Writes ``experiments/results/bids_cohort.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cases import data_root  # noqa: E402
from tests.jobs.bids_cohort import build_cohort  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def run(bids: Path, out: Path, workers: int, threads: int, steps: int) -> dict:
    """One participant-level run; its wall time and the subjects' own seconds."""
    cmd = [sys.executable, "-m", "inrsr", "bids", str(bids), str(out), "participant", "--preset", "fast",
           "--n-workers", str(workers), "--threads-per-worker", str(threads), "--quiet"]
    if steps:
        cmd += ["--fit-option", f"max_steps={steps}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    statuses = [json.loads(p.read_text()) for p in sorted(out.glob("sub-*/log/status.json"))]
    return {"workers": workers, "threads_per_worker": threads, "exit": done.returncode, "wall_s": wall,
            "subjects": {s["label"]: {"status": s["status"], "seconds": s["seconds"]} for s in statuses}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=0, help="fit steps (default: the fast preset's)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        bids = build_cohort(data_root(), Path(tmp))
        runs = {
            "no Dask, one after another": run(bids, Path(tmp) / "seq", 0, cores, args.steps),
            f"Dask, 1 worker × {cores} threads": run(bids, Path(tmp) / "one", 1, cores, args.steps),
            f"Dask, {cores} workers × 1 thread": run(bids, Path(tmp) / "many", cores, 1, args.steps),
        }
    fitted = [r for r in runs.values()]
    n_done = sum(s["status"] == "done" for s in fitted[0]["subjects"].values())
    n_all = len(fitted[0]["subjects"])
    overhead = (fitted[1]["wall_s"] - fitted[0]["wall_s"]) / n_all
    report = {"cores": cores, "subjects": n_all, "fitted": n_done, "runs": runs,
              "engine_overhead_s_per_subject": overhead}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bids_cohort.json").write_text(json.dumps(report, indent=2))
    lines = [f"BIDS App on the test study: {n_all} subjects ({n_done} fitted, 1 broken), `fast` preset, "
             f"{cores} CPU cores", "", "| run | wall s | per subject s (own time) | exit |", "|---|---|---|---|"]
    for name, r in runs.items():
        per = ", ".join(f"{k} {v['seconds']:.1f} ({v['status']})" for k, v in r["subjects"].items())
        lines.append(f"| {name} | {r['wall_s']:.1f} | {per} | {r['exit']} |")
    lines += ["", f"Engine overhead (Dask with one worker minus no Dask, per subject): {overhead:.1f} s"]
    (RESULTS / "bids_cohort.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
