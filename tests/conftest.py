"""Test set-up: 8 fake CPU devices so multi-device code runs anywhere, and shared data lookup."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The paper authors' sample window and rendering (shared/ beside the checkout), or skip."""
    from img2imu_jax.demo import find_reference_window

    try:
        return find_reference_window(Path(__file__).parent).parent
    except ValueError:
        pytest.skip("shared/reference/img2imu_app is not beside this checkout")
