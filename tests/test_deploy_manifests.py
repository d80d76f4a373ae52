"""deploy/: every overlay renders, validates (Kubernetes strict, KEDA CRDs strict), and
passes the project lints; each lint catches a seeded violation; the workflows name every
environment."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from qscore_tools.scaling.config import scaler_spec_from_manifest
from qscore_tools.scaling.lint import (
    lint_grace_period,
    lint_keda_strings,
    lint_no_plaintext_secrets,
    lint_pinned_images,
    lint_references,
    lint_rendered,
    lint_replica_bounds,
)
from qscore_tools.scaling.manifests import OVERLAYS, find, render_overlay, repo_root
from qscore_tools.scaling.monitoring_schema import validate_monitoring
from qscore_tools.scaling.validate import (
    KUBERNETES_VERSION,
    keda_schema_dir,
    validate_core,
    validate_keda,
    verify_checksums,
)

Docs = list[dict[str, Any]]


@pytest.fixture(scope="session")
def rendered() -> dict[str, Docs]:
    return {env: render_overlay(env) for env in OVERLAYS}


def _one(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


@pytest.mark.parametrize("env", OVERLAYS)
def test_overlay_renders_and_validates(rendered: dict[str, Docs], env: str) -> None:
    docs = rendered[env]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ScaledObject", "ScaledJob", "TriggerAuthentication", "NetworkPolicy"} <= kinds
    assert all(d["metadata"].get("namespace", f"qscore-{env}") == f"qscore-{env}" for d in docs)
    assert validate_core(docs, KUBERNETES_VERSION) == []
    assert validate_keda(docs) == []
    assert validate_monitoring(docs) == []
    assert lint_rendered(docs) == []


def test_keda_schemas_are_the_pinned_release() -> None:
    assert verify_checksums(keda_schema_dir()) == []


def test_environments_differ_where_they_should(rendered: dict[str, Docs]) -> None:
    specs = {
        env: scaler_spec_from_manifest(_one(rendered[env], "ScaledObject", "qscore-worker"))
        for env in OVERLAYS
    }
    assert specs["dev"].min_replicas == 0
    assert specs["prod"].min_replicas >= 1
    assert specs["prod"].max_replicas > specs["dev"].max_replicas
    queues = {
        env: next(
            t["metadata"]["queueName"]
            for t in _one(rendered[env], "ScaledObject", "qscore-worker")["spec"]["triggers"]
            if t["type"] == "azure-servicebus"  # qa and prod list the metric trigger first
        )
        for env in OVERLAYS
    }
    assert len(set(queues.values())) == 3
    client_ids = {
        env: _one(rendered[env], "ServiceAccount", "qscore-worker")["metadata"]["annotations"][
            "azure.workload.identity/client-id"
        ]
        for env in OVERLAYS
    }
    assert len(set(client_ids.values())) == 3
    assert "00000000-0000-0000-0000-000000000000" not in client_ids.values()


def test_keda_strict_schema_rejects_unknown_fields(rendered: dict[str, Docs]) -> None:
    docs = copy.deepcopy(rendered["prod"])
    _one(docs, "ScaledObject", "qscore-worker")["spec"]["pollingIntervall"] = 10
    _one(docs, "TriggerAuthentication", "qscore-scaler")["spec"]["podIdentity"]["identityID"] = "x"
    errors = validate_keda(docs)
    assert any("pollingIntervall" in e for e in errors)
    assert any("identityID" in e for e in errors)


def test_core_strict_validation_rejects_unknown_fields(rendered: dict[str, Docs]) -> None:
    docs = copy.deepcopy(rendered["prod"])
    _one(docs, "Deployment", "qscore-worker")["spec"]["template"]["spec"]["terminationGracePeriod"] = 1
    assert any("terminationGracePeriod" in e for e in validate_core(docs))


def _worker_pod(docs: Docs) -> dict[str, Any]:
    return _one(docs, "Deployment", "qscore-worker")["spec"]["template"]["spec"]


def test_lint_references_catches_missing_objects(rendered: dict[str, Docs]) -> None:
    docs = copy.deepcopy(rendered["dev"])
    _worker_pod(docs)["serviceAccountName"] = "nobody"
    _one(docs, "ScaledObject", "qscore-worker")["spec"]["triggers"][0]["authenticationRef"]["name"] = "gone"
    _worker_pod(docs)["containers"][0]["envFrom"].append({"secretRef": {"name": "sb-conn"}})
    job = _one(docs, "ScaledJob", "qscore-worker-long")["spec"]["jobTargetRef"]["template"]["spec"]
    job["volumes"][0]["configMap"]["name"] = "qscore-model-registry"  # the unhashed name
    problems = "\n".join(lint_references(docs))
    for expected in ("ServiceAccount 'nobody'", "TriggerAuthentication 'gone'", "Secret 'sb-conn'"):
        assert expected in problems
    assert "ConfigMap 'qscore-model-registry'" in problems


def test_lint_keda_strings(rendered: dict[str, Docs]) -> None:
    docs = copy.deepcopy(rendered["dev"])
    _one(docs, "ScaledObject", "qscore-worker")["spec"]["triggers"][0]["metadata"]["messageCount"] = 100
    assert any("messageCount must be a string" in p for p in lint_keda_strings(docs))


def test_lint_replica_bounds(rendered: dict[str, Docs]) -> None:
    docs = copy.deepcopy(rendered["dev"])
    _one(docs, "ScaledObject", "qscore-worker")["spec"].update(minReplicaCount=5, maxReplicaCount=2)
    assert lint_replica_bounds(docs) == ["ScaledObject/qscore-worker: minReplicaCount 5 > maxReplicaCount 2"]


def test_lint_no_plaintext_secrets(rendered: dict[str, Docs]) -> None:
    docs = copy.deepcopy(rendered["dev"])
    _worker_pod(docs)["containers"][0]["env"].append(
        {
            "name": "QSCORE_SERVICEBUS_CONNECTION",
            "value": "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v",
        }
    )
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}})
    problems = lint_no_plaintext_secrets(docs)
    assert any("Deployment/qscore-worker: plaintext" in p for p in problems)
    assert any(p.startswith("Secret/s") for p in problems)


def test_lint_grace_period(rendered: dict[str, Docs]) -> None:
    docs = copy.deepcopy(rendered["prod"])
    # 30 s drain + 0.005 s batch delay + 10 s longest batch = 40.005 s needed.
    _worker_pod(docs)["terminationGracePeriodSeconds"] = 40
    assert any("qscore-worker: terminationGracePeriodSeconds 40" in p for p in lint_grace_period(docs))
    _worker_pod(docs)["terminationGracePeriodSeconds"] = 41
    assert lint_grace_period(docs) == []
    del _one(docs, "Deployment", "qscore-worker")["metadata"]["annotations"]["qscore.dev/longest-batch-s"]
    assert any("missing annotation" in p for p in lint_grace_period(docs))


def test_lint_pinned_images(rendered: dict[str, Docs]) -> None:
    docs = copy.deepcopy(rendered["qa"])
    _worker_pod(docs)["containers"][0]["image"] = "qscoreacr.azurecr.io/qscore-worker:latest"
    triton = _one(docs, "Deployment", "qscore-triton")["spec"]["template"]["spec"]
    triton["initContainers"][0]["image"] = "qscore-triton-models"
    problems = lint_pinned_images(docs)
    assert len(problems) == 2
    triton["initContainers"][0]["image"] = "registry:5000/models@sha256:" + "0" * 64
    assert len(lint_pinned_images(docs)) == 1


def _workflow(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((repo_root() / ".github" / "workflows" / name).read_text())
    assert isinstance(data, dict)
    return data


def test_release_workflow_names_every_environment_in_order() -> None:
    release = _workflow("release.yml")
    jobs = release["jobs"]
    triggers = release[True] if True in release else release["on"]  # YAML 1.1 reads `on` as True
    assert "push" in triggers
    deployed = {job["with"]["environment"]: name for name, job in jobs.items() if "uses" in job}
    assert set(deployed) == set(OVERLAYS)
    assert "deploy-dev" in jobs["deploy-qa"]["needs"] and "deploy-qa" in jobs["deploy-prod"]["needs"]
    assert jobs["build"]["needs"] == "test"
    deploy = _workflow("deploy.yml")["jobs"]["deploy"]
    assert deploy["environment"] == "${{ inputs.environment }}"
    steps = {step.get("name"): step for step in deploy["steps"]}
    assert "Smoke test" in steps and steps["Roll back"]["if"] == "failure()"


def test_dockerfiles_pin_their_bases_and_drop_root() -> None:
    for name in ("worker", "functions", "triton-models"):
        text = (repo_root() / "deploy" / "docker" / f"{name}.Dockerfile").read_text()
        bases = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
        args = dict(
            line.removeprefix("ARG ").split("=", 1)
            for line in text.splitlines()
            if line.startswith("ARG ") and "=" in line
        )
        for base in bases:
            image = args.get(base.strip("${}"), base)
            assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned base {image}"
        assert "\nUSER " in text, f"{name}: runs as root"
        assert Path(repo_root() / "deploy" / "docker" / f"{name}.Dockerfile.dockerignore").is_file()


def test_bicep_grants_only_the_needed_roles() -> None:
    text = (repo_root() / "deploy" / "infra" / "main.bicep").read_text()
    assert "requiresSession: true" in text and "deadLetteringOnMessageExpiration: true" in text
    assert "disableLocalAuth: true" in text
    # Receiver for consumers, Sender for replies, Data Owner only for the scaler identity.
    assert text.count("roles.serviceBusDataOwner") == 1
    assert (
        "principalId: scalerIdentity.properties.principalId\n    roleDefinitionId: roles.serviceBusDataOwner"
        in text
    )


def _render_dir(path: Path) -> Docs:
    import shutil
    import subprocess

    from qscore_tools.scaling.manifests import parse_documents

    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return parse_documents(proc.stdout)


def test_batch_job_component_renders_validates_and_uses_workload_identity() -> None:
    docs = _render_dir(repo_root() / "deploy" / "batch-runs" / "example")
    assert validate_core(docs, KUBERNETES_VERSION) == []
    assert lint_rendered(docs) == []
    job = _one(docs, "Job", "qscore-batch-score")
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == "qscore-worker" and pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert container["args"][:2] == ["batch", "score"] and container["image"].endswith(":0.1.0")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["QSCORE_BATCH_INPUT"].startswith("https://$(STORAGE_ACCOUNT_NAME).blob.core.windows.net/")
    assert "QSCORE_BLOB_CONNECTION" not in env  # identity, not keys, in the cluster
    run = [d for d in docs if d["metadata"].get("labels", {}).get("qscore.dev/batch-run") == "true"]
    assert sorted(d["kind"] for d in run) == ["ConfigMap", "Job"]  # what `apply -l` applies
    assert job["metadata"]["namespace"] == "qscore-dev"


def test_qa_and_prod_scrape_the_workers(rendered: dict[str, Docs]) -> None:
    for env in ("qa", "prod"):
        monitor = _one(rendered[env], "PodMonitor", "qscore-worker")
        deployment = _one(rendered[env], "Deployment", "qscore-worker")
        ports = {
            p["name"]: p["containerPort"]
            for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["health"]
        assert annotations["prometheus.io/port"] == str(ports["health"])
        assert annotations["prometheus.io/path"] == "/metrics"
        assert (
            _one(rendered[env], "PrometheusRule", "qscore-alerts")["metadata"]["namespace"] == f"qscore-{env}"
        )


def test_monitoring_shape_checks_catch_a_misspelt_field(rendered: dict[str, Docs]) -> None:
    monitor = copy.deepcopy(_one(rendered["prod"], "PodMonitor", "qscore-worker"))
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    rule = copy.deepcopy(_one(rendered["prod"], "PrometheusRule", "qscore-alerts"))
    rule["spec"]["groups"][1]["rules"][0]["for"] = "ten minutes"
    problems = validate_monitoring([monitor, rule])
    assert len(problems) == 2 and "intervall" in problems[0] and "ten minutes" in problems[1]


def _env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item for item in container.get("env", [])}


def _environment_value(docs: Docs, key: str) -> str:
    (config,) = [
        d for d in find(docs, "ConfigMap", None) if d["metadata"]["name"].startswith("qscore-environment")
    ]
    return str(config["data"][key])


@pytest.mark.parametrize("env", OVERLAYS)
def test_blob_state_lives_in_the_storage_account_not_on_a_pods_disk(
    rendered: dict[str, Docs], env: str
) -> None:
    """The Functions payload store is read by whichever replica runs the next activity, so it
    must be Blob; the worker's claim checks and interaction log go to the same account."""
    docs = rendered[env]
    bicep = (repo_root() / "deploy" / "infra" / "main.bicep").read_text()
    for name, needs in (
        ("qscore-functions", {"QSCORE_FUNCTIONS_PAYLOAD_CONTAINER": "PAYLOAD_CONTAINER"}),
        ("qscore-worker", {}),
    ):
        env_vars = _env_of(_one(docs, "Deployment", name))
        assert (
            env_vars["QSCORE_BLOB_ACCOUNT_URL"]["value"]
            == "https://$(STORAGE_ACCOUNT_NAME).blob.core.windows.net"
        )
        assert "STORAGE_ACCOUNT_NAME" in env_vars and "QSCORE_INTERACTION_LOG_URL" in env_vars
        wanted = {"QSCORE_CLAIM_CHECK_CONTAINER": "CLAIM_CHECK_CONTAINER", **needs}
        for variable, key in wanted.items():
            assert env_vars[variable]["valueFrom"]["configMapKeyRef"]["key"] == key
            assert f"'{_environment_value(docs, key)}'" in bicep  # a container main.bicep declares


def test_sharded_batch_run_is_an_indexed_job_whose_shard_count_is_its_completions() -> None:
    docs = _render_dir(repo_root() / "deploy" / "batch-runs" / "sharded-example")
    assert validate_core(docs, KUBERNETES_VERSION) == []
    assert lint_rendered(docs) == []
    spec = _one(docs, "Job", "qscore-batch-score")["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 8
    assert "backoffLimit" not in spec and spec["backoffLimitPerIndex"] >= 1  # retries per shard
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # `qscore batch score` takes --shard JOB_COMPLETION_INDEX/QSCORE_BATCH_SHARDS from these.
    assert env["QSCORE_BATCH_SHARDS"] == str(spec["completions"])
    assert "--shard" not in container["args"] and "JOB_COMPLETION_INDEX" not in env  # Kubernetes sets it
