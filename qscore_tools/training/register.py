"""Register what training wrote into the MLflow registry, so served versions come from there.

`python -m qscore_tools.training.digits --register` trains, exports into `triton_repo/` and then
registers digits v1 (logistic regression), digits v2 (MLP) and bench_mlp v1 with their held-out
accuracy, the training data's fingerprint and the git commit. Registering again adds new
versions (MLflow numbers them); promotion stays a separate, deliberate step.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np

from qscore.registry.catalog import ModelCatalog
from qscore.registry.signature import ModelArtefacts

CHECKOUT_REPO = Path(__file__).resolve().parents[2] / "triton_repo"
# (model, version folder written by training, the accuracy key in `generate`'s scores)
TRAINED = (("digits", "1", "digits/1"), ("digits", "2", "digits/2"), ("bench_mlp", "1", None))


def data_fingerprint(*arrays: np.ndarray) -> str:
    """SHA-256 over the arrays' dtype, shape and bytes: the same training data, the same value."""
    digest = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


def git_commit(cwd: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _config(repo: Path, model: str) -> Path:
    """Training writes ONNX files only; the Triton config is the committed one unless `repo` has its own."""
    own = repo / model / "config.pbtxt"
    return own if own.is_file() else CHECKOUT_REPO / model / "config.pbtxt"


def register_trained(
    catalog: ModelCatalog, repo: Path, scores: dict[str, float], *, fingerprint: str
) -> dict[str, str]:
    """Register every trained model folder; returns "model/trained version" -> registered version."""
    commit = git_commit(repo)
    registered: dict[str, str] = {}
    for model, folder, score_key in TRAINED:
        metrics = {"accuracy": scores[score_key]} if score_key else {}
        version = catalog.register(
            model,
            ModelArtefacts.collect(repo / model / folder, config=_config(repo, model)),
            metrics=metrics,
            data_fingerprint=fingerprint,
            git_commit=commit,
            description=f"trained by qscore_tools.training (folder {model}/{folder})",
        )
        registered[f"{model}/{folder}"] = version
    return registered
