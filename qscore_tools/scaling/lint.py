"""Project lints over rendered manifests: `lint_rendered(docs)` returns one line per violation.

Rules (each a small function, so tests can seed one violation at a time):
- references: every ServiceAccount, ConfigMap, Secret, TriggerAuthentication and scale
  target a workload or KEDA object names exists in the same render;
- keda-strings: KEDA trigger metadata values are strings (KEDA rejects anything else);
- replica-bounds: minReplicaCount <= maxReplicaCount;
- no-plaintext-secrets: no Secret objects with data, no connection strings or keys in env
  values, ConfigMaps or trigger metadata (workload identity needs none);
- grace-period: terminationGracePeriodSeconds >= QSCORE_DRAIN_GRACE_S +
  QSCORE_MAX_BATCH_DELAY_MS/1000 + the `qscore.dev/longest-batch-s` annotation, for every
  pod that runs a qscore image;
- pinned-images: every image has an explicit tag (not `latest`) or a digest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

Doc = dict[str, Any]
LONGEST_BATCH_ANNOTATION = "qscore.dev/longest-batch-s"
DEFAULT_DRAIN_GRACE_S = 30.0
_SECRET_PATTERNS = re.compile(
    r"(Endpoint=sb://|SharedAccessKey(Name)?=|AccountKey=|DefaultEndpointsProtocol=|"
    r"SharedAccessSignature|-----BEGIN [A-Z ]*PRIVATE KEY-----|client_secret)",
    re.IGNORECASE,
)
_WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ScaledJob")


def _label(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name', '?')}"


def _names(docs: list[Doc], kind: str) -> set[str]:
    return {d.get("metadata", {}).get("name", "") for d in docs if d.get("kind") == kind}


def pod_templates(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, pod template) for every kind that carries one, ScaledJob included."""
    for doc in docs:
        kind = doc.get("kind")
        if kind not in _WORKLOAD_KINDS:
            continue
        spec = doc.get("spec", {})
        if kind == "ScaledJob":
            spec = spec.get("jobTargetRef", {})
        template = spec.get("template")
        if isinstance(template, dict):
            yield doc, template


def _containers(template: Doc) -> list[Doc]:
    spec = template.get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _pod_references(template: Doc) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object a pod template refers to."""
    spec = template.get("spec", {})
    if spec.get("serviceAccountName"):
        yield "ServiceAccount", spec["serviceAccountName"]
    for container in _containers(template):
        for source in container.get("envFrom", []):
            if "configMapRef" in source and not source["configMapRef"].get("optional"):
                yield "ConfigMap", source["configMapRef"]["name"]
            if "secretRef" in source and not source["secretRef"].get("optional"):
                yield "Secret", source["secretRef"]["name"]
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref and not ref["configMapKeyRef"].get("optional"):
                yield "ConfigMap", ref["configMapKeyRef"]["name"]
            if "secretKeyRef" in ref and not ref["secretKeyRef"].get("optional"):
                yield "Secret", ref["secretKeyRef"]["name"]
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"]
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"]
        for projected in volume.get("projected", {}).get("sources", []):
            if "configMap" in projected:
                yield "ConfigMap", projected["configMap"]["name"]
            if "secret" in projected:
                yield "Secret", projected["secret"]["name"]


def _keda_objects(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d.get("kind") in ("ScaledObject", "ScaledJob")]


def lint_references(docs: list[Doc]) -> list[str]:
    problems = []
    for workload, template in pod_templates(docs):
        for kind, name in _pod_references(template):
            if name not in _names(docs, kind):
                problems.append(f"{_label(workload)}: references missing {kind} {name!r}")
    for obj in _keda_objects(docs):
        for trigger in obj.get("spec", {}).get("triggers", []):
            ref = trigger.get("authenticationRef")
            if ref is not None:
                kind = ref.get("kind", "TriggerAuthentication")
                if ref.get("name") not in _names(docs, kind):
                    problems.append(f"{_label(obj)}: references missing {kind} {ref.get('name')!r}")
        target = obj.get("spec", {}).get("scaleTargetRef")
        if obj.get("kind") == "ScaledObject" and target is not None:
            kind = target.get("kind", "Deployment")
            if target.get("name") not in _names(docs, kind):
                problems.append(f"{_label(obj)}: scaleTargetRef names missing {kind} {target.get('name')!r}")
    return problems


def lint_keda_strings(docs: list[Doc]) -> list[str]:
    return [
        f"{_label(obj)}: trigger {trigger.get('type')} metadata {key} must be a string, got {value!r}"
        for obj in _keda_objects(docs)
        for trigger in obj.get("spec", {}).get("triggers", [])
        for key, value in (trigger.get("metadata") or {}).items()
        if not isinstance(value, str)
    ]


def lint_replica_bounds(docs: list[Doc]) -> list[str]:
    problems = []
    for obj in _keda_objects(docs):
        spec = obj.get("spec", {})
        low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if low > high:
            problems.append(f"{_label(obj)}: minReplicaCount {low} > maxReplicaCount {high}")
    return problems


def _strings_in(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings_in(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings_in(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def lint_no_plaintext_secrets(docs: list[Doc]) -> list[str]:
    problems = []
    for doc in docs:
        if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
            problems.append(f"{_label(doc)}: Secret with data in the manifests (use workload identity)")
            continue
        for path, value in _strings_in({k: v for k, v in doc.items() if k != "metadata"}):
            if _SECRET_PATTERNS.search(value):
                problems.append(f"{_label(doc)}: plaintext secret or connection string at {path}")
        if doc.get("kind") in ("ScaledObject", "ScaledJob"):
            for trigger in doc.get("spec", {}).get("triggers", []):
                if "connection" in (trigger.get("metadata") or {}):
                    problems.append(f"{_label(doc)}: inline trigger connection (use authenticationRef)")
    return problems


def _env_value(docs: list[Doc], container: Doc, name: str) -> str | None:
    """A container variable's value from env or envFrom ConfigMaps (env wins, as in Kubernetes)."""
    for env in container.get("env", []):
        if env.get("name") == name and "value" in env:
            return str(env["value"])
    configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    for source in container.get("envFrom", []):
        data = configmaps.get(source.get("configMapRef", {}).get("name", ""), {}).get("data", {})
        if name in data:
            return str(data[name])
    return None


