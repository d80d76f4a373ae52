"""`qscore release images`: build the three images, smoke-test them, SBOM and secret-scan
them, push them to a registry and render the prod overlay pinned to the pushed digests.

Every step works on what was built (the images in buildah's storage, the blobs in the
registry), never on the source tree. State (buildah storage, the cached Debian base, logs,
SBOMs, the rendered overlay) lives in `<repo>/.qscore/images/`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from qscore_tools.release import publish, secret_scan, smoke
from qscore_tools.release.base import resolve_base
from qscore_tools.release.buildah import Buildah, ReleaseError
from qscore_tools.release.pipconf import write_pip_secrets
from qscore_tools.release.sbom import write_sbom

T = TypeVar("T")


@dataclass(frozen=True)
class ImageSpec:
    name: str  # deploy/docker/<name>.Dockerfile -> qscore-<name>
    python_env: str | None  # where its Python packages live (for the size figure)

    @property
    def repository(self) -> str:
        return f"qscore-{self.name}"


IMAGES = (
    ImageSpec("triton-models", None),
    ImageSpec("worker", "/opt/venv"),
    ImageSpec("functions", "/home/site/wwwroot/.python_packages"),
)


@dataclass(frozen=True, kw_only=True)
class ReleaseOptions:
    repo: Path
    state: Path
    tag: str | None = None
    images: tuple[str, ...] = tuple(spec.name for spec in IMAGES)
    registry: str | None = None  # also push here (ACR); the loopback registry is always used
    tls_verify: bool = True  # for --registry; the loopback registry speaks plain HTTP
    environment: str = "prod"
    smoke: bool = True
    publish: bool = True
    pull_official: bool = True
    keda_schemas: Path | None = None
    # `qscore release package` output: the model image holds its triton_repo/ (what the
    # registry released) instead of the committed one.
    package: Path | None = None


PACKAGED_MODELS = "build/release/triton_repo"  # where a package's repository goes in the context


@dataclass
class BuiltImage:
    name: str
    reference: str
    image_id: str
    base: str
    labels: dict[str, str]
    sbom: str = ""
    sbom_components: dict[str, int] = field(default_factory=dict)
    python_env_bytes: int | None = None
    log_dir: Path = Path(".")
    digest: str = ""
    pushed: str = ""  # registry/name@sha256:...
    layers_scanned: int = 0

    @property
    def repository(self) -> str:
        return f"qscore-{self.name}"


@dataclass
class ReleaseReport:
    tag: str
    revision: str
    images: list[BuiltImage] = field(default_factory=list)
    worker_smoke: dict[str, Any] | None = None
    functions_indexed: list[str] = field(default_factory=list)
    rendered_overlay: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    context: Path = Path(".")


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def source_revision(repo: Path) -> str:
    """HEAD's commit, with `-dirty` when tracked files differ from it."""
    commit = _git(repo, "rev-parse", "HEAD") or "unknown"
    return commit + ("-dirty" if _git(repo, "status", "--porcelain", "--untracked-files=no") else "")


def model_versions(repository: Path) -> str:
    """`digits=1,2;bench_mlp=1`: the numbered version folders of each model in triton_repo/."""
    models = []
    for model in sorted(p for p in repository.iterdir() if (p / "config.pbtxt").is_file()):
        versions = sorted(int(v.name) for v in model.iterdir() if v.is_dir() and v.name.isdigit())
        models.append(f"{model.name}={','.join(map(str, versions))}")
    return ";".join(models)


def _build_args(
    spec: ImageSpec, options: ReleaseOptions, revision: str, tag: str, base: str
) -> dict[str, str]:
    """BASE_IMAGE and the values of the Dockerfiles' closing LABEL instruction."""
    args = {"BASE_IMAGE": base, "QSCORE_REVISION": revision, "QSCORE_VERSION": tag}
    if spec.name == "triton-models":
        models = PACKAGED_MODELS if options.package is not None else "triton_repo"
        args["MODELS_DIR"] = models
        args["QSCORE_MODELS"] = model_versions((options.package or options.repo) / "triton_repo")
    return args


class _Timer:
    def __init__(self, report: ReleaseReport, say: Callable[[str], None]) -> None:
        self.report, self.say = report, say

    def step(self, name: str, action: Callable[[], T]) -> T:
        self.say(f"{name} ...")
        started = time.monotonic()
        result = action()
        self.report.seconds[name] = round(time.monotonic() - started, 1)
        self.say(f"{name}: {self.report.seconds[name]:.0f} s")
        return result


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def stage_context(repo: Path, target: Path) -> Path:
    """The files git sees (tracked, and untracked but not ignored) copied into `target`.

    The build context is this copy, not the checkout: buildah walks its whole context, and
    the checkout holds .venv/ and the tool's own storage (gigabytes) under .qscore/.
    """
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = repo / relative
        if source.is_file() and not source.is_symlink():
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return target


