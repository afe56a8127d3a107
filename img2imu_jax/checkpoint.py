"""Orbax checkpoints: the only door between pre-training and fine-tuning.

`WORKDIR/checkpoints/<step>/` holds two items, saved by one Orbax V0 `CheckpointManager`:

- `state`: the training pytree with stable top-level names `model` (`encoder`, `head`),
  `opt_state` and `train`, written with `StandardSave` and read back with `StandardRestore`
  against an abstract target whose leaves carry shardings, so a checkpoint written on 8 devices
  restores on 1 and the other way round. Typed PRNG keys are stored as their raw
  `jax.random.key_data` (uint32, the implementation's key shape appended) and rewrapped with the
  target's implementation on restore, so any Orbax reader sees plain arrays.
- `data`: the input pipeline's position as a JSON dict.

A finished step can still be unreadable (a file truncated by a full disk, a lost upload) and an
interrupted async save leaves an Orbax temporary directory behind. `Checkpointer.restore` moves
such directories to `checkpoints/broken/` with a warning and resumes from the newest step that
restores; nothing is ever deleted here, and with the broken step out of the way the next save
neither collides with it nor makes Orbax's keep-last-K discard a good step to keep it.

Multi-process: every method must be called on every process, as Orbax requires; Orbax writes
each process's shards and coordinates the commit. `data` must be the same dict on every process
(Orbax writes it from process 0 only), so per-process positions go in as lists indexed by
`jax.process_index()`. Whether a step restores is agreed across processes before anyone moves
on, and only process 0 moves broken directories, between barriers.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from img2imu_jax.paths import user_path

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
BROKEN = "broken"
STATE = "state"
DATA = "data"

_NAME_FORMAT = ocp.step.standard_name_format()
# Orbax writes a replicated array cooperatively, each replica one slice of it, at the cost of
# a dispatched slice per replica and array: 10,804 for a narrow ResNet-18 MoCo state on 8 CPU
# devices, 4.5 s of every save spent on the training thread (profiled). Arrays whose slice
# per replica would be under 1 MiB are written whole by one replica instead; a ResNet's
# BatchNorm vectors and small kernels are all of that kind.
MIN_REPLICA_SLICE_BYTES = 1 << 20


def _register_array_handler() -> None:
    """Orbax's handler for jax.Array with that floor, for every save in this process (the
    registry warns about any override; this one is intended)."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        ocp.type_handlers.register_type_handler(
            jax.Array, ocp.type_handlers.ArrayHandler(
                min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES), override=True)
    finally:
        absl.setLevel(level)


_register_array_handler()
# A step directory, finished (`30`) or left by an interrupted save (`30.orbax-checkpoint-tmp…`).
_STEP_DIR = re.compile(rf"(\d+)({re.escape(ocp.step.TMP_DIR_SUFFIX)}.*)?")


