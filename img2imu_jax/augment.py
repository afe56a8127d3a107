"""Device-side image augmentations for contrastive pre-training, chosen by a spec string.

`make_augment("translate_x|permute_x|hue|jitter")` builds a pure, jittable function
`augment(key, images, indices=None)` for float32 images `[B, H, W, 3]` in [0, 1]. Ops run left
to right; example `b` draws everything from `fold_in(key, indices[b])`, so a device's shard of a
global batch gets exactly the views the whole batch would get on one device (docs: DESIGN.md).

The paper keeps four augmentations, each tied to a sensor property, and gives no magnitudes
(docs: paper.md §3.2). These defaults are the project's; recipe configs override them with
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

How the defaults were checked (`benchmarks/augment_ablation.py`, benchmarks/RESULTS.md): each
op left out and each parameter moved once (MoCo with Shuffle BN, ResNet-18 width 16, 300 steps
on the 1000-photo sample), judged by the BasicMotions probe, no dataset we report. No change
moved the probe's 10-shot gain over random init outside the spread of the defaults themselves
over three seeds (−5.8 to +11.0 points), and neither did the three-seed repeats of the most
promising changes. At that scale the ablation cannot choose, so the defaults stay where the
sensor arguments above put them; none was tuned to a probe figure. The probe is a weak judge
besides: it ranks pre-trained encoders almost in reverse of WISDM 2019 (RESULTS.md's transfer
table), so a probe on WISDM's validation subjects should decide the next round.

`crop` is the mild crop the paper neither includes nor excludes (paper.md §3.2), off unless a
spec names it (`crop|translate_x|permute_x|hue|jitter`): torchvision's RandomResizedCrop back
to H × W, box area `scale_min`–`scale_max` (0.5–1) of the image, aspect 3/4–4/3. On a
spectrogram, resizing a box stretches time and frequency together, as a faster or slower gait
does; at area ≥ 0.5 each side is stretched at most ≈ 1.4× (√2 at aspect 1), about the range
of human walking cadence, where MoCo v2's 0.2 would stretch up to ≈ 2.2×. It stays out of the
IMG2IMU set: over three seeds of the ablation it moved the probe within noise (10-shot gain
+6.6 against the defaults' +3.8, 1-shot −6.6 against −1.9), the paper's set has no crop, and
those runs took 14 % longer on the CPU (benchmarks/RESULTS.md, with transfer.py's
`img2imu_crop` row beside it).

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
pipeline vmaps and has static shapes; permutations and shifts are column gathers, O(pixels).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

ExampleOp = Callable[[jax.Array, jax.Array], jax.Array]
"""`(key, image [H, W, 3]) -> image`: one example's augmentation, vmapped over the batch."""
Step = tuple[ExampleOp, float]
"""An op and the probability that it is applied."""

# ITU-R 601 luma, what PIL's "L" mode and torchvision's rgb_to_grayscale use.
_LUMA = (0.299, 0.587, 0.114)
# AutoAugment's fill for pixels that rotate or shear in from outside the image.
_FILL = 0.5
# torchvision's RandomResizedCrop tries this many boxes before falling back to a central crop.
_CROP_TRIES = 10


class Augment(Protocol):
    """`augment(key, images, indices=None)`: one random view of each image, same shape, float32."""

    def __call__(
        self, key: jax.Array, images: jax.Array, indices: jax.Array | None = None
    ) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class _Param:
    default: float
    low: float
    high: float = math.inf
    integer: bool = False
    open_low: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.high == math.inf:
            return f"{kind} {'>' if self.open_low else '≥'} {self.low:g}"
        return f"{kind} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool):
            return False
        if self.integer:
            if not isinstance(value, numbers.Integral):
                return False
        elif not (isinstance(value, numbers.Real) and math.isfinite(value)):
            return False
        above = value > self.low if self.open_low else value >= self.low
        return above and value <= self.high


@dataclasses.dataclass(frozen=True)
class _Op:
    build: Callable[..., Step]
    params: Mapping[str, _Param]
    # Pairs (a, b) whose values must satisfy a ≤ b.
    ordered: tuple[tuple[str, str], ...] = ()