def _build(buildah: Buildah, spec: ImageSpec, options: ReleaseOptions, report: ReleaseReport) -> BuiltImage:
    log = options.state / "logs" / f"{spec.name}.log"
    dockerfile = report.context / "deploy" / "docker" / f"{spec.name}.Dockerfile"
    base = resolve_base(buildah, dockerfile, log, allow_pull=options.pull_official)
    reference = f"localhost/{spec.repository}:{report.tag}"
    with tempfile.TemporaryDirectory(dir=options.state, prefix="secrets-") as secrets:
        pip = write_pip_secrets(Path(secrets))
        image_id = buildah.bud(
            dockerfile,
            report.context,
            tag=reference,
            build_args=_build_args(spec, options, report.revision, report.tag, base),
            labels={},
            secrets=pip.as_build_secrets(),
            log=log,
        )
    labels = buildah.inspect_labels(reference)
    return BuiltImage(spec.name, reference, image_id, base, labels, log_dir=log.parent)


def _describe(buildah: Buildah, spec: ImageSpec, built: BuiltImage, out: Path) -> None:
    """SBOM and Python environment size, read from the image's root filesystem."""
    with buildah.mounted(built.reference) as root:
        sbom = out / f"{spec.repository}.cdx.json"
        built.sbom_components = write_sbom(root, sbom, image=built.reference, labels=built.labels)
        built.sbom = str(sbom)
        if spec.python_env:
            built.python_env_bytes = _tree_bytes(root / spec.python_env.lstrip("/"))


def _scan(address: str, built: BuiltImage) -> None:
    findings: list[secret_scan.Finding] = []
    with publish.layer_streams(address, built.repository, built.digest) as layers:
        for digest, stream in layers:
            findings += secret_scan.scan_layer(stream, digest)
        built.layers_scanned = len(layers)
    if findings:
        raise ReleaseError(f"{built.reference}: secrets in its layers:\n{secret_scan.summarise(findings)}")


def _push_all(buildah: Buildah, report: ReleaseReport, address: str, tls_verify: bool, timer: _Timer) -> None:
    for built in report.images:
        target = f"{address}/{built.repository}:{report.tag}"
        log = built.log_dir / f"push-{built.name}.log"
        built.digest = timer.step(
            f"push {built.name} to {address}",
            partial(publish.push, buildah, built.reference, target, log, tls_verify=tls_verify),
        )
        built.pushed = f"{address}/{built.repository}@{built.digest}"


def _publish(buildah: Buildah, options: ReleaseOptions, report: ReleaseReport, timer: _Timer) -> None:
    """Push to a loopback registry and scan the blobs as pushed; then to --registry if given."""
    with publish.local_registry(options.state / "logs" / "registry.log") as address:
        _push_all(buildah, report, address, False, timer)
        for built in report.images:
            timer.step(f"secret scan {built.name}", partial(_scan, address, built))
    if options.registry:
        _push_all(buildah, report, options.registry, options.tls_verify, timer)
    pinned = {b.repository: b.pushed for b in report.images}
    # name=ref@digest pairs, what `kustomize edit set image` takes (the deploy workflow's input).
    (options.state / "out").mkdir(parents=True, exist_ok=True)
    (options.state / "out" / "pinned.txt").write_text(" ".join(f"{k}={v}" for k, v in sorted(pinned.items())))
    rendered = options.state / "out" / f"{options.environment}.rendered.yaml"
    problems = timer.step(
        "render overlay",
        partial(
            publish.render_pinned, options.repo, options.environment, pinned, rendered, options.keda_schemas
        ),
    )
    if problems:
        raise ReleaseError("the pinned overlay does not validate:\n" + "\n".join(problems[:20]))
    report.rendered_overlay = str(rendered)


def release_images(options: ReleaseOptions, say: Callable[[str], None] = print) -> ReleaseReport:
    """Run the whole release of images; raises ReleaseError naming the failed step."""
    revision = source_revision(options.repo)
    report = ReleaseReport(tag=options.tag or revision.replace("-dirty", "")[:12], revision=revision)
    buildah = Buildah(options.state)
    timer = _Timer(report, say)
    out = options.state / "out"
    specs = [spec for spec in IMAGES if spec.name in options.images]
    (options.state / "logs").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=options.state, prefix="context-") as context:
        report.context = stage_context(options.repo, Path(context))
        if options.package is not None:
            shutil.copytree(options.package / "triton_repo", report.context / PACKAGED_MODELS)
        for spec in specs:
            built = timer.step(f"build {spec.name}", partial(_build, buildah, spec, options, report))
            timer.step(f"sbom {spec.name}", partial(_describe, buildah, spec, built, out))
            report.images.append(built)
    by_name = {b.name: b for b in report.images}
    if options.smoke and "functions" in by_name:
        report.functions_indexed = timer.step(
            "smoke functions", lambda: smoke.index_functions_app(buildah, by_name["functions"].reference)
        )
    if options.smoke and {"worker", "triton-models"} <= set(by_name):
        with tempfile.TemporaryDirectory(dir=options.state, prefix="smoke-") as work:
            result = timer.step(
                "smoke worker",
                lambda: smoke.smoke_worker(
                    buildah,
                    by_name["worker"].reference,
                    by_name["triton-models"].reference,
                    Path(work),
                    options.state / "logs" / "smoke-worker.log",
                ),
            )
        report.worker_smoke = asdict(result)
    if options.publish:
        _publish(buildah, options, report, timer)
    out.mkdir(parents=True, exist_ok=True)
    (out / "release.json").write_text(json.dumps(asdict(report), indent=1, default=str) + "\n")
    return report
