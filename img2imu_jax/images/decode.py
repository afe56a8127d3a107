"""Host-side decoding: encoded image bytes → uint8 [height, width, 3], squashed to size.

The paper squashes ImageNet to 128 × 96 (W × H) without keeping the aspect ratio. JPEGs are
decoded at a reduced size (libjpeg's 1/2, 1/4, 1/8 DCT scaling) whenever the reduced image is
still at least as large as the target, which cuts decode time several-fold on full-size photos.
"""

from __future__ import annotations

import tensorflow as tf

DEFAULT_SIZE = (96, 128)
_JPEG_RATIOS = (1, 2, 4, 8)


def decode_and_resize(encoded: tf.Tensor, size: tuple[int, int] = DEFAULT_SIZE) -> tf.Tensor:
    """Decodes one JPEG/PNG/GIF/BMP image and resizes it (antialiased bilinear) to uint8 `size`."""
    height, width = size

    def reduced_jpeg() -> tf.Tensor:
        shape = tf.io.extract_jpeg_shape(encoded)
        fits = tf.minimum(shape[0] // height, shape[1] // width)
        branch = tf.reduce_sum(tf.cast(fits >= tf.constant(_JPEG_RATIOS[1:]), tf.int32))
        return tf.switch_case(
            branch,
            [lambda r=r: tf.io.decode_jpeg(encoded, channels=3, ratio=r) for r in _JPEG_RATIOS],
        )

    def other_format() -> tf.Tensor:
        return tf.io.decode_image(encoded, channels=3, expand_animations=False)

    image = tf.cond(tf.io.is_jpeg(encoded), reduced_jpeg, other_format)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
