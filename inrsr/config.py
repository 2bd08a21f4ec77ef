"""The fit configuration: one typed dataclass; presets are instances of it.

Every field is also a ``inrsr fit`` option (``--field-name``); the field's ``help`` metadata is the
option's help text, so ``--help`` and this file cannot disagree. :class:`ToolConfig` holds what
every tool's configuration shares (SMORE's too): option names, copies, dicts and range checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from inrsr.errors import InputError

__all__ = ["ToolConfig", "FitConfig", "PRESETS", "preset", "fit_config", "read_config_file", "option_assignments",
           "VARIANTS", "SCHEDULES",
           "SLICE_PROFILES", "RUN_ONLY_OPTIONS", "option_field", "option_name", "check_choices"]

VARIANTS = ("split", "vanilla", "single")
SCHEDULES = ("cosine", "cosine-epoch", "constant")
ENCODINGS = ("fourier", "hash")
BACKENDS = ("auto", "torch", "native", "tcnn")
SLICE_PROFILES = ("point", "box", "gaussian")  # the one list of slice-profile names (inrsr.acquisition.profiles)
PRECISIONS = ("fp32", "bf16")
BASES = ("none", "cubic", "auto")
THICKNESS_ESTIMATES = ("auto", "always", "off")
# Options that say how a fit is run, not what it computes: neither its optimisation nor its outputs
# depend on them (resuming may change them; the experiments' run cache ignores them).
RUN_ONLY_OPTIONS = ("render_chunk", "checkpoint_every_s")


def option_field(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field whose ``help`` (and ``choices``) metadata become a CLI option's help text."""
    meta = {"help": help}
    if choices:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


def option_name(config: Any, name: str) -> str:
    """The command-line option of field ``name`` of a config dataclass: ``--some-name`` for
    ``some_name``, unless the class's ``OPTION_NAMES`` names it otherwise."""
    return getattr(config, "OPTION_NAMES", {}).get(name, "--" + name.replace("_", "-"))


def check_choices(config: Any) -> None:
    """Raise :class:`InputError` for the first field of a config dataclass outside its ``choices``."""
    for f in fields(config):
        choices = f.metadata.get("choices")
        if choices and getattr(config, f.name) not in choices:
            raise InputError(f"{option_name(config, f.name)} must be one of {', '.join(choices)}")


class ToolConfig:
    """Base of the configuration dataclasses: copies, dicts and range checks whose messages name
    each field's command-line option (:func:`option_name`, with :attr:`OPTION_NAMES`)."""

    OPTION_NAMES: ClassVar[dict[str, str]] = {}

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Any:
        """An instance from a dict, ignoring keys that are not fields (e.g. from a newer version)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def check_finite(self) -> None:
        """:class:`InputError` naming the first numeric field that is NaN or infinite."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{option_name(self, f.name)} must be a finite number, got {value}")

    def check_positive(self, names: tuple[str, ...]) -> None:
        """:class:`InputError` naming the first of ``names`` that is not above 0."""
        for name in names:
            if not getattr(self, name) > 0:
                raise InputError(f"{option_name(self, name)} must be positive, got {getattr(self, name)}")

    def check_non_negative(self, names: tuple[str, ...]) -> None:
        """:class:`InputError` naming the first of ``names`` that is below 0."""
        for name in names:
            if not getattr(self, name) >= 0:
                raise InputError(f"{option_name(self, name)} must be non-negative, got {getattr(self, name)}")


