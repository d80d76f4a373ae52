"""deploy/: every overlay renders, validates (Kubernetes strict, KEDA CRDs strict), and
passes the project lints; each lint catches a seeded violation; the workflows name every
environment."""

from __future__ import annotations

import copy
import re
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
        env: _count_triggers(_one(rendered[env], "ScaledObject", "qscore-worker"))[0]["metadata"]["queueName"]
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


def _count_triggers(scaled: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in scaled["spec"]["triggers"] if t["type"] == "azure-servicebus"]


@pytest.mark.parametrize("env", ["qa", "prod"])
def test_qa_and_prod_scale_on_the_metric_with_the_count_as_floor(rendered: dict[str, Docs], env: str) -> None:
    """The policy `qscore scale-sim --compare` chose: the workers' throughput x queue wait,
    with both lanes' count triggers beside it (the HPA takes the largest), and the simulator
    reads exactly these triggers from the rendered overlay."""
    scaled = _one(rendered[env], "ScaledObject", "qscore-worker")
    kinds = [t["type"] for t in scaled["spec"]["triggers"]]
    assert kinds == ["prometheus", "azure-servicebus", "azure-servicebus"]
    metric = scaled["spec"]["triggers"][0]["metadata"]
    assert "qscore_requests_total" in metric["query"] and metric["ignoreNullValues"] == "true"
    spec = scaler_spec_from_manifest(scaled)
    assert spec.prometheus is not None
    assert spec.prometheus.threshold == float(metric["threshold"]) and spec.prometheus.window_s == 60
    assert spec.message_count == int(_count_triggers(scaled)[0]["metadata"]["messageCount"])
    assert spec.unmodelled == ()  # every rendered trigger is in the simulation
    # dev has no Prometheus: the count triggers alone.
    assert (
        scaler_spec_from_manifest(_one(rendered["dev"], "ScaledObject", "qscore-worker")).prometheus is None
    )


