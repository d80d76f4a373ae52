"""The versioned request/reply contract shared by the worker, the Functions app and producers."""

from qscore.contracts.batch import (
    MAX_BATCH_ITEMS,
    REQUEST_BATCH_CONTENT_TYPE,
    BatchItem,
    DecodedItem,
    ScoreRequestBatch,
    decode_batch,
    is_batch_content_type,
)
from qscore.contracts.errors import BAD_INPUT, BadInput, ContractViolation
from qscore.contracts.messages import (
    PRODUCTION_LABEL,
    REPLY_CONTENT_TYPE,
    REQUEST_CONTENT_TYPE,
    SCHEMA_VERSION,
    ErrorCode,
    ReplyError,
    ReplyStatus,
    ScoreReply,
    ScoreRequest,
    Tensor,
    Timings,
)
from qscore.contracts.model_spec import ModelSpec, TensorSpec
from qscore.contracts.validation import check_deadline, decode_request, request_arrays

__all__ = [
    "BAD_INPUT",
    "MAX_BATCH_ITEMS",
    "PRODUCTION_LABEL",
    "REPLY_CONTENT_TYPE",
    "REQUEST_BATCH_CONTENT_TYPE",
    "REQUEST_CONTENT_TYPE",
    "SCHEMA_VERSION",
    "BadInput",
    "BatchItem",
    "ContractViolation",
    "DecodedItem",
    "ErrorCode",
    "ModelSpec",
    "ReplyError",
    "ReplyStatus",
    "ScoreReply",
    "ScoreRequest",
    "ScoreRequestBatch",
    "Tensor",
    "TensorSpec",
    "Timings",
    "check_deadline",
    "decode_batch",
    "decode_request",
    "is_batch_content_type",
    "request_arrays",
]
