"""Schema validation of rendered manifests: core kinds with kubernetes-validate (strict, a
pinned Kubernetes version), KEDA kinds with the KEDA v2.20.2 CRD openAPIV3Schemas made
strict (unknown fields rejected wherever the CRD does not preserve them)."""

from __future__ import annotations

import copy
import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from qscore_tools.scaling.manifests import repo_root

# AKS's default minor at the time of writing; bump together with the cluster.
KUBERNETES_VERSION = "1.31.0"
KEDA_VERSION = "2.20.2"
KEDA_CRD_FILES = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "ScaledJob": "keda.sh_scaledjobs.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}


def keda_schema_dir(root: Path | None = None) -> Path:
    """`<repo root>/deploy/schemas/keda/v2.20.2`: KEDA's CRDs, committed verbatim with their
    upstream checksums (deploy/schemas/keda/README.md names the release and files)."""
    return (root or repo_root()) / "deploy" / "schemas" / "keda" / f"v{KEDA_VERSION}"


def _name(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name', '?')}"


def validate_core(docs: list[dict[str, Any]], version: str = KUBERNETES_VERSION) -> list[str]:
    """kubernetes-validate --strict on every core document; one line per failure. CRDs are
    checked elsewhere: KEDA's by `validate_keda`, the Prometheus Operator's by
    `qscore_tools.scaling.monitoring_schema.validate_monitoring`."""
    import kubernetes_validate

    errors = []
    for doc in docs:
        if str(doc.get("apiVersion", "")).startswith(("keda.sh/", "monitoring.coreos.com/")):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            errors.append(f"{_name(doc)}: {exc.message} (at {path or '/'})")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{_name(doc)}: no Kubernetes {version} schema for {doc.get('apiVersion')}")
    return errors


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy where every object with declared properties rejects undeclared ones, unless the
    CRD says x-kubernetes-preserve-unknown-fields or declares additionalProperties itself."""
    result = copy.deepcopy(schema)
    _tighten(result)
    return result


def _tighten(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    for value in node.values():
        _tighten(value)


def verify_checksums(schema_dir: Path) -> list[str]:
    """Compare the CRD files with the SHA256SUMS shipped beside them."""
    sums = schema_dir / "SHA256SUMS"
    problems = []
    for line in sums.read_text().splitlines():
        digest, _, filename = line.partition("  ")
        actual = hashlib.sha256((schema_dir / filename).read_bytes()).hexdigest()
        if actual != digest:
            problems.append(f"{filename}: checksum mismatch")
    return problems


@cache
def _keda_validator(schema_dir: Path, kind: str) -> Any:
    import jsonschema

    crd = yaml.safe_load((schema_dir / KEDA_CRD_FILES[kind]).read_text())
    served = [v for v in crd["spec"]["versions"] if v.get("served")]
    schema = strict_schema(served[-1]["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def validate_keda(docs: list[dict[str, Any]], schema_dir: Path | None = None) -> list[str]:
    """Every keda.sh document against its (strict) CRD schema; one line per failure."""
    directory = schema_dir or keda_schema_dir()
    errors = []
    for doc in docs:
        if not str(doc.get("apiVersion", "")).startswith("keda.sh/"):
            continue
        kind = str(doc.get("kind"))
        if kind not in KEDA_CRD_FILES:
            errors.append(f"{_name(doc)}: no KEDA CRD schema for kind {kind}")
            continue
        for error in _keda_validator(directory, kind).iter_errors(doc):
            path = "/".join(str(p) for p in error.absolute_path)
            errors.append(f"{_name(doc)}: {error.message} (at {path or '/'})")
    return errors
