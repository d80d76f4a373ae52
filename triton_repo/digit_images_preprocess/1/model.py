"""Preprocessing step of the `digit_images` ensemble: encoded image bytes -> the CNN's pixels.

Packaged with the model (Triton Python backend, this folder), so what the classifier expects is
the model's business, not the producer's: any PNG or JPEG, any size or mode, becomes grayscale
32x32 FP32 in [0, 1]. Training (qscore_tools/training/digit_images.py) imports
`image_to_pixels` from this file, so training and serving share one preprocessing.
Runs inside Triton's stub: imports only numpy, Pillow and `triton_python_backend_utils`.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

SIDE = 32
# Decoding stops at this many pixels (a decompression bomb is bad input, not an outage).
MAX_PIXELS = 50_000_000


def image_to_pixels(encoded: bytes) -> np.ndarray:
    """One encoded image as float32 [1, SIDE, SIDE] in [0, 1] (ValueError if it is not an image)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(encoded)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"image is {image.width}x{image.height}, over {MAX_PIXELS} pixels")
            gray = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    except (OSError, SyntaxError) as exc:  # Pillow raises these for data that is not an image
        raise ValueError(f"not a decodable PNG/JPEG image: {exc}") from None
    return (np.asarray(gray, dtype=np.float32) / 255.0).reshape(1, SIDE, SIDE)


class TritonPythonModel:
    """Decodes every image of every request; a request with an undecodable image fails alone."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            try:
                pixels = np.stack([image_to_pixels(bytes(item)) for item in images.reshape(-1)])
            except ValueError as exc:
                error = pb_utils.TritonError(f"bad image: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            tensor = pb_utils.Tensor(self.output_name, pixels)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
