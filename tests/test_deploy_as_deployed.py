"""deploy/ as deployed, read as an operator would: qa and prod scale the workers on their
own metrics with the count triggers as the floor (and the simulator reads exactly those
triggers); Triton scales on its own queue and GPU load, and to zero in dev; the HTTP API is
reachable with Entra ID tokens in qa and prod; storage data roles are per container. Rendered
and validated like tests/test_deploy_manifests.py (whose helpers these use)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from qscore_tools.scaling.config import scaler_spec_from_manifest
from qscore_tools.scaling.manifests import OVERLAYS, find, render_overlay, repo_root
from tests.test_deploy_manifests import Docs, _env_of, _environment_value, _one


@pytest.fixture(scope="module")
def rendered() -> dict[str, Docs]:
    return {env: render_overlay(env) for env in OVERLAYS}


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
        "feedbackContainer",  # read only: the model-quality CronJob's ground truth
    }
    (feedback,) = [g for g in worker if "feedbackContainer" in g]
    assert "roles.storageBlobDataReader" in feedback
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
