"""`qscore batch score --shard I/N`: each shard scores a fixed run of chunks into its own output,
resumable on its own; the shards together equal the unsharded run; `qscore batch status` says
which are done. Plus the shard arithmetic and the row-range reader (no Triton)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qscore.batch.formats import Format, read_batches, read_rows
from qscore.batch.shards import Shard, shard_from_env
from qscore_local.triton.launcher import TritonEndpoints
from tests.batch_data import write_digits_csv, write_digits_parquet

CLI = [sys.executable, "-c", "from qscore_cli import main; main()"]


def test_shards_cover_every_chunk_once_in_order() -> None:
    for chunks in (0, 1, 7, 24, 1000):
        for count in (1, 2, 3, 8):
            spans = [Shard(index, count).chunk_range(chunks) for index in range(count)]
            assert [c for span in spans for c in span] == list(range(chunks))
            assert max(len(s) for s in spans) - min(len(s) for s in spans) <= 1


def test_shard_parsing_naming_and_the_indexed_job_environment() -> None:
    assert Shard.parse("1/4") == Shard(1, 4) and Shard(1, 4).label == "1/4"
    for bad in ("4/4", "1", "a/2", "-1/2", "0/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    assert Shard(1, 4).output("out/scores.parquet") == "out/scores.shard-0001-of-0004.parquet"
    blob = "https://acct.blob.core.windows.net/batch/d.v1/scores.parquet"
    assert (
        Shard(0, 2).output(blob)
        == "https://acct.blob.core.windows.net/batch/d.v1/scores.shard-0000-of-0002.parquet"
    )
    assert Shard(0, 2).output("dir.v1/scores") == "dir.v1/scores.shard-0000-of-0002"
    assert shard_from_env({"JOB_COMPLETION_INDEX": "2", "QSCORE_BATCH_SHARDS": "3"}) == Shard(2, 3)
    assert shard_from_env({"JOB_COMPLETION_INDEX": "2"}) is None
    with pytest.raises(ValueError):
        shard_from_env({"JOB_COMPLETION_INDEX": "3", "QSCORE_BATCH_SHARDS": "3"})


@pytest.mark.parametrize("fmt", [Format.PARQUET, Format.CSV])
def test_read_rows_is_a_slice_of_the_whole_input(tmp_path: Path, fmt: Format) -> None:
    path = tmp_path / f"in{fmt.suffix}"
    if fmt is Format.PARQUET:
        write_digits_parquet(path, 3_000, row_group_rows=700)
    else:
        write_digits_csv(path, 3_000)
    whole = pa.Table.from_batches(list(read_batches(path, fmt)))
    for start, stop in ((0, 3_000), (0, 1), (650, 1_500), (1_400, 1_401), (2_999, 5_000), (3_000, 4_000)):
        batches = list(read_rows(path, fmt, start, stop))
        got = pa.Table.from_batches(batches, schema=whole.schema)
        assert got.equals(whole.slice(start, max(0, min(stop, 3_000) - start)))


def _run_killed_once_then_resumed(command: list[str], manifest: Path, kill_at_chunks: int) -> None:
    first = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if manifest.exists() and manifest.read_text().count('"kind":"chunk"') >= kill_at_chunks:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert first.wait(30) == -signal.SIGKILL, "the shard ended before it was killed part way"
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr


def test_two_shards_each_killed_and_resumed_equal_the_unsharded_run(
    triton: TritonEndpoints, tmp_path: Path
) -> None:
    rows = 9_000
    source = tmp_path / "in.parquet"
    write_digits_parquet(source, rows, row_group_rows=1_000)
    output = tmp_path / "out.parquet"
    common = [*CLI, "batch", "score", str(source), "--model", "digits", "-o", str(output)]
    common += ["--id-column", "id"]
    common += ["--chunk-rows", "150", "--in-flight", "1", "--triton-url", triton.grpc_url, "--no-progress"]
    common += ["--registry", str(tmp_path / "reg.json")]
    whole = subprocess.run(common, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert whole.returncode == 0, whole.stderr
    for index in range(2):
        shard_file = tmp_path / f"out.shard-000{index}-of-0002.parquet"
        manifest = shard_file.with_name(shard_file.name + ".batch") / "manifest.jsonl"
        _run_killed_once_then_resumed([*common, "--shard", f"{index}/2"], manifest, kill_at_chunks=5)
    status = subprocess.run(
        [*CLI, "batch", "status", str(output), "--shards", "2"], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0 and "2 of 2 done" in status.stdout, status.stdout + status.stderr
    expected = pq.read_table(output)
    shards = [pq.read_table(tmp_path / f"out.shard-000{i}-of-0002.parquet") for i in range(2)]
    assert shards[0].num_rows == shards[1].num_rows == rows // 2  # 30 chunks of 150: 15 each
    merged = pa.concat_tables(shards)
    assert (np.asarray(merged["id"]) == np.arange(rows)).all()  # every row once, in input order
    assert merged.equals(expected)
    # Another N cuts at other chunks, never inside one: the shards again equal the whole run.
    for index in range(3):
        _score_in_process([*common[len(CLI) :], "--shard", f"{index}/3"])
    thirds = [pq.read_table(tmp_path / f"out.shard-000{i}-of-0003.parquet") for i in range(3)]
    assert [t.num_rows for t in thirds] == [3_000, 3_000, 3_000]
    assert pa.concat_tables(thirds).equals(expected)


def _score_in_process(args: list[str]) -> None:
    from qscore_cli import main

    saved, sys.argv = sys.argv, ["qscore", *args]
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    finally:
        sys.argv = saved


def test_status_of_a_run_not_started_and_a_bad_shard_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "QSCORE_BATCH_SHARDS": "3"}
    status = subprocess.run(
        [*CLI, "batch", "status", str(tmp_path / "none.parquet")], capture_output=True, text=True, env=env
    )
    assert (
        status.returncode == 0 and status.stdout.count("not started") == 3 and "0 of 3 done" in status.stdout
    )
    bad = subprocess.run(
        [*CLI, "batch", "score", "x.parquet", "--model", "digits", "-o", "y.parquet", "--shard", "2/2"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
