"""Running where TPU pods run: gs:// end to end against a loopback GCS emulator, stamped and
checked resumes, metrics without append, profiles, and the command-line checks."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from clu import metric_writers
from etils import epath
from flax import nnx

from img2imu_jax import cli, run_info, writers
from img2imu_jax.config import load_config
from img2imu_jax.finetune.config import finetune_base_config
from tests.gcs_emulator import gcs  # noqa: F401  (the fixture)

from img2imu_jax.config import RECIPES as CONFIGS
TINY = ["model.width=8", "data.image_size=(32,48)", "batch_size=16", "moco.queue_size=64",
        "data.shuffle_buffer=32", "total_steps=1", "checkpoint_every=1", "log_every=1",
        "compilation_cache_dir=''", "method=simclr", "model.head=simclr", "probe.eval_every=0"]


@pytest.mark.parametrize("argv", [
    ["pretrain", "--config", "configs/demo.py", "--workdir", "s4://bucket/run"],
    ["prepare", "--out-dir", "foo://bucket/prep"],
    ["finetune", "--config", "configs/finetune_basicmotions.py", "--workdir", "s3x://b/ft"],
])
def test_an_unsupported_scheme_is_one_line_and_writes_nothing(argv, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "is not supported" in error
    assert not any(tmp_path.iterdir())  # no folder named 's4:' or 'foo:'


def test_local_device_ids_need_a_distributed_run(tmp_path, capsys):
    argv = ["pretrain", "--config", str(CONFIGS / "demo.py"), "--workdir", str(tmp_path)]
    assert cli.main(argv + ["--local-device-ids", "0,1"]) == 1
    assert "needs --distributed or --coordinator" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(argv + ["--local-device-ids", "0,0"])


def test_metrics_lines_are_rewritten_whole_and_a_resume_drops_repeated_steps(tmp_path):
    path = epath.Path(tmp_path) / "metrics.jsonl"
    first = writers.JsonLinesWriter(path)
    for step in (1, 2, 3):
        first.write_scalars(step, {"loss": 1.0 / step})
    resumed = writers.JsonLinesWriter(path, resumed_step=2)  # the run restarts from step 2
    resumed.write_scalars(3, {"loss": 0.5})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["step"], line["loss"]) for line in lines] == [(1, 1.0), (2, 0.5), (3, 0.5)]


def test_config_diff_names_changed_added_and_removed_keys_but_not_observation_keys():
    old = {"batch_size": 16, "optim": {"base_lr": 0.1, "name": "sgd"}, "log_every": 1,
           "wandb": {"mode": ""}, "gone": 1}
    new = {"batch_size": 32, "optim": {"base_lr": 0.1, "name": "adam"}, "log_every": 50,
           "wandb": {"mode": "offline"}, "added": 2}
    assert run_info.config_diff(old, new) == ["added", "batch_size", "gone", "optim.name"]


def test_profile_steps_write_a_trace_tensorboard_finds(tmp_path):
    from img2imu_jax.profiling import StepProfiler

    profiler = StepProfiler(epath.Path(tmp_path), (2, 2))
    double = jax.jit(lambda x: x * 2)
    x = np.ones(4, np.float32)
    for step in range(1, 6):
        profiler.before(step)
        x = double(x)
        assert profiler.tracing == (step in (2, 3))
        profiler.after(step, x)
    profiler.close(x)
    traces = list((tmp_path / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


def read(path: epath.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def gs_run(gcs, tmp_path_factory):  # noqa: F811
    """One step of SimCLR with its workdir on gs://, then a resume to step 2 that changes
    total_steps. TensorBoard events go through TensorFlow's GCS client, which cannot reach
    the emulator, so that one writer logs instead (see gcs_emulator.py)."""
    from img2imu_jax.pretrain import train

    data_dir = tmp_path_factory.mktemp("tfds")
    config = load_config(CONFIGS / "demo.py", TINY + [f"data.data_dir={data_dir}",
                                                      "profile_steps=(1,1)"])
    workdir = epath.Path(gcs) / "runs" / "moco"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writers, "tensorboard_writer", lambda _: metric_writers.LoggingWriter())
        first = train(config, str(workdir))
        after_first = read(workdir / "metrics.jsonl")
        config.total_steps = 2
        with pytest.raises(ValueError, match=r"differing keys: total_steps \("):
            train(config, str(workdir))
        train(config, str(workdir), allow_config_change=True)
    return workdir, config, first, after_first


def test_pretraining_on_gs_checkpoints_logs_stamps_and_resumes(gs_run):
    workdir, config, first, after_first = gs_run
    assert [line["step"] for line in after_first] == [1]
    assert after_first[-1]["loss"] == pytest.approx(first["loss"])
    lines = read(workdir / "metrics.jsonl")
    assert [line["step"] for line in lines] == [1, 2]  # rewritten whole: no append on GCS
    assert lines[:1] == after_first
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()
                  if p.name.isdigit()) == ["1", "2"]
    record = json.loads((workdir / "run.json").read_text())
    assert record["config"]["total_steps"] == 2 and record["config"]["batch_size"] == 16
    assert [start["config_changes"] for start in record["starts"]] == [[], ["total_steps"]]
    start = record["starts"][0]
    assert set(start["versions"]) == set(run_info.PACKAGES)
    assert start["versions"]["jax"] == jax.__version__
    assert start["devices"]["device_count"] == jax.device_count() == 8
    assert start["devices"]["platform"] == "cpu"
    # Step 1 of the first start was profiled (locally, then uploaded); the resume starts at 2.
    assert len(list((workdir / "plugins" / "profile").glob("*/*.xplane.pb"))) == 1


def test_fine_tuning_restores_the_encoder_from_gs(gs_run):
    import orbax.checkpoint as ocp

    from img2imu_jax.checkpoint import abstract_like
    from img2imu_jax.finetune.results import load_encoder

    workdir, config, _, _ = gs_run
    finetune = finetune_base_config()
    finetune.model.width = config.model.width
    encoder = load_encoder(finetune, str(workdir / "checkpoints"))
    # The reference: the whole saved state of the last step, read by Orbax itself.
    state = workdir / "checkpoints" / "2" / "state"
    saved = ocp.PyTreeCheckpointHandler().metadata(state).tree
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    restored = ocp.StandardCheckpointer().restore(state, abstract_like(saved, one))
    expected = by_name(restored["model"]["encoder"])
    got = by_name(nnx.to_pure_dict(nnx.state(encoder)))
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def by_name(tree) -> dict[str, np.ndarray]:
    """Leaves by their path as text: Orbax names list items '0' (nnx: 0) and keeps the
    variables' trailing 'value' (nnx's pure dicts drop it)."""
    named = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]:
        keys = [str(getattr(k, "key", k)) for k in path]
        named["/".join(keys[:-1] if keys[-1] == "value" else keys)] = np.asarray(leaf)
    return named


def test_prepare_writes_a_tfds_copy_to_gs(gcs, tmp_path, capsys):  # noqa: F811
    import tensorflow_datasets as tfds

    out = epath.Path(gcs) / "prepared"
    argv = ["prepare", "--dataset", "bundled_photos", "--data-dir", str(tmp_path / "src"),
            "--out-dir", str(out), "--size", "24x32", "--examples-per-shard", "8"]
    assert cli.main(argv) == 0
    remote = out / "bundled_photos_24x32" / "1.0.0"
    local = tmp_path / "copy"
    local.mkdir()
    for item in remote.iterdir():  # tf.data cannot read the emulator: read a downloaded copy
        item.copy(epath.Path(local) / item.name)
    copy = tfds.builder_from_directory(str(local))
    source = tfds.builder_from_directory(str(tmp_path / "src" / "bundled_photos" / "1.0.0"))
    assert copy.info.splits["train"].num_examples == source.info.splits["train"].num_examples
    images = [x["image"] for x in copy.as_dataset(split="train").as_numpy_iterator()]
    assert {image.shape for image in images} == {(24, 32, 3)}
    assert "prepared copy: gs://" in capsys.readouterr().out


def test_wandb_offline_gets_the_same_scalars_as_metrics_jsonl(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from img2imu_jax.config import base_config

    monkeypatch.setenv("WANDB_SILENT", "true")
    config = base_config()
    config.wandb.mode = "offline"
    workdir = epath.Path(tmp_path)
    writer = writers.training_writer(workdir, config)
    writer.write_scalars(1, {"loss": 2.5, "learning_rate": 0.1})
    writer.write_scalars(2, {"loss": 1.5, "learning_rate": 0.1})
    writer.flush()
    run = wandb.run
    assert run is not None and run.settings.mode == "offline"
    assert run.summary["loss"] == 1.5 and run.config["batch_size"] == config.batch_size
    writer.close()
    assert [line["loss"] for line in read(workdir / "metrics.jsonl")] == [2.5, 1.5]
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