class Checkpointer:
    """Saves `state` and `data` every `save_every` steps, keeps the last `keep`, restores safely."""

    def __init__(self, workdir: str | epath.PathLike, *, save_every: int, keep: int = 3,
                 async_save: bool = True):
        if save_every < 1 or keep < 1:
            raise ValueError(f"save_every and keep must be >= 1; got {save_every} and {keep}")
        self.directory = user_path(workdir, what="workdir") / CHECKPOINTS  # Orbax: absolute
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(save_every),
                preservation_policy=ocp.checkpoint_managers.LatestN(keep),
                enable_async_checkpointing=async_save,
            ),
        )

    def latest_step(self) -> int | None:
        """The newest finished step; `restore` is what checks that it is readable."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, data: dict[str, Any], *, force: bool = False) -> bool:
        """Starts a save if `step` is a multiple of `save_every` or `force`; returns whether it did.

        The arrays are copied off the devices before this returns, so the caller may donate or
        overwrite them at once; the write finishes in the background (see `wait`). A step that
        is already saved is not saved again, so a forced save at the end may repeat the last one.
        """
        try:
            json.dumps(data)
        except TypeError as e:  # Orbax would only report it from its background thread
            raise ValueError(f"checkpoint data must be plain JSON (lists, not arrays): {e}") from e
        if step in self._manager.all_steps():
            return False
        return self._manager.save(
            step,
            args=ocp.args.Composite(**{
                STATE: ocp.args.StandardSave(_keys_to_data(state)),
                DATA: ocp.args.JsonSave(data),
            }),
            force=force,
        )

    def restore(self, abstract_state: Any, *, step: int | None = None
                ) -> tuple[int, Any, dict[str, Any]] | None:
        """`(step, state, data)` of the newest step that restores, or None when there is none.

        Every leaf of `abstract_state` needs a sharding (see `abstract_like`); the restored
        arrays have exactly those shardings. Steps that fail to restore are moved to `broken/`
        with a warning, but only once an older step has restored, which shows that the target
        is right and those steps are damaged; when no step restores, nothing is moved and a
        `ValueError` names the newest one. Leftovers of interrupted saves are moved there too.
        With an explicit `step`: that step, or a `ValueError`, and no fallback.
        """
        _require_shardings(abstract_state)
        self.wait()
        self._manager.reload()
        self._set_aside([(path, "was never finished (its save was interrupted)")
                         for path in self._unfinished()])
        steps = self._manager.all_steps()
        if step is not None:
            if step not in steps:
                raise ValueError(f"no finished checkpoint for step {step} in {self.directory}; "
                                 f"finished steps: {list(steps)}")
            try:
                return (step, *self._restore_step(step, abstract_state))
            except Exception as e:
                raise ValueError(f"checkpoint step {step} in {self.directory} cannot be restored: "
                                 f"{_brief(e)}") from e
        failures: list[tuple[int, Exception]] = []
        for candidate in reversed(steps):
            try:
                state, data = self._restore_step(candidate, abstract_state)
                error = None
            except Exception as e:  # whatever the failure, this step cannot be resumed from
                error = e
            if _on_every_process(error is None):
                self._set_aside([
                    (self._step_path(s), f"cannot be restored ({_brief(e)}); "
                                         f"resuming from step {candidate}")
                    for s, e in failures
                ])
                return candidate, state, data
            failures.append((candidate, error or RuntimeError("failed on another process")))
        if failures:
            newest, error = failures[0]
            raise ValueError(
                f"no checkpoint in {self.directory} restores into the given state; step {newest}: "
                f"{_brief(error)}. If the state's structure is right, the steps "
                f"are damaged: move them out of {self.directory} to start afresh."
            ) from error
        return None

    def wait(self) -> None:
        """Blocks until every started save is durable on disk (and raises its error, if any)."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases Orbax's background threads."""
        self._manager.close()

    def _restore_step(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        restored = self._manager.restore(step, args=ocp.args.Composite(**{
            STATE: ocp.args.StandardRestore(_abstract_key_data(abstract_state)),
            DATA: ocp.args.JsonRestore(),
        }))
        return _wrap_keys(restored[STATE], abstract_state), restored[DATA]

    def _step_path(self, step: int) -> epath.Path:
        return ocp.step.build_step_path(self.directory, _NAME_FORMAT, step)

    def _unfinished(self) -> list[epath.Path]:
        """Step directories Orbax does not list as finished: leftovers of interrupted saves."""
        if not self.directory.exists():  # on cloud storage a folder exists once it holds objects
            return []
        finished = {self._step_path(s).name for s in self._manager.all_steps()}
        return sorted((path for path in self.directory.iterdir()
                       if _STEP_DIR.fullmatch(path.name) and path.name not in finished),
                      key=lambda path: path.name)

    def _set_aside(self, paths: list[tuple[epath.Path, str]]) -> None:
        """Moves step directories into `broken/` (process 0 moves, all log); deletes nothing."""
        if not paths:
            return
        moves, taken = [], set()
        for path, why in paths:
            destination, n = self.directory / BROKEN / path.name, 1
            while destination.exists() or destination in taken:
                destination, n = self.directory / BROKEN / f"{path.name}.{n}", n + 1
            taken.add(destination)
            moves.append((path, destination, why))
        _barrier("img2imu_checkpoint_set_aside_planned")  # names chosen before anything moves
        for path, destination, why in moves:
            if jax.process_index() == 0:
                destination.parent.mkdir(parents=True, exist_ok=True)
                path.rename(destination)
            step = _STEP_DIR.fullmatch(path.name).group(1)
            log.warning("checkpoint step %s in %s %s; moved it to %s",
                        step, self.directory, why, destination)
        _barrier("img2imu_checkpoint_set_aside_done")
        self._manager.reload()


def finished_steps(checkpoint_dir: str | epath.PathLike) -> list[int]:
    """The steps with a finished checkpoint in a `checkpoints/` directory, ascending."""
    directory = epath.Path(checkpoint_dir)
    if not directory.is_dir():
        return []
    return sorted(metadata.step for metadata in _NAME_FORMAT.find_all(directory))


def restore_encoder(checkpoint_dir: str | epath.PathLike, abstract_encoder: Any, *,
                    step: int | None = None) -> Any:
    """Only `state/model/encoder` of a pre-training checkpoint (the newest step by default).

    `checkpoint_dir` is the `checkpoints/` directory. The optimizer state and everything else
    stays on disk, so the caller needs no knowledge of them. The encoder's leaves must match the
    saved ones exactly (names, shapes); a checkpoint from another architecture is an error, not
    a silent partial load. Reads only; broken steps are not skipped, since fine-tuning from an
    older encoder than asked for would change results without notice.
    """
    _require_shardings(abstract_encoder)
    path, saved = _saved_model_part(checkpoint_dir, "encoder", step)
    missing = _leaf_paths(abstract_encoder) - _leaf_paths(saved)
    extra = _leaf_paths(saved) - _leaf_paths(abstract_encoder)
    if missing or extra:
        raise ValueError(f"the encoder in {path} does not match the given one; missing there: "
                         f"{sorted(missing)[:5]}, only there: {sorted(extra)[:5]}")
    restored = _restore_model_part(path, "encoder", _abstract_key_data(abstract_encoder))
    return _wrap_keys(restored, abstract_encoder)


def saved_model_part(checkpoint_dir: str | epath.PathLike, part: str, *,
                     step: int | None = None) -> Any:
    """`state/model/<part>` of a pre-training checkpoint as saved, on the first device, with no
    model to describe it (what `img2imu export` reads; the newest step by default)."""
    path, saved = _saved_model_part(checkpoint_dir, part, step)
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return _restore_model_part(path, part, jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), saved))