@dataclass(frozen=True)
class FitConfig(ToolConfig):
    """Hyper-parameters of one fit. Units: coordinates are normalised so the union box of all
    stacks spans [-1, 1] along its largest world extent; frequencies are in cycles per unit."""

    encoding: str = option_field(
        "fourier", "fourier: Gaussian Fourier features (the paper); hash: multiresolution hash grid", ENCODINGS
    )
    # Gaussian Fourier features [sin(2πBx), cos(2πBx)], B ~ N(0, ff_scale²)
    n_frequencies: int = option_field(256, "number of Gaussian Fourier frequencies (features = 2×this)")
    ff_scale: float = option_field(4.0, "standard deviation of the Fourier frequencies, cycles per normalised unit")
    # multiresolution hash grid (cell sizes in mm, geometric progression from coarsest to finest)
    grid_levels: int = option_field(16, "hash grid levels")
    grid_features: int = option_field(2, "features per hash grid level")
    grid_log2_table: int = option_field(19, "log2 of the table entries per hash grid level")
    grid_coarsest_mm: float = option_field(32.0, "cell size of the coarsest hash grid level, mm")
    grid_finest_mm: float = option_field(1.0, "cell size of the finest hash grid level, mm")
    grid_backend: str = option_field(
        "auto", "hash grid implementation. auto: tinycudann on CUDA when it imports, else a C kernel compiled on first "
        "use for the CPU (native), else pure torch; torch, native or tcnn force one", BACKENDS
    )
    grid_lr: float = option_field(0.0, "Adam learning rate of the grid tables (0: same as --lr)")
    # forward model: how the field makes a thick-slice voxel
    slice_profile: str = option_field(
        "point",
        "point: the field at the voxel centre (the paper); box: mean over the slice thickness along the "
        "slice normal; gaussian: Gaussian-weighted mean, FWHM = slice thickness",
        SLICE_PROFILES,
    )
    profile_points: int = option_field(4, "points per voxel across the slice for the box and gaussian profiles")
    thickness_estimate: str = option_field(
        "auto", "auto: estimate the slice thickness (the profile's width) of every stack whose thickness is not "
        "given (no --thickness, no SliceThickness in a BIDS sidecar), and use it: judged where its slices cross "
        "those of a stack of its contrast, else by a short fit in which each stack's width is learned; always: "
        "estimate and use it for every stack; off: take the slice spacing when it is not given. Box and gaussian "
        "profiles only (docs/design.md, \"Slice thickness estimation\")", THICKNESS_ESTIMATES,
    )
    # regulariser: finite differences of the field at random points (fills the space between slices)
    reg_weight: float = option_field(0.0, "weight of the smoothness penalty (0: off)")
    reg_norm: str = option_field(
        "l1", "l1: total-variation-like, each contrast on its own (keeps edges); l2: Tikhonov (smoother); joint: "
        "joint total variation, the root mean square of the contrasts' differences (favours edges shared by the "
        "contrasts)", ("l1", "l2", "joint")
    )
    reg_step_mm: float = option_field(1.0, "finite-difference step of the smoothness penalty, mm")
    reg_points: int = option_field(4096, "random points per step for the smoothness penalty")
    # joint rigid registration of the stacks, and coarse-to-fine release of detail
    register: bool = option_field(
        False, "learn a rigid transform per stack (all but --register-stack) together with the field"
    )
    register_stack: int = option_field(0, "index of the stack held fixed when registering (0: the first)")
    register_lr: float = option_field(0.05, "Adam step of the stack transforms, in mm and degrees")
    c2f_fraction: float = option_field(
        0.0, "fraction of the steps over which encoded detail is released coarse to fine (0: off; "
        "--register uses 0.5 when 0)"
    )
    c2f_start_mm: float = option_field(16.0, "finest detail, mm, allowed at the start of coarse-to-fine training")
    # prior: what the network's output is added to
    base: str = option_field(
        "none",
        "none: the network is the whole field (the paper); cubic: the network's output is added to a "
        "cubic B-spline interpolation of each contrast's own stacks, times --base-weight; auto: cubic when "
        "some stack's slices are thinner than their spacing (gaps the forward model leaves unobserved), else "
        "none. Not used with --register, whose stacks move during the fit",
        BASES,
    )
    base_weight: float = option_field(
        1.0, "share of the cubic base added to the network's output when a base is used (1: the network "
        "learns a residual over the whole base; below 1 it must also learn the rest of the image from the data)"
    )
    data_consistency: bool = option_field(
        False, "after the fit, add each stack's residual (measured minus predicted voxel) back where the voxel "
        "measured it, along its slice profile, so that the output reproduces the measured voxels (docs/design.md, "
        "\"Data consistency\")"
    )
    # network
    variant: str = option_field(
        "split",
        "split: shared trunk + one head per contrast; vanilla: shared trunk + one shared output layer; "
        "single: an independent network per contrast",
        VARIANTS,
    )
    width: int = option_field(1024, "width of the shared ReLU trunk")
    depth: int = option_field(4, "hidden layers of the trunk after its input layer")
    head_width: int = option_field(512, "hidden width of each contrast head (split variant)")
    # optimisation
    lr: float = option_field(4e-4, "Adam learning rate")
    adam_beta2: float = option_field(
        0.999, "Adam's decay of its squared-gradient average for the field's parameters (the stack transforms of "
        "--register keep 0.999); lower values adapt the step size faster"
    )
    batch_size: int = option_field(1000, "training points per step")
    max_epochs: int = option_field(50, "maximum number of passes over the training points")
    max_steps: int = option_field(0, "maximum number of steps, whichever limit comes first (0: no step limit)")
    time_limit_s: float = option_field(0.0, "stop training after this many seconds, whichever limit comes first (0: none)")
    lr_schedule: str = option_field(
        "cosine-epoch",
        "cosine: annealed to 0 every step; cosine-epoch: annealed once per epoch (as the paper); constant",
        SCHEDULES,
    )
    background_ratio: float = option_field(
        -1.0,
        "background training points per foreground point (sampled once); negative: train on every voxel",
    )
    # mutual information monitor and early stopping (the paper's buffer rule)
    mi_bins: int = option_field(32, "histogram bins per contrast for MI")
    mi_every: int = option_field(0, "evaluate MI every N steps (0: once per epoch)")
    mi_points: int = option_field(50000, "fixed foreground points on which MI is evaluated")
    early_stopping: bool = option_field(True, "stop when the MI change plateaus (needs ≥ 2 contrasts)")
    es_buffer: int = option_field(4, "MI values in the early-stopping buffer")
    es_tol: float = option_field(1e-4, "stop when the mean absolute MI change moves by less than this")
    es_min_evals: int = option_field(4, "MI evaluations before early stopping may trigger")
    # execution
    precision: str = option_field("fp32", "fp32, or bf16 autocast for the network in training and rendering", PRECISIONS)
    seed: int = option_field(0, "random seed (weights, frequencies, batches)")
    device: str = option_field("auto", "auto, cpu or cuda", ("auto", "cpu", "cuda"))
    threads: int = option_field(0, "CPU threads for torch (0: all cores)")
    checkpoint_every_s: float = option_field(
        60.0, "save the training state for --resume every this many seconds (and on Ctrl-C)"
    )
    # 32 768: on 2 CPU cores the BraTS render took 2.6-3.1 s, against 3.9-7.5 s with 65 536 points per
    # chunk, whose matrix products and hash-grid gathers ran 2-3 times slower (docs/experiment-log.md, 2026-12-01)
    render_chunk: int = option_field(32768, "points per chunk when sampling the field on a grid")
    render_foreground: bool = option_field(
        True, "sample the field only inside the stacks' foreground; elsewhere write the background level"
    )

    def validate(self) -> "FitConfig":
        """Raise :class:`InputError` naming the first invalid option."""
        self.check_finite()
        self.check_positive(("n_frequencies", "width", "head_width", "lr", "batch_size", "max_epochs", "mi_bins",
                             "mi_points", "es_buffer", "render_chunk", "grid_levels", "grid_features",
                             "grid_coarsest_mm", "grid_finest_mm", "profile_points", "reg_step_mm", "reg_points",
                             "c2f_start_mm"))
        if not 10 <= self.grid_log2_table <= 26:
            raise InputError(f"--grid-log2-table must be between 10 and 26, got {self.grid_log2_table}")
        if not 0 < self.adam_beta2 < 1:
            raise InputError(f"--adam-beta2 must be between 0 and 1 (exclusive), got {self.adam_beta2}")
        if self.grid_finest_mm > self.grid_coarsest_mm:
            raise InputError("--grid-finest-mm must not exceed --grid-coarsest-mm")
        if not 0 <= self.c2f_fraction <= 1:
            raise InputError(f"--c2f-fraction must be between 0 and 1, got {self.c2f_fraction}")
        self.check_non_negative(("ff_scale", "es_tol", "grid_lr", "reg_weight", "base_weight", "time_limit_s",
                                 "register_lr", "register_stack", "checkpoint_every_s"))
        if min(self.depth, self.mi_every, self.threads, self.es_min_evals, self.max_steps) < 0:
            raise InputError("--depth, --mi-every, --threads, --es-min-evals and --max-steps must be non-negative")
        if self.es_buffer < 2:
            raise InputError(f"--es-buffer must be at least 2, got {self.es_buffer}")
        check_choices(self)
        if self.thickness_estimate == "always" and self.slice_profile == "point":
            raise InputError("--thickness-estimate always needs --slice-profile box or gaussian: the point profile "
                             "has no slice thickness to estimate")
        return self


