"""`qscore release package`: the Triton repository and routing table from a real MLflow registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from qscore.registry import ModelRegistry
from qscore.registry.catalog import ModelCatalog
from qscore.registry.signature import read_model_config
from qscore_cli import app
from qscore_local.triton.repository import CpuSettings, derive_cpu_repository
from tests.fixtures.mlflow_registry import CHECKOUT_REPO, register_digits

runner = CliRunner()


def release(output: Path) -> str:
    result = runner.invoke(app, ["release", "package", "--output", str(output)])
    assert result.exit_code == 0, result.output
    return result.output


def tree(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_package_is_what_the_registry_says_and_reproducible(
    digits_catalog: ModelCatalog, tmp_path: Path
) -> None:
    register_digits(digits_catalog)  # versions 3 and 4: no alias, so not packaged
    digits_catalog.promote("digits", "1")
    digits_catalog.promote("digits", "2")
    digits_catalog.start_flight("digits", "3", "canary", 0.2)
    out = release(tmp_path / "a")
    assert "digits: versions 1, 2, 3" in out
    files = tree(tmp_path / "a")
    assert set(files) == {
        "registry.json",
        "release.json",
        "triton_repo/digits/config.pbtxt",
        "triton_repo/digits/1/model.onnx",
        "triton_repo/digits/2/model.onnx",
        "triton_repo/digits/3/model.onnx",
    }
    committed = (CHECKOUT_REPO / "digits" / "2" / "model.onnx").read_bytes()
    assert (tmp_path / "a" / "triton_repo" / "digits" / "2" / "model.onnx").read_bytes() == committed
    config = read_model_config(tmp_path / "a" / "triton_repo" / "digits" / "config.pbtxt")
    assert list(config.version_policy.specific.versions) == [1, 2, 3]
    table = ModelRegistry(tmp_path / "a" / "registry.json").entry("digits")
    assert (table.production, table.labels, table.flight and table.flight.version) == (
        "2",
        {"previous": "1"},
        "3",
    )
    manifest = json.loads((tmp_path / "a" / "release.json").read_text())
    assert manifest["models"]["digits"]["versions"]["2"]["aliases"] == ["production"]

    # Byte for byte: a second package, and a package written over an older one, are identical.
    release(tmp_path / "b")
    assert tree(tmp_path / "b") == files
    digits_catalog.end_flight("digits")
    release(tmp_path / "a")
    assert "triton_repo/digits/3/model.onnx" not in tree(tmp_path / "a")
    digits_catalog.start_flight("digits", "3", "canary", 0.2)
    release(tmp_path / "a")
    assert tree(tmp_path / "a") == files

    # The local Triton launcher accepts the packaged repository as it is.
    derive_cpu_repository(tmp_path / "a" / "triton_repo", tmp_path / "cpu", settings=CpuSettings())
    assert sorted(p.name for p in (tmp_path / "cpu" / "digits").iterdir()) == ["1", "2", "3", "config.pbtxt"]


def test_nothing_promoted_is_one_line(digits_catalog: ModelCatalog, tmp_path: Path) -> None:
    result = runner.invoke(app, ["release", "package", "--output", str(tmp_path / "out")])
    assert result.exit_code != 0 and "promote one first" in str(result.exception or result.output)


def test_model_image_and_release_workflow_use_the_package() -> None:
    root = CHECKOUT_REPO.parent
    dockerfile = (root / "deploy" / "docker" / "triton-models.Dockerfile").read_text()
    assert "COPY --chown=65532:65532 ${MODELS_DIR}/ /models/" in dockerfile
    ignore = (root / "deploy" / "docker" / "triton-models.Dockerfile.dockerignore").read_text().splitlines()
    assert "!build/release/triton_repo/" in ignore
    workflow = (root / ".github" / "workflows" / "release.yml").read_text()
    package = workflow.index("qscore release package --output build/release")
    assert package < workflow.index("qscore release images --registry")
    assert "--package build/release" in workflow
    deploy = (root / ".github" / "workflows" / "deploy.yml").read_text()
    assert "cp build/release/registry.json deploy/base/worker/registry.json" in deploy
