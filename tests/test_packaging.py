"""The wheel a user installs: recipes inside, metadata, and the core commands without TensorFlow."""

import subprocess
import zipfile
from email.parser import Parser

import numpy as np

from img2imu_jax import __version__

# Makes TensorFlow and TFDS unimportable, as on a core install (no `pretrain` extra).
BLOCK_TENSORFLOW = '''
import importlib.abc, sys

class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "tensorflow_datasets"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, _NoTensorFlow())
'''


def run(installed, *args, env=None):
    return subprocess.run([str(installed["img2imu"]), *args], capture_output=True, text=True,
                          env=env or installed["env"], cwd=installed["cwd"])


def test_the_wheel_holds_the_recipes_licence_and_a_tensorflow_free_core(installed_wheel):
    with zipfile.ZipFile(installed_wheel["wheel"]) as wheel:
        names = wheel.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(wheel.read(metadata).decode())
    assert {"img2imu_jax/configs/demo.py", "img2imu_jax/configs/img2imu_paper.py",
            "img2imu_jax/py.typed"} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == "Apache-2.0" and meta["Version"] == __version__
    core = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert not [r for r in core if r.startswith(("tensorflow", "clu", "tensorboard"))], core
    where = subprocess.run([str(installed_wheel["python"]), "-c",
                            "import img2imu_jax; print(img2imu_jax.__file__)"], check=True,
                           capture_output=True, text=True, env=installed_wheel["env"],
                           cwd=installed_wheel["cwd"]).stdout
    assert where.startswith(str(installed_wheel["python"].parents[1]))  # not the checkout
    assert run(installed_wheel, "--version").stdout.strip() == f"img2imu {__version__}"


def test_spectrogram_without_tensorflow_and_pretrain_names_the_extra(installed_wheel, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    env = {**installed_wheel["env"], "PYTHONPATH": str(blocker)}
    csv = tmp_path / "walk.csv"
    np.savetxt(csv, np.random.default_rng(0).normal(size=(200, 3)), delimiter=",",
               header="x,y,z", comments="")
    out = tmp_path / "walk.png"
    result = run(installed_wheel, "spectrogram", str(csv), "--sample-rate", "50", "--nfft",
                 "32", "--noverlap", "24", "-o", str(out), env=env)
    assert result.returncode == 0 and out.is_file(), result.stderr
    assert result.stderr == ""  # quiet by default: no library chatter

    # Fine-tuning's protocol log works without TensorFlow too (no TensorBoard scalars then).
    finetune = subprocess.run(
        [str(installed_wheel["python"]), "-c",
         "from img2imu_jax.protocol_log import ProtocolProgress; import img2imu_jax.finetune.results; "
         f"ProtocolProgress(1, __import__('etils.epath').epath.Path({str(tmp_path)!r}))"
         "('random init', 'linear', 0, 1, 0.5, 0.5); import sys; "
         "assert 'tensorflow' not in sys.modules"],
        capture_output=True, text=True, env=env, cwd=installed_wheel["cwd"])
    assert finetune.returncode == 0 and "finetune 1/1" in finetune.stdout, finetune.stderr

    result = run(installed_wheel, "pretrain", "--config", "demo", "--workdir",
                 str(tmp_path / "w"), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "img2imu pretrain: error: needs the pretrain extra (module 'tensorflow_datasets' is not "
        "installed): pip install 'img2imu-jax[pretrain]'"]
