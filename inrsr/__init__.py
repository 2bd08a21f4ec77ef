"""inrsr: single-subject multi-contrast MRI super-resolution with implicit neural representations.

``inrsr.fit_stacks`` (see :mod:`inrsr.api`) fits a subject's stacks from Python; it is imported on
first use, so that ``import inrsr`` and the command line stay quick.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "fit_stacks", "FitOutput"]


def __getattr__(name: str) -> Any:
    if name in ("fit_stacks", "FitOutput"):
        from inrsr import api

        return getattr(api, name)
    raise AttributeError(f"module 'inrsr' has no attribute {name!r}")
