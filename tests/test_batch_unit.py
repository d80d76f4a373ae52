"""Batch scoring pieces that need no server: mapping, chunking, row checks, manifest, formats.

The same paths run against real Triton, the local bus and Azurite in test_batch_score.py and
test_batch_queue.py; these pin the edge cases quickly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from qscore.batch.chunks import rechunk
from qscore.batch.formats import Format, InputError, assemble, read_batches, read_schema, write_part
from qscore.batch.manifest import Manifest, ManifestMismatch
from qscore.batch.mapping import MappingError, map_columns
from qscore.batch.rows import NON_FINITE, WRONG_LENGTH, prepare_chunk
from qscore.batch.store import MANIFEST, LocalStore
from qscore.contracts.model_spec import ModelSpec, TensorSpec
from tests.fixtures.parts import missing_part

DIGITS = ModelSpec(
    name="digits",
    versions=["1", "2"],
    max_batch_size=256,
    inputs=[TensorSpec(name="pixels", datatype="FP32", dims=[64])],
    outputs=[
        TensorSpec(name="probabilities", datatype="FP32", dims=[10]),
        TensorSpec(name="label", datatype="INT64", dims=[1]),
    ],
)


def _columns_schema(count: int, *extra: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([(f"c{i}", pa.float64()) for i in range(count)] + list(extra))


def test_mapping_takes_a_list_column_or_exactly_64_numeric_columns() -> None:
    listed = map_columns(
        DIGITS, pa.schema([("id", pa.int64()), ("pixels", pa.list_(pa.float32()))]), id_column="id"
    )
    assert listed.bindings[0].columns == ("pixels",) and listed.bindings[0].is_list
    numeric = map_columns(DIGITS, _columns_schema(64))
    assert numeric.bindings[0].columns == tuple(f"c{i}" for i in range(64))
    prefixed = map_columns(
        DIGITS, pa.schema([(f"pixels_{i}", pa.int32()) for i in range(64)] + [("y", pa.int64())])
    )
    assert prefixed.bindings[0].columns[-1] == "pixels_63"
    glob = map_columns(DIGITS, _columns_schema(64, ("label", pa.int64())), overrides={"pixels": "c*"})
    assert glob.bindings[0].columns[10] == "c10"  # natural order, not c1, c10, c11...


@pytest.mark.parametrize(
    ("schema", "kwargs", "expected"),
    [
        (_columns_schema(65), {}, "found 0 list and 65 numeric columns"),
        (_columns_schema(63, ("s", pa.string())), {}, "63 numeric columns"),
        (_columns_schema(64, ("s", pa.string())), {"overrides": {"pixels": "c0,s"}}, "mapped 2 column(s)"),
        (pa.schema([("pixels", pa.list_(pa.string()))]), {}, "column 'pixels' has type string"),
        (pa.schema([("pixels", pa.list_(pa.float32(), 63))]), {}, "holds 63 values a row"),
        (_columns_schema(64), {"id_column": "nope"}, "--id-column 'nope' is not a column"),
        (_columns_schema(64), {"overrides": {"image": "c0"}}, "names no input"),
        (_columns_schema(64), {"overrides": {"pixels": "zz*"}}, "no such column"),
        (_columns_schema(64), {"outputs": ["logits"]}, "has no output logits"),
    ],
)
def test_mapping_errors_are_one_line(schema: pa.Schema, kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(MappingError) as caught:
        map_columns(DIGITS, schema, **kwargs)  # type: ignore[arg-type]
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_rechunk_numbers_rows_the_same_whatever_the_reader_batches() -> None:
    values = np.arange(10_000)
    batches = [pa.record_batch({"v": values[i : i + size]}) for i, size in [(0, 3), (3, 4000), (4003, 5997)]]
    chunks = list(rechunk(batches, 1024))
    assert [c.first_row for c in chunks] == [i * 1024 for i in range(10)]
    assert [c.rows for c in chunks] == [1024] * 9 + [784]
    joined = np.concatenate([c.batch.column("v").to_numpy() for c in chunks])
    assert (joined == values).all()


def test_unscoreable_rows_are_set_aside_with_their_reason() -> None:
    rows = [list(range(64)), list(range(63)), None, [float("nan")] + [0.0] * 63, [1.0] * 64]
    batch = pa.record_batch(
        {"id": ["a", "b", "c", "d", "e"], "pixels": pa.array(rows, pa.list_(pa.float64()))}
    )
    mapping = map_columns(DIGITS, batch.schema, id_column="id")
    prepared = prepare_chunk(next(rechunk([batch], 100)), mapping, allow_non_finite=False)
    assert prepared.ids.to_pylist() == ["a", "e"]
    assert prepared.inputs["pixels"].shape == (2, 64) and prepared.inputs["pixels"].dtype == np.float32
    reasons = dict(
        zip(prepared.rejected["id"].to_pylist(), prepared.rejected["reason"].to_pylist(), strict=True)
    )
    assert reasons["b"].startswith(WRONG_LENGTH) and reasons["c"].startswith(WRONG_LENGTH)
    assert reasons["d"].startswith(NON_FINITE)


async def test_manifest_survives_a_torn_line_and_refuses_another_job(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out.parquet")
    manifest = Manifest(store)
    await manifest.begin({"input": "a", "chunk_rows": 10, "engine": "direct"})
    await manifest.chunk_done({"index": 0, "rows": 10, "rejected": 0})
    with (store.folder / MANIFEST).open("a") as handle:
        handle.write('{"kind":"chunk","ind')  # what a kill -9 mid-write leaves
    resumed = await Manifest(store).begin({"input": "a", "chunk_rows": 10, "engine": "queue"})
    assert set(resumed.chunks) == {0}
    with pytest.raises(ManifestMismatch, match="chunk_rows"):
        await Manifest(store).begin({"input": "a", "chunk_rows": 20, "engine": "direct"})


@pytest.mark.parametrize("fmt", [Format.PARQUET, Format.CSV, Format.JSONL, Format.NPZ])
def test_parts_assemble_in_order(tmp_path: Path, fmt: Format) -> None:
    parts = []
    for index in range(3):
        table = pa.table(
            {
                "row": np.arange(index * 5, index * 5 + 5),
                "p": pa.array([[0.5, 0.5]] * 5, pa.list_(pa.float32(), 2)),
            }
        )
        path = tmp_path / f"part-{index}.arrow"
        write_part(table, path)
        parts.append(path)
    target = tmp_path / f"all{fmt.suffix}"
    assemble(parts, target, fmt)
    if fmt is Format.NPZ:
        with np.load(target) as archive:
            ids = archive["row"].tolist()
    else:
        ids = [b.column("row").to_pylist() for b in read_batches(target, fmt)]
        ids = [i for batch in ids for i in batch]
    assert ids == list(range(15))


def test_unreadable_inputs_are_input_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(InputError, match="not readable as parquet"):
        read_schema(bad, Format.PARQUET)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        read_schema(empty, Format.JSONL)
    ragged = tmp_path / "ragged.jsonl"
    ragged.write_text(json.dumps({"a": 1}) + "\n" + "{not json\n")
    with pytest.raises(InputError):
        list(read_batches(ragged, Format.JSONL))


def test_azurite_launcher_starts_and_leaves_nothing_behind() -> None:
    import socket

    from qscore_local.azurite import AzuriteNotInstalled, LocalAzurite, find_azurite_blob

    try:
        find_azurite_blob()
    except AzuriteNotInstalled as exc:
        missing_part("azurite-blob", str(exc))
    azurite = LocalAzurite()
    endpoint = azurite.start()
    assert endpoint.blob_url.endswith(f":{endpoint.port}/devstoreaccount1")
    assert f"BlobEndpoint={endpoint.blob_url};" in endpoint.connection_string
    azurite.stop()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", endpoint.port)) != 0
    assert not azurite.location.exists()