def make_augment(spec: str, **params: float) -> Augment:
    """Parses `spec` ("op|op|…") and its `<op>_<param>` keywords into a batched augmentation.

    Every name and value is checked here, on the host, so a bad recipe fails before tracing.
    The result, `augment(key, images, indices=None)`, is pure and traceable: call it inside the
    jitted step, or wrap it in `jax.jit`. `indices` are the images' positions in the global
    batch (default 0…B-1); example `b` draws from `fold_in(key, indices[b])`.
    """
    names = _parse_spec(spec)
    values = _resolve_params(spec, names, params)
    example = _chain([_OPS[name].build(**values[name]) for name in names])

    def augment(key: jax.Array, images: jax.Array, indices: jax.Array | None = None) -> jax.Array:
        images = _check_images(images)
        if indices is None:
            indices = jnp.arange(images.shape[0])
        else:
            indices = jnp.asarray(indices)
            if indices.shape != images.shape[:1] or not jnp.issubdtype(indices.dtype, jnp.integer):
                raise ValueError(
                    f"indices must be integers shaped [{images.shape[0]}] (one per image); got "
                    f"{indices.dtype} {indices.shape}"
                )
        keys = jax.vmap(lambda index: jax.random.fold_in(key, index))(_shard_like(indices, images))
        return jax.vmap(example)(keys, images)

    return augment


def _shard_like(indices: jax.Array, images: jax.Array) -> jax.Array:
    """`indices` split over the mesh axes the images' batch axis is split over.

    On an Explicit mesh (what `jax.make_mesh` builds by default) vmap refuses to map arrays
    whose mapped axes are sharded differently; elsewhere the batch axis's spec is None.
    """
    sharding = jax.typeof(images).sharding
    if not sharding.spec or sharding.spec[0] is None:
        return indices
    batch = NamedSharding(sharding.mesh, PartitionSpec(sharding.spec[0]))
    return jax.sharding.reshard(indices, batch)


def _parse_spec(spec: str) -> list[str]:
    valid = ", ".join(_OPS)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"augmentation spec is empty; give ops joined by '|' from: {valid}")
    names = [name.strip() for name in spec.split("|")]
    for name in names:
        if name not in _OPS:
            shown = repr(name) if name else "an empty op"
            raise ValueError(f"unknown augmentation {shown} in spec {spec!r}; valid ops: {valid}")
    return names


def _resolve_params(
    spec: str, names: list[str], params: Mapping[str, object]
) -> dict[str, dict[str, float]]:
    """Keyword params → per-op values (defaults filled in), each name and range checked."""
    owner = {f"{op}_{param}": (op, param) for op in _OPS for param in _OPS[op].params}
    in_spec = [full for full, (op, _) in owner.items() if op in names]
    for full, value in params.items():
        if full not in owner:
            raise ValueError(
                f"unknown augmentation parameter {full!r}; valid for spec {spec!r}: "
                f"{', '.join(in_spec)}"
            )
        op, param = owner[full]
        if op not in names:
            raise ValueError(
                f"parameter {full!r} is for op {op!r}, which is not in spec {spec!r}; valid for "
                f"this spec: {', '.join(in_spec)}"
            )
        rule = _OPS[op].params[param]
        if not rule.accepts(value):
            raise ValueError(f"{full} must be {rule.describe()}; got {value!r}")
    values = {}
    for op in dict.fromkeys(names):
        values[op] = {
            param: params.get(f"{op}_{param}", rule.default)
            for param, rule in _OPS[op].params.items()
        }
        for low, high in _OPS[op].ordered:
            if values[op][low] > values[op][high]:
                raise ValueError(
                    f"{op}_{low} must not exceed {op}_{high}; got {values[op][low]!r} > "
                    f"{values[op][high]!r}"
                )
    return values


def _check_images(images: jax.Array) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [batch, height, width, 3]; got shape {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"images must be floats in [0, 1]; got {images.dtype} (divide uint8 images by 255)"
        )
    return images.astype(jnp.float32)


def _chain(steps: list[Step]) -> ExampleOp:
    """Steps applied left to right, each with its own key; a skipped step is a select, so it vmaps.

    All coins come from one draw: every `jax.random` call adds a threefry to the compiled step.
    """
    probabilities = np.array([p for _, p in steps], np.float32)

    def apply(key: jax.Array, image: jax.Array) -> jax.Array:
        keys = jax.random.split(key, len(steps) + 1)
        applied = jax.random.uniform(keys[0], (len(steps),)) < probabilities
        for i, (op, _) in enumerate(steps):
            image = jnp.where(applied[i], op(keys[i + 1], image), image)
        return image

    return apply


