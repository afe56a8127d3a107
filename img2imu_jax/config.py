"""Pre-training configs: the defaults every recipe in configs/ starts from, loading a
recipe (by name or file) with `--config.key=value` overrides, and the checks that run before
anything compiles.
"""

from __future__ import annotations

import ast
import difflib
import importlib.resources
import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path

import ml_collections
from absl import flags
from ml_collections import config_flags
from ml_collections.config_flags import config_path

from img2imu_jax import evaluators
from img2imu_jax.augment import make_augment
from img2imu_jax.evaluators import imu_fewshot, imu_validation
from img2imu_jax.imu.registry import DATASETS
from img2imu_jax.methods import METHODS, method_class
from img2imu_jax.models import ENCODERS
from img2imu_jax.models.heads import PRESETS
from img2imu_jax.optim import OPTIMIZERS, SCALINGS
from img2imu_jax.sensor_transforms import TRANSFORMS, parse_spec
from img2imu_jax.torch_weights import torchvision_init

MOCO_QUERY_BN = ("global", "groups")
DTYPES = ("auto", "bfloat16", "float32")
# ConfigDicts whose keys are free-form (`--config.augment.params.hue_p=0.5` adds one); each
# one's owner checks the names: make_augment for augment.params, called by validate().
OPEN_KEYS = ("augment.params",)


def _recipes_dir() -> Path:
    """Where the bundled recipes are: the checkout's top-level `configs/` when this package
    runs from a checkout (a `pyproject.toml` beside the package, editable installs included);
    else the `img2imu_jax.configs` package the wheel ships (pyproject.toml maps it to
    `configs/`). Asking the checkout first keeps a second, installed checkout's recipes out."""
    package = Path(__file__).resolve().parent
    if (package.parent / "pyproject.toml").is_file() and (package.parent / "configs").is_dir():
        return package.parent / "configs"
    return Path(importlib.resources.files("img2imu_jax.configs"))


# `--config demo` finds `demo.py` here, from a checkout and from any installed wheel.
RECIPES = _recipes_dir()


