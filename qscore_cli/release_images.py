"""`qscore release images`: build, smoke-test, SBOM, secret-scan and publish the three images.

`release_group()` is a minimal `release` group for when `qscore_cli/release.py` (the
lifecycle's `release package`) is absent; with it, call `register(release.app)` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore_tools.release.images import ReleaseReport

IMAGE_NAMES = ("triton-models", "worker", "functions")


def release_group() -> typer.Typer:
    group = typer.Typer(help="Release: build, test and publish what gets deployed.", no_args_is_help=True)
    register(group)
    return group


def register(group: typer.Typer) -> None:
    group.command("images")(images)


def images(
    only: list[str] = typer.Option(
        [], "--only", help=f"Build just these ({', '.join(IMAGE_NAMES)}); repeatable. Default: all three."
    ),
    tag: str | None = typer.Option(None, help="Image tag. Default: the first 12 hex digits of HEAD."),
    registry: str | None = typer.Option(
        None, help="Also push here (e.g. <acr>.azurecr.io) and pin the overlay to its digests."
    ),
    tls_verify: bool = typer.Option(True, help="Verify --registry's TLS certificate."),
    environment: str = typer.Option("prod", help="Overlay to render pinned to the pushed digests."),
    smoke: bool = typer.Option(True, help="Run the worker and Functions smoke tests inside the images."),
    publish: bool = typer.Option(True, help="Push, secret-scan the pushed layers, render the overlay."),
    pull_official: bool = typer.Option(
        True, help="Try the official base images first (else the local Debian 12 base)."
    ),
    state_dir: Path | None = typer.Option(None, help="Buildah storage, base cache, logs, SBOMs."),
    package: Path | None = typer.Option(
        None, help="`qscore release package` output: the model image holds its repository."
    ),
    keda_schemas: Path | None = typer.Option(
        None, help="KEDA v2.20.2 CRD schemas. Default: deploy/schemas/keda/v2.20.2 in the repository."
    ),
) -> None:
    """Build the worker, Functions and model images; smoke-test, scan, push, pin by digest."""
    from qscore_tools.release.buildah import ReleaseError
    from qscore_tools.release.images import ReleaseOptions, release_images
    from qscore_tools.scaling.manifests import OVERLAYS, repo_root

    if package is not None and not (package / "triton_repo").is_dir():
        raise UserError(f"--package {package}: no triton_repo/ there (run qscore release package first)")
    unknown = sorted(set(only) - set(IMAGE_NAMES))
    if unknown:
        raise UserError(f"--only {', '.join(unknown)}: known images are {', '.join(IMAGE_NAMES)}")
    if environment not in OVERLAYS:
        raise UserError(f"--environment {environment}: known overlays are {', '.join(OVERLAYS)}")
    root = repo_root()
    options = ReleaseOptions(
        repo=root,
        state=(state_dir or root / ".qscore" / "images").resolve(),
        tag=tag,
        images=tuple(only) or IMAGE_NAMES,
        registry=registry,
        tls_verify=tls_verify,
        environment=environment,
        smoke=smoke,
        publish=publish,
        pull_official=pull_official,
        keda_schemas=keda_schemas,
        package=package,
    )
    try:
        report = release_images(options, say=lambda line: typer.echo(f"release: {line}", err=True))
    except ReleaseError as exc:
        raise UserError(str(exc)) from None
    _print(report)


def _print(report: ReleaseReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"qscore release images  tag {report.tag}  revision {report.revision}")
    for column in ("image", "base", "python env", "SBOM pypi/deb", "layers scanned"):
        table.add_column(column)
    for built in report.images:
        size = f"{built.python_env_bytes / 1e6:.0f} MB" if built.python_env_bytes else "-"
        counts = f"{built.sbom_components.get('pypi', 0)}/{built.sbom_components.get('deb', 0)}"
        table.add_row(built.name, built.base, size, counts, str(built.layers_scanned or "-"))
    console = Console()
    console.print(table)
    for built in report.images:  # plain lines: what a person copies and a script greps
        console.print(
            f"{built.repository}  {built.pushed or built.reference}", soft_wrap=True, highlight=False
        )
    if report.worker_smoke:
        smoke = report.worker_smoke
        console.print(
            f"worker smoke (inside the image): {smoke['ok']}/{smoke['requests']} replies ok, "
            f"accuracy {smoke['accuracy']:.2f}, model versions {', '.join(smoke['model_versions'])}, "
            f"worker exit {smoke['worker_exit']}",
            soft_wrap=True,
        )
    if report.functions_indexed:
        console.print(f"functions app indexes: {', '.join(report.functions_indexed)}", soft_wrap=True)
    if report.rendered_overlay:
        console.print(f"pinned overlay: {report.rendered_overlay}", soft_wrap=True)
    console.print(f"total {sum(report.seconds.values()):.0f} s")
