"""Demonstration on real clinical stacks: open_ms_raw/patient01 (FLAIR, T1W, T2W; all axial, on
different grids, not skull-stripped, slightly misregistered; no isotropic truth).

Fits the `default` preset with and without ``--register`` (FLAIR fixed) through the CLI, each in
its own process (peak RSS per fit), runs ``inrsr check`` on both (self-consistency per stack;
``--holdout N`` adds the left-out-slice estimate against cubic for the registered fit), compares
the recovered transforms with the data set's own ITK transforms, and draws the three inputs
next to the isotropic outputs in three planes. Each fit's report.html is photographed in a
headless Chromium (its head, its support section and, registered, its registration section).

Writes ``experiments/results/patient01.{json,md,png}`` and ``experiments/results/report/patient01_*.png``;
fits go to ``experiments/results/cache``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cases import data_root, load_volume  # noqa: E402
from experiments.report_screenshots import screenshots  # noqa: E402
from inrsr.baselines.interpolate import interpolate_to_grid  # noqa: E402
from inrsr.geometry import Grid, apply_affine, rigid_error  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
INRSR = [sys.executable, "-m", "inrsr.cli"]
STACKS = (("flair", "study1_FLAIR.nii.gz"), ("t1", "study1_T1W.nii.gz"), ("t2", "study1_T2W.nii.gz"))
ITK = {"t1": "study1_T1W_intrastudy_to_FLAIR.txt", "t2": "study1_T2W_intrastudy_to_FLAIR.txt"}
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # ITK's physical frame (LPS) ↔ NIfTI world (RAS)


def itk_to_world(path: Path) -> np.ndarray:
    """An ITK MatrixOffsetTransform file (fixed → moving, LPS mm) as a 4×4 RAS world map."""
    fields = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    p = np.array(fields["Parameters"].split(), dtype=np.float64)
    c = np.array(fields["FixedParameters"].split(), dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = p[:9].reshape(3, 3)
    m[:3, 3] = c + p[9:12] - m[:3, :3] @ c
    return LPS @ m @ LPS


def rigid_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 4×4 rigid map that best sends points ``source`` onto ``target`` (least squares, Kabsch)."""
    cs, ct = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - cs).T @ (target - ct))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, ct - rot @ cs
    return m


def slice_spacing_mm(stack: dict) -> float:
    """A logged stack's slice spacing (mm): the length of its affine's slice-axis column."""
    return float(np.linalg.norm(np.asarray(stack["affine"])[:3, stack["slice_axis"]]))


def run(args: list[str]) -> float:
    """Run one inrsr command; return its wall time (s). Fails loudly."""
    t0 = time.perf_counter()
    subprocess.run(INRSR + args, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=float, default=1.0, help="output spacing, mm")
    ap.add_argument("--holdout", type=int, default=0, help="left-out slice estimate for the registered fit (slow)")
    ap.add_argument("--reuse", action="store_true", help="reuse completed fits of an earlier run (checks rerun)")
    args = ap.parse_args()
    folder = data_root() / "open_ms_raw" / "patient01"
    cache = RESULTS / "cache" / "patient01"
    stack_args = [a for c, f in STACKS for a in ("--stack", f"{c}={folder / f}")]
    report: dict = {"resolution_mm": args.resolution, "runs": {}}
    for name, extra in (("plain", []), ("registered", ["--register"])):
        out = cache / name
        if args.reuse and (out / "log.json").is_file() and not (out / "fit_state.pt").exists():
            seconds, rss_gb = float("nan"), float("nan")  # not measured again
        else:
            seconds = run(["fit", *stack_args, "-o", str(out), "--resolution", str(args.resolution), "--overwrite",
                           "--quiet", *extra])
            rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        check = cache / f"{name}_check.json"
        holdout = ["--holdout", str(args.holdout)] if name == "registered" and args.holdout else []
        run(["check", "--model", str(out / "model.pt"), "-o", str(check), "--overwrite", "--quiet", *holdout])
        log = json.loads((out / "log.json").read_text())
        report["runs"][name] = {
            "wall_s": seconds, "fit_s": log["seconds"]["fit"], "render_s": log["seconds"]["render"],
            "peak_rss_gb_so_far": rss_gb, "steps": log["steps"], "grid": log["grid"]["shape"],
            "check": json.loads(check.read_text())["stacks"], "transforms": log["transforms"],
            "support": log["support"], "report_s": log["seconds"]["report"],
            "thickness_estimate_s": log["seconds"].get("thickness_estimate"),
            "thickness": [{k: st.get(k) for k in ("path", "thickness_mm", "thickness_source", "estimated_thickness_mm")}
                          | {"spacing_mm": slice_spacing_mm(st)} for st in log["stacks"]],
        }
        (RESULTS / "report").mkdir(parents=True, exist_ok=True)
        screenshots(out / "report.html", RESULTS / "report" / f"patient01_{name}", top=True,
                    section_ids=["support", "volumes"] + (["registration"] if extra else []))
        print(name, f"{seconds:.0f} s, peak RSS {rss_gb:.2f} GB", flush=True)
    # agreement of the recovered transforms with the data set's own (affine, FLAIR fixed) ones
    stacks = {c: load_volume(str(folder / f)) for c, f in STACKS}
    agreement = {}
    for k, (c, _) in enumerate(STACKS[1:], start=1):
        ours = np.asarray(report["runs"]["registered"]["transforms"][k]["matrix_mm"])
        data, affine = stacks[c]
        fg = np.argwhere(data > np.percentile(data, 75))[::97]
        pts = apply_affine(affine, fg)
        # moving header → FLAIR frame; the data set's maps are affine (scales up to 1.6 %): compare
        # with their best rigid fit on the stack's bright voxels
        theirs = rigid_fit(pts, apply_affine(np.linalg.inv(itk_to_world(folder / ITK[c])), pts))
        agreement[c] = {
            "ours_vs_theirs": dict(zip(("mean_mm", "angle_deg"), rigid_error(ours, theirs, pts))),
            "identity_vs_theirs": dict(zip(("mean_mm", "angle_deg"), rigid_error(np.eye(4), theirs, pts))),
        }
    report["agreement_with_dataset_transforms"] = agreement
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "patient01.json").write_text(json.dumps(report, indent=2, default=float))
    figure(report, stacks, cache / "registered", RESULTS / "patient01.png")
    (RESULTS / "patient01.md").write_text(table(report) + "\n")
    print(table(report))


