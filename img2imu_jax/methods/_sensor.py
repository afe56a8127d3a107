"""What the 1D sensor methods share: windows in, their own views out, dropout keys per device.

The trainer feeds these methods a sensor corpus's normalised windows `[n, time, 3]` (float32)
instead of photos; `views(key, windows, indices)` makes the two arrays the shared step hands
to `loss` (what they hold is the method's: two transformed views for SimCLR, the original and
every transformation of it for multi-task, the window itself for CPC). Views draw their
randomness per example from the global index, as the image augmentations do.

The 1D encoder's dropout is on during pre-training. Its key is the step's loss key folded
with the device's index, so devices drop different units (with one key they would drop the
same ones in every shard).
"""

from __future__ import annotations

import jax
from jax import lax

from img2imu_jax.methods import Method
from img2imu_jax.parallel import DATA_AXIS


class SensorMethod(Method):
    input = "windows"

    def views(self, key: jax.Array, windows: jax.Array, indices: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError


def dropout_key(key: jax.Array) -> jax.Array:
    """This device's dropout key from the step's loss key."""
    return jax.random.fold_in(key, lax.axis_index(DATA_AXIS))
