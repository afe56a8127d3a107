"""libtpu on a host without a TPU: kept out of ordinary commands, set up quietly for compiling.

Measured with libtpu installed on a CPU host: every JAX process that initialises its backends
loads the TPU plugin, prints ~6 lines of initialisation warnings (host bounds, worker hostnames)
and holds libtpu's lockfile for its lifetime, so a second process's TPU compile fails.
Ordinary commands therefore run on `JAX_PLATFORMS=cpu` where no TPU (and no NVIDIA GPU) is
present; only the compile path loads libtpu, with the variables that silence its warnings and
allow several processes to load it.
"""

from __future__ import annotations

import importlib.util
import os

EXTRA_HINT = "pip install 'img2imu-jax[tpu]'"


def libtpu_installed() -> bool:
    return importlib.util.find_spec("libtpu") is not None


def _tpu_chips_present() -> bool:
    from jax._src import hardware_utils  # the PCI scan JAX itself uses to find TPU chips

    return hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0


def keep_libtpu_out() -> None:
    """Where libtpu is installed but nothing can use it, JAX sees only the CPU. Call first."""
    if "JAX_PLATFORMS" in os.environ or not libtpu_installed():
        return
    from jax._src import hardware_utils

    if _tpu_chips_present() or hardware_utils.has_visible_nvidia_gpu():
        return
    import jax

    os.environ["JAX_PLATFORMS"] = "cpu"
    jax.config.update("jax_platforms", "cpu")


def prepare_libtpu_for_compiling() -> None:
    """Before the first `get_topology_desc`: libtpu present, beside other JAX processes, quiet.

    Without a TPU, libtpu asks the cloud metadata server for the host's accelerator type and
    worker hostnames, and warns when neither is set; any values do, since the topology to
    compile for is given explicitly.
    """
    if not libtpu_installed():
        raise RuntimeError(f"compiling for TPU needs libtpu: {EXTRA_HINT}")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # beside other JAX processes
    if not _tpu_chips_present():
        os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
        os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-4")
        os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