def lint_grace_period(docs: list[Doc]) -> list[str]:
    problems = []
    for workload, template in pod_templates(docs):
        qscore_containers = [c for c in template.get("spec", {}).get("containers", []) if _is_qscore(c)]
        if not qscore_containers:
            continue
        annotations = {**workload.get("metadata", {}).get("annotations", {})}
        annotations.update(template.get("metadata", {}).get("annotations", {}))
        if LONGEST_BATCH_ANNOTATION not in annotations:
            problems.append(f"{_label(workload)}: missing annotation {LONGEST_BATCH_ANNOTATION}")
            continue
        longest = float(annotations[LONGEST_BATCH_ANNOTATION])
        grace = float(template.get("spec", {}).get("terminationGracePeriodSeconds", 30))
        for container in qscore_containers:
            drain = float(_env_value(docs, container, "QSCORE_DRAIN_GRACE_S") or DEFAULT_DRAIN_GRACE_S)
            delay = float(_env_value(docs, container, "QSCORE_MAX_BATCH_DELAY_MS") or 0) / 1000
            if grace < drain + delay + longest:
                problems.append(
                    f"{_label(workload)}: terminationGracePeriodSeconds {grace:g} < drain grace {drain:g}"
                    f" + batch delay {delay:g} + longest batch {longest:g}"
                )
    return problems


def _is_qscore(container: Doc) -> bool:
    image = str(container.get("image", ""))
    return image.rsplit("/", 1)[-1].startswith("qscore-") and "triton-models" not in image


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def lint_pinned_images(docs: list[Doc]) -> list[str]:
    return [
        f"{_label(workload)}: image {container.get('image')!r} is not pinned to a tag or digest"
        for workload, template in pod_templates(docs)
        for container in _containers(template)
        if not image_is_pinned(str(container.get("image", "")))
    ]


LINTS: tuple[Callable[[list[Doc]], list[str]], ...] = (
    lint_references,
    lint_keda_strings,
    lint_replica_bounds,
    lint_no_plaintext_secrets,
    lint_grace_period,
    lint_pinned_images,
)


def lint_rendered(docs: list[Doc]) -> list[str]:
    """All project lints over one rendered overlay; empty when clean."""
    return [problem for lint in LINTS for problem in lint(docs)]
