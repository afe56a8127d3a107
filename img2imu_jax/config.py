"""Pre-training configs: the defaults every recipe in img2imu_jax/configs/ starts from, loading a
recipe (by name or file) with `--config.key=value` overrides, and the checks that run before
anything compiles.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from img2imu_jax.models.heads import PRESETS

METHODS = ("moco", "simclr")
OPTIMIZERS = ("adam", "lars", "sgd")
LR_SCALINGS = ("linear", "sqrt", "none")
# ConfigDicts whose keys are free-form (`--config.augment.params.hue_p=0.5` adds one); each
# one's owner checks the names: make_augment for augment.params, called by validate().
OPEN_KEYS = ("augment.params",)
# The recipes ship inside the package, so `--config demo` works from any installed wheel.
RECIPES = Path(__file__).resolve().parent / "configs"


def recipe_names() -> list[str]:
    """The bundled recipes' names (`img2imu_paper`, `demo`, ...), sorted."""
    return sorted(p.stem for p in RECIPES.glob("*.py") if not p.name.startswith("_"))


def resolve_recipe(name_or_path: str | os.PathLike) -> Path:
    """A recipe file: `name_or_path` itself when it is a file, else the bundled recipe of that
    name (with or without `.py`, with or without a `configs/` prefix)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = RECIPES / (path.stem + ".py")
    if path.suffix in ("", ".py") and bundled.is_file():
        return bundled
    close = difflib.get_close_matches(path.stem, recipe_names(), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"recipes: {', '.join(recipe_names())}"
    raise ValueError(f"config {os.fspath(name_or_path)} is neither a file nor a bundled recipe; "
                     f"{hint}")


def base_config() -> ml_collections.ConfigDict:
    """The shared defaults; a recipe file changes only what differs."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "imagenet2012"  # a TFDS name, 'bundled_photos' or a folder of images
    config.data.data_dir = ""  # '' = TFDS's default data directory
    config.data.split = "train"
    config.data.image_size = (96, 128)  # (height, width): the paper's 128 × 96 (W × H)
    config.data.shuffle_buffer = 16_384

    config.augment = ml_collections.ConfigDict()
    config.augment.spec = "translate_x|permute_x|hue|jitter"  # the paper's sensor-aware set
    config.augment.params = ml_collections.ConfigDict()  # `<op>_<param>` overrides, e.g. hue_p

    config.model = ml_collections.ConfigDict()
    config.model.depth = 18
    config.model.width = 64
    config.model.head = "mocov2"  # 'mocov2' (2-layer MLP) or 'simclr' (BN MLP)
    config.model.head_layers = 2
    config.model.hidden_features = 0  # 0 = the encoder's feature width
    config.model.out_features = 64  # the paper's MoCo dimension
    config.model.bf16 = False  # bf16 compute; parameters and optimizer state stay float32

    config.method = "moco"  # 'moco' (InfoNCE against a queue) or 'simclr' (NT-Xent)
    config.temperature = 0.2
    config.moco = ml_collections.ConfigDict()
    config.moco.momentum = 0.999
    config.moco.queue_size = 4096

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"  # 'adam', 'lars' or 'sgd'
    config.optim.base_lr = 1e-3
    config.optim.lr_scaling = "none"  # 'linear', 'sqrt' or 'none' (relative to batch 256)
    config.optim.warmup_epochs = 0.0
    config.optim.weight_decay = 0.0
    config.optim.momentum = 0.9

    config.batch_size = 256  # global, over every device of every process
    config.epochs = 40.0
    config.total_steps = 0  # > 0 overrides epochs

    config.checkpoint_every = 1000
    config.keep_checkpoints = 3
    config.log_every = 50
    return config


def finetune_base_config() -> ml_collections.ConfigDict:
    """Defaults of the downstream protocol (paper v2 §IV-A); recipes name the dataset."""
    from img2imu_jax.finetune import FullFinetune

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.pretrained = ""  # a pre-training checkpoints/ directory; '' = random init only
    config.data = ml_collections.ConfigDict()
    config.data.dataset = "basicmotions"
    config.data.data_dir = ""  # for 'generic': the CSV or NPZ file itself
    config.data.generic_sample_rate = 0.0  # Hz of a 'generic' file; datasets know their own
    config.data.sample_rate = 50.0
    config.data.seconds = 5.0  # 2, 5 or 10 s windows, 50 % overlap
    config.data.label_rule = "single"
    config.shots = (1, 2, 5, 10, 20, 50)
    config.folds = 5
    # The paper's spectrogram grid, searched on validation subjects: every nfft with
    # noverlap = nfft - gap for every gap.
    config.grid_nfft = (32, 64, 128, 256)
    config.grid_gaps = (2, 4, 8, 16)
    config.epochs = 50  # of the linear head
    config.linear_lr = 1e-5  # the head's peak learning rate (warm-up from /1000, cosine to /10)
    # 'linear' (frozen encoder, v2) and/or 'finetune' (v1's two phases, settings below).
    config.modes = ("linear",)
    config.finetune_shots = ()  # shot counts of the full fine-tune; () = the same as shots
    config.finetune = ml_collections.ConfigDict(dataclasses.asdict(FullFinetune()))
    config.save_models = True  # per encoder and mode: the best-validation fold's classifier
    config.model = ml_collections.ConfigDict()
    config.model.depth = 18
    config.model.width = 64
    return config


