"""Test set-up: 8 fake CPU devices so multi-device code runs anywhere, and shared data lookup."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

# Where the bench extra is installed, torchvision is imported before anything loads TensorFlow:
# importing torchvision (its triton) after TensorFlow and JAX segfaults the process (measured
# with torch 2.14.1, tensorflow-cpu 2.21), while the other order works.
if importlib.util.find_spec("torchvision") is not None:
    import torchvision  # noqa: E402, F401

import pytest  # noqa: E402

# The longest files first, so that under pytest-xdist (`make test`) no worker is handed one of
# them last while the other runs out of work.
SLOW_FILES_FIRST = ("test_trainer_runs.py", "test_demo.py", "test_pretrain.py", "test_pods.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest as found


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The paper authors' sample window and rendering (shared/ beside the checkout), or skip."""
    folder = Path(__file__).resolve().parents[2] / "shared" / "reference" / "img2imu_app"
    if not (folder / "jogging.csv").is_file():
        pytest.skip(f"{folder} (the authors' sample window) is not beside this checkout")
    return folder


def _fresh_venv(base: Path, env: dict) -> Path:
    """A venv under `base` without pip that sees this environment's site-packages through a
    .pth file (a .pth in a directory added that way is not run, so the editable install of the
    checkout stays off); its `python`."""
    import subprocess
    import sys
    import sysconfig

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True, env=env).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
            *(p for p in sys.path if Path(p).name == "site-packages")}  # .pth-added ones too
    Path(purelib, "dev_site_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


def _pip_install(python: Path, *args: str, env: dict, cwd: Path) -> None:
    """Offline, no dependencies, this environment's setuptools (no build isolation)."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", "--no-build-isolation", *args], check=True,
                   capture_output=True, text=True, env=env, cwd=cwd)


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory) -> dict:
    """This checkout built as a wheel and installed into a fresh virtual environment outside it.

    Offline and cheap: the build uses this environment's setuptools (no isolation), the fresh
    venv has no pip and sees this environment's site-packages (`_fresh_venv`), and only the
    wheel itself is installed, with --no-deps. Returns the venv's `python` and `img2imu`, the
    installed wheel, and an `env` without PYTHONPATH.
    """
    import subprocess
    import sys

    import shutil

    root = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Built from a copy: pip builds a local folder in place, and setuptools never empties the
    # build/ it leaves there, so a module deleted since would ship again.
    source = base / "source"
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "__pycache__", "demo_out", "runs", "out", "shared"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(base / "dist"), str(source)],
                   check=True, capture_output=True, text=True, env=env, cwd=base)
    (wheel,) = (base / "dist").glob("img2imu_jax-*.whl")
    python = _fresh_venv(base, env)
    _pip_install(python, str(wheel), env=env, cwd=base)
    return {"python": python, "img2imu": python.parent / "img2imu", "wheel": wheel, "env": env,
            "cwd": base}


@pytest.fixture(scope="session")
def editable_install(tmp_path_factory) -> dict:
    """This checkout installed editable (`pip install -e`) into a fresh venv, as `installed_wheel`
    does it; run from a folder outside the checkout."""
    root = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("editable")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    python = _fresh_venv(base, env)
    _pip_install(python, "--editable", str(root), env=env, cwd=base)
    return {"python": python, "img2imu": python.parent / "img2imu", "env": env, "cwd": base,
            "root": root}
