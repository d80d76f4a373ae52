"""`qscore release images`: the parts that need no image build run by default (pip secrets,
SBOM, secret scan, the digest-pinned overlay, the Dockerfiles' shape); the slow test builds
the worker and model images with buildah and runs the worker from inside the image.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from qscore_tools.release import publish, secret_scan
from qscore_tools.release.base import official_base
from qscore_tools.release.images import model_versions
from qscore_tools.release.pipconf import CA_IN_BUILD, build_pip_conf
from qscore_tools.release.sbom import cyclonedx
from qscore_tools.scaling.validate import keda_schema_dir
from tests.fixtures.parts import require_tool

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "deploy" / "docker"
KEY = "k" * 43 + "="  # the shape of a Service Bus key, not a real one


def test_pip_conf_keeps_the_network_index_and_drops_host_paths() -> None:
    conf = build_pip_conf(
        {
            "index-url": "https://mirror.example/simple",
            "extra-index-url": "file:///opt/pypi/simple https://more.example/simple",
            "find-links": "/opt/wheels",
            "constraint": "/etc/xdg/pip/constraints.txt",
            "cert": "/etc/ssl/certs/ca-certificates.crt",
            "default-timeout": "180",
        }
    )
    assert conf.splitlines()[:2] == ["[global]", f"cert = {CA_IN_BUILD}"]
    assert "index-url = https://mirror.example/simple" in conf
    assert "extra-index-url = https://more.example/simple" in conf
    assert "timeout = 180" in conf
    assert "/opt/" not in conf and "/etc/xdg" not in conf


def test_no_registry_or_index_address_is_written_into_the_dockerfiles() -> None:
    for dockerfile in DOCKER.glob("*.Dockerfile"):
        text = dockerfile.read_text()
        assert not re.search(r"(index-url|PIP_INDEX|--index)", text), dockerfile.name
        assert "--mount=type=secret,id=pip.conf" in text or "pip" not in text, dockerfile.name


def test_each_image_installs_its_extra_and_copies_code_after_the_dependencies() -> None:
    worker = (DOCKER / "worker.Dockerfile").read_text()
    final = worker[worker.rindex("FROM ") :]
    assert "extras.py --pyproject /tmp/deps/pyproject.toml worker" in final
    assert final.index("pip install --quiet -r /tmp/deps/requirements.txt") < final.index("COPY --from=wheel")
    functions = (DOCKER / "functions.Dockerfile").read_text()
    assert functions.index("-r /tmp/deps/requirements.txt") < functions.index("COPY functions ")
    for name in ("worker", "functions", "triton-models"):
        text = (DOCKER / f"{name}.Dockerfile").read_text()
        assert text.rstrip().splitlines()[-1].strip().startswith(("org.opencontainers", "dev.qscore"))
        assert official_base(DOCKER / f"{name}.Dockerfile").count(":") == 1


def test_model_versions_label_names_each_model_s_versions() -> None:
    assert model_versions(ROOT / "triton_repo") == (
        "bench_mlp=1;digit_images=1;digit_images_classifier=1;digit_images_preprocess=1;digits=1,2"
    )


def _fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    dist = (
        root / "opt" / "venv" / "lib" / "python3.11" / "site-packages" / "azure_servicebus-7.14.2.dist-info"
    )
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: azure-servicebus\nVersion: 7.14.2\nLicense: MIT\n"
    )
    status = root / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    status.write_text(
        "Package: python3\nStatus: install ok installed\nVersion: 3.11.2-1+b1\nArchitecture: amd64\n"
        "Description: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n"
    )
    return root


def test_sbom_lists_python_distributions_and_debian_packages(tmp_path: Path) -> None:
    document = cyclonedx(_fake_root(tmp_path), image="qscore-worker:t", labels={"a": "b"})
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.5"
    purls = [c["purl"] for c in document["components"]]
    assert purls == ["pkg:deb/debian/python3@3.11.2-1+b1?arch=amd64", "pkg:pypi/azure-servicebus@7.14.2"]
    assert document["metadata"]["component"]["properties"] == [{"name": "a", "value": "b"}]
    json.dumps(document)


def _layer(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def test_secret_scan_finds_baked_credentials_and_ignores_code_that_parses_them() -> None:
    layer = _layer(
        {
            "app/settings.env": f"CONN=Endpoint=sb://x.servicebus.windows.net/;SharedAccessKey={KEY}\n".encode(),
            "app/ai.txt": b"InstrumentationKey=00000000-1111-2222-3333-444444444444;IngestionEndpoint=x",
            "etc/pip.conf": b"[global]\n",
            "lib/parser.py": b'if key == "SharedAccessKey=": pass  # SharedAccessKey=local',
            "lib/libtls.so": b"\x7fELF\0-----BEGIN PRIVATE KEY-----\n" + b"M" * 64 + b"\n-----END",
            "app/key.pem": b"-----BEGIN PRIVATE KEY-----\n" + b"M" * 64 + b"\n-----END PRIVATE KEY-----\n",
            "lib/azurite.py": b"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
            b"K1SZFPTOtr/KBHBeksoGMGw==",
        }
    )
    findings = secret_scan.scan_layer(layer, "sha256:abc")
    found = {(f.path, f.what) for f in findings}
    assert found == {
        ("app/settings.env", "Service Bus / Event Hubs key"),
        ("app/ai.txt", "Application Insights key"),
        ("etc/pip.conf", "file that must not ship in an image"),
        ("app/key.pem", "private key"),
    }


def test_pinned_overlay_references_the_digests_and_validates(tmp_path: Path) -> None:
    schemas = keda_schema_dir(ROOT)
    require_tool("kubectl", "kubectl with kustomize v5 renders the overlays (see docs/deploying.md)")
    digest = "sha256:" + "ab" * 32
    pinned = {
        f"qscore-{name}": f"127.0.0.1:5000/qscore-{name}@{digest}"
        for name in ("worker", "functions", "triton-models")
    }
    out = tmp_path / "prod.yaml"
    assert publish.render_pinned(ROOT, "prod", pinned, out, schemas) == []
    text = out.read_text()
    for reference in pinned.values():
        assert f"image: {reference}" in text
    assert "qscoreacr.azurecr.io/qscore-worker:0.1.0" not in text


@pytest.mark.slow
def test_worker_image_builds_and_scores_from_inside_the_image(tmp_path: Path) -> None:
    """The short form of `qscore release images`: worker + model images, smoke, push, pin."""
    from qscore_tools.release.images import ReleaseOptions, release_images

    for tool in ("buildah", "mmdebstrap", "docker-registry"):
        require_tool(tool, "bash scripts/release-deps.sh installs buildah, mmdebstrap, docker-registry")
    state = ROOT / ".qscore" / "release-test"  # this test's own: base and layers cached between runs
    for tarball in (ROOT / ".qscore" / "images" / "base").glob("debian12-*.tar"):
        seeded = state / "base" / tarball.name  # the command's base, when it has made one
        if tarball.is_file() and not seeded.exists():
            seeded.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tarball, seeded)
    options = ReleaseOptions(
        repo=ROOT,
        state=state,
        tag="slow-test",
        images=("triton-models", "worker"),
        environment="prod",
    )
    report = release_images(options, say=lambda line: None)
    smoke = report.worker_smoke
    assert smoke is not None and smoke["ok"] == smoke["requests"] and smoke["worker_exit"] == 0
    worker = next(b for b in report.images if b.name == "worker")
    assert worker.digest.startswith("sha256:") and worker.layers_scanned > 0
    assert worker.labels["org.opencontainers.image.revision"].startswith(report.revision[:12])
    assert Path(worker.sbom).is_file()


def test_public_sdk_statistics_keys_are_not_secrets() -> None:
    from qscore_tools.release.secret_scan import scan_bytes

    shipped = (
        b'_DEFAULT_EU_STATS_CONNECTION_STRING = "InstrumentationKey=7dc56bab-3c0c-4e9f-9ebb-d1acadee8d0f;'
    )
    assert scan_bytes(shipped) == []
    assert scan_bytes(b"InstrumentationKey=0b8f3a2c-1111-4222-8333-944455556666;") == [
        "Application Insights key"
    ]
