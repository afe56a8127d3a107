"""The trainer's step, in process: 8 devices equal one device and pmap, a one-device program
has no collectives, config errors come first. Whole runs in subprocesses: test_trainer_runs.py."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from img2imu_jax import cli
from img2imu_jax.augment import make_augment
from img2imu_jax.config import RECIPES as CONFIGS, load_config
from img2imu_jax.parallel import data_mesh
from img2imu_jax.pretrain import image_views, per_device_step, setup, shard_step

SMALL = ["model.width=8", "data.image_size=(32,48)", "batch_size=16", "moco.queue_size=64",
         "data.shuffle_buffer=32"]


def small_config(method: str, optimizer: str = "sgd", *extra: str):
    overrides = SMALL + [f"method={method}", f"optim.name={optimizer}", "optim.base_lr=0.1",
                         "model.head=" + ("mocov2" if method == "moco" else "simclr"), *extra]
    return load_config(CONFIGS / "demo.py", overrides)


def one_step(config, mesh):
    return setup(config, mesh, steps_per_epoch=5, total_steps=10)


def images(n=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 48, 3), dtype=np.uint8)


# Compiled XLA collectives; a one-device program must have none.
COLLECTIVES = re.compile(r"\b(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)"
                         r"(-start)?\(")


# MoCo with Shuffle BN: one global permutation, ghost groups of 4 (a batch of 32 gives every
# device of 8 one group). MoCo without it runs keys and queries through the same global-BN
# `apply_global` as SimCLR's case, and so does SimSiam (its predictor and stop-gradient do not
# depend on the devices); their own cases were dropped for the suite's time (34 s, 66 s).
# SimCLR's case also runs the same per-device step under pmap from the same state and batch,
# against the 8-device shard_map step it already has.
@pytest.mark.parametrize("method, extra, under_pmap_too", [
    ("simclr", (), True),
    ("moco", ("moco.shuffle_bn=True", "moco.bn_group_size=4", "batch_size=32"), False),
], ids=["simclr", "moco-shuffle-bn"])
def test_eight_devices_equal_one_device_and_pmap_and_one_device_has_no_collectives(
        method, extra, under_pmap_too):
    config = small_config(method, "sgd", *extra)
    batch = images(config.batch_size)
    results, collectives = [], []
    for mesh in (data_mesh(), jax.make_mesh((1,), ("data",), devices=jax.devices()[:1],
                                            axis_types=(jax.sharding.AxisType.Auto,))):
        run = one_step(config, mesh)
        if not results:
            start, eight_devices = jax.device_get(run.state), run  # the step donates its state
        sharded = jax.device_put(batch, jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec("data")))
        step = run.step_fn.lower(run.state, sharded).compile()
        collectives.append(len(COLLECTIVES.findall(step.as_text())))
        results.append(jax.device_get(step(run.state, sharded)))
    assert collectives[1] == 0
    assert collectives[0] > 10  # global BatchNorm alone averages over devices in every layer
    (state8, metrics8), (state1, metrics1) = results
    for name in metrics1:
        np.testing.assert_allclose(metrics8[name], metrics1[name], rtol=2e-4, atol=1e-6)
    # SGD moves each parameter by lr × its gradient, so equal parameters mean equal gradients;
    # the BatchNorm statistics are the global batch's on both.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5),
                 state8, state1)
    if under_pmap_too:
        per_device = per_device_step(eight_devices.method, eight_devices.tx,
                                     eight_devices.schedule,
                                     image_views(make_augment(config.augment.spec)))
        pmapped = jax.pmap(per_device, axis_name="data", in_axes=(None, 0))
        got_state, got = jax.device_get(pmapped(start, batch.reshape(8, 2, 32, 48, 3)))
        for name in metrics8:
            np.testing.assert_allclose(got[name], metrics8[name][None].repeat(8, 0), rtol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6),
                     got_state, state8)


def test_config_errors_come_before_anything_compiles(tmp_path, capsys):
    argv = ["pretrain", "--config", str(CONFIGS / "demo.py"), "--workdir", str(tmp_path)]
    assert cli.main(argv + ["--config.optim.lr=3"]) == 1
    assert "unknown config key 'optim.lr'" in capsys.readouterr().err
    assert cli.main(argv + ["--config.batch_size=lots"]) == 1
    assert "batch_size must be int" in capsys.readouterr().err
    assert cli.main(argv + ["--config.method=byol"]) == 1
    assert "method must be one of cpc_1d, moco, multitask_1d, simclr, simclr_1d, simsiam" in \
        capsys.readouterr().err
    assert not any(tmp_path.iterdir())
