"""The host's pip configuration as build secrets, so a build reaches the package index the
way the host's own pip does and no index address is ever written into the repository.

`pip config list` gives the effective settings (files and PIP_* variables). Entries naming
paths on the host (file:// indexes, find-links folders, constraint files) mean nothing inside
a build and are dropped; the CA bundle pip trusts is passed as its own secret.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CA_IN_BUILD = "/run/secrets/ca.crt"  # where `--mount=type=secret,id=ca.crt` puts it
_LINE = re.compile(r"^(?P<section>[^.]*)\.(?P<key>[^=]+)='(?P<value>.*)'$")
_PATH_KEYS = {"find-links", "constraint", "requirement", "cert", "client-cert", "log", "cache-dir"}
_INDEX_KEYS = {"index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout", "retries"}


@dataclass(frozen=True)
class PipSecrets:
    conf: Path  # mounted at /etc/pip.conf
    ca_bundle: Path  # mounted at CA_IN_BUILD

    def as_build_secrets(self) -> dict[str, Path]:
        return {"pip.conf": self.conf, "ca.crt": self.ca_bundle}


def host_pip_config() -> dict[str, str]:
    """Effective `pip config list` entries, key -> value (env entries win over files)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    entries: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        match = _LINE.match(line.strip())
        if match and match["section"] in ("global", "install", ":env:"):
            entries[match["key"]] = match["value"]
    return entries


def _is_local(value: str) -> bool:
    return value.startswith(("file:", "/", ".")) or os.path.exists(value)


def build_pip_conf(entries: dict[str, str]) -> str:
    """A pip.conf for inside the build: network settings kept, host paths dropped."""
    lines = ["[global]", f"cert = {CA_IN_BUILD}"]
    for key, value in sorted(entries.items()):
        if key in _PATH_KEYS or key not in _INDEX_KEYS:
            continue
        kept = [v for v in value.split() if not _is_local(v)]
        if kept:
            lines.append(f"{'timeout' if key == 'default-timeout' else key} = {' '.join(kept)}")
    return "\n".join(lines) + "\n"


def host_ca_bundle(entries: dict[str, str]) -> Path:
    """The CA bundle the host's pip trusts: its `cert` setting, the system bundle, or certifi's."""
    for candidate in (
        entries.get("cert"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    from pip._vendor import certifi

    return Path(certifi.where())


def write_pip_secrets(folder: Path) -> PipSecrets:
    """Write the two secrets into `folder` (mode 0700; the caller deletes it after the build)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    entries = host_pip_config()
    conf = folder / "pip.conf"
    conf.write_text(build_pip_conf(entries))
    conf.chmod(0o600)
    ca = folder / "ca.crt"
    ca.write_bytes(host_ca_bundle(entries).read_bytes())
    return PipSecrets(conf=conf, ca_bundle=ca)