def sensor_config(method: str) -> ml_collections.ConfigDict:
    """What the 1D recipes share: `method` on the 1D encoder, pre-trained on BasicMotions's
    5 s windows for 50 epochs (the paper's count) in batches of 64, probed every 50 steps."""
    config = base_config()
    config.method = method
    config.model.encoder = "sensor_cnn"
    config.data.dataset = "basicmotions"
    config.batch_size = 64
    config.epochs = 50.0
    config.checkpoint_every = 50
    config.log_every = 10
    config.evals.probe.every = 50
    return config


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
    # A TFDS name, 'bundled_photos' or a folder of images; for the 1D methods one registry
    # dataset or several joined by ',' (imu/window_batches.py), data_dir their folders likewise.
    config.data.dataset = "imagenet2012"
    config.data.data_dir = ""  # '' = TFDS's default data directory
    config.data.split = "train"
    config.data.image_size = (96, 128)  # (height, width): the paper's 128 × 96 (W × H)
    config.data.shuffle_buffer = 16_384
    config.data.prefetch = 2  # global batches made ready on the devices ahead of the step
    # The 1D methods' windows: one model per length (2, 5 or 10 s), 50 % overlap.
    config.data.seconds = 5.0
    config.data.sample_rate = 50.0
    config.data.generic_sample_rate = 0.0  # Hz of a 'generic' file; registry datasets know theirs

    config.augment = ml_collections.ConfigDict()
    config.augment.spec = "translate_x|permute_x|hue|jitter"  # the paper's sensor-aware set
    config.augment.params = ml_collections.ConfigDict()  # `<op>_<param>` overrides, e.g. hue_p

    config.model = ml_collections.ConfigDict()
    # 'resnet' (2D, spectrogram images) or 'sensor_cnn' (1D, raw windows; models/sensor_cnn.py)
    config.model.encoder = "resnet"
    config.model.fc_features = 256  # sensor_cnn's fully connected layer
    config.model.depth = 18
    config.model.width = 64
    config.model.head = "mocov2"  # 'mocov2' (2-layer MLP) or 'simclr' (BN MLP)
    config.model.head_layers = 2
    config.model.hidden_features = 0  # 0 = the encoder's feature width
    config.model.out_features = 64  # the paper's MoCo dimension
    # Compute dtype: 'auto' = bfloat16 on GPU/TPU, float32 on CPU (where bf16 is slower); or
    # 'bfloat16'/'float32'. Parameters, optimizer state, BN statistics and the loss stay float32.
    config.model.dtype = "auto"

    # A module of img2imu_jax/methods: 'moco', 'simclr', 'simsiam' (images) or 'simclr_1d',
    # 'multitask_1d', 'cpc_1d' (sensor windows; these need model.encoder='sensor_cnn').
    config.method = "moco"
    config.temperature = 0.2
    config.moco = ml_collections.ConfigDict()
    config.moco.momentum = 0.999
    config.moco.queue_size = 4096
    # Shuffle BN (methods/moco.py says why): the key encoder's BatchNorm statistics come from
    # groups of bn_group_size shuffled examples; query_bn is 'global' or 'groups'.
    config.moco.shuffle_bn = True
    config.moco.bn_group_size = 32
    config.moco.query_bn = "global"
    config.simsiam = ml_collections.ConfigDict()
    config.simsiam.predictor_features = 0  # the predictor's bottleneck; 0 = out_features // 4
    # The 1D sensor methods (methods/simclr_1d.py, multitask_1d.py, cpc_1d.py): transformation
    # chains and names from sensor_transforms, joined by '|'.
    config.simclr_1d = ml_collections.ConfigDict()
    config.simclr_1d.transforms = "channel_shuffle|permutation"
    config.multitask_1d = ml_collections.ConfigDict()
    config.multitask_1d.transforms = "|".join(TRANSFORMS)  # one binary task each
    config.multitask_1d.hidden_features = 256
    config.cpc_1d = ml_collections.ConfigDict()
    config.cpc_1d.steps = 28  # future steps predicted
    config.cpc_1d.context_features = 256
    config.cpc_1d.context_layers = 2

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
    config.steps_in_flight = 2  # dispatched steps the host may run ahead of the device
    # GradCache (img2imu_jax/gradcache.py): the encoder runs the per-device batch in this many
    # chunks, so activation memory is ~1/K at the cost of one more forward pass (moco, simclr).
    config.grad_chunks = 1
    config.init = ""  # 'torchvision:PATH': the encoder starts from a state_dict on disk

    # Evaluators run while pre-training (img2imu_jax/evaluators/): few-shot macro-F1 of the
    # current encoder on BasicMotions' held-out subjects, and (once given data_dir) on WISDM
    # 2019's validation subjects; logged as <name>/f1_<n>shot.
    config.evals = ml_collections.ConfigDict()
    config.evals.probe = imu_fewshot.default_config()
    config.evals.val_probe = imu_validation.default_config()

    # ---- Observing a run (may change on resume; see run_info.OBSERVATION_KEYS).
    config.profile_steps = (0, 0)  # (first step, count): a jax.profiler trace; count 0 = off
    config.compilation_cache_dir = "~/.cache/img2imu/jax"  # '' = off; the env var wins
    # Several processes: one silent this long (killed, host lost) ends the others (multihost.py).
    config.peer_timeout_s = 60.0
    config.wandb = ml_collections.ConfigDict()
    config.wandb.mode = ""  # '' = off; 'online' or 'offline' (needs the wandb extra)
    config.wandb.project = "img2imu"
    config.wandb.name = ""  # run name and id; '' = W&B picks one
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
        config = _apply_override(config, override, path)
    (checks or validate)(config)
    return config


