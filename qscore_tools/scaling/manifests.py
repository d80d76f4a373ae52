"""Render a Kustomize overlay with `kubectl kustomize` and pick documents out of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

OVERLAYS = ("dev", "qa", "prod")


class RenderError(RuntimeError):
    """kubectl is missing or the overlay does not render."""


def repo_root() -> Path:
    """The checkout this package lives in (qscore_tools/scaling/ -> repo root)."""
    return Path(__file__).resolve().parents[2]


def overlay_dir(environment: str, root: Path | None = None) -> Path:
    return (root or repo_root()) / "deploy" / "overlays" / environment


def render_overlay(environment: str, root: Path | None = None) -> list[dict[str, Any]]:
    """Documents of `kubectl kustomize deploy/overlays/<environment>` (blocking: call off-loop)."""
    path = overlay_dir(environment, root)
    if not (path / "kustomization.yaml").is_file():
        raise RenderError(f"no overlay at {path} (known: {', '.join(OVERLAYS)})")
    return _kustomize(path)


def render_with_components(
    environment: str, components: Iterable[str], root: Path | None = None
) -> list[dict[str, Any]]:
    """An overlay with extra components from deploy/components/ (e.g. "keda-prometheus"), as an
    operator would add them: a throwaway kustomization (kustomize wants relative paths).
    Components the overlay already lists are not added twice."""
    repo = root or repo_root()
    listed = overlay_components(environment, repo)
    components = [name for name in components if name not in listed]
    with tempfile.TemporaryDirectory(prefix="qscore-render-") as scratch:
        up = os.path.relpath(repo, scratch)
        lines = [
            "apiVersion: kustomize.config.k8s.io/v1beta1",
            "kind: Kustomization",
            "resources:",
            f"  - {up}/deploy/overlays/{environment}",
            "components:",
            *(f"  - {up}/deploy/components/{name}" for name in components),
        ]
        (Path(scratch) / "kustomization.yaml").write_text("\n".join(lines) + "\n")
        if not overlay_dir(environment, repo).joinpath("kustomization.yaml").is_file():
            raise RenderError(f"no overlay {environment} (known: {', '.join(OVERLAYS)})")
        return _kustomize(Path(scratch))


def overlay_components(environment: str, root: Path | None = None) -> set[str]:
    """Names of the deploy/components/ an overlay's kustomization.yaml lists."""
    path = overlay_dir(environment, root) / "kustomization.yaml"
    if not path.is_file():
        return set()
    listed = (yaml.safe_load(path.read_text()) or {}).get("components") or []
    return {Path(entry).name for entry in listed if Path(entry).parent.name == "components"}


def _kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RenderError("kubectl is not on PATH; it renders the overlays (kustomize v5)")
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {path} failed: {proc.stderr.strip()}")
    return parse_documents(proc.stdout)


def parse_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def find(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for doc in docs
        if doc.get("kind") == kind and (name is None or doc.get("metadata", {}).get("name") == name)
    ]
