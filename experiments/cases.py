"""The shared evaluation cases: where the data is, how thick-slice stacks are simulated from it.

Used by the benchmark (``bench.py``) and the paper experiments. Data are read from
``$INRSR_DATA`` or ``../shared/data`` beside the repository; a missing folder is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from inrsr.config import RUN_ONLY_OPTIONS, preset
from inrsr.fit import crossings, thickness
from inrsr.io.files import sidecar_path, write_thickness_sidecar
from inrsr.io.nifti import HeaderCodes, load_image, save_nifti
from inrsr.acquisition.simulate import simulate_stack, simulated_thickness_mm, view_axis
from inrsr.samples.training_set import stack_foregrounds

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "INRSR_DATA"


@dataclass(frozen=True)
class Protocol:
    """How a protocol simulates its thick stacks: the slice ``profile``, the slice thickness as a
    fraction of the spacing (``None``: the simulator's default, one source voxel for ``point``, the
    spacing for ``box``) and whether a BIDS sidecar tells the fit that thickness (``told``)."""

    profile: str
    thickness_fraction: float | None = None
    told: bool = True


# point: the paper's (cubic-spline values at the thick voxels' centres); slab: 4 mm boxes; gap:
# 2 mm boxes 4 mm apart. "-untold": the same stacks without a sidecar, so the fit estimates the thickness.
PROTOCOLS = {
    "point": Protocol("point"), "slab": Protocol("box"), "gap": Protocol("box", 0.5),
    "point-untold": Protocol("point", told=False), "slab-untold": Protocol("box", told=False),
    "gap-untold": Protocol("box", 0.5, told=False),
}


@dataclass(frozen=True)
class Case:
    """One subject: per contrast, the isotropic truth file and the view its thick stack is taken in."""

    name: str
    folder: str
    contrasts: tuple[tuple[str, str, str], ...]  # (contrast, truth file, view)

    def truth_path(self, root: Path, contrast: str) -> Path:
        return root / self.folder / dict((c, f) for c, f, _ in self.contrasts)[contrast]


CASES = {
    # The paper's BraTS experiment: T1 (post-contrast) axial + T2 coronal.
    "brats": Case("brats", "brats_gli_00001", (("t1", "t1c.nii.gz", "axial"), ("t2", "t2w.nii.gz", "coronal"))),
    # MSSEG-like: T1 coronal (its truth is sharp in-plane and along A–P) + FLAIR axial.
    "msseg": Case("msseg", "open_ms/patient07", (("t1", "t1.nii.gz", "coronal"), ("flair", "flair.nii.gz", "axial"))),
    # A third pair from the same subject: T2 coronal + FLAIR axial.
    "msseg_t2": Case("msseg_t2", "open_ms/patient07", (("t2", "t2.nii.gz", "coronal"), ("flair", "flair.nii.gz", "axial"))),
    # One contrast in two views (its slice thickness is judged where the slices cross, without a
    # fit): BraTS t2w and the MS T1, each axial + coronal. Their cubic baseline is the mean of the
    # two stacks' interpolations, as the cubic base averages a contrast's stacks.
    "brats_t2w": Case("brats_t2w", "brats_gli_00001", (("t2", "t2w.nii.gz", "axial"), ("t2", "t2w.nii.gz", "coronal"))),
    "msseg_t1": Case("msseg_t1", "open_ms/patient07", (("t1", "t1.nii.gz", "axial"), ("t1", "t1.nii.gz", "coronal"))),
    # The two-contrast pairs with a sagittal stack instead of the coronal one (slice normal along
    # L–R, the world axis the learned thickness estimate treats apart): for the thickness bench.
    "brats_sag": Case("brats_sag", "brats_gli_00001", (("t1", "t1c.nii.gz", "axial"), ("t2", "t2w.nii.gz", "sagittal"))),
    "msseg_sag": Case("msseg_sag", "open_ms/patient07", (("t1", "t1.nii.gz", "sagittal"), ("flair", "flair.nii.gz", "axial"))),
}


# The cases with one stack per contrast, of two contrasts, in the paper's views (axial and
# coronal): the paper's experiments compare the two.
TWO_CONTRAST_CASES = tuple(name for name, case in CASES.items()
                           if len({c for c, _, _ in case.contrasts}) == len(case.contrasts) == 2
                           and all(view != "sagittal" for _, _, view in case.contrasts))


def machine_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else the architecture: the tables' timings
    depend on it, and the machine that runs them is not always the same."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def data_root() -> Path:
    """The shared data folder; exits with one line when it is missing."""
    root = Path(os.environ.get(DATA_ENV, REPO.parent / "shared" / "data"))
    if not (root / "brats_gli_00001").is_dir():
        sys.exit(f"error: shared data not found at {root} (set {DATA_ENV})")
    return root


def load_volume(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Data (float32) and affine of a NIfTI file, validated by :func:`inrsr.io.nifti.load_image`."""
    data, img = load_image(path)
    return data, np.asarray(img.affine, dtype=np.float64)


