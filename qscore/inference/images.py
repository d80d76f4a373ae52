"""Encoded digit images for the `digit_images` model: requests of a chosen size, with true labels.

The held-out digits (data/digits_test.npz, 8x8) drawn as grayscale PNGs of any side, with pixel
noise so that PNG cannot compress them away: a side of about 2,450 px is a 4 MB file. The demo,
the benchmarks and the tests use these; the model's own preprocessing resizes them.
"""

from __future__ import annotations

import io

import numpy as np

IMAGE_MODEL = "digit_images"
IMAGE_INPUT = "image"


def digit_png(pixels8x8: np.ndarray, *, side: int, seed: int = 0, noise: float = 12.0) -> bytes:
    """One digit (values 0..16) as a `side` x `side` grayscale PNG with Gaussian pixel noise."""
    from PIL import Image

    digit = Image.fromarray((np.asarray(pixels8x8).reshape(8, 8) * (255 / 16)).astype(np.uint8), mode="L")
    inner = int(side * 0.75)
    canvas = np.zeros((side, side), dtype=np.float32)
    offset = (side - inner) // 2
    canvas[offset : offset + inner, offset : offset + inner] = np.asarray(
        digit.resize((inner, inner), Image.Resampling.BILINEAR)
    )
    canvas += np.random.default_rng(seed).normal(0.0, noise, canvas.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="L").save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def side_for_bytes(target_bytes: int) -> int:
    """About the side whose noisy PNG is `target_bytes` (measured: ~0.69 bytes per pixel)."""
    return max(16, int(np.sqrt(target_bytes / 0.69)))


def image_batch(pngs: list[bytes]) -> np.ndarray:
    """The model's input for encoded images: a BYTES tensor [N, 1] (an object array of bytes)."""
    batch = np.empty((len(pngs), 1), dtype=object)
    for index, png in enumerate(pngs):
        batch[index, 0] = png
    return batch