def test_triton_scales_on_its_own_queue_and_dev_to_zero(rendered: dict[str, Docs]) -> None:
    """Every request queue wakes Triton (activation at one message); qa and prod add its queue
    time and GPU utilisation from Prometheus; dev goes to zero."""
    for env in OVERLAYS:
        docs = rendered[env]
        scaled = _one(docs, "ScaledObject", "qscore-triton")
        assert scaled["spec"]["scaleTargetRef"]["name"] == "qscore-triton"
        counts = _count_triggers(scaled)
        assert {t["metadata"]["activationMessageCount"] for t in counts} == {"0"}
        config = _environment_value
        assert {t["metadata"]["queueName"] for t in counts} == {
            config(docs, key)
            for key in (
                "REQUEST_QUEUE",
                "HIGH_REQUEST_QUEUE",
                "LONG_REQUEST_QUEUE",
                "FUNCTIONS_REQUEST_QUEUE",
            )
        }
        metrics = {t["name"]: t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"}
        if env == "dev":
            assert metrics == {} and scaled["spec"]["minReplicaCount"] == 0
            continue
        assert "nv_inference_queue_duration_us" in metrics["triton-queue-time"]["metadata"]["query"]
        assert metrics["triton-queue-time"]["metricType"] == "Value"
        assert "nv_gpu_utilization" in metrics["triton-gpu-utilisation"]["metadata"]["query"]
        assert scaled["spec"]["minReplicaCount"] >= 1
        assert (
            _one(docs, "PodMonitor", "qscore-triton")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
        )
    assert _one(rendered["prod"], "ScaledObject", "qscore-triton")["spec"]["minReplicaCount"] == 2


GPU_NODE_PROVISIONING_S = 240  # AKS adds a GPU node in a few minutes (cluster autoscaler)


def test_dev_functions_retry_outlasts_a_cold_triton(rendered: dict[str, Docs]) -> None:
    """dev's Triton can be at zero: the Functions app's activity retries must cover a GPU node
    plus Triton's start-up probe budget, or requests fail while Triton starts."""
    from functions.retry import policy_delay_s
    from functions.settings import RetryPolicy

    docs = rendered["dev"]
    env = {k: v.get("value") for k, v in _env_of(_one(docs, "Deployment", "qscore-functions")).items()}
    policy = RetryPolicy(
        max_attempts=int(env["QSCORE_FUNCTIONS_RETRY_ATTEMPTS"]),
        max_retry_ms=int(env["QSCORE_FUNCTIONS_RETRY_MAX_MS"]),
    )
    waited = sum(policy_delay_s(policy, failed) for failed in range(1, policy.max_attempts))
    triton = _one(docs, "Deployment", "qscore-triton")["spec"]["template"]["spec"]["containers"][0]
    probe = triton["startupProbe"]
    assert waited >= GPU_NODE_PROVISIONING_S + probe["periodSeconds"] * probe["failureThreshold"]


@pytest.mark.parametrize("env", ["qa", "prod"])
def test_the_http_api_is_reachable_with_entra_tokens(rendered: dict[str, Docs], env: str) -> None:
    """qa and prod: a Service in front of the Functions app, an Ingress routing only
    /api/score to it, the app configured to validate this tenant's tokens, and at least one
    replica (KEDA cannot wake it on HTTP). dev has no route."""
    docs = rendered[env]
    service = _one(docs, "Service", "qscore-functions")
    functions = _one(docs, "Deployment", "qscore-functions")
    pod = functions["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    ingress = _one(docs, "Ingress", "qscore-api")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == _environment_value(docs, "API_HOST") and rule["host"] != "set-by-overlay"
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/api/score" and path["backend"]["service"]["name"] == "qscore-functions"
    env_vars = _env_of(functions)
    tenant = _environment_value(docs, "TENANT_ID")
    assert (
        tenant != "set-by-overlay"
        and env_vars["TENANT_ID"]["valueFrom"]["configMapKeyRef"]["key"] == "TENANT_ID"
    )
    assert (
        env_vars["QSCORE_FUNCTIONS_AUTH_ISSUER"]["value"]
        == "https://login.microsoftonline.com/$(TENANT_ID)/v2.0"
    )
    assert env_vars["QSCORE_FUNCTIONS_AUTH_JWKS_URL"]["value"].endswith("/$(TENANT_ID)/discovery/v2.0/keys")
    assert _environment_value(docs, "API_AUDIENCE") == f"api://qscore-{env}"
    assert _one(docs, "ScaledObject", "qscore-functions")["spec"]["minReplicaCount"] >= 1
    assert find(rendered["dev"], "Ingress") == []


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


def _bicep_blocks(text: str, header: re.Pattern[str]) -> list[str]:
    """The bodies of the top-level declarations whose first line matches `header` (up to the
    closing brace or bracket at column 0)."""
    blocks = []
    for match in header.finditer(text):
        end = re.compile(r"^[}\]]", re.M).search(text, match.end())
        assert end is not None
        blocks.append(text[match.start() : end.start()])
    return blocks


BLOB_ROLES = ("roles.storageBlobDataOwner", "roles.storageBlobDataContributor", "roles.storageBlobDataReader")


def test_bicep_grants_blob_data_roles_per_container_never_on_the_account() -> None:
    text = (repo_root() / "deploy" / "infra" / "main.bicep").read_text()
    # Account-scope role assignments (`scope: storage`) carry no Blob data role, directly or
    # through the role list they loop over.
    account_scoped = _bicep_blocks(
        text, re.compile(r"^resource \w+ 'Microsoft.Authorization/roleAssignments", re.M)
    )
    for block in account_scoped:
        if "scope: storage" in block:
            loop = re.search(r"for role in (\w+)", block)
            roles = _bicep_blocks(text, re.compile(rf"^var {loop[1]} = \[", re.M))[0] if loop else block
            assert not any(role in roles for role in BLOB_ROLES), block
    assert "storageBlobDataOwner" not in text  # nothing needs POSIX ACLs or to grant access
    # Each identity's Blob roles go through the container-scoped module.
    module = (repo_root() / "deploy" / "infra" / "blob-container-role.bicep").read_text()
    assert "scope: container" in module and "containers@" in module
    grants = _bicep_blocks(text, re.compile(r"^module \w+ 'blob-container-role.bicep'", re.M))
    worker = [g for g in grants if "workerIdentity" in g]
    assert {re.search(r"containerName: (\w+)", g)[1] for g in worker} == {  # type: ignore[index]
        "claimCheckContainer",
        "interactionLogContainer",
    }
    (functions,) = [g for g in grants if "functionsIdentity" in g]
    assert "for name in functionsBlobContainers" in functions
    containers = _bicep_blocks(text, re.compile(r"^var functionsBlobContainers = \[", re.M))[0]
    for needed in (
        "payloadContainer",
        "claimCheckContainer",
        "interactionLogContainer",
        "-leases",
        "-largemessages",
    ):
        assert needed in containers
    assert "scalerIdentity" not in "".join(grants)  # KEDA reads queue lengths only


def test_bicep_task_hub_default_is_each_overlays_task_hub(rendered: dict[str, Docs]) -> None:
    text = (repo_root() / "deploy" / "infra" / "main.bicep").read_text()
    assert "param taskHubName string = 'qscore${environment}'" in text
    for env in OVERLAYS:
        assert _environment_value(rendered[env], "TASK_HUB") == f"qscore{env}"


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