def brain_mask(truth: np.ndarray) -> np.ndarray:
    """Evaluation mask: voxels above 1 % of the truth's 99.5th percentile (skull-stripped truths)."""
    return truth > 0.01 * np.percentile(truth[truth > 0], 99.5)


def prepare(case: Case, protocol: str, factor: int, root: Path, cache: Path) -> dict:
    """Simulate each thick stack of ``case`` (cached on disk); return the paths of its stacks
    (``stack_list``: ``[contrast, path]`` in the case's order; ``stacks``: by contrast, for cases
    with one stack per contrast), of each contrast's truth and of the brain mask."""
    folder = cache / f"{case.name}_{protocol}_x{factor}"
    folder.mkdir(parents=True, exist_ok=True)
    proto = PROTOCOLS[protocol]
    width = None if proto.thickness_fraction is None else proto.thickness_fraction * factor
    stack_list, truths = [], {}
    for contrast, fname, view in case.contrasts:
        src = root / case.folder / fname
        truths[contrast] = str(src)
        out = folder / f"{contrast}_{view}.nii.gz"
        img = nib.load(str(src))
        axis = view_axis(img.affine, view)
        if not out.exists():
            data = np.asarray(img.dataobj, dtype=np.float32)
            lo, aff = simulate_stack(data, img.affine, axis, factor, proto.profile, width)
            save_nifti(lo, aff, out, HeaderCodes.from_header(img.header))
        sidecar = sidecar_path(out)
        if proto.told:  # the BIDS sidecar a scanner would write: point samples are thin slices with gaps
            write_thickness_sidecar(out, simulated_thickness_mm(img.affine, axis, factor, proto.profile, width))
        elif sidecar.exists():
            sidecar.unlink()
        stack_list.append([contrast, str(out)])
    mask_path = folder / "mask.nii.gz"
    if not mask_path.exists():
        first = root / case.folder / case.contrasts[0][1]
        img = nib.load(str(first))
        mask = brain_mask(np.asarray(img.dataobj, dtype=np.float32)).astype(np.float32)
        save_nifti(mask, img.affine, mask_path, HeaderCodes.from_header(img.header))
    paths = {"stack_list": stack_list, "truths": truths, "mask": str(mask_path), "ref": truths[case.contrasts[0][0]]}
    if len(truths) == len(stack_list):
        paths["stacks"] = dict(stack_list)
    return paths


def config_tag(config) -> str:
    """Eight hex digits that change whenever a fit's result may: part of the name of a cached run,
    so that a changed preset is not answered from the cache. They cover the configuration (less
    :data:`~inrsr.config.RUN_ONLY_OPTIONS`) and what a thickness estimate under it depends on, so
    that the runs without a given thickness follow the estimator (told runs are renamed with them)."""
    return _tag({**_result_options(config), "thickness_estimator": _estimator_fingerprint(config)})


def estimated_stacks(stacks: list, config) -> tuple[list, list[np.ndarray], float, float]:
    """``stacks`` with their thickness estimated where no sidecar tells it, as ``inrsr fit`` does:
    each stack's foreground found once, for the estimate and the training set after it. Returns
    the stacks, the foregrounds, and the seconds the foregrounds and the estimate took."""
    t0 = time.perf_counter()
    foregrounds = stack_foregrounds(stacks)
    t1 = time.perf_counter()
    stacks = thickness.with_thickness_estimates(stacks, config, foregrounds=foregrounds)
    return stacks, foregrounds, t1 - t0, time.perf_counter() - t1


def estimator_tag() -> str:
    """Eight hex digits of what the ``default`` preset's thickness estimate depends on: part of the
    name of a cached baseline run that estimates the thickness (SMORE without a given one)."""
    return _tag(_estimator_fingerprint(preset("default")))


def _result_options(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in RUN_ONLY_OPTIONS}


def _estimator_fingerprint(config) -> dict:
    """The estimating fit's options under ``config`` and the estimators' module constants (the
    learned estimate's and the crossing judge's)."""
    constants = {f"{m.__name__}.{k}": v for m in (thickness, crossings) for k, v in vars(m).items()
                 if k.isupper() and isinstance(v, (int, float))}
    return {"fit": _result_options(thickness.estimation_config(config)), "constants": constants}


def _tag(obj: dict) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]
