"""Which versions of a model a local Triton model repository holds.

Promotion and flights name a version; when the repository is a local folder the version must
be there (`<repo>/<model>/<version>/`), or Triton would be asked for a version it never
loaded. A repository that is not local (object storage in a deployment) is not checked here:
the worker's `unknown_version` replies are the check there.
"""

from __future__ import annotations

import os
from pathlib import Path

from qscore.registry.store import RegistryError

TRITON_REPO_ENV = "QSCORE_TRITON_REPO"
_PACKAGE_REPO = Path(__file__).resolve().parents[2] / "triton_repo"


def default_repository() -> Path | None:
    """$QSCORE_TRITON_REPO, else ./triton_repo, else the checkout's triton_repo; None if none exists."""
    configured = os.environ.get(TRITON_REPO_ENV)
    if configured:
        return Path(configured)
    for candidate in (Path("triton_repo"), _PACKAGE_REPO):
        if candidate.is_dir():
            return candidate
    return None


def local_versions(repo: Path, model: str) -> list[str]:
    """Version folders of `model` in `repo`, oldest first (empty when the model is absent)."""
    model_dir = repo / model
    if not model_dir.is_dir():
        return []
    versions = [child.name for child in model_dir.iterdir() if child.is_dir() and child.name.isdigit()]
    return sorted(versions, key=int)


def check_version(model: str, version: str, *, repo: Path | None) -> None:
    """Raise RegistryError (one line) unless `version` of `model` can be served from `repo`."""
    if not version.isdigit():
        raise RegistryError(f"version must be a number such as 2, not {version!r}")
    if repo is None:
        return
    if not repo.is_dir():
        raise RegistryError(f"model repository {repo} does not exist (pass --repo or --no-check)")
    versions = local_versions(repo, model)
    if not versions:
        raise RegistryError(f"model {model!r} is not in the model repository {repo}")
    if version not in versions:
        raise RegistryError(
            f"model {model!r} has no version {version} in {repo}; versions there: {', '.join(versions)}"
        )
