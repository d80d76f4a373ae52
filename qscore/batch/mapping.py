"""Which input columns feed which model input, decided from the model's Triton config.

A model input of shape [k] takes one list column of k numbers or k numeric columns; a
shape-[1] input takes one numeric column. `--map input=column` (or `=c1,c2,...` or a glob
`=pixel_*`) overrides. Every mismatch is a `MappingError` raised before any row is scored.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from qscore.contracts.model_spec import ModelSpec, TensorSpec, numpy_dtype

ROW_ID_COLUMN = "row"


class MappingError(ValueError):
    """The input's columns or types do not fit the model (one line for a person)."""


@dataclass(frozen=True)
class InputBinding:
    """One model input and where its values come from: one list column, or `width` scalar columns."""

    spec: TensorSpec
    columns: tuple[str, ...]
    is_list: bool

    @property
    def width(self) -> int:
        return self.spec.element_count()

    def describe(self) -> str:
        source = self.columns[0] if self.is_list else _span(self.columns)
        kind = "list column" if self.is_list else f"{len(self.columns)} column(s)"
        return f"{self.spec.name} ({self.spec.datatype} [{self.width}]) <- {kind} {source}"


@dataclass(frozen=True)
class ColumnMapping:
    bindings: tuple[InputBinding, ...]
    id_column: str | None  # None: the row number is the id
    outputs: tuple[TensorSpec, ...]

    @property
    def id_name(self) -> str:
        return self.id_column or ROW_ID_COLUMN

    def as_dict(self) -> dict[str, object]:
        return {
            "inputs": {b.spec.name: list(b.columns) for b in self.bindings},
            "id_column": self.id_column,
            "outputs": [o.name for o in self.outputs],
        }


def map_columns(
    spec: ModelSpec,
    schema: pa.Schema,
    *,
    overrides: Mapping[str, str] | None = None,
    id_column: str | None = None,
    outputs: list[str] | None = None,
) -> ColumnMapping:
    """The mapping for `schema`, or MappingError naming what is missing or mistyped."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {i.name for i in spec.inputs})
    if unknown:
        raise MappingError(f"--map names no input of model {spec.name!r}: {', '.join(unknown)}")
    if id_column is not None and id_column not in schema.names:
        raise MappingError(f"--id-column {id_column!r} is not a column of the input ({_names(schema)})")
    free = [name for name in schema.names if name != id_column]
    bindings = tuple(_bind(spec, tensor, schema, free, overrides.get(tensor.name)) for tensor in spec.inputs)
    return ColumnMapping(bindings, id_column, _pick_outputs(spec, outputs))


def _bind(
    spec: ModelSpec, tensor: TensorSpec, schema: pa.Schema, free: list[str], override: str | None
) -> InputBinding:
    width = tensor.element_count()
    if width < 1:
        raise MappingError(f"input {tensor.name!r} has a variable shape {tensor.dims}: not supported")
    if override is not None:
        columns = _override_columns(override, schema)
    elif tensor.name in schema.names:
        columns = [tensor.name]
    elif len(prefixed := _numbered(f"{tensor.name}_", free)) == width:
        columns = prefixed
    elif len(spec.inputs) == 1:
        columns = _only_candidates(tensor, schema, free)
    else:
        raise MappingError(f"no column for input {tensor.name!r}: use --map {tensor.name}=COLUMN")
    binding = _binding_for(tensor, schema, columns)
    _check_types(binding, schema)
    return binding


def _only_candidates(tensor: TensorSpec, schema: pa.Schema, free: list[str]) -> list[str]:
    """A single-input model takes the one list column, or all the numeric columns if they fit."""
    lists = [name for name in free if _is_list(schema.field(name).type)]
    if len(lists) == 1:
        return lists
    numeric = [name for name in free if _is_number(schema.field(name).type)]
    if len(numeric) == tensor.element_count():
        return numeric
    raise MappingError(
        f"input {tensor.name!r} wants {tensor.element_count()} numbers a row: found {len(lists)} list and "
        f"{len(numeric)} numeric columns ({_names(schema)}); say which with --map {tensor.name}=COLUMNS"
    )


def _binding_for(tensor: TensorSpec, schema: pa.Schema, columns: list[str]) -> InputBinding:
    width = tensor.element_count()
    if len(columns) == 1 and _is_list(schema.field(columns[0]).type):
        field_type = schema.field(columns[0]).type
        if pa.types.is_fixed_size_list(field_type) and field_type.list_size != width:
            raise MappingError(
                f"column {columns[0]!r} holds {field_type.list_size} values a row; "
                f"input {tensor.name!r} wants {width}"
            )
        return InputBinding(tensor, tuple(columns), is_list=True)
    if len(columns) != width:
        raise MappingError(
            f"input {tensor.name!r} wants {width} numbers a row; mapped {len(columns)} column(s) "
            f"{_span(tuple(columns))}"
        )
    return InputBinding(tensor, tuple(columns), is_list=False)


def _check_types(binding: InputBinding, schema: pa.Schema) -> None:
    wants_float = numpy_dtype(binding.spec.datatype).kind == "f"
    for name in binding.columns:
        field_type = schema.field(name).type
        value_type = field_type.value_type if _is_list(field_type) else field_type
        if not _is_number(value_type) or (not wants_float and pa.types.is_floating(value_type)):
            raise MappingError(
                f"column {name!r} has type {value_type}; input {binding.spec.name!r} wants "
                f"{binding.spec.datatype} numbers"
            )


def _override_columns(override: str, schema: pa.Schema) -> list[str]:
    if any(ch in override for ch in "*?["):
        columns = _natural(fnmatch.filter(schema.names, override))
    else:
        columns = [part.strip() for part in override.split(",") if part.strip()]
    missing = [name for name in columns if name not in schema.names]
    if missing or not columns:
        raise MappingError(
            f"--map {override!r}: no such column(s) {missing or override!r} ({_names(schema)})"
        )
    return columns


def _pick_outputs(spec: ModelSpec, names: list[str] | None) -> tuple[TensorSpec, ...]:
    if not names:
        return tuple(spec.outputs)
    by_name = {o.name: o for o in spec.outputs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise MappingError(
            f"model {spec.name!r} has no output {', '.join(unknown)} (has: {', '.join(by_name)})"
        )
    return tuple(by_name[n] for n in names)


def _numbered(prefix: str, names: list[str]) -> list[str]:
    return _natural([n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()])


def _natural(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def _is_list(field_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(field_type)
        or pa.types.is_large_list(field_type)
        or pa.types.is_fixed_size_list(field_type)
    )


def _is_number(field_type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(field_type) or pa.types.is_floating(field_type))


def _names(schema: pa.Schema) -> str:
    names = schema.names
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} columns)" if len(names) > 8 else "")
    return f"columns: {shown}"


def _span(columns: tuple[str, ...]) -> str:
    return ", ".join(columns) if len(columns) <= 3 else f"{columns[0]} .. {columns[-1]}"