def table(report: dict) -> str:
    lines = ["| run | stack | self-consistency PSNR dB / corr | left out: INR vs cubic PSNR dB |", "|---|---|---|---|"]
    for name, run_ in report["runs"].items():
        for row in run_["check"]:
            lo = row.get("left_out")
            held = f"{lo['inr']['psnr']:.2f} vs {lo['cubic']['psnr']:.2f}" if lo and "cubic" in lo else "–"
            lines.append(f"| {name} | {Path(row['path']).name} | {row['self']['psnr']:.2f} / {row['self']['corr']:.3f} "
                         f"| {held} |")
    lines += ["", "| run | fit s | render s | report s | grid | peak RSS GB (max so far) |", "|---|---|---|---|---|---|"]
    for name, run_ in report["runs"].items():
        lines.append(f"| {name} | {run_['fit_s']:.0f} | {run_['render_s']:.0f} | {run_['report_s']:.1f} "
                     f"| {'×'.join(map(str, run_['grid']))} | {run_['peak_rss_gb_so_far']:.2f} |")
    lines += ["", "Slice thickness (no sidecar: each stack's is estimated; the header gives only the slice spacing)", "",
              "| run | stack | slice spacing mm (header) | estimated mm | used mm | estimate s |", "|---|---|---|---|---|---|"]
    for name, run_ in report["runs"].items():
        for t in run_["thickness"]:
            est = t["estimated_thickness_mm"]
            lines.append(f"| {name} | {Path(t['path']).name} | {t['spacing_mm']:.2f} | {'–' if est is None else f'{est:.2f}'} "
                         f"| {t['thickness_mm']:.2f} ({t['thickness_source']}) | {run_['thickness_estimate_s'] or 0:.0f} |")
    lines += ["", "Support (report.html): distance from the output voxels inside the stacks' foregrounds to the nearest "
              "voxel of each contrast that measured them", "",
              "| run | contrast | median mm | 95th percentile mm | beyond 1 mm | beyond 5 mm |", "|---|---|---|---|---|---|"]
    for name, run_ in report["runs"].items():
        for c, sup in run_["support"].items():
            lines.append(f"| {name} | {c} | {sup['median_mm']:.2f} | {sup['p95_mm']:.2f} | "
                         f"{100 * sup['beyond_1mm']:.1f} % | {100 * sup['beyond_5mm']:.1f} % |")
    lines += ["", "| stack | recovered vs data set's transform | no transform vs data set's |", "|---|---|---|"]
    for c, a in report["agreement_with_dataset_transforms"].items():
        o, i = a["ours_vs_theirs"], a["identity_vs_theirs"]
        lines.append(f"| {c} | {o['mean_mm']:.2f} mm / {o['angle_deg']:.2f}° | {i['mean_mm']:.2f} mm / {i['angle_deg']:.2f}° |")
    return "\n".join(lines)


def figure(report: dict, stacks: dict, out_dir: Path, path: Path) -> None:
    """Inputs (nearest-neighbour on the output grid: the acquisition as it is) above the outputs,
    in the middle axial, coronal and sagittal planes."""
    first = load_volume(str(out_dir / "flair.nii.gz"))
    grid = Grid(first[0].shape, first[1])
    centre = [n // 2 for n in grid.shape]
    names = [c for c, _ in STACKS]
    fig, axes = plt.subplots(6, 3, figsize=(9, 18))
    for col, c in enumerate(names):
        inp = interpolate_to_grid(*stacks[c], grid, order=0)
        outp = load_volume(str(out_dir / f"{c}.nii.gz"))[0]
        for block, (vol, label) in enumerate(((inp, "input"), (outp, "inrsr"))):
            lo, hi = np.percentile(vol, [1, 99.5])
            for plane in range(3):
                sl = np.take(vol, centre[2 - plane], axis=2 - plane)
                ax = axes[block * 3 + plane, col]
                ax.imshow(np.rot90(sl), cmap="gray", vmin=lo, vmax=hi)
                ax.set_axis_off()
                ax.set_title(f"{c} {label}, {('axial', 'coronal', 'sagittal')[plane]}", fontsize=8)
    fig.suptitle(f"open_ms_raw/patient01: thick axial inputs (top) and isotropic {report['resolution_mm']} mm "
                 "outputs with --register (bottom)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
