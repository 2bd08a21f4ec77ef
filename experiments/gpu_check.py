"""The GPU check (``make gpu-check``): on a machine with a CUDA GPU, in one run, the CUDA tests and
the benchmark of the BraTS case, with one JSON and one Markdown table as the result.

It is written for a machine that has torch (with CUDA), scipy, scikit-image, click,
matplotlib and tqdm but not nibabel, and no network: ``make gpu-check-prepare``, run beforehand on
a machine with the shared data and a package registry, puts nibabel's wheel in ``.whl/`` and the
BraTS volumes the check reads in ``.gpu_data/``; this script installs the wheels it finds there into
a temporary folder. Steps, in order, each written to ``--out`` as soon as it is done:

1. ``env.json``: torch, CUDA, the GPU's name and memory, the Python and CPU count;
2. ``tests.log``: ``pytest -m cuda`` (the CUDA path against the CPU path, ``tests/cuda``);
3. ``bench.md`` / ``bench.json``: ``experiments/bench.py`` on BraTS (4 mm slabs, factor 4) with
   cubic, ``fast``, ``default``, then the ``paper`` network at its full published budget (50
   epochs, MI early stopping as the authors'), capped by the time left before ``--deadline``
   (its row then says it stopped on time, and the 50-epoch time is projected);
4. ``gpu-check.md``: a summary (environment, tests, the bench table).

``--rehearse`` runs the same steps on the CPU where no GPU is present: the CUDA tests with
``INRSR_GPU_TEST_DEVICE=cpu`` (their GPU side is the CPU again) and the bench with cubic and
``fast`` only, so that the plumbing is tried before a GPU run.

    python3 experiments/gpu_check.py [--out DIR] [--deadline SECONDS] [--rehearse]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from carried import REPO, install_wheels, output_so_far, use_carried_data  # beside this script

WHEELS = REPO / ".whl"
CASE = "brats"
PROTOCOLS = "slab"
# Seconds kept back at the end of the check for the summary and the transfer of its files.
MARGIN_S = 30.0


def install_carried_wheels(env: dict[str, str]) -> str:
    """Install the wheels of ``.whl/`` (:func:`carried.install_wheels`) and put their folder first
    on ``env``'s ``PYTHONPATH`` too, for the children; returns what was done."""
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels:
        return "no wheels carried"
    target = install_wheels(wheels)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (target, str(REPO), env.get("PYTHONPATH")) if p)
    return "installed " + ", ".join(w.name for w in wheels)


def environment(device: str, wheels: str) -> dict:
    import torch

    info = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": device, "wheels": wheels}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count)
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def run_tests(out: Path, env: dict[str, str], timeout_s: float) -> dict:
    """``pytest -m cuda`` on ``tests/cuda``; its output in ``tests.log``, its last line returned."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-ra", "-s", "-m", "cuda", "-p", "no:cacheprovider", "tests/cuda"]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
        text, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        text, code = f"{output_so_far(exc)}\n(stopped after {timeout_s:.0f} s)", -1
    (out / "tests.log").write_text(text)
    last = [line for line in text.splitlines() if line.strip()][-1:] or ["no output"]
    return {"returncode": code, "summary": last[0].strip("= "), "seconds": round(time.perf_counter() - t0, 1)}


def run_bench(out: Path, env: dict[str, str], device: str, methods: list[str], deadline: float, cache: Path) -> list[str]:
    """``bench.py`` once per method, in order, each run adding its rows (earlier runs are read back
    from ``cache``), so that ``bench.md`` is complete up to the last method that ended; ``paper``
    gets the time left before ``deadline`` as its limit. Returns what each call ended with."""
    ended = []
    for k in range(len(methods)):
        left = deadline - time.monotonic() - MARGIN_S
        method = methods[k]
        if left < 60:
            ended.append(f"{method}: not run ({left:.0f} s left)")
            break
        # the paper network's full budget is 50 epochs; the time left caps it (0 would mean no cap)
        budget = max(1.0, left - 120.0) if method == "paper" else 120.0
        cmd = [sys.executable, str(REPO / "experiments" / "bench.py"), "--cases", CASE, "--protocols", PROTOCOLS,
               "--methods", ",".join(methods[: k + 1]), "--device", device, "--paper-budget", f"{budget:.0f}",
               "--out", str(cache), "--results", str(out)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode:
            (out / f"bench-{method}.log").write_text(done.stdout + done.stderr)
            ended.append(f"{method}: failed after {seconds:.0f} s (bench-{method}.log)")
            break
        ended.append(f"{method}: {seconds:.0f} s" + (f" (paper budget {budget:.0f} s)" if method == "paper" else ""))
    return ended


def summary(out: Path, info: dict, tests: dict, bench: list[str]) -> str:
    bench_md = (out / "bench.md").read_text() if (out / "bench.md").exists() else "(no bench table)\n"
    lines = [f"# inrsr GPU check — {info['date']}", "",
             f"{info.get('gpu', 'CPU rehearsal')}; torch {info['torch']}, CUDA {info['cuda']}, "
             f"triton {info['triton']}, Python {info['python']}, {info['cpus']} CPUs; {info['wheels']}.", "",
             f"CUDA tests (`pytest -m cuda tests/cuda`, {tests['seconds']} s): {tests['summary']} "
             f"(exit {tests['returncode']}; tests.log).", "",
             "Bench calls: " + "; ".join(bench) + ".", "", bench_md]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "experiments" / "results" / "gpu"),
                    help="folder of the results ($OUT when set, else experiments/results/gpu)")
    ap.add_argument("--deadline", type=float, help="seconds the whole check may take (default 540 on a GPU, "
                    "1800 for the rehearsal, whose fits run on 2 CPU cores)")
    ap.add_argument("--rehearse", action="store_true", help="run the same steps on the CPU (no GPU needed)")
    args = ap.parse_args()
    start = time.monotonic()
    deadline = start + (args.deadline or (1800.0 if args.rehearse else 540.0))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    wheels = install_carried_wheels(env)
    use_carried_data(env)
    import torch

    if args.rehearse:
        device = "cpu"
        env["INRSR_GPU_TEST_DEVICE"] = "cpu"
        methods = ["cubic", "fast"]
    elif not torch.cuda.is_available():
        print("gpu-check: error: torch sees no CUDA device (use --rehearse to try the check on the CPU)",
              file=sys.stderr)
        return 2
    else:
        device = "cuda"
        methods = ["cubic", "fast", "default", "paper"]
    info = environment(device, wheels)
    (out / "env.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)
    tests = run_tests(out, env, timeout_s=max(60.0, 0.4 * (deadline - time.monotonic())))
    print("tests:", tests, flush=True)
    with tempfile.TemporaryDirectory(prefix="inrsr-bench-") as cache:
        bench = run_bench(out, env, device, methods, deadline, Path(cache))
    print("bench:", bench, flush=True)
    text = summary(out, info, tests, bench)
    (out / "gpu-check.md").write_text(text)
    print(text)
    return 0 if tests["returncode"] == 0 and all("failed" not in b for b in bench) else 1


if __name__ == "__main__":
    sys.exit(main())
