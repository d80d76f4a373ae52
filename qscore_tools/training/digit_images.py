"""Train the image model: a small CNN on scikit-learn's digits rendered as noisy, shifted PNGs.

Run as `python -m qscore_tools.training.digit_images [--repo triton_repo]`. It needs the `train`
extra (torch, CPU); serving does not. Fixed seeds, one thread and a pinned opset make the run
reproducible on the same library versions.

What it writes (the Triton ensemble `digit_images`, see docs/triton.md):
- triton_repo/digit_images_classifier/1/model.onnx   CNN: `pixels` FP32 [N,1,32,32] -> `probabilities`
  FP32 [N,10] (softmax) and `label` INT64 [N,1]
The preprocessing step (triton_repo/digit_images_preprocess/1/model.py) decodes, resizes and
normalises; training feeds the CNN through the same function, so both see the same pixels.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SEED = 0
SIDE = 32  # the CNN's input side; the preprocessing resizes any image to this
RENDER_SIDE = 48  # training images are rendered larger, then shifted and noised
OPSET = 17
EPOCHS = 12
PREPROCESS_SOURCE = ROOT / "triton_repo" / "digit_images_preprocess" / "1" / "model.py"


@dataclass(frozen=True)
class ImageSplit:
    train_png: list[bytes]
    train_labels: np.ndarray
    test_png: list[bytes]
    test_labels: np.ndarray


def load_preprocess(source: Path = PREPROCESS_SOURCE) -> ModuleType:
    """The model folder's preprocessing module, loaded without Triton (its stub import is lazy)."""
    spec = importlib.util.spec_from_file_location("digit_images_preprocess", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_png(pixels8x8: np.ndarray, rng: np.random.Generator, side: int = RENDER_SIDE) -> bytes:
    """One 8x8 digit (0..16) as a grayscale PNG: upscaled, shifted a few pixels, with noise."""
    from PIL import Image

    small = Image.fromarray((pixels8x8.reshape(8, 8) * (255 / 16)).astype(np.uint8), mode="L")
    inner = int(side * 0.75)
    canvas = np.zeros((side, side), dtype=np.float32)
    dx, dy = rng.integers(0, side - inner + 1, size=2)
    canvas[dy : dy + inner, dx : dx + inner] = np.asarray(
        small.resize((inner, inner), Image.Resampling.BILINEAR)
    )
    canvas += rng.normal(0.0, 20.0, canvas.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def load_split() -> ImageSplit:
    """The same stratified 75/25 split as the tabular digits model, rendered as PNGs (3 per train digit)."""
    from qscore_tools.training.digits import load_split as load_digits_split

    split = load_digits_split()
    rng = np.random.default_rng(SEED)
    train = [
        (render_png(p, rng), int(y))
        for p, y in zip(split.train_pixels, split.train_labels, strict=True)
        for _ in range(3)
    ]
    test = [render_png(p, rng) for p in split.test_pixels]
    return ImageSplit(
        train_png=[png for png, _ in train],
        train_labels=np.array([label for _, label in train], dtype=np.int64),
        test_png=test,
        test_labels=split.test_labels,
    )


def pixels_of(pngs: list[bytes]) -> np.ndarray:
    """The CNN's input for encoded images, through the packaged preprocessing code."""
    preprocess = load_preprocess()
    return np.stack([preprocess.image_to_pixels(png) for png in pngs])


def build_cnn() -> Any:
    import torch

    class DigitCnn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = torch.nn.Sequential(
                torch.nn.Conv2d(1, 8, 3, padding=1),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2),
                torch.nn.Conv2d(8, 16, 3, padding=1),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2),
            )
            self.head = torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
            )

        def forward(self, pixels: Any) -> tuple[Any, Any]:
            logits = self.head(self.features(pixels))
            return torch.softmax(logits, dim=1), torch.argmax(logits, dim=1, keepdim=True)

    return DigitCnn()


def train_cnn(pixels: np.ndarray, labels: np.ndarray) -> Any:
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = build_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = torch.from_numpy(pixels), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            logits = model.head(model.features(x[batch]))
            loss = torch.nn.functional.cross_entropy(logits, y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def export_onnx(model: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, SIDE, SIDE),),
        buffer,  # type: ignore[arg-type, unused-ignore]  # a file object works; the stub says paths only
        dynamo=False,
        opset_version=OPSET,
        input_names=["pixels"],
        output_names=["probabilities", "label"],
        dynamic_axes={"pixels": {0: "n"}, "probabilities": {0: "n"}, "label": {0: "n"}},
    )
    return buffer.getvalue()


def onnx_accuracy(onnx_bytes: bytes, pixels: np.ndarray, labels: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    predicted = session.run(["label"], {"pixels": pixels})[0].ravel()
    return float(np.mean(predicted == labels))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "triton_repo")
    args = parser.parse_args(argv)
    split = load_split()
    model = train_cnn(pixels_of(split.train_png), split.train_labels)
    onnx_bytes = export_onnx(model)
    target = args.repo / "digit_images_classifier" / "1" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(onnx_bytes)
    accuracy = onnx_accuracy(onnx_bytes, pixels_of(split.test_png), split.test_labels)
    print(
        f"digit_images CNN: held-out accuracy {accuracy:.4f} on {len(split.test_labels)} images -> {target}"
    )


if __name__ == "__main__":
    main()