def _restore_model_part(path: epath.Path, part: str, abstract_part: Any) -> Any:
    """`state/model/<part>` of the step at `path`, as `abstract_part` describes it; the rest
    of the state stays on disk."""
    return _restore_partial(path, {"model": {part: abstract_part}}, f"model/{part}")["model"][part]


def _restore_partial(path: epath.Path, target: Any, what: str) -> Any:
    """The subtree `target` describes of the state at `path`; the rest stays on disk."""
    try:
        return ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).restore(
            path, args=ocp.args.PyTreeRestore(
                target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                partial_restore=True))
    except Exception as e:
        raise ValueError(f"cannot restore {what} from {path}: {_brief(e)}") from e


def saved_input_stats(checkpoint_dir: str | epath.PathLike, *,
                      step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The per-axis `(mean, std)` a 1D method's windows were normalised by, saved as
    `state/train/input_mean` and `input_std` (the newest step by default); downstream windows
    take the same normalisation."""
    path, saved = _saved_state(checkpoint_dir, step)
    names = ("input_mean", "input_std")
    if not all(name in saved.get("train", {}) for name in names):
        raise ValueError(f"checkpoint {path} has no train/input_mean and train/input_std: it "
                         "was not pre-trained on sensor windows")
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {"train": {name: jax.ShapeDtypeStruct(saved["train"][name].shape,
                                                   saved["train"][name].dtype, sharding=one)
                        for name in names}}
    restored = _restore_partial(path, target, "train/input_mean and input_std")
    return tuple(np.asarray(restored["train"][name]) for name in names)


def _saved_model_part(checkpoint_dir: str | epath.PathLike, part: str,
                      step: int | None) -> tuple[epath.Path, Any]:
    """The state path of a finished step and the metadata tree of its `model/<part>`."""
    path, saved = _saved_state(checkpoint_dir, step)
    if part not in saved.get("model", {}):
        raise ValueError(f"checkpoint {path} has no model/{part}; it has {sorted(saved)}")
    return path, saved["model"][part]


def _saved_state(checkpoint_dir: str | epath.PathLike,
                 step: int | None) -> tuple[epath.Path, Any]:
    """The state path of a finished step and its metadata tree."""
    directory = user_path(checkpoint_dir, what="checkpoint directory")
    steps = finished_steps(directory)
    if not steps:
        raise ValueError(f"no finished checkpoint in {directory} (expected WORKDIR/{CHECKPOINTS})")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise ValueError(f"no finished checkpoint for step {step} in {directory}; "
                         f"finished steps: {steps}")
    path = ocp.step.build_step_path(directory, _NAME_FORMAT, step) / STATE
    try:
        saved = ocp.PyTreeCheckpointHandler().metadata(path).tree
    except Exception as e:
        raise ValueError(f"cannot read the checkpoint at {path}: {_brief(e)}") from e
    return path, saved


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """`jax.ShapeDtypeStruct`s of `tree`'s arrays (or abstract arrays), all with `sharding`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _keys_to_data(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract_key_data(abstract: Any) -> Any:
    """The target with each key replaced by its uint32 data, on the key's sharding."""
    def leaf(x: Any) -> Any:
        if not _is_key(x):
            return x
        data = jax.eval_shape(jax.random.key_data, x)
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=x.sharding)
    return jax.tree.map(leaf, abstract)


def _wrap_keys(restored: Any, abstract: Any) -> Any:
    return jax.tree.map(
        lambda x, a: jax.random.wrap_key_data(x, impl=_key_impl(a)) if _is_key(a) else x,
        restored, abstract,
    )


def _key_impl(abstract_key: Any) -> Any:
    """The PRNG implementation of a (possibly abstract) key; `jax.random.key_impl` wants a value."""
    impls = []
    jax.eval_shape(lambda k: impls.append(jax.random.key_impl(k)), abstract_key)
    return impls[0]


def _require_shardings(abstract: Any) -> None:
    """Without a target sharding Orbax falls back to the saved one, which fails on other devices."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
        if getattr(leaf, "sharding", None) is None:
            raise ValueError(f"abstract leaf {jax.tree_util.keystr(path)} has no sharding; "
                             "build the target with abstract_like(tree, sharding)")


def _leaf_paths(tree: Any) -> set[str]:
    """Leaf names as `a/b/c`, comparable between a target and Orbax's metadata tree."""
    def name(key: Any) -> str:
        return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))
    return {"/".join(name(k) for k in path)
            for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _brief(error: Exception) -> str:
    """The first line of an error, short: tensorstore's messages embed whole JSON specs."""
    lines = str(error).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0][:200]}"


def _on_every_process(ok: bool) -> bool:
    """Whether `ok` holds on all processes, so that all of them take the same branch."""
    if jax.process_count() == 1:
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