PRESETS: dict[str, FitConfig] = {
    # McGinnis et al. (MICCAI 2023), config_brats.yaml of the authors' code: exact.
    "paper": FitConfig(),
    # Best measured quality within about a minute and a half on 2 CPU cores (docs/experiment-log.md: "History of the presets").
    "default": FitConfig(
        encoding="hash",
        grid_levels=16,
        grid_features=2,
        grid_log2_table=18,
        grid_coarsest_mm=32.0,
        grid_finest_mm=1.0,
        width=64,
        depth=1,
        head_width=32,  # 64 costs a third more time for no gain (docs/experiment-log.md, 2026-11-30)
        lr=2e-2,
        adam_beta2=0.9,  # +0.03 to +0.31 dB on every benchmark volume against 0.999 (docs/experiment-log.md, 2026-11-22)
        batch_size=3700,  # as many foreground voxels per step as 4096 at 25 % background
        max_epochs=100,
        max_steps=1100,
        lr_schedule="cosine",
        background_ratio=0.1,
        slice_profile="box",
        profile_points=4,
        base="cubic",
        base_weight=0.4,  # 40 % of the cubic interpolation; the network learns the rest (docs/design.md, "Cubic base")
        reg_weight=0.02,
        reg_norm="joint",
        reg_points=1024,
        mi_every=100,
        mi_points=20000,
        es_min_evals=9,  # MI may stop the fit from step 900 on
        data_consistency=True,
    ),
}
# A quick look: the default engine with 8 levels × 4 features, smaller tables and fewer steps, over
# the whole cubic base (250 steps are too few to learn most of the image; docs/design.md, "Cubic base");
# under a minute on 2 CPU cores.
PRESETS["fast"] = PRESETS["default"].replace(
    grid_levels=8, grid_features=4, grid_log2_table=17, head_width=64, lr=1e-2, batch_size=4096, max_steps=250,
    background_ratio=0.25, reg_points=1024, mi_every=50, mi_points=10000, es_min_evals=4, base="cubic", base_weight=1.0,
)


