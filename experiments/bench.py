"""Speed and quality benchmark (``make bench``): cubic vs the ``default``, ``fast`` and ``paper`` presets.

For each shared case and protocol (factor 4), every method runs in its own process (so peak RSS
is its own) and the script prints one Markdown table: fit seconds (from the loaded stacks to the
fitted field: the training voxels and the cubic base, the fit, and the back-projection of the data
residuals when the preset does it) and render seconds, training points per
second (field evaluations), peak RSS, PSNR/SSIM per contrast inside the brain, gain over cubic,
and the ``paper`` preset's projected 50-epoch time divided by the method's fit time. ``paper``
runs for a fixed time budget (``--paper-budget``); its 50-epoch time is projected from its
measured steps per second; a method that stopped before its step limit says why (on time, or by
MI early stopping). Runs on CUDA when one is present (``--device``; the header then names the GPU).

The table is written to ``experiments/results/bench.md`` (and ``bench.json``), which the README
links; simulated stacks and per-run results are cached in ``--out`` (``bench_out``).

The ``-untold`` protocols are the same stacks without a sidecar: the fit estimates each slice
thickness first (its seconds are part of the fit time and shown in brackets; the thickness used is
in its own column, with how it was estimated: judged where the slices of two stacks of one
contrast cross, or learned in a short fit). A case with two stacks of one contrast (``brats_t2w``,
``msseg_t1``) is scored per contrast, and its cubic baseline is the mean of its stacks'
interpolations.

    python experiments/bench.py [--cases brats,msseg] [--protocols slab,point,point-untold] [--out bench_out]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import CASES, config_tag, data_root, estimated_stacks, load_volume, machine_name, prepare  # noqa: E402

from inrsr.baselines.interpolate import interpolate_to_grid  # noqa: E402
from inrsr.config import preset  # noqa: E402
from inrsr.device import resolve_device  # noqa: E402
from inrsr.evaluate.metrics import evaluate  # noqa: E402
from inrsr.io.grids import reference_grid  # noqa: E402
from inrsr.io.stack import StackSpec, load_stacks  # noqa: E402
from inrsr.jobs.reconstruct import reconstruct, training_set  # noqa: E402
from inrsr.render import render_subject  # noqa: E402

METHODS = ("cubic", "fast", "default", "paper")


def method_config(method: str, device: str, paper_budget: float):
    """The fit configuration of a preset method: ``paper`` stops after ``paper_budget`` seconds."""
    return preset(method, device=device, time_limit_s=paper_budget if method == "paper" else None)


def run_method(spec: dict) -> dict:
    """One method on one prepared case; returns timings and metrics (runs inside a worker)."""
    paths, method = spec["paths"], spec["method"]
    grid, _ = reference_grid(paths["ref"])
    out: dict = {"fit_s": 0.0, "render_s": 0.0, "points_per_s": float("nan")}
    if method == "cubic":
        t0 = time.perf_counter()
        vols = {}
        for contrast in dict.fromkeys(c for c, _ in paths["stack_list"]):  # a contrast's stacks averaged
            parts = [interpolate_to_grid(*load_volume(p), grid) for c, p in paths["stack_list"] if c == contrast]
            vols[contrast] = parts[0] if len(parts) == 1 else np.mean(parts, axis=0)
        out["render_s"] = time.perf_counter() - t0
    else:
        config = method_config(method, spec["device"], spec["paper_budget"])
        stacks = load_stacks([StackSpec(c, p) for c, p in paths["stack_list"]])
        stacks, foregrounds, foregrounds_s, estimate_s = estimated_stacks(stacks, config)
        out["thickness_mm"] = [round(s.slice_thickness_mm, 2) for s in stacks]
        out["thickness_estimator"] = [s.thickness_estimator if s.thickness_estimated else None for s in stacks]
        t0 = time.perf_counter()
        prepared = training_set(stacks, config, foregrounds=foregrounds)  # training voxels and cubic base
        recon = reconstruct(stacks, config, prepared=prepared)  # fit, back-projection
        reconstruct_s = foregrounds_s + time.perf_counter() - t0
        res, consistent_s = recon.fit, recon.consistency_s
        t0 = time.perf_counter()
        vols = render_subject(recon.field, grid, recon.subject, config)
        out.update(render_s=time.perf_counter() - t0, fit_s=estimate_s + reconstruct_s,
                   estimate_s=estimate_s, consistent_s=consistent_s,
                   prepare_s=reconstruct_s - res.seconds - consistent_s,
                   points_per_s=res.points_per_second,
                   steps=res.steps, stopped_by=res.stopped_by,
                   epoch50_s=res.seconds / max(res.steps, 1) * res.steps_per_epoch * 50)
    mask = load_volume(paths["mask"])[0] > 0.5
    for c, v in vols.items():
        m = evaluate(v, load_volume(paths["truths"][c])[0], mask)
        out[f"psnr_{c}"], out[f"ssim_{c}"] = m["psnr"], m["ssim"]
    out["rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return out


def _thickness(widths_mm: list[float], estimators: list[str | None]) -> str:
    """The thickness column: each stack's thickness used (mm), with how it was estimated when it was
    (``crossings`` or ``fit``), once when every stack's was found the same way."""
    if not widths_mm:
        return "–"
    labels = [f" ({e})" if e else "" for e in estimators] + [""] * (len(widths_mm) - len(estimators))
    if len(set(labels)) == 1:
        return ", ".join(f"{w:g}" for w in widths_mm) + labels[0]
    return ", ".join(f"{w:g}{label}" for w, label in zip(widths_mm, labels))


