"""ECLARE, the SMORE authors' successor, on the shared BraTS slab stacks (``make eclare``, on a GPU).

ECLARE (Remedios et al.; ``pip install eclare``, command ``run-eclare``) is GPL-3, so it is never
imported by inrsr: its wheel and its pure-Python dependencies (``make eclare-prepare`` puts them in
``.whl/eclare/``) are installed into a temporary folder and it runs as a separate program. For each
thick stack of the BraTS case (t1c axial and t2w coronal, 4 mm slabs 4 mm apart, simulated as
``make bench`` does) it runs twice at its default budget: with its own slice-profile estimate
(ESPRESO) and told the true profile (a 4-voxel boxcar). Its output is resampled (cubic B-spline)
onto the 1 mm truth grid and scored with the same PSNR/SSIM inside the brain as every other
method, beside cubic interpolation of the same stack.

Each run is written to ``eclare.json`` and ``eclare.md`` under ``--out`` as soon as it ends; runs
that the time left before ``--deadline`` cannot hold are listed as not run. ``--rehearse`` runs
the true-profile runs only, on the CPU, with ``--n-patches 256`` (two steps), to try the
plumbing where no GPU is present; its scores mean nothing.

    python3 experiments/eclare.py [--out DIR] [--deadline SECONDS] [--rehearse]
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

from carried import REPO, install_wheels, output_so_far, use_carried_data  # beside this script

WHEELS = REPO / ".whl" / "eclare"
# ECLARE's slice thickness is given relative to the in-plane voxel: a 4 mm slab over 1 mm voxels.
TRUE_THICKNESS = 4.0
TRUE_PROFILE = "boxcar"
MARGIN_S = 20.0


def site_with_wheels() -> str:
    """ECLARE and the wheels beside it installed into a temporary folder (:func:`carried.install_wheels`)."""
    wheels = sorted(WHEELS.glob("*.whl")) + sorted(WHEELS.parent.glob("nibabel-*.whl"))
    if not any(w.name.startswith("eclare-") for w in wheels):
        sys.exit(f"eclare: error: no ECLARE wheel in {WHEELS} (run make eclare-prepare where pip can reach PyPI)")
    return install_wheels(wheels)


def run_one(stack: str, out_dir: Path, told: bool, gpu: bool, n_patches: int | None, site: str,
            timeout_s: float) -> dict:
    """One ECLARE run on ``stack``; its output file, seconds and the end of its log."""
    args = ["--in-fpath", stack, "--out-dir", str(out_dir), "--gpu-id", "0" if gpu else "-1"]
    if told:
        args += ["--relative-slice-thickness", str(TRUE_THICKNESS), "--relative-slice-profile-type", TRUE_PROFILE]
    if n_patches:
        args += ["--n-patches", str(n_patches)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-c", "import sys; from eclare.main import main; main(sys.argv[1:])", *args]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        code, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, log = -1, f"{output_so_far(exc)}\nstopped after {timeout_s:.0f} s"
    outputs = sorted(out_dir.glob("*_eclare.nii*"))
    return {"seconds": round(time.perf_counter() - t0, 1), "returncode": code,
            "output": str(outputs[0]) if outputs and code == 0 else None, "log_tail": log[-1500:]}


def score(output: str, truth: str, mask: str) -> dict:
    """PSNR/SSIM inside the brain of ``output`` resampled (cubic) onto ``truth``'s grid."""
    from cases import load_volume

    from inrsr.baselines.interpolate import interpolate_to_grid
    from inrsr.evaluate.metrics import evaluate
    from inrsr.geometry import Grid

    truth_data, truth_affine = load_volume(truth)
    data, affine = load_volume(output)
    volume = interpolate_to_grid(data, affine, Grid(truth_data.shape, truth_affine), 3)
    m = evaluate(volume, truth_data, load_volume(mask)[0] > 0.5)
    return {"psnr": m["psnr"], "ssim": m["ssim"]}


def table(rows: list[dict], header: str) -> str:
    lines = [header, "", "| stack | slice profile | seconds | PSNR / SSIM | cubic PSNR / SSIM | gain over cubic, dB |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        got = f"{r['psnr']:.2f} / {r['ssim']:.3f}" if "psnr" in r else r.get("status", "failed")
        gain = f"{r['psnr'] - r['cubic_psnr']:+.2f}" if "psnr" in r else "–"
        lines.append(f"| {r['contrast']} ({r['view']}) | {r['profile']} | {r.get('seconds', '–')} | {got} "
                     f"| {r['cubic_psnr']:.2f} / {r['cubic_ssim']:.3f} | {gain} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "experiments" / "results" / "gpu"))
    ap.add_argument("--deadline", type=float, default=560.0, help="seconds all the runs may take")
    ap.add_argument("--rehearse", action="store_true", help="true-profile runs only, on the CPU, two steps each")
    args = ap.parse_args()
    deadline = time.monotonic() + args.deadline
    use_carried_data(os.environ)
    sys.path.insert(0, str(REPO))
    site = site_with_wheels()  # also first on sys.path: nibabel, where the machine has none
    import torch
    from cases import CASES, data_root, load_volume, prepare

    from inrsr.baselines.interpolate import interpolate_to_grid
    from inrsr.evaluate.metrics import evaluate
    from inrsr.geometry import Grid

    gpu = torch.cuda.is_available() and not args.rehearse
    if not gpu and not args.rehearse:
        sys.exit("eclare: error: torch sees no CUDA device (its default budget takes about 40 h on 2 CPU cores; "
                 "--rehearse tries the plumbing)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="eclare-runs-"))
    case = CASES["brats"]
    paths = prepare(case, "slab", 4, data_root(), work / "cache")
    mask = load_volume(paths["mask"])[0] > 0.5
    rows = []
    header = (f"ECLARE on the BraTS slab stacks — {time.strftime('%Y-%m-%d')}, "
              f"{torch.cuda.get_device_name() if gpu else 'CPU rehearsal (scores mean nothing)'}, torch {torch.__version__}"
              f"{', n-patches 256' if args.rehearse else ', default budget'}")
    for contrast, _, view in case.contrasts:
        truth_data, truth_affine = load_volume(paths["truths"][contrast])
        stack_data, stack_affine = load_volume(paths["stacks"][contrast])
        cubic = evaluate(interpolate_to_grid(stack_data, stack_affine, Grid(truth_data.shape, truth_affine), 3),
                         truth_data, mask)
        for told in ((True,) if args.rehearse else (False, True)):
            row = {"contrast": contrast, "view": view, "profile": "true (boxcar, 4 voxels)" if told else "ESPRESO estimate",
                   "cubic_psnr": cubic["psnr"], "cubic_ssim": cubic["ssim"]}
            left = deadline - time.monotonic() - MARGIN_S
            if left < 60:
                row["status"] = f"not run ({left:.0f} s left)"
            else:
                run = run_one(paths["stacks"][contrast], work / f"{contrast}_{'told' if told else 'estimated'}", told,
                              gpu, 256 if args.rehearse else None, site, left)
                row.update(seconds=run["seconds"], returncode=run["returncode"], log_tail=run["log_tail"])
                if run["output"]:
                    row.update(score(run["output"], paths["truths"][contrast], paths["mask"]))
                else:
                    row["status"] = "failed" if run["returncode"] != -1 else "stopped on time"
            rows.append(row)
            (out / "eclare.json").write_text(json.dumps(rows, indent=1))
            (out / "eclare.md").write_text(table(rows, header))
            print(table(rows, header), flush=True)
    return 0 if all("psnr" in r or r.get("status", "").startswith(("not run", "stopped")) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
