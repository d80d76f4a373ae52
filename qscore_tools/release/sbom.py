"""A CycloneDX 1.5 SBOM of an image's root filesystem: every Python distribution (the
`*.dist-info/METADATA` files, wherever they lie: the venv, the Functions app's
.python_packages, the system Python) and every Debian package (/var/lib/dpkg/status).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

SKIPPED_TREES = ("proc", "sys", "dev", "run", "tmp")


def _dist_info_dirs(root: Path) -> Iterator[Path]:
    for top in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIPPED_TREES):
        yield from (p.parent for p in top.rglob("*.dist-info/METADATA"))


def python_components(root: Path) -> list[dict[str, Any]]:
    components: dict[str, dict[str, Any]] = {}
    for dist in _dist_info_dirs(root):
        headers = HeaderParser().parsestr((dist / "METADATA").read_text(errors="replace"))
        name, version = headers.get("Name"), headers.get("Version")
        if not name or not version:
            continue
        normalised = name.lower().replace("_", "-").replace(".", "-")
        component: dict[str, Any] = {
            "type": "library",
            "name": name,
            "version": version,
            "purl": f"pkg:pypi/{normalised}@{version}",
            "properties": [{"name": "dev.qscore:path", "value": "/" + str(dist.relative_to(root))}],
        }
        license_text = headers.get("License-Expression") or headers.get("License")
        if license_text and len(license_text) < 100 and "\n" not in license_text:
            component["licenses"] = [{"license": {"name": license_text}}]
        components[f"{component['purl']}|{dist.parent}"] = component
    return list(components.values())


def _dpkg_stanzas(text: str) -> Iterator[dict[str, str]]:
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields


def debian_components(root: Path) -> list[dict[str, Any]]:
    status = root / "var" / "lib" / "dpkg" / "status"
    if not status.is_file():
        return []
    components = []
    for fields in _dpkg_stanzas(status.read_text(errors="replace")):
        if "installed" not in fields.get("Status", "").split():
            continue
        name, version, arch = fields["Package"], fields.get("Version", ""), fields.get("Architecture", "")
        components.append(
            {
                "type": "library",
                "name": name,
                "version": version,
                "purl": f"pkg:deb/debian/{name}@{version}?arch={arch}",
            }
        )
    return components


def cyclonedx(root: Path, *, image: str, labels: dict[str, str]) -> dict[str, Any]:
    """The SBOM document for the filesystem at `root` of `image`."""
    components = python_components(root) + debian_components(root)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "qscore release images"}]},
            "component": {
                "type": "container",
                "name": image,
                "properties": [{"name": key, "value": value} for key, value in sorted(labels.items())],
            },
        },
        "components": sorted(components, key=lambda c: (c["purl"], c["name"])),
    }


def write_sbom(root: Path, path: Path, *, image: str, labels: dict[str, str]) -> dict[str, int]:
    """Write the SBOM; returns component counts by ecosystem (for the summary)."""
    document = cyclonedx(root, image=image, labels=labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    counts = {"pypi": 0, "deb": 0}
    for component in document["components"]:
        counts["pypi" if component["purl"].startswith("pkg:pypi/") else "deb"] += 1
    return counts
