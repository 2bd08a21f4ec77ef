"""What the GPU scripts (``gpu_check.py``, ``eclare.py``) share: wheels copied to a machine
without network, installed into a temporary folder; the data copied beside them; and the output a
child process printed before its time ran out."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_DATA = REPO / ".gpu_data"  # what make gpu-check-prepare copies from the shared data


def install_wheels(wheels: list[Path]) -> str:
    """Install ``wheels`` (without their dependencies: the machine's own torch, numpy, scipy are
    used) into a new temporary folder, put it first on ``sys.path``, and return it."""
    target = tempfile.mkdtemp(prefix="inrsr-site-")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--target", target, *map(str, wheels)], check=True)
    sys.path.insert(0, target)
    return target


def use_carried_data(env: dict[str, str]) -> None:
    """Point ``INRSR_DATA`` in ``env`` at the carried ``.gpu_data/`` when it exists and none is set."""
    if GPU_DATA.is_dir() and "INRSR_DATA" not in env:
        env["INRSR_DATA"] = str(GPU_DATA)


def output_so_far(exc: subprocess.TimeoutExpired) -> str:
    """What a child stopped by its timeout had printed (stdout, then stderr)."""
    return "".join(p.decode(errors="replace") if isinstance(p, bytes) else p or "" for p in (exc.stdout, exc.stderr))
