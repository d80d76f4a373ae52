"""No secret or connection string baked into any layer: every file of every layer tarball
(a file deleted by a later layer still ships in the earlier one) is searched for credential
shapes. A pattern needs a value, so code that *parses* "SharedAccessKey=" is not a finding.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

PATTERNS: dict[str, re.Pattern[bytes]] = {
    "Service Bus / Event Hubs key": re.compile(rb"SharedAccessKey=[A-Za-z0-9+/]{32,}={0,2}"),
    "storage account key": re.compile(rb"AccountKey=[A-Za-z0-9+/]{64,}={0,2}"),
    "Application Insights key": re.compile(
        rb"InstrumentationKey=[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    ),
    "SAS token": re.compile(rb"[?&]sig=[A-Za-z0-9%+/]{40,}"),
    # The header alone is in every TLS library (a parser's string); a key has a body.
    "private key": re.compile(
        rb"-----BEGIN (?:RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{60,}"
    ),
}
# Files that must never be in an image at all: the build's pip secrets, local settings.
FORBIDDEN_FILES = re.compile(r"(^|/)(etc/pip\.conf|run/secrets/.+|local\.settings\.json)$")
# Azurite's documented development key is public; it is not a secret.
ALLOWED = (b"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",)
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    layer: str
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.layer[:19]} {self.path}: {self.what}"


# Shared libraries embed their self-test vectors (libgnutls carries RSA/EC/GOST test keys for
# its FIPS self-tests); a deployed key is a file, never compiled into an ELF object.
NOT_IN_BINARIES = {"private key"}


def scan_bytes(data: bytes) -> list[str]:
    """The pattern names found in `data`."""
    found = []
    binary = data.startswith(b"\x7fELF")
    for what, pattern in PATTERNS.items():
        if binary and what in NOT_IN_BINARIES:
            continue
        for match in pattern.finditer(data):
            if not any(allowed in data[match.start() : match.end() + 100] for allowed in ALLOWED):
                found.append(what)
                break
    return found


def scan_layer(stream: IO[bytes], layer: str) -> list[Finding]:
    """Findings in one layer tarball (gzip or plain), read as a stream."""
    findings: list[Finding] = []
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if FORBIDDEN_FILES.search(member.name.lstrip("./")):
                findings.append(Finding(layer, member.name, "file that must not ship in an image"))
            if not member.isfile() or member.size > MAX_FILE_BYTES:
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            findings.extend(Finding(layer, member.name, what) for what in scan_bytes(handle.read()))
    return findings


def summarise(findings: Iterable[Finding]) -> str:
    lines = [str(f) for f in findings]
    return "\n".join(lines[:20]) + (f"\n... and {len(lines) - 20} more" if len(lines) > 20 else "")
