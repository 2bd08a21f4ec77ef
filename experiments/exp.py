"""The paper's experiments (``make exp``): every method on every shared case and protocol.

Cases (``cases.py``): brats (t1c axial + t2w coronal), msseg (open_ms patient07 t1 coronal +
flair axial), msseg_t2 (t2 coronal + flair axial); protocols point, slab and point-untold (the point
protocol's stacks without a sidecar: the fit and SMORE estimate the slice thickness); factor 4.

Methods:

* ``cubic``   cubic B-spline interpolation of each stack (``inrsr baseline cubic``);
* ``smore``   our SMORE (``inrsr baseline smore``), each stack alone, ``--smore-budget`` s of training,
  given each protocol's true slice profile (slab: box of the 4 mm spacing; point: a 1 mm box), or
  a box of the width estimated from the stack when the protocol does not tell it;
* ``single``  the paper's network, one independent network per contrast (``--variant single``);
* ``vanilla`` the paper's network, shared trunk and one shared output layer (``--variant vanilla``);
* ``split``   the paper's model: shared trunk, one head per contrast (``--preset paper``);
* ``default`` our ``default`` preset.

``single``, ``vanilla`` and ``split`` use the ``paper`` preset's hyper-parameters with bfloat16
autocast (3× faster on this CPU) for ``--inr-budget`` seconds of training; ``EXP_FULL=1`` removes
the time limits (the paper's 50 epochs with MI early stopping, and SMORE's full iterations).

Every prediction is evaluated on the truth's grid inside the brain mask (truth > 1 % of its
99.5th percentile; the truths are skull-stripped, so they are ≈ 0 outside it). For every method,
voxels outside the mask are set to 0 before the metrics, so each method is judged on the same
voxels and the paper's min-max convention sees the same region for all; INR methods are
therefore rendered only inside the mask.

Each run is a separate process whose result is cached in ``OUT/cache/runs``: an interrupted
``make exp`` resumes where it stopped. Outputs in ``OUT``: ``results.csv``, ``results.json``,
``results.md`` (tables in the paper's layout) and ``figures/*.png``.

    python experiments/exp.py [--cases brats,msseg,msseg_t2] [--protocols point,slab] [--out experiments/results]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import map_coordinates

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import (CASES, TWO_CONTRAST_CASES, config_tag, data_root, estimated_stacks, estimator_tag,  # noqa: E402
                   load_volume, machine_name, prepare)

from inrsr.baselines.interpolate import interpolate_to_grid  # noqa: E402
from inrsr.config import preset  # noqa: E402
from inrsr.device import torch_threads  # noqa: E402
from inrsr.evaluate.metrics import evaluate, psnr  # noqa: E402
from inrsr.geometry import apply_affine, world_axis_of  # noqa: E402
from inrsr.io.grids import reference_grid  # noqa: E402
from inrsr.fit.thickness import single_stack_estimate_mm  # noqa: E402
from inrsr.io.stack import Stack, StackSpec, load_stacks  # noqa: E402
from inrsr.jobs.reconstruct import reconstruct, training_set  # noqa: E402
from inrsr.mi import mutual_information  # noqa: E402
from inrsr.render import render_grid  # noqa: E402

METHODS = ("cubic", "smore", "single", "vanilla", "split", "default")
# The methods that use a slice thickness, and so run on the protocols that do not tell it.
UNTOLD_METHODS = ("cubic", "smore", "default")
LABELS = {
    "cubic": "Cubic spline", "smore": "SMORE", "single": "Single-contrast INR", "vanilla": "MC vanilla MLP",
    "split": "MC split head (paper)", "default": "inrsr default",
}
PROBE_POINTS = 10_000  # brain voxels for the PSNR-vs-time curve
MI_BINS = 32


# ---------------------------------------------------------------------------------------------
# one run (inside a worker process)


class Probe:
    """PSNR on a fixed sample of brain voxels and MI between predicted contrasts, during a fit.

    Called after every step; evaluates at training times 1, 2, 4, 8 … s (doubling). Its own time is
    excluded from the fit's timings by :func:`inrsr.fit.loop.fit_field`.
    """

    def __init__(self, truths: dict[str, np.ndarray], mask: np.ndarray, affine: np.ndarray, subject, train,
                 precision: str, seed: int = 0):
        rng = np.random.default_rng(seed)
        ijk = np.argwhere(mask)
        ijk = ijk[rng.choice(len(ijk), min(PROBE_POINTS, len(ijk)), replace=False)]
        world = apply_affine(affine, ijk)
        self.x = torch.from_numpy(subject.normaliser(world).astype(np.float32))
        self.subject, self.mi_coords = subject, train.mi_coords  # the fit's own MI points
        self.ranges = {c: np.percentile(t[mask], [0.5, 99.5]) for c, t in truths.items()}
        self.truth = {c: t[tuple(ijk.T)] for c, t in truths.items()}
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
        self.next_s, self.curve = 1.0, []

    @torch.no_grad()
    def measure(self, step: int, seconds: float, model) -> dict:
        with self.autocast:
            pred = model(self.x).float().numpy()
            mi_pred = model(self.mi_coords).float().numpy()
        row = {"step": step, "seconds": seconds}
        for k, c in enumerate(model.contrasts):
            lo, hi = self.ranges[c]
            v = self.subject.scales[c].inverse(pred[:, k])
            row[f"psnr_{c}"] = psnr((v - lo) / (hi - lo), (self.truth[c] - lo) / (hi - lo))
        row["mi_pred"] = mutual_information(mi_pred[:, 0], mi_pred[:, 1], MI_BINS) if pred.shape[1] > 1 else None
        return row

    def __call__(self, step: int, seconds: float, model) -> None:
        if seconds >= self.next_s:
            self.curve.append(self.measure(step, seconds, model))
            while self.next_s <= seconds:
                self.next_s *= 2.0


def _truth_mi_at(coords: torch.Tensor, subject, truths: dict[str, np.ndarray], affine: np.ndarray) -> float:
    """MI between the two truths, trilinearly sampled at normalised ``coords`` (the fit's MI points)."""
    world = subject.normaliser.to_world(coords.numpy())
    vox = apply_affine(np.linalg.inv(affine), world).T
    a, b = (map_coordinates(truths[c], vox, order=1) for c in subject.contrasts[:2])
    return mutual_information(a, b, MI_BINS)


def _inr_config(method: str, spec: dict):
    if method == "default":
        return preset("default", threads=spec["threads"])
    budget = 0.0 if spec["full"] else spec["inr_budget"]
    return preset("paper", variant=method, precision="bf16", time_limit_s=budget, threads=spec["threads"])


def run_method(spec: dict) -> dict:
    """One method on one prepared case and protocol; returns metrics, timings and curves."""
    paths, method = spec["paths"], spec["method"]
    grid, _ = reference_grid(paths["ref"])
    truths = {c: load_volume(p)[0] for c, p in paths["truths"].items()}
    mask = load_volume(paths["mask"])[0] > 0.5
    out: dict = {"fit_s": 0.0, "render_s": 0.0}
    if method == "cubic":
        t0 = time.perf_counter()
        vols = {c: interpolate_to_grid(*load_volume(p), grid) for c, p in paths["stacks"].items()}
        out["render_s"] = time.perf_counter() - t0
    elif method == "smore":
        from inrsr.baselines.smore.config import SmoreConfig
        from inrsr.baselines.smore.run import smore_volume

        # The slice profile each protocol really has: a 4-slice box (slab), point samples (point), 2 mm
        # boxes (gap); untold, the box's width is estimated from each stack, as `inrsr baseline smore` does.
        profile = {"slab": {"profile": "box"}, "point": {"profile": "box", "thickness_mm": 1.0},
                   "gap": {"profile": "box", "thickness_mm": 2.0}}.get(spec["protocol"], {"profile": "box"})
        config = SmoreConfig(time_limit_s=0.0 if spec["full"] else spec["smore_budget"], threads=spec["threads"],
                             **profile)
        vols, info = {}, {}
        for c, p in paths["stacks"].items():
            data, affine = load_volume(p)
            run_config = config
            if spec["protocol"].endswith("-untold"):
                width = single_stack_estimate_mm(Stack(data, affine, c), "box", threads=spec["threads"])
                run_config = config.replace(thickness_mm=width)
            vols[c], info[c] = smore_volume(data, affine, grid, run_config)
        out["fit_s"] = sum(i["train_seconds"] for i in info.values())
        out["render_s"] = sum(i["infer_seconds"] for i in info.values())
        out["smore"] = info
    else:
        config = _inr_config(method, spec)
        stacks = load_stacks([StackSpec(c, p) for c, p in paths["stacks"].items()])
        stacks, foregrounds, foregrounds_s, out["estimate_s"] = estimated_stacks(stacks, config)
        out["thickness_mm"] = [s.slice_thickness_mm for s in stacks]
        t0 = time.perf_counter()
        subject, train = training_set(stacks, config, foregrounds=foregrounds)
        out["prepare_s"] = foregrounds_s + time.perf_counter() - t0
        probe = Probe(truths, mask, grid.affine, subject, train, config.precision)
        recon = reconstruct(stacks, config, prepared=(subject, train), callback=probe)
        res, consistent_s = recon.fit, recon.consistency_s
        with recon.field.without_correction():  # the probe's last point: the fit itself, as its others
            probe.curve.append(probe.measure(res.steps, res.seconds, recon.field))
        t0 = time.perf_counter()
        with torch_threads(config.threads):
            vols = render_grid(recon.field, grid, subject.normaliser, subject.scales, config.render_chunk, "cpu",
                               [(mask, grid.affine)], config.precision)
        out.update(
            render_s=time.perf_counter() - t0, fit_s=out["estimate_s"] + out["prepare_s"] + res.seconds + consistent_s,
            steps=res.steps, stopped_by=res.stopped_by,
            epochs=res.steps / res.steps_per_epoch, points_per_s=res.points_per_second,
            mi_curve=res.mi_curve, probe=probe.curve, config=config.to_dict(),
            truth_mi_points=_truth_mi_at(train.mi_coords, subject, truths, grid.affine),
        )
    contrasts = list(paths["truths"])
    for c in contrasts:
        v = np.where(mask, vols[c], 0.0).astype(np.float32)
        vols[c] = v
        for k, val in evaluate(v, truths[c], mask).items():
            out[f"{k}_{c}"] = val
    out["mi_pred"] = mutual_information(vols[contrasts[0]][mask], vols[contrasts[1]][mask], MI_BINS)
    out["mi_truth"] = mutual_information(truths[contrasts[0]][mask], truths[contrasts[1]][mask], MI_BINS)
    _save_planes(Path(spec["planes"]), vols, truths, mask, grid.affine)
    return out


def _save_planes(path: Path, vols: dict, truths: dict, mask: np.ndarray, affine: np.ndarray) -> None:
    """The three orthogonal planes (sagittal, coronal, axial) through the brain's centre, per contrast."""
    centre = np.round(np.argwhere(mask).mean(axis=0)).astype(int)
    axes = [world_axis_of(affine, w) for w in range(3)]  # array axis across L–R, A–P, S–I
    arrays = {}
    for c in vols:
        for name, vol in (("pred", vols[c]), ("truth", truths[c])):
            for w, a in enumerate(axes):
                arrays[f"{name}_{c}_{w}"] = np.take(vol, centre[a], axis=a).astype(np.float32)
    arrays["mask_axes"] = np.array(axes)
    for w, a in enumerate(axes):
        arrays[f"mask_{w}"] = np.take(mask, centre[a], axis=a)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


# ---------------------------------------------------------------------------------------------
# the driver


def _run_all(args: argparse.Namespace) -> list[dict]:
    root, out = data_root(), Path(args.out)
    cache = out / "cache"
    full = os.environ.get("EXP_FULL", "") == "1"
    for name in args.cases.split(","):
        if name not in TWO_CONTRAST_CASES:
            sys.exit(f"error: case {name!r}: exp.py compares two contrasts of one stack each, one of "
                     f"{', '.join(TWO_CONTRAST_CASES)} (a case of one contrast in two views runs in bench.py)")
    jobs = [(c, p, m) for c in args.cases.split(",") for p in args.protocols.split(",") for m in args.methods.split(",")
            if not p.endswith("-untold") or m in UNTOLD_METHODS]
    rows, t_start = [], time.perf_counter()
    for k, (case_name, protocol, method) in enumerate(jobs, 1):
        case = CASES[case_name]
        paths = prepare(case, protocol, args.factor, root, cache / "stacks")
        tag = f"{case_name}_{protocol}_{method}{'_full' if full else ''}"
        if method not in ("cubic", "smore"):
            tag += "_" + config_tag(_inr_config(method, {"full": full, "inr_budget": args.inr_budget,
                                                         "threads": args.threads}))
        elif method == "smore" and protocol.endswith("-untold"):
            tag += "_" + estimator_tag()
        run_file = cache / "runs" / f"{tag}.json"
        status = "cached"
        if not run_file.exists() or args.fresh:
            spec = {"paths": paths, "method": method, "protocol": protocol, "full": full, "inr_budget": args.inr_budget,
                    "smore_budget": args.smore_budget, "threads": args.threads,
                    "planes": str(cache / "planes" / f"{tag}.npz")}
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                                  text=True)
            if proc.returncode:
                sys.exit(f"error: {tag} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["wall_s"] = time.perf_counter() - t0
            run_file.parent.mkdir(parents=True, exist_ok=True)
            run_file.write_text(json.dumps(result, indent=1, default=float))
            status = f"{result['wall_s']:.0f} s"
        result = json.loads(run_file.read_text())
        contrasts = [c for c, _, _ in case.contrasts]
        q = "  ".join(f"{c} {result[f'psnr_{c}']:.2f} dB / {result[f'ssim_{c}']:.3f}" for c in contrasts)
        print(f"[{k:2d}/{len(jobs)}] {case_name:8s} {protocol:5s} {method:8s} {status:>7s}  {q}  "
              f"(elapsed {(time.perf_counter() - t_start) / 60:.1f} min)", file=sys.stderr, flush=True)
        rows.append({"case": case_name, "protocol": protocol, "method": method, "contrasts": contrasts,
                     "planes": str(cache / "planes" / f"{tag}.npz"), **result})
    return rows


def _csv_rows(rows: list[dict]) -> list[dict]:
    flat = []
    for r in rows:
        for i, c in enumerate(r["contrasts"]):
            flat.append({
                "case": r["case"], "protocol": r["protocol"], "method": r["method"], "contrast": c,
                "psnr": r[f"psnr_{c}"], "ssim": r[f"ssim_{c}"], "psnr_paper": r[f"psnr_paper_{c}"],
                "ssim_paper": r[f"ssim_paper_{c}"], "mi_pred_truth": r[f"mi_{c}"], "mi_between_pred": r["mi_pred"],
                "mi_between_truth": r["mi_truth"], "fit_s": r["fit_s"], "render_s": r["render_s"],
                "stopped_by": r.get("stopped_by", ""), "epochs": r.get("epochs", ""),
            })
    return flat


def _tables(rows: list[dict], header: str) -> str:
    """Markdown tables in the paper's layout: methods as rows, per case PSNR / SSIM per contrast and MI."""
    by = {(r["case"], r["protocol"], r["method"]): r for r in rows}
    cases = list(dict.fromkeys(r["case"] for r in rows))
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    parts = [header]
    for title, ps, ss in (("PSNR (dB) / SSIM inside the brain, truth's robust range", "psnr", "ssim"),
                          ("Paper convention (each volume min-max normalised, background 0, whole volume)",
                           "psnr_paper", "ssim_paper")):
        for protocol in protocols:
            cols, head2 = [], []
            for case in cases:
                some = next(r for r in rows if r["case"] == case)
                for c in some["contrasts"]:
                    cols.append((case, c))
                    head2.append(f"{case} {c}")
                cols.append((case, "mi"))
                head2.append(f"{case} MI (truth {some['mi_truth']:.3f})")
            lines = [f"\n### {title} — {protocol} protocol\n", "| method | " + " | ".join(head2) + " | fit + render s |",
                     "|---" * (len(cols) + 2) + "|"]
            for m in methods:
                cells, secs = [], []
                for case, c in cols:
                    r = by.get((case, protocol, m))
                    if r is None:
                        cells.append("–")
                        continue
                    if c == "mi":
                        cells.append(f"{r['mi_pred']:.3f}")
                        secs.append(r["fit_s"] + r["render_s"])
                        continue
                    gain = r[f"{ps}_{c}"] - by[(case, protocol, "cubic")][f"{ps}_{c}"] if (case, protocol, "cubic") in by else 0
                    mark = "" if m == "cubic" else f" ({gain:+.2f})"
                    cells.append(f"{r[f'{ps}_{c}']:.2f}{mark} / {r[f'{ss}_{c}']:.3f}")
                lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + f" | {' / '.join(f'{s:.0f}' for s in secs)} |")
            parts += lines
    return "\n".join(parts) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(TWO_CONTRAST_CASES),
                    help="cases of cases.py with two contrasts, one stack each")
    ap.add_argument("--protocols", default="point,slab,point-untold",
                    help="protocols of cases.py; '-untold': no sidecar, so the methods estimate the slice thickness "
                         "(only cubic, smore and default run there: the paper's point profile has no thickness)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--inr-budget", type=float, default=20.0,
                    help="training seconds of the paper-network methods (single, vanilla, split)")
    ap.add_argument("--smore-budget", type=float, default=45.0, help="training seconds of SMORE per stack")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--fresh", action="store_true", help="recompute runs whose results are cached")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_method(json.loads(args.worker)), default=float))
        return
    from figures import plot_mi_curves, plot_psnr_vs_time, plot_views

    out = Path(args.out)
    rows = _run_all(args)
    full = os.environ.get("EXP_FULL", "") == "1"
    budget = ("full budget (EXP_FULL=1)" if full else
              f"CPU budget: paper-network methods {args.inr_budget:.0f} s of training (bf16), SMORE "
              f"{args.smore_budget:.0f} s per stack")
    header = (f"# inrsr experiments — {time.strftime('%Y-%m-%d')}\n\n`make exp` on {machine_name()}, "
              f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}, factor {args.factor}; {budget}. "
              "Gain over cubic in brackets. MI: between the two predicted contrasts inside the brain (nats); "
              "the truths' MI is in the column header.")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as fh:
        flat = _csv_rows(rows)
        writer = csv.DictWriter(fh, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    (out / "results.json").write_text(json.dumps(rows, indent=1, default=float))
    text = _tables(rows, header)
    (out / "results.md").write_text(text)
    for case in dict.fromkeys(r["case"] for r in rows):
        for protocol in dict.fromkeys(r["protocol"] for r in rows):
            sel = [r for r in rows if r["case"] == case and r["protocol"] == protocol]
            for c in sel[0]["contrasts"]:
                plot_views(sel, c, LABELS, out / "figures" / f"views_{case}_{protocol}_{c}.png")
    plot_mi_curves(rows, LABELS, out / "figures" / "mi_curves.png")
    plot_psnr_vs_time(rows, LABELS, out / "figures" / "psnr_vs_time.png")
    print(text)


if __name__ == "__main__":
    main()
