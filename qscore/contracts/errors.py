"""The stable error codes, the exception that carries one, and the bad-input table.

`BAD_INPUT` is the one table of what happens to a request that cannot be scored as sent: the
worker and the Functions app both follow it (through `qscore.scoring.rejection_disposition`), and
docs/contract.md shows the same rows (a test keeps the two equal). A caller that can be reached
is answered with an error reply; only what cannot be answered (no usable reply address, a reply
the broker refused) is dead-lettered. Codes are never renamed or reused for another meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class ErrorCode(StrEnum):
    """Stable error codes: an error reply's `error.code`, or the dead-letter reason where the
    request cannot be answered."""

    # The envelope: what the Service Bus message carries besides the body.
    NO_MESSAGE_ID = "no_message_id"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    NO_REPLY_ADDRESS = "no_reply_address"
    NO_REPLY_SESSION = "no_reply_session"
    REPLY_TO_NOT_ALLOWED = "reply_to_not_allowed"
    UNREADABLE_PROPERTIES = "unreadable_properties"
    # The body.
    INVALID_ENCODING = "invalid_encoding"  # not UTF-8 / not JSON
    SCHEMA_VIOLATION = "schema_violation"  # JSON that does not match the request schema
    UNKNOWN_MODEL = "unknown_model"
    UNKNOWN_VERSION = "unknown_version"
    BAD_INPUT_NAME = "bad_input_name"
    BAD_DTYPE = "bad_dtype"
    BAD_TENSOR_ENCODING = "bad_tensor_encoding"
    BAD_SHAPE = "bad_shape"
    NON_FINITE = "non_finite"
    TOO_LARGE = "too_large"
    EXPIRED = "expired"
    # A claim-check reference (the body kept in Blob Storage, docs/contract.md).
    CLAIM_CHECK_INVALID = "claim_check_invalid"
    CLAIM_CHECK_WRONG_CONTAINER = "claim_check_wrong_container"
    CLAIM_CHECK_TOO_LARGE = "claim_check_too_large"
    CLAIM_CHECK_MISSING = "claim_check_missing"
    CLAIM_CHECK_MISMATCH = "claim_check_mismatch"
    # What went wrong on the way, for this request alone.
    INFERENCE_FAILED = "inference_failed"
    MODEL_OUTPUT_MISMATCH = "model_output_mismatch"
    REPLY_UNDELIVERABLE = "reply_undeliverable"


Outcome = Literal["dead_lettered", "error_reply"]
DEAD_LETTERED: Outcome = "dead_lettered"
ERROR_REPLY: Outcome = "error_reply"


@dataclass(frozen=True)
class BadInput:
    """One row of the bad-input table: when a code is given, what becomes of the request, and
    what the person who sent it should do. `outcome` is ERROR_REPLY for what the caller did wrong
    in the request itself (it can be told); DEAD_LETTERED for what leaves no usable reply
    address (the caller cannot be told)."""

    when: str
    action: str
    outcome: Outcome = ERROR_REPLY


BAD_INPUT: dict[ErrorCode, BadInput] = {
    ErrorCode.NO_MESSAGE_ID: BadInput(
        "the message has no `message_id` (the request id)",
        "set `message_id` to a unique id per request (the producer library uses a UUID)",
        outcome=DEAD_LETTERED,
    ),
    ErrorCode.UNSUPPORTED_CONTENT_TYPE: BadInput(
        "`content_type` is set and is neither `application/vnd.qscore.request.v1+json` nor "
        "`application/vnd.qscore.request.v1+binary`",
        "send a v1 content type (or none, for JSON) with a v1 body",
    ),
    ErrorCode.NO_REPLY_ADDRESS: BadInput(
        "neither `reply_to` nor `reply_to_session_id` is set, so no reply can be sent",
        "set `reply_to` (the reply queue) and `reply_to_session_id` (your session on it)",
        outcome=DEAD_LETTERED,
    ),
    ErrorCode.NO_REPLY_SESSION: BadInput(
        "the reply queue requires sessions and `reply_to_session_id` is not set",
        "set `reply_to_session_id` to your own session id and read replies from that session",
        outcome=DEAD_LETTERED,
    ),
    ErrorCode.REPLY_TO_NOT_ALLOWED: BadInput(
        "`reply_to` names a queue outside the allow-list (`QSCORE_ALLOWED_REPLY_QUEUES`)",
        "reply to an allowed queue, or ask the operator to allow yours",
        outcome=DEAD_LETTERED,
    ),
    ErrorCode.UNREADABLE_PROPERTIES: BadInput(
        "the message's properties could not be read, so no reply address can be trusted",
        "send it with the producer library, or set `message_id`, `reply_to` and "
        "`reply_to_session_id` as strings",
        outcome=DEAD_LETTERED,
    ),
    ErrorCode.INVALID_ENCODING: BadInput(
        "the body is not UTF-8 JSON; or, in the binary form, `inference-header-content-length` is "
        "missing or not within the body, or the header is not UTF-8 JSON",
        "send the body as UTF-8 JSON, or the binary form with its header's length in that property",
    ),
    ErrorCode.SCHEMA_VIOLATION: BadInput(
        "the JSON (or a binary body's header) does not match the request schema (missing or unknown "
        "field, both `data` and `b64` in a tensor, a `deadline` that is not an ISO 8601 date-time, "
        "an input listed twice, ...)",
        "fix the field the description names; the schema is score-request.v1.json "
        "(score-request-binary-header.v1.json)",
    ),
    ErrorCode.UNKNOWN_MODEL: BadInput("no model of that name is served", "use a served model name"),
    ErrorCode.UNKNOWN_VERSION: BadInput(
        "the version or label does not exist or is not served",
        "omit `version` (production) or name a served version",
    ),
    ErrorCode.BAD_INPUT_NAME: BadInput(
        "input names differ from the model's (the description lists expected, unknown, missing)",
        "send exactly the model's inputs",
    ),
    ErrorCode.BAD_DTYPE: BadInput("a tensor's datatype is not the model's", "send the model's datatype"),
    ErrorCode.BAD_TENSOR_ENCODING: BadInput(
        "a tensor's `b64` is not valid base64, or its bytes are not whole elements of the datatype; "
        "in the binary form, the `binary_data_size` values do not add up to the bytes after the "
        "header, or a BYTES element's length runs past its tensor",
        "base64-encode the raw little-endian bytes of the array (`Tensor.from_numpy(a, binary=True)`)",
    ),
    ErrorCode.BAD_SHAPE: BadInput(
        "a tensor's shape is not the model's, the data does not fill the shape, or inputs disagree on rows",
        "send the shape the description names",
    ),
    ErrorCode.NON_FINITE: BadInput(
        "NaN or infinity where the model forbids them", "replace non-finite values before sending"
    ),
    ErrorCode.TOO_LARGE: BadInput(
        "the body is over the size limit, or has more rows than the model's `max_batch_size`",
        "split the request into smaller ones",
    ),
    ErrorCode.EXPIRED: BadInput(
        "received after its `deadline`, or the deadline passed before its Triton call",
        "send it again with a later deadline if the answer is still wanted",
    ),
    ErrorCode.CLAIM_CHECK_INVALID: BadInput(
        "a claim-check message's body is not a valid reference (container, blob, size, sha256, content_type)",
        "send the reference the producer library builds (`qscore.claimcheck.ClaimReference`)",
    ),
    ErrorCode.CLAIM_CHECK_WRONG_CONTAINER: BadInput(
        "the reference names a container other than the service's claim-check container",
        "upload to the configured container (`QSCORE_CLAIM_CHECK_CONTAINER`, default `qscore-claims`)",
    ),
    ErrorCode.CLAIM_CHECK_TOO_LARGE: BadInput(
        "the referenced body is over the model's limit (`qscore.max_request_bytes`, else the service's)",
        "send smaller inputs (fewer rows or smaller images) per request",
    ),
    ErrorCode.CLAIM_CHECK_MISSING: BadInput(
        "the referenced blob does not exist (never uploaded, already answered, or expired)",
        "upload the body and send the request again",
    ),
    ErrorCode.CLAIM_CHECK_MISMATCH: BadInput(
        "the blob's size or SHA-256 is not the reference's (changed or truncated after sending)",
        "do not change a blob once its reference is sent; upload again under a new name",
    ),
    ErrorCode.INFERENCE_FAILED: BadInput(
        "Triton refused this request alone (retried by itself first, so it does not fail its batch)",
        "read the description (Triton's words); check the inputs' values",
    ),
    ErrorCode.MODEL_OUTPUT_MISMATCH: BadInput(
        "the model's result does not fit its batch (rows per output, shape or datatype not as its "
        "config declares), so no answer could be matched to its request; the whole batch fails",
        "nothing in the request: tell the model's owner (metric `qscore_model_output_mismatches`); "
        "send it again once the model is fixed",
    ),
    ErrorCode.REPLY_UNDELIVERABLE: BadInput(
        "the broker refused this request's reply (queue not found, unauthorized, reply too large, "
        "session required); the description quotes the broker",
        "fix the reply address (or the reply queue's settings) and send the request again",
        outcome=DEAD_LETTERED,
    ),
}


class ContractViolation(Exception):
    """A request that can never be scored as sent: reply with an error (or dead-letter it) with `code`.

    `description` is written for the person who sent the request: what was wrong and what to change.
    """

    def __init__(self, code: ErrorCode, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description

    @property
    def outcome(self) -> Outcome:
        """What the bad-input table says becomes of such a request."""
        row = BAD_INPUT.get(self.code)
        return row.outcome if row is not None else ERROR_REPLY


def bad_input_markdown() -> str:
    """The bad-input table as docs/contract.md shows it (a test keeps the two equal)."""
    outcome_words = {
        DEAD_LETTERED: "dead-lettered (the caller cannot be reached)",
        ERROR_REPLY: "**error reply** (`status: error`); dead-lettered only without a usable reply address",
    }
    lines = ["| code | when | outcome | what to do |", "|---|---|---|---|"]
    for code, row in BAD_INPUT.items():
        lines.append(f"| `{code}` | {row.when} | {outcome_words[row.outcome]} | {row.action} |")
    return "\n".join(lines) + "\n"