def _symmetric(key: jax.Array, reach: float) -> jax.Array:
    return jax.random.uniform(key, (), minval=-reach, maxval=reach)


def _between(u: jax.Array, low: float | jax.Array, high: float | jax.Array) -> jax.Array:
    """Uniform draws `u` in [0, 1) mapped to [low, high)."""
    return low + (high - low) * u


def _pick(u: jax.Array, count: int | jax.Array) -> jax.Array:
    """Uniform draws `u` in [0, 1) mapped to integers in [0, count)."""
    return jnp.minimum(jnp.floor(u * count), count - 1).astype(jnp.int32)


# The four sensor-aware ops ---------------------------------------------------------------------


def _translate_x(max_fraction: float, p: float) -> Step:
    def op(key: jax.Array, image: jax.Array) -> jax.Array:
        width = image.shape[1]
        reach = int(max_fraction * width)
        shift = _pick(jax.random.uniform(key), 2 * reach + 1) - reach
        return jnp.take(image, (jnp.arange(width) - shift) % width, axis=1)

    return op, p


def _permute_x(segments: int, min_share: float, p: float) -> Step:
    def op(key: jax.Array, image: jax.Array) -> jax.Array:
        width = image.shape[1]
        if segments > width:
            raise ValueError(f"permute_x: {segments} segments do not fit in {width} columns")
        shortest = max(1, int(min_share * width / segments))
        u = jax.random.uniform(key, (2 * segments - 1,))
        # Sorted uniform draws from the slack, each pushed right by one minimum length per cut:
        # every segment is at least `shortest` long, the rest of the length falls at random.
        slack = _pick(u[: segments - 1], width - segments * shortest + 1)
        cuts = jnp.sort(slack) + shortest * jnp.arange(1, segments)
        starts = jnp.pad(cuts, (1, 0))
        lengths = jnp.diff(jnp.pad(starts, (0, 1), constant_values=width))
        order = jnp.argsort(u[segments - 1 :])
        placed = jnp.cumsum(lengths[order]) - lengths[order]
        columns = jnp.arange(width)
        slot = jnp.sum(columns[:, None] >= placed[None, 1:], axis=1)
        return jnp.take(image, starts[order][slot] + columns - placed[slot], axis=1)

    return op, p


def _hue(max_degrees: float, p: float) -> Step:
    def op(key: jax.Array, image: jax.Array) -> jax.Array:
        return _rotate_about_grey(image, jnp.deg2rad(_symmetric(key, max_degrees)))

    return op, p


def _rotate_about_grey(image: jax.Array, angle: jax.Array) -> jax.Array:
    """Rotates each RGB vector about the grey axis (1, 1, 1)/√3, keeping the mean of R, G, B.

    Brightness here is that mean: for a spectrogram each channel is one axis's power, and axes
    that a rotation interchanges must weigh alike (luma would count y five times as much as z).
    A rotation keeps the mean exactly but can leave the unit cube; clipping would then change
    the mean, so such a pixel is instead desaturated towards its own grey just enough to fit.
    Angle 0 returns the image unchanged; ±120° permutes the channels cyclically.
    """
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    same, turn = (1 - cos) / 3, sin / math.sqrt(3)
    matrix = jnp.stack([
        jnp.stack([cos + same, same - turn, same + turn]),
        jnp.stack([same + turn, cos + same, same - turn]),
        jnp.stack([same - turn, same + turn, cos + same]),
    ])
    rotated = sum(image[..., k : k + 1] * matrix[:, k] for k in range(3))
    grey = image.mean(axis=-1, keepdims=True)
    chroma = rotated - grey
    room = jnp.where(chroma > 0, 1 - grey, grey)
    fit = jnp.min(room / jnp.maximum(jnp.abs(chroma), 1e-12), axis=-1, keepdims=True)
    return jnp.clip(jnp.where(fit < 1, grey + fit * chroma, rotated), 0.0, 1.0)


def _jitter(amplitude: float, p: float) -> Step:
    def op(key: jax.Array, image: jax.Array) -> jax.Array:
        noise = jax.random.uniform(key, image.shape, minval=-amplitude, maxval=amplitude)
        return jnp.clip(image + noise, 0.0, 1.0)

    return op, p


# MoCo v2 ---------------------------------------------------------------------------------------


