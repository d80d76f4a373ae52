"""What a served model accepts and returns, read from its Triton model configuration.

Request limits (allowed dtypes, shapes, batch size, finite-values policy) come from here,
not from constants in the worker, so a model's `config.pbtxt` is the one source of truth.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# Triton datatype names <-> numpy dtypes. BYTES (config TYPE_STRING) elements are Python `bytes`
# in an object array, as tritonclient takes them: encoded images, documents.
BYTES = "BYTES"
TRITON_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    BYTES: np.dtype(object),
}
NUMPY_TO_TRITON: dict[np.dtype[Any], str] = {v: k for k, v in TRITON_TO_NUMPY.items()}

# A model may allow NaN/inf inputs by setting this parameter to "true" in config.pbtxt.
ALLOW_NON_FINITE_PARAMETER = "qscore.allow_non_finite"
# A model may take request bodies larger than the queue carries (by claim-check) up to this size.
MAX_REQUEST_BYTES_PARAMETER = "qscore.max_request_bytes"
# Which output holds the predicted class (monitoring, the demo's accuracy): the model says.
CLASS_OUTPUT_PARAMETER = "qscore.predicted_class_output"


def config_datatype(data_type: str) -> str:
    """The protocol's datatype name for a config's `data_type` (TYPE_STRING travels as BYTES)."""
    name = data_type.removeprefix("TYPE_")
    return BYTES if name == "STRING" else name


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype for a Triton datatype name (KeyError for unsupported ones)."""
    return TRITON_TO_NUMPY[datatype]


class TensorSpec(BaseModel):
    """One input or output tensor of a model; `dims` excludes the batch dimension (-1 = variable)."""

    model_config = ConfigDict(frozen=True)

    name: str
    datatype: str
    dims: list[int]

    def element_count(self) -> int:
        """Elements in one sample, or -1 when a dimension is variable."""
        count = 1
        for dim in self.dims:
            if dim < 0:
                return -1
            count *= dim
        return count


class ModelSpec(BaseModel):
    """The serving contract of one model (all versions share it)."""

    model_config = ConfigDict(frozen=True)

    name: str
    versions: list[str] = Field(default_factory=list)
    max_batch_size: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_queue_delay_us: int = 0
    allow_non_finite: bool = False
    max_request_bytes: int | None = None  # the config's qscore.max_request_bytes, if set
    class_output: str | None = None  # the config's qscore.predicted_class_output, if set

    def input(self, name: str) -> TensorSpec | None:
        """The input spec called `name`, if the model has one (a dict lookup: it runs for every
        input of every request)."""
        inputs, by_name = self._inputs_by_name
        if inputs is not self.inputs:  # a copy with other inputs (model_copy copies the cache)
            del self.__dict__["_inputs_by_name"]
            inputs, by_name = self._inputs_by_name
        return by_name.get(name)

    @cached_property
    def _inputs_by_name(self) -> tuple[list[TensorSpec], dict[str, TensorSpec]]:
        by_name: dict[str, TensorSpec] = {}
        for spec in self.inputs:
            by_name.setdefault(spec.name, spec)  # the first of a name, as a linear search found
        return self.inputs, by_name

    @classmethod
    def from_triton_config(cls, config: dict[str, Any], versions: list[str]) -> ModelSpec:
        """Build from the JSON form of a Triton model config (`get_model_config(as_json=True)["config"]`)."""

        def tensors(key: str) -> list[TensorSpec]:
            return [
                TensorSpec(
                    name=t["name"],
                    datatype=config_datatype(str(t.get("data_type", "TYPE_FP32"))),
                    dims=[int(d) for d in t.get("dims", [])],
                )
                for t in config.get(key, [])
            ]

        batching = config.get("dynamic_batching") or {}
        parameters = config.get("parameters") or {}
        non_finite = parameters.get(ALLOW_NON_FINITE_PARAMETER, {}).get("string_value", "false")
        max_request = parameters.get(MAX_REQUEST_BYTES_PARAMETER, {}).get("string_value")
        class_output = parameters.get(CLASS_OUTPUT_PARAMETER, {}).get("string_value")
        return cls(
            name=config["name"],
            versions=versions,
            max_batch_size=int(config.get("max_batch_size", 0)),
            inputs=tensors("input"),
            outputs=tensors("output"),
            max_queue_delay_us=int(batching.get("max_queue_delay_microseconds", 0)),
            allow_non_finite=str(non_finite).lower() == "true",
            max_request_bytes=int(max_request) if max_request else None,
            class_output=class_output or None,
        )