def _table(rows: list[dict]) -> str:
    lines = ["| case | protocol | method | fit s (of which thickness estimate) | render s | train pts/s | RSS GB "
             "| slice thickness mm | PSNR / SSIM per contrast | gain over cubic, dB | paper 50-ep time ÷ fit time |",
             "|" + "---|" * 11]
    for r in rows:
        cs = r["contrasts"]
        q = ", ".join(f"{c} {r[f'psnr_{c}']:.2f} / {r[f'ssim_{c}']:.3f}" for c in cs)
        gain = ", ".join(f"{c} {r[f'psnr_{c}'] - r['cubic'][f'psnr_{c}']:+.2f}" for c in cs)
        ratio = f"{r['paper_epoch50_s'] / r['fit_s']:.0f}×" if r["fit_s"] and r.get("paper_epoch50_s") else "–"
        pts = f"{r['points_per_s'] / 1e3:.0f} k" if np.isfinite(r["points_per_s"]) else "–"
        est = f" ({r['estimate_s']:.1f})" if r.get("estimate_s", 0.0) >= 0.05 else ""  # told: no estimate
        thick = _thickness(r.get("thickness_mm", []), r.get("thickness_estimator", []))
        stopped = {"time": " (stopped on time)", "mi": " (stopped by MI)"}.get(r.get("stopped_by", ""), "")
        lines.append(f"| {r['case']} | {r['protocol']} | {r['method']}{stopped} | {r['fit_s']:.1f}{est} | {r['render_s']:.1f} "
                     f"| {pts} | {r['rss_gb']:.2f} | {thick} | {q} | {gain} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="brats,msseg")
    ap.add_argument("--protocols", default="slab,point,point-untold,slab-untold,gap-untold",
                    help="protocols of cases.py; '-untold': no sidecar, the fit estimates the slice thickness "
                         "(the paper preset's point profile has none, so it is not run there)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--paper-budget", type=float, default=120.0, help="seconds of training for the paper preset")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="bench_out", help="cache of simulated stacks and per-run results")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"),
                    help="folder of bench.md and bench.json")
    ap.add_argument("--fresh", action="store_true", help="recompute runs whose results are cached")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_method(json.loads(args.worker))))
        return
    root, out = data_root(), Path(args.out)
    device = str(resolve_device(args.device))
    rows = []
    for case_name in args.cases.split(","):
        case = CASES[case_name]
        for protocol in args.protocols.split(","):
            paths = prepare(case, protocol, args.factor, root, out / "cache")
            results: dict[str, dict] = {}
            for method in args.methods.split(","):
                if method == "paper" and protocol.endswith("-untold"):
                    continue
                tag = "" if method == "cubic" else "_" + config_tag(method_config(method, device, args.paper_budget))
                cached = out / "runs" / f"{case_name}_{protocol}_{method}_{device}{tag}.json"
                if cached.exists() and not args.fresh:
                    results[method] = json.loads(cached.read_text())
                else:
                    spec = {"paths": paths, "method": method, "device": device, "paper_budget": args.paper_budget}
                    print(f"… {case_name} {protocol} {method}", file=sys.stderr, flush=True)
                    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                          capture_output=True, text=True)
                    if proc.returncode:
                        sys.exit(f"error: {case_name} {protocol} {method} failed:\n{proc.stderr[-2000:]}")
                    results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_text(json.dumps(results[method], indent=1))
            paper50 = results.get("paper", {}).get("epoch50_s")
            for method, r in results.items():
                rows.append({**r, "case": case_name, "protocol": protocol, "method": method,
                             "contrasts": list(dict.fromkeys(c for c, _, _ in case.contrasts)),
                             "cubic": results.get("cubic", r),
                             "paper_epoch50_s": paper50})
    gpu = f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""
    header = (f"inrsr bench — {time.strftime('%Y-%m-%d')}, {machine_name()}, "
              f"{torch.get_num_threads()} threads, device {device}{gpu}, torch {torch.__version__}, "
              f"paper budget {args.paper_budget:.0f} s, factor {args.factor}")
    text = header + "\n\n" + _table(rows) + "\n"
    print(text)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench.md").write_text(text)
    (results / "bench.json").write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