def _mocov2(
    *,
    crop_scale_min: float,
    crop_scale_max: float,
    crop_ratio_min: float,
    crop_ratio_max: float,
    color_jitter_p: float,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    grayscale_p: float,
    blur_p: float,
    blur_sigma_min: float,
    blur_sigma_max: float,
    blur_kernel_fraction: float,
    flip_p: float,
) -> Step:
    """MoCo v2's `augmentation` list in its order, with torchvision's semantics."""

    crop = _crop_op((crop_scale_min, crop_scale_max), (crop_ratio_min, crop_ratio_max))

    def color_jitter(key: jax.Array, image: jax.Array) -> jax.Array:
        """torchvision's four adjustments in a random order, each computed once.

        Under vmap the order is per example, so a select per slot would compute all four ops
        in all four slots. Brightness, contrast and saturation are one blend towards a
        degenerate image (black, mean grey, grey), so three blend slots run before the hue
        shift and three after, each the op of that slot or the identity (factor 1, exact on
        [0, 1]), and the hue shift runs once.
        """
        u = jax.random.uniform(key, (8,))
        factors = jnp.stack([
            _between(u[i], max(0.0, 1 - s), 1 + s)
            for i, s in enumerate((brightness, contrast, saturation))
        ])
        order = jnp.argsort(u[4:])  # torchvision applies the four in a random order; 3 = hue
        hue_slot = jnp.argmax(order == 3)

        def blend_slot(image, slot, active):
            op = jnp.minimum(order[slot], 2)
            grey = _grey(image)
            degenerate = jax.lax.select_n(
                op, jnp.zeros_like(image), jnp.broadcast_to(jnp.mean(grey), image.shape),
                jnp.broadcast_to(grey, image.shape))
            return _blend(image, degenerate, jnp.where(active, factors[op], 1.0))

        for slot in range(3):
            image = blend_slot(image, slot, slot < hue_slot)
        image = _shift_hue(image, _between(u[3], -hue, hue))
        for slot in range(1, 4):
            image = blend_slot(image, slot, slot > hue_slot)
        return image

    def blur(key: jax.Array, image: jax.Array) -> jax.Array:
        radius = max(1, int(blur_kernel_fraction * min(image.shape[:2])) // 2)
        sigma = jax.random.uniform(key, (), minval=blur_sigma_min, maxval=blur_sigma_max)
        return _gaussian_blur(image, sigma, radius)

    return _chain([
        (crop, 1.0),
        (color_jitter, color_jitter_p),
        (lambda key, image: _grayscale(image), grayscale_p),
        (blur, blur_p),
        (lambda key, image: image[:, ::-1], flip_p),
    ]), 1.0


def _crop(scale_min: float, scale_max: float, ratio_min: float, ratio_max: float,
          p: float) -> Step:
    return _crop_op((scale_min, scale_max), (ratio_min, ratio_max)), p


def _crop_op(scale: tuple[float, float], ratio: tuple[float, float]) -> ExampleOp:
    """torchvision's RandomResizedCrop, back to the image's own size."""

    def crop(key: jax.Array, image: jax.Array) -> jax.Array:
        return _resized_crop(image, *_random_crop_box(key, *image.shape[:2], scale, ratio))

    return crop


def _random_crop_box(
    key: jax.Array,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """torchvision's RandomResizedCrop box `(top, left, h, w)`: tries vectorised, first fit wins."""
    u = jax.random.uniform(key, (2 * _CROP_TRIES + 2,))
    area = height * width * _between(u[:_CROP_TRIES], *scale)
    aspect = jnp.exp(_between(u[_CROP_TRIES:-2], math.log(ratio[0]), math.log(ratio[1])))
    w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(fits)
    fallback_h, fallback_w = _central_crop_size(height, width, ratio)
    found = fits.any()
    h = jnp.where(found, h[first], fallback_h)
    w = jnp.where(found, w[first], fallback_w)
    top = jnp.where(found, _pick(u[-2], height - h + 1), (height - h) // 2)
    left = jnp.where(found, _pick(u[-1], width - w + 1), (width - w) // 2)
    return top, left, h, w


def _central_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback: the whole image, trimmed to the nearest allowed aspect ratio."""
    if width / height < ratio[0]:
        return min(height, round(width / ratio[0])), width
    if width / height > ratio[1]:
        return height, min(width, round(height * ratio[1]))
    return height, width


def _resized_crop(
    image: jax.Array, top: jax.Array, left: jax.Array, h: jax.Array, w: jax.Array
) -> jax.Array:
    """The box resized to the image's size with linear interpolation, edges clamped to the box.

    Equals `jax.image.resize(box, image.shape, "linear")` (crops only upsample), as a 4-tap
    gather: O(pixels) where jax.image contracts dense per-example weight matrices.
    """
    height, width = image.shape[:2]
    ys = top + jnp.clip((jnp.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = left + jnp.clip((jnp.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    return _sample_bilinear(image, *jnp.meshgrid(ys, xs, indexing="ij"))


def _sample_bilinear(
    image: jax.Array, ys: jax.Array, xs: jax.Array, fill: float = _FILL
) -> jax.Array:
    """The image at fractional (row, column) positions; taps outside the image read `fill`."""
    height, width = image.shape[:2]
    y0, x0 = jnp.floor(ys), jnp.floor(xs)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    pixels = image.reshape(-1, image.shape[-1])
    out = jnp.zeros((*ys.shape, image.shape[-1]), image.dtype)
    for y, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for x, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            inside = ((y >= 0) & (y < height) & (x >= 0) & (x < width))[..., None]
            flat = jnp.clip(y, 0, height - 1) * width + jnp.clip(x, 0, width - 1)
            out = out + wy * wx * jnp.where(inside, pixels[flat.astype(jnp.int32)], fill)
    return out


def _grey(image: jax.Array) -> jax.Array:
    return sum(weight * image[..., k : k + 1] for k, weight in enumerate(_LUMA))


def _grayscale(image: jax.Array) -> jax.Array:
    return jnp.broadcast_to(_grey(image), image.shape)


def _blend(image: jax.Array, degenerate: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's ImageEnhance and torchvision's adjust_*: extrapolate from `degenerate`, clip."""
    return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


def _brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(image, jnp.zeros_like(image), factor)


def _contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(image, jnp.mean(_grey(image)), factor)


def _saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(image, _grey(image), factor)


def _rgb_to_hsv(image: jax.Array) -> jax.Array:
    r, g, b = (image[..., k] for k in range(3))
    value = image.max(axis=-1)
    chroma = value - image.min(axis=-1)
    saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1), 0)
    safe = jnp.where(chroma > 0, chroma, 1)
    sector = jnp.where(
        value == r, (g - b) / safe, jnp.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe)
    )
    hue = jnp.where(chroma > 0, (sector / 6) % 1, 0)
    return jnp.stack([hue, saturation, value], axis=-1)


def _shift_hue(image: jax.Array, shift: jax.Array) -> jax.Array:
    """torchvision's adjust_hue: the HSV hue moved by `shift` turns, saturation and value kept."""
    hsv = _rgb_to_hsv(image)
    return _hsv_to_rgb(hsv.at[..., 0].set((hsv[..., 0] + shift) % 1))


def _hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    hue, saturation, value = (hsv[..., k : k + 1] for k in range(3))
    k = (jnp.array([5.0, 3.0, 1.0]) + 6 * hue) % 6
    return value - value * saturation * jnp.clip(jnp.minimum(k, 4 - k), 0, 1)


def _gaussian_blur(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
    """Separable Gaussian with `2·radius + 1` taps and reflected edges, as torchvision's."""
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * (taps / sigma) ** 2)
    weights = weights / weights.sum()
    for axis in (0, 1):
        size = image.shape[axis]
        padded = jnp.pad(
            image, [(radius, radius) if a == axis else (0, 0) for a in range(3)], mode="reflect"
        )
        image = sum(
            weights[k] * jax.lax.slice_in_dim(padded, k, k + size, axis=axis)
            for k in range(2 * radius + 1)
        )
    return image


# MoCo + All augmentations -----------------------------------------------------------------------


def _all(
    *,
    p: float,
    rotate_max_degrees: float,
    shear_max: float,
    sharpness_max_delta: float,
    contrast_max_delta: float,
    brightness_max_delta: float,
    color_max_delta: float,
    solarize_min_threshold: float,
    posterize_min_bits: int,
    **sensor: float,
) -> Step:
    """Each op with probability `p`, in the paper's listed order; magnitudes uniform up to a max."""

    def enhance(fn: Callable[[jax.Array, jax.Array], jax.Array], delta: float) -> ExampleOp:
        return lambda key, image: fn(image, 1 + _symmetric(key, delta))

    def rotate(key: jax.Array, image: jax.Array) -> jax.Array:
        angle = jnp.deg2rad(_symmetric(key, rotate_max_degrees))
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        return _warp(image, jnp.array([[cos, sin], [-sin, cos]]))

    def shear(key: jax.Array, image: jax.Array) -> jax.Array:
        u = jax.random.uniform(key, (2,))
        along_x = (u[1] < 0.5).astype(jnp.float32)
        # Arithmetic, not a select: vmap on an Explicit mesh cannot mix a batched predicate with
        # unbatched constant matrices.
        direction = along_x * np.array([[0.0, 0.0], [1.0, 0.0]]) + (1 - along_x) * np.array(
            [[0.0, 1.0], [0.0, 0.0]]
        )
        return _warp(image, np.eye(2) + _between(u[0], -shear_max, shear_max) * direction)

    def solarize(key: jax.Array, image: jax.Array) -> jax.Array:
        return _solarize(image, jax.random.uniform(key, (), minval=solarize_min_threshold))

    def posterize(key: jax.Array, image: jax.Array) -> jax.Array:
        bits = posterize_min_bits + _pick(jax.random.uniform(key), 9 - posterize_min_bits)
        return _posterize(image, bits)

    image_ops = [
        rotate,
        shear,
        enhance(_sharpness, sharpness_max_delta),
        enhance(_contrast, contrast_max_delta),
        enhance(_brightness, brightness_max_delta),
        enhance(_saturation, color_max_delta),
        lambda key, image: 1.0 - image,
        solarize,
        posterize,
        lambda key, image: _equalize(image),
        lambda key, image: _autocontrast(image),
    ]
    sensor_ops = [
        build(p=p, **{name: sensor[f"{op}_{name}"] for name in _SENSOR_PARAMS[op] if name != "p"})
        for op, build in _SENSOR_BUILDERS.items()
    ]
    return _chain([(op, p) for op in image_ops] + sensor_ops), 1.0


def _warp(image: jax.Array, matrix: jax.Array) -> jax.Array:
    """Output pixel (y, x) reads the input at `matrix @ (y, x)`, both about the image centre."""
    height, width = image.shape[:2]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    y, x = jnp.meshgrid(jnp.arange(height) - cy, jnp.arange(width) - cx, indexing="ij")
    ys = matrix[0, 0] * y + matrix[0, 1] * x + cy
    xs = matrix[1, 0] * y + matrix[1, 1] * x + cx
    return _sample_bilinear(image, ys, xs)


def _sharpness(image: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's Sharpness: blend with its SMOOTH filter (3×3, centre 5, rest 1, /13), border kept."""
    height, width = image.shape[:2]
    padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    box = sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    smooth = (box + 4 * image) / 13
    rows, cols = jnp.arange(height)[:, None, None], jnp.arange(width)[None, :, None]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    return _blend(image, jnp.where(interior, smooth, image), factor)


def _levels(image: jax.Array) -> jax.Array:
    """8-bit values of a [0, 1] image, what PIL's point operations act on."""
    return jnp.round(image * 255).astype(jnp.int32)


def _solarize(image: jax.Array, threshold: jax.Array) -> jax.Array:
    return jnp.where(image >= threshold, 1.0 - image, image)


def _posterize(image: jax.Array, bits: jax.Array) -> jax.Array:
    drop = 8 - bits
    return ((_levels(image) >> drop) << drop).astype(jnp.float32) / 255


def _autocontrast(image: jax.Array) -> jax.Array:
    """Per-channel min–max stretch to [0, 1]; a constant channel is left alone."""
    low = image.min(axis=(0, 1))
    span = image.max(axis=(0, 1)) - low
    return jnp.where(span > 0, (image - low) / jnp.where(span > 0, span, 1), image)


def _equalize(image: jax.Array) -> jax.Array:
    """PIL's ImageOps.equalize per channel on the 8-bit values (256 bins, histogram by scatter)."""
    return jax.vmap(_equalize_channel, in_axes=2, out_axes=2)(_levels(image)) / 255


def _equalize_channel(levels: jax.Array) -> jax.Array:
    flat = levels.reshape(-1)
    counts = jnp.zeros(256, jnp.int32).at[flat].add(1)
    step = (flat.size - counts[flat.max()]) // 255
    before = jnp.cumsum(counts) - counts
    lut = jnp.minimum((before + step // 2) // jnp.maximum(step, 1), 255)
    return jnp.where(step > 0, lut[levels], levels).astype(jnp.float32)


# Registry --------------------------------------------------------------------------------------

_PROBABILITY = _Param(1.0, 0.0, 1.0)
_SENSOR_BUILDERS: dict[str, Callable[..., Step]] = {
    "translate_x": _translate_x,
    "permute_x": _permute_x,
    "hue": _hue,
    "jitter": _jitter,
}
_SENSOR_PARAMS: dict[str, dict[str, _Param]] = {
    "translate_x": {"max_fraction": _Param(0.5, 0.0, 1.0), "p": _PROBABILITY},
    "permute_x": {
        "segments": _Param(4, 1, integer=True), "min_share": _Param(0.25, 0.0, 1.0),
        "p": _PROBABILITY,
    },
    "hue": {"max_degrees": _Param(180.0, 0.0, 180.0), "p": _PROBABILITY},
    "jitter": {"amplitude": _Param(0.05 * math.sqrt(3), 0.0, 1.0), "p": _PROBABILITY},
}
_CROP_PARAMS = {
    "scale_min": _Param(0.5, 0.0, 1.0, open_low=True),
    "scale_max": _Param(1.0, 0.0, 1.0, open_low=True),
    "ratio_min": _Param(3 / 4, 0.0, open_low=True),
    "ratio_max": _Param(4 / 3, 0.0, open_low=True),
    "p": _PROBABILITY,
}
_MOCOV2_PARAMS = {
    "crop_scale_min": _Param(0.2, 0.0, 1.0, open_low=True),
    "crop_scale_max": _Param(1.0, 0.0, 1.0, open_low=True),
    "crop_ratio_min": _Param(3 / 4, 0.0, open_low=True),
    "crop_ratio_max": _Param(4 / 3, 0.0, open_low=True),
    "color_jitter_p": _Param(0.8, 0.0, 1.0),
    "brightness": _Param(0.4, 0.0),
    "contrast": _Param(0.4, 0.0),
    "saturation": _Param(0.4, 0.0),
    "hue": _Param(0.1, 0.0, 0.5),
    "grayscale_p": _Param(0.2, 0.0, 1.0),
    "blur_p": _Param(0.5, 0.0, 1.0),
    "blur_sigma_min": _Param(0.1, 0.0, open_low=True),
    "blur_sigma_max": _Param(2.0, 0.0, open_low=True),
    "blur_kernel_fraction": _Param(0.1, 0.0, 1.0, open_low=True),
    "flip_p": _Param(0.5, 0.0, 1.0),
}
_ALL_PARAMS = {
    "p": _Param(0.5, 0.0, 1.0),
    "rotate_max_degrees": _Param(30.0, 0.0, 180.0),
    "shear_max": _Param(0.3, 0.0),
    "sharpness_max_delta": _Param(0.9, 0.0, 1.0),
    "contrast_max_delta": _Param(0.9, 0.0, 1.0),
    "brightness_max_delta": _Param(0.9, 0.0, 1.0),
    "color_max_delta": _Param(0.9, 0.0, 1.0),
    "solarize_min_threshold": _Param(0.0, 0.0, 1.0),
    "posterize_min_bits": _Param(4, 1, 8, integer=True),
    **{
        f"{op}_{name}": rule
        for op, params in _SENSOR_PARAMS.items()
        for name, rule in params.items()
        if name != "p"
    },
}
_OPS: dict[str, _Op] = {
    **{op: _Op(_SENSOR_BUILDERS[op], _SENSOR_PARAMS[op]) for op in _SENSOR_BUILDERS},
    "crop": _Op(_crop, _CROP_PARAMS,
                ordered=(("scale_min", "scale_max"), ("ratio_min", "ratio_max"))),
    "mocov2": _Op(
        _mocov2,
        _MOCOV2_PARAMS,
        ordered=(
            ("crop_scale_min", "crop_scale_max"),
            ("crop_ratio_min", "crop_ratio_max"),
            ("blur_sigma_min", "blur_sigma_max"),
        ),
    ),
    "all": _Op(_all, _ALL_PARAMS),
}

# The documented defaults, for recipe configs and the README.
SENSOR_DEFAULTS = {
    op: {name: rule.default for name, rule in params.items()}
    for op, params in _SENSOR_PARAMS.items()
}
MOCOV2_DEFAULTS = {name: rule.default for name, rule in _MOCOV2_PARAMS.items()}
ALL_DEFAULTS = {name: rule.default for name, rule in _ALL_PARAMS.items()}
