"""Claim-check through Azure Blob Storage: bodies too large for the queue travel by reference.

The producer puts a body over its threshold in the claim-check container and sends a small
reference (`reference.py`); the worker and the Functions app resolve it (`resolver.py`),
check size and SHA-256, score it like an inline request and delete the blob once answered.
"""

from qscore.claimcheck.reference import (
    CLAIM_CHECK_CONTENT_TYPE,
    ClaimCheck,
    ClaimReference,
    parse_reference,
    sha256_hex,
)
from qscore.claimcheck.resolver import ClaimResolver, ResolvedBody, is_claim_check
from qscore.claimcheck.settings import ClaimCheckSettings
from qscore.claimcheck.store import ClaimStore, ClaimStoreUnavailable

__all__ = [
    "CLAIM_CHECK_CONTENT_TYPE",
    "ClaimCheck",
    "ClaimCheckSettings",
    "ClaimReference",
    "ClaimResolver",
    "ClaimStore",
    "ClaimStoreUnavailable",
    "ResolvedBody",
    "is_claim_check",
    "parse_reference",
    "sha256_hex",
]
