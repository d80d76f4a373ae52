"""Publish: Debian's `docker-registry` (the CNCF distribution) on loopback, pushes with
digests, layer tarballs read back through the registry API (for the secret scan), and the
prod overlay rendered with the pushed images pinned by digest, then validated.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

from qscore_local.processes import stop_process
from qscore_tools.release.buildah import Buildah, ReleaseError

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _registry_config(storage: Path, port: int) -> str:
    return yaml.safe_dump(
        {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}"},
        }
    )


@contextmanager
def local_registry(log: Path, timeout: float = 20) -> Iterator[str]:
    """`docker-registry serve` on 127.0.0.1:<free port> with a temp storage; yields host:port."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise ReleaseError("docker-registry is not on PATH: bash scripts/release-deps.sh installs it")
    with tempfile.TemporaryDirectory(prefix="qscore-registry-") as tmp:
        port = _free_port()
        config = Path(tmp) / "config.yml"
        config.write_text(_registry_config(Path(tmp) / "storage", port))
        with log.open("a") as handle:
            process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=handle, stderr=subprocess.STDOUT
            )
        address = f"127.0.0.1:{port}"
        try:
            _wait_ready(address, process, timeout)
            yield address
        finally:
            stop_process(process)


def _wait_ready(address: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ReleaseError(f"docker-registry exited ({process.returncode}) before answering")
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise ReleaseError(f"docker-registry did not answer on {address} within {timeout:.0f} s")


def push(buildah: Buildah, image: str, target: str, log: Path, *, tls_verify: bool) -> str:
    """Push `image` to `target` (registry/name:tag); returns the manifest digest."""
    digest_file = log.with_name(f"{target.rsplit('/', 1)[-1].replace(':', '_')}.digest")
    buildah.run(
        "push",
        "--quiet",
        f"--tls-verify={'true' if tls_verify else 'false'}",
        "--digestfile",
        str(digest_file),
        image,
        f"docker://{target}",
        log=log,
    )
    return digest_file.read_text().strip()


def _get(url: str, accept: str | None = None) -> Any:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(request, timeout=60)


@contextmanager
def layer_streams(address: str, repository: str, digest: str) -> Iterator[list[tuple[str, IO[bytes]]]]:
    """Each layer blob of the pushed manifest, as (digest, open HTTP stream)."""
    with _get(f"http://{address}/v2/{repository}/manifests/{digest}", MANIFEST_TYPES) as response:
        manifest = json.load(response)
    streams = [
        (layer["digest"], _get(f"http://{address}/v2/{repository}/blobs/{layer['digest']}"))
        for layer in manifest["layers"]
    ]
    try:
        yield streams
    finally:
        for _, stream in streams:
            stream.close()


def pin_overlay(deploy: Path, environment: str, pinned: dict[str, str]) -> None:
    """Set `images:` of the overlay's kustomization (in a copy of deploy/) to name@digest.

    `pinned` maps the base's image name (qscore-worker) to registry/name@sha256:...; the
    same edit `kustomize edit set image name=ref@digest` makes.
    """
    path = deploy / "overlays" / environment / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    images = [entry for entry in kustomization.get("images", []) if entry["name"] not in pinned]
    for name, reference in sorted(pinned.items()):
        new_name, _, digest = reference.partition("@")
        images.append({"name": name, "newName": new_name, "digest": digest})
    kustomization["images"] = images
    path.write_text(yaml.safe_dump(kustomization, sort_keys=False))


def render_pinned(
    repo: Path, environment: str, pinned: dict[str, str], out: Path, keda_schemas: Path | None = None
) -> list[str]:
    """Render the pinned overlay into `out`; returns validation problems (empty when clean).

    The checks are tests/test_deploy_manifests.py's: Kubernetes strict, KEDA CRDs strict
    (`keda_schemas`, default the repository's deploy/schemas/keda/v2.20.2), the lints.
    """
    from qscore_tools.scaling.lint import lint_rendered, pod_templates
    from qscore_tools.scaling.manifests import render_overlay
    from qscore_tools.scaling.validate import (
        KUBERNETES_VERSION,
        keda_schema_dir,
        validate_core,
        validate_keda,
    )

    schemas = keda_schemas or keda_schema_dir(repo)
    if not schemas.is_dir():
        return [f"KEDA CRD schemas missing at {schemas} (docs/deploying.md; or pass --keda-schemas)"]

    with tempfile.TemporaryDirectory(prefix="qscore-overlay-") as tmp:
        shutil.copytree(repo / "deploy", Path(tmp) / "deploy")
        pin_overlay(Path(tmp) / "deploy", environment, pinned)
        docs = render_overlay(environment, Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    problems = validate_core(docs, KUBERNETES_VERSION) + validate_keda(docs, schemas) + lint_rendered(docs)
    used = {
        str(container["image"])
        for _, template in pod_templates(docs)
        for key in ("containers", "initContainers")
        for container in template.get("spec", {}).get(key, [])
    }
    problems += [
        f"{name}: rendered overlay does not use {ref}" for name, ref in pinned.items() if ref not in used
    ]
    return problems