def load_config(
    path: str | os.PathLike, overrides: Sequence[str] = (), *, checks=None
) -> ml_collections.ConfigDict:
    """Runs `get_config()` from a recipe (a file, or a bundled recipe's name), applies
    `key.sub=value` overrides, validates.

    Every problem is a ValueError naming the file, the key or the value, raised before any
    model is built.
    """
    path = os.fspath(resolve_recipe(path))
    spec = importlib.util.spec_from_file_location("img2imu_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config()")
    config = module.get_config()
    for override in overrides:
        _apply_override(config, override, path)
    (checks or validate)(config)
    return config


def _apply_override(config: ml_collections.ConfigDict, override: str, path: str) -> None:
    key, sep, text = override.partition("=")
    if not sep:
        raise ValueError(f"override {override!r} must look like key.sub=value")
    *parents, leaf = key.split(".")
    node = config
    for depth, name in enumerate(parents + [leaf]):
        known = list(node.keys())
        if name not in known and not (depth == len(parents) and ".".join(parents) in OPEN_KEYS):
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
            raise ValueError(f"{path}: unknown config key {key!r}{hint}")
        if depth < len(parents):
            node = node[name]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    current = node.get(leaf)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if current is not None and not isinstance(value, type(current)):
        raise ValueError(
            f"{path}: {key} must be {type(current).__name__} like {current!r}; got {text!r}"
        )
    node[leaf] = value


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks values whose mistakes would otherwise surface deep inside a compile."""
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"invalid config: {message}")

    check(config.method in METHODS, f"method must be one of {METHODS}; got {config.method!r}")
    check(config.model.head in PRESETS,
          f"model.head must be one of {sorted(PRESETS)}; got {config.model.head!r}")
    check(config.model.depth in (18, 34, 50, 101), f"model.depth {config.model.depth} unsupported")
    check(config.model.width > 0 and config.model.out_features > 0, "model sizes must be > 0")
    check(config.optim.name in OPTIMIZERS, f"optim.name must be one of {OPTIMIZERS}")
    check(config.optim.lr_scaling in LR_SCALINGS, f"optim.lr_scaling must be one of {LR_SCALINGS}")
    check(config.optim.base_lr > 0, f"optim.base_lr must be > 0; got {config.optim.base_lr}")
    check(config.batch_size > 0, f"batch_size must be > 0; got {config.batch_size}")
    check(config.temperature > 0, f"temperature must be > 0; got {config.temperature}")
    check(config.epochs > 0 or config.total_steps > 0, "set epochs or total_steps")
    check(0 <= config.moco.momentum < 1, f"moco.momentum must be in [0, 1); got {config.moco.momentum}")
    check(config.method != "moco" or config.moco.queue_size >= config.batch_size,
          f"moco.queue_size {config.moco.queue_size} must hold at least one batch "
          f"({config.batch_size})")
    check(len(config.data.image_size) == 2 and min(config.data.image_size) > 0,
          f"data.image_size must be (height, width); got {config.data.image_size}")
    check(config.checkpoint_every > 0 and config.log_every > 0, "intervals must be > 0")
    check(config.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1; got "
          f"{config.keep_checkpoints}")
    check(config.data.shuffle_buffer >= 1, f"data.shuffle_buffer must be >= 1; got "
          f"{config.data.shuffle_buffer}")
    check(config.model.head_layers >= 1 and config.model.hidden_features >= 0,
          "model.head_layers must be >= 1 and model.hidden_features >= 0")
    check(config.optim.weight_decay >= 0 and config.optim.warmup_epochs >= 0
          and config.optim.momentum >= 0, "optim.weight_decay, warmup_epochs and momentum "
          "must be >= 0")
    from img2imu_jax.augment import make_augment  # names and ranges of every op parameter

    try:
        make_augment(config.augment.spec, **dict(config.augment.params))
    except ValueError as error:
        raise ValueError(f"invalid config: augment: {error}") from None


def validate_finetune(config: ml_collections.ConfigDict) -> None:
    """Checks a downstream config before any data is read."""
    from img2imu_jax.imu.registry import DATASETS

    from img2imu_jax.finetune import MODES

    if not config.modes or not set(config.modes) <= set(MODES):
        raise ValueError(f"invalid config: modes must be among {MODES}; got {config.modes}")
    if config.finetune.epochs < 1 or config.finetune.head_epochs < 1 \
            or config.finetune.batch_size < 1:
        raise ValueError("invalid config: finetune epochs, head_epochs, batch_size must be >= 1")
    if config.data.dataset not in DATASETS:
        raise ValueError(f"invalid config: data.dataset must be one of {DATASETS}")
    if not config.shots or min(config.shots + config.finetune_shots) < 1:
        raise ValueError(f"invalid config: shots must be positive; got {config.shots}")
    if config.folds < 3 or config.epochs < 1 or config.data.seconds <= 0:
        raise ValueError("invalid config: folds >= 3, epochs >= 1 and data.seconds > 0")
    if not all(0 < gap < nfft for nfft in config.grid_nfft for gap in config.grid_gaps):
        raise ValueError("invalid config: every grid gap must be in (0, nfft)")
    from img2imu_jax.imu.windows import LABEL_RULES

    if not config.data.sample_rate > 0 or config.data.generic_sample_rate < 0:
        raise ValueError(f"invalid config: data.sample_rate must be > 0 Hz (got "
                         f"{config.data.sample_rate}) and data.generic_sample_rate >= 0")
    if config.data.label_rule not in LABEL_RULES:
        raise ValueError(f"invalid config: data.label_rule must be one of {LABEL_RULES}; got "
                         f"{config.data.label_rule!r}")
    if not config.linear_lr > 0:
        raise ValueError(f"invalid config: linear_lr must be > 0; got {config.linear_lr}")