def preset(name: str, **overrides: Any) -> FitConfig:
    """A preset with some fields overridden (``None`` values are ignored), validated."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return PRESETS[name].replace(**changes).validate()


_JSON_TYPES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _checked_value(kind: str, value: Any) -> Any:
    """``value`` of a field of type ``kind`` as read from JSON, or ``None`` when its JSON type is
    wrong (a float field takes an integer; ``true`` is no number)."""
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if kind == "int":
        return value if isinstance(value, int) else None
    if kind == "float":
        return float(value) if isinstance(value, (int, float)) else None
    return value if isinstance(value, str) else None


def read_config_file(path: str, cls: type[ToolConfig] = FitConfig) -> dict[str, Any]:
    """The options in the JSON file ``path`` (a ``config.json`` written by ``inrsr fit``, or any
    object holding some of the fields of ``cls``), each checked for its JSON type.

    Raises :class:`InputError` naming the file: unreadable, not JSON, not an object, keys that
    are not fields of ``cls`` (all of them named), or a value of the wrong type. The values'
    ranges are checked by :func:`fit_config`.
    """
    from inrsr.io.files import check_input_file

    p = check_input_file(path, "config file")
    try:
        content = json.loads(p.read_text())
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a JSON file (not text)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read the config file ({exc.strerror or exc})") from None
    if not isinstance(content, dict):
        kind = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}
        raise InputError(f"{p}: expected a JSON object of options (as config.json), got "
                         f"{kind.get(type(content), 'a number')}")
    kinds = {f.name: str(f.type) for f in fields(cls)}
    unknown = [k for k in content if k not in kinds]
    if unknown:
        raise InputError(f"{p}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")
    values = {}
    for name, value in content.items():
        checked = _checked_value(kinds[name], value)
        if checked is None:
            expected = _JSON_TYPES.get(kinds[name], kinds[name])
            raise InputError(f"{p}: {name} must be {expected}, got {json.dumps(value)}")
        values[name] = checked
    return values


def option_assignments(pairs: list[str], option: str, cls: type[ToolConfig] = FitConfig) -> dict[str, Any]:
    """``NAME=VALUE`` strings (``max_steps=300``, ``register=true``; NAME a field of ``cls``, dashes
    allowed) as typed values; :class:`InputError` naming ``option`` for a malformed pair, an
    unknown name or a value of the wrong type. The values' ranges are checked by
    :meth:`FitConfig.validate`."""
    kinds = {f.name: str(f.type) for f in fields(cls)}
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise InputError(f"{option} {pair!r}: expected NAME=VALUE")
        if name not in kinds:
            raise InputError(f"{option} {pair!r}: unknown option {name!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # a bare string
        checked = _checked_value(kinds[name], value)
        if checked is None:
            raise InputError(f"{option} {pair!r}: {name} must be {_JSON_TYPES.get(kinds[name], kinds[name])}")
        values[name] = checked
    return values


def fit_config(name: str, config_file: str | None = None, **overrides: Any) -> FitConfig:
    """The configuration of a fit: preset ``name``, whose values the options of ``config_file``
    (see :func:`read_config_file`) replace, then ``overrides`` (``None`` values ignored), validated.
    An invalid value from the file is reported with the file's name."""
    if config_file is None:
        return preset(name, **overrides)
    values = read_config_file(config_file)
    try:
        preset(name, **values)
    except InputError as exc:
        raise InputError(f"{config_file}: {exc}") from None
    return preset(name, **{**values, **{k: v for k, v in overrides.items() if v is not None}})