def _apply_override(config: ml_collections.ConfigDict, override: str,
                    path: str) -> ml_collections.ConfigDict:
    """`config` with one `key.sub=value` override applied by ml_collections' own flag parsing
    (`config_flags`: the value parsed by the type of the value it replaces, an unknown key
    refused with a suggestion). Ours does only what that cannot: add a new key under one of
    `OPEN_KEYS` (whose owner checks the names), its value read as a Python literal or else as
    text."""
    key, sep, text = override.partition("=")
    if not sep:
        raise ValueError(f"override {override!r} must look like key.sub=value")
    parent, _, leaf = key.rpartition(".")
    if parent in OPEN_KEYS:
        try:
            config[parent][leaf] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            config[parent][leaf] = text
        return config
    argv = ["img2imu", f"--config.{override}"]
    flag_values = flags.FlagValues()
    try:
        config_flags.DEFINE_config_dict("config", config, flag_values=flag_values,
                                        sys_argv=argv, lock_config=False)
        flag_values(argv)
    except (AttributeError, KeyError) as error:  # an unknown key, with ml_collections' hint
        hint = re.search(r'Did you mean "[^"]+"', str(error))
        raise ValueError(f"{path}: unknown config key {key!r}"
                         + (f"; d{hint.group()[1:]}?" if hint else "")) from None
    except flags.Error as error:
        current = config_path.get_value(key, config)
        raise ValueError(f"{path}: {key} must be {type(current).__name__} like {current!r}; got "
                         f"{text!r} ({error})") from None
    return flag_values.config


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks values whose mistakes would otherwise surface deep inside a compile."""
    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"invalid config: {message}")

    check(config.method in METHODS,
          f"method must be one of {', '.join(METHODS)}; got {config.method!r}")
    check(config.model.head in PRESETS,
          f"model.head must be one of {sorted(PRESETS)}; got {config.model.head!r}")
    check(config.model.depth in (18, 34, 50, 101), f"model.depth {config.model.depth} unsupported")
    check(config.model.encoder in ENCODERS,
          f"model.encoder must be one of {ENCODERS}; got {config.model.encoder!r}")
    check(config.model.fc_features > 0, f"model.fc_features must be > 0; got "
          f"{config.model.fc_features}")
    windows = method_class(config.method).input == "windows"
    needed = "sensor_cnn" if windows else "resnet"
    check(config.model.encoder == needed, f"method {config.method!r} needs model.encoder "
          f"{needed!r}; got {config.model.encoder!r}")
    check(config.data.seconds > 0 and config.data.sample_rate > 0
          and config.data.generic_sample_rate >= 0, "data.seconds and data.sample_rate must "
          "be > 0 and data.generic_sample_rate >= 0")
    unknown = [name for name in config.data.dataset.split(",") if name.strip() not in DATASETS]
    check(not windows or not unknown, f"data.dataset {config.data.dataset!r} of method "
          f"{config.method!r} must name datasets among {', '.join(DATASETS)}, joined by ','")
    for section in ("simclr_1d", "multitask_1d"):
        try:
            parse_spec(config[section].transforms)
        except ValueError as error:
            raise ValueError(f"invalid config: {section}.transforms: {error}") from None
    check(min(config.multitask_1d.hidden_features, config.cpc_1d.steps,
              config.cpc_1d.context_features, config.cpc_1d.context_layers) >= 1,
          "multitask_1d.hidden_features and cpc_1d.steps, context_features, context_layers "
          "must be >= 1")
    check(config.model.width > 0 and config.model.out_features > 0, "model sizes must be > 0")
    check(config.model.dtype in DTYPES,
          f"model.dtype must be one of {DTYPES}; got {config.model.dtype!r}")
    check(config.optim.name in OPTIMIZERS, f"optim.name must be one of {OPTIMIZERS}")
    check(config.optim.lr_scaling in SCALINGS, f"optim.lr_scaling must be one of {SCALINGS}")
    check(config.optim.base_lr > 0, f"optim.base_lr must be > 0; got {config.optim.base_lr}")
    check(config.batch_size > 0, f"batch_size must be > 0; got {config.batch_size}")
    check(config.temperature > 0, f"temperature must be > 0; got {config.temperature}")
    check(config.epochs > 0 or config.total_steps > 0, "set epochs or total_steps")
    check(0 <= config.moco.momentum < 1, f"moco.momentum must be in [0, 1); got {config.moco.momentum}")
    check(config.method != "moco" or config.moco.queue_size >= config.batch_size,
          f"moco.queue_size {config.moco.queue_size} must hold at least one batch "
          f"({config.batch_size})")
    check(config.moco.bn_group_size > 0,
          f"moco.bn_group_size must be > 0; got {config.moco.bn_group_size}")
    check(config.moco.query_bn in MOCO_QUERY_BN,
          f"moco.query_bn must be one of {MOCO_QUERY_BN}; got {config.moco.query_bn!r}")
    check(config.simsiam.predictor_features >= 0,
          f"simsiam.predictor_features must be >= 0; got {config.simsiam.predictor_features}")
    check(len(config.data.image_size) == 2 and min(config.data.image_size) > 0,
          f"data.image_size must be (height, width); got {config.data.image_size}")
    check(config.checkpoint_every > 0 and config.log_every > 0, "intervals must be > 0")
    check(len(config.profile_steps) == 2 and min(config.profile_steps) >= 0,
          f"profile_steps must be (first step, count); got {config.profile_steps}")
    check(config.wandb.mode in ("", "online", "offline"),
          f"wandb.mode must be '', 'online' or 'offline'; got {config.wandb.mode!r}")
    check(config.steps_in_flight >= 1 and config.data.prefetch >= 1,
          "steps_in_flight and data.prefetch must be >= 1")
    check(config.grad_chunks >= 1, f"grad_chunks must be >= 1; got {config.grad_chunks}")

    check(config.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1; got "
          f"{config.keep_checkpoints}")
    check(config.data.shuffle_buffer >= 1, f"data.shuffle_buffer must be >= 1; got "
          f"{config.data.shuffle_buffer}")
    check(config.model.head_layers >= 1 and config.model.hidden_features >= 0,
          "model.head_layers must be >= 1 and model.hidden_features >= 0")
    check(config.optim.weight_decay >= 0 and config.optim.warmup_epochs >= 0
          and config.optim.momentum >= 0, "optim.weight_decay, warmup_epochs and momentum "
          "must be >= 0")
    try:
        make_augment(config.augment.spec, **dict(config.augment.params))
    except ValueError as error:
        raise ValueError(f"invalid config: augment: {error}") from None

    evaluators.validate(config.evals)
    torchvision_init(config.get("init", ""))
