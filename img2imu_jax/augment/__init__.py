"""Device-side image augmentations for contrastive pre-training, chosen by a spec string.

`make_augment("translate_x|permute_x|hue|jitter")` builds a pure, jittable function
`augment(key, images, indices=None)` for float32 images `[B, H, W, 3]` in [0, 1]. Ops run left
to right; example `b` draws everything from `fold_in(key, indices[b])`, so a device's shard of a
global batch gets exactly the views the whole batch would get on one device (docs: DESIGN.md).

The paper keeps four augmentations, each tied to a sensor property, and gives no magnitudes.
These defaults are the project's; recipe configs override them with
keywords named `<op>_<param>`, e.g. `make_augment(spec, permute_x_segments=5)`.

| op | param | default | sensor augmentation it stands for, and why this default |
|---|---|---|---|
| `translate_x` | `max_fraction` | 0.5 | time shift; ±W/2: windows overlap by 50 % |
| `permute_x` | `segments` | 4 | Um et al. 2017's permutation, `nPerm=4` |
| `permute_x` | `min_share` | 0.25 | Um et al.'s `minSegLength`: random lengths, no slivers |
| `hue` | `max_degrees` | 180 | sensor rotation; Um et al. draw angles uniformly in [−π, π] |
| `jitter` | `amplitude` | 0.0866 | additive noise; σ = 0.0866/√3 = 0.05, Um et al.'s σ |
| each of the four | `p` | 1.0 | the paper applies all four and reports no probabilities |

- `translate_x`: a window can start anywhere within the same activity and the width is time, so
  the image shifts by a whole number of columns drawn uniformly in ±max_fraction·W; at 0.5 that
  spans the offset between neighbouring windows under the protocol's 50 % overlap. Columns wrap
  around (a circular roll): every column's content is kept, where a fill would paint a silent
  band no sensor records, and rows are untouched exactly.
- `permute_x`: the width is cut into `segments` pieces whose order is shuffled, keeping local
  temporal features and breaking global order. Lengths are random, as in Um et al.; each is at
  least `min_share` of an equal split (8 of 128 columns at the defaults, so lengths run 8–104),
  the role of Um et al.'s floor. `min_share=1` gives equal segments.
- `hue`: x, y, z are R, G, B, so rotating the sensor mixes the channels. Each RGB vector rotates
  about the grey axis by an angle uniform in ±max_degrees; ±120° permutes the channels exactly.
  A device can be worn any way round, hence the full circle. Brightness, the mean of R, G, B,
  is kept exactly (pixels the rotation pushes out of [0, 1] are desaturated, not clipped).
- `jitter`: sensor noise brightens or darkens parts of the spectrogram. Uniform noise in
  ±amplitude, independent per pixel and channel (each axis has its own noise), then a clip to
  [0, 1]. Um et al.'s jitter σ = 0.05 is for signals on a unit scale; the image's is [0, 1].
- `p`: every op already draws near-identity views (shift ≈ 0, angle ≈ 0) among the others.

The defaults were checked by an ablation that could not choose between them and moved none
(`benchmarks/augment_ablation.py`; benchmarks/RESULTS.md has the figures).

`crop` is the mild crop the paper neither includes nor excludes, off unless a
spec names it (`crop|translate_x|permute_x|hue|jitter`): torchvision's RandomResizedCrop back
to H × W, box area `scale_min`–`scale_max` (0.5–1) of the image, aspect 3/4–4/3. On a
spectrogram, resizing a box stretches time and frequency together, as a faster or slower gait
does; at area ≥ 0.5 each side is stretched at most ≈ 1.4× (√2 at aspect 1), about the range
of human walking cadence, where MoCo v2's 0.2 would stretch up to ≈ 2.2×. It stays out of the
IMG2IMU set: the paper's set has no crop, and the ablation found no gain from it
(benchmarks/RESULTS.md).

Two baselines from the paper's comparison are composites with their own `<name>_*` params.
`mocov2` is MoCo v2's list in its order, torchvision semantics (`MOCOV2_DEFAULTS`): random
resized crop (scale 0.2–1, aspect 3/4–4/3, bilinear back to H × W); colour jitter with p = 0.8
(brightness, contrast, saturation 0.4, hue 0.1, in random order); grayscale with p = 0.2;
Gaussian blur with p = 0.5 (σ in [0.1, 2], kernel ≈ 10 % of the shorter side, odd); horizontal
flip with p = 0.5. `all` is "MoCo + All augmentations" (`ALL_DEFAULTS`): rotate (±30°), shear
(±0.3, x or y), sharpness, contrast, brightness and colour (factors 1 ± 0.9), invert, solarize
(threshold in [0, 1]), posterize (4–8 bits), equalize, autocontrast, then the four sensor ops at
their defaults, each applied with probability `all_p` = 0.5 in that fixed order; magnitudes are
drawn uniformly up to RandAugment's maxima (Cubuk et al. 2020), PIL's formulas throughout.

Every op computes its result for every example and selects it with `jnp.where`, so the whole
pipeline vmaps and has static shapes. Shifts and permutations in a row compose into one column
index per example, applied once; on TPU a blur and a flip in a row compose into one pair of
row and column matrices. Pixel movements take the form each backend runs best (`backend`):
gathers on CPU and GPU; one-hot and interpolation-matrix products on TPU, where the compiler
costs gathers far higher (benchmarks/RESULTS.md).

Modules: `spec` (parsing and checking specs and params), `chain` (steps, coins, draws),
`sensor`, `photo` and `colour` (the ops), `backend` (per-backend pixel movements), `pipeline`
(`make_augment` and the registry of ops).
"""

from img2imu_jax.augment.pipeline import (
    ALL_DEFAULTS,
    MOCOV2_DEFAULTS,
    SENSOR_DEFAULTS,
    Augment,
    make_augment,
)

__all__ = ["ALL_DEFAULTS", "MOCOV2_DEFAULTS", "SENSOR_DEFAULTS", "Augment", "make_augment"]
