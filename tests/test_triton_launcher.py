"""LocalTriton and `qscore triton serve` against the real binary: loopback only, clean shutdown."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from qscore.inference.client import InferenceUnavailable, TritonClient
from qscore_local.triton.launcher import LocalTriton, TritonStartError, http_ready
from qscore_local.triton.repository import DEFAULT_REPO
from tests.fixtures.ports import free_port
from tests.fixtures.triton import start_triton

QSCORE = [str(Path(sys.executable).parent / "qscore")]


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def listening_addresses(pids: list[int]) -> set[str]:
    return {
        conn.laddr.ip
        for conn in psutil.net_connections(kind="tcp")
        if conn.pid in pids and conn.status == psutil.CONN_LISTEN
    }


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


def shm_regions(server: LocalTriton) -> list[Path]:
    return list(Path("/dev/shm").glob(f"{server._shm_prefix}*"))


def test_binds_loopback_only_and_stops_without_leftovers() -> None:
    with start_triton(models=["digits"]) as server:
        assert server.pid is not None
        pgid = server.pid
        members = group_members(pgid)
        names = " ".join(p.name() for p in members)
        assert "tritonserver" in names and "triton_python_b" in names  # server + its stubs
        addresses = listening_addresses([p.pid for p in members])
        assert len(addresses) >= 1 and all(is_loopback(address) for address in addresses), addresses
        assert shm_regions(server)
        regions = shm_regions(server)
    assert group_members(pgid) == []
    assert not any(region.exists() for region in regions)


async def test_killed_server_is_unavailable_then_restarts_on_same_ports() -> None:
    with start_triton(models=["digits"]) as server:
        assert server.endpoints is not None
        endpoints = server.endpoints
        client = TritonClient(endpoints.grpc_url, timeout_s=5)
        pixels = np.zeros((1, 64), np.float32)
        try:
            await client.infer("digits", {"pixels": pixels})
            server.kill()
            assert not server.running
            with pytest.raises(InferenceUnavailable):
                await client.infer("digits", {"pixels": pixels})
            assert server.start() == endpoints  # same URLs, so clients reconnect by themselves
            await client.wait_ready(timeout=30)
            result = await client.infer("digits", {"pixels": pixels})
            assert result.model_version == "2"
        finally:
            await client.close()


def test_model_that_fails_to_load_stops_the_start(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "digits" / "1").mkdir(parents=True)
    (repo / "digits" / "config.pbtxt").write_text((DEFAULT_REPO / "digits" / "config.pbtxt").read_text())
    (repo / "digits" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    server = LocalTriton(repo=repo)
    started = time.monotonic()
    with pytest.raises(TritonStartError, match="exited") as caught:
        server.start(timeout=60)
    assert time.monotonic() - started < 30
    assert "digits" in caught.value.log_tail
    assert not server.running


def test_taken_port_is_a_clear_start_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LocalTriton(
            models=["digits"],
            grpc_port=taken.getsockname()[1],
            http_port=free_port(),
            metrics_port=free_port(),
        )
        with pytest.raises(TritonStartError) as caught:
            server.start(timeout=60)
    assert "already in use" in caught.value.last_error


def test_cli_serve_prints_endpoints_and_stops_on_sigterm(tmp_path: Path) -> None:
    http_port = free_port()
    command = [*QSCORE, "triton", "serve", "--model", "digits", "--http-port", str(http_port)]
    command += ["--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    command += ["--log-file", str(tmp_path / "triton.log")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first_line = proc.stdout.readline()
        assert first_line.startswith("triton ready: grpc 127.0.0.1:"), first_line + (proc.stderr.read() or "")
        assert http_ready(f"http://127.0.0.1:{http_port}")
        server_pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "triton stopped" in out
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in server_pids)


def test_cli_reports_start_failures_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*QSCORE, "triton", "serve", "--repo", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
