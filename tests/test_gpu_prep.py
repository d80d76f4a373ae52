"""The GPU benchmark's preparation (issue 19), checked without a GPU.

- the ONNX interpreter equals onnxruntime on CPU within the project's tolerance, for every
  model file, on held-out and fresh random inputs: on its numpy ops always (CI), and on torch's
  where torch is installed (slow-marked: `pip install torch==2.13.0`, then `pytest -m slow
  tests/test_gpu_prep.py`; torch is the optional `gpu` extra and its Linux PyPI build is CUDA's,
  so CI does not install it; the GPU run checks torch on CUDA itself before measuring);
- the run's plan fits the lent machine's limits: wheels + tree under 64 MiB a call, the time
  line inside the hard limit and well inside 8 minutes;
- the derived variant repository differs from production only where documented;
- the slimmed pytriton wheel keeps exactly the 3.12 stub; nvidia-smi lines parse.
The whole dry run through a real Triton is the slow test at the end.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from qscore_tools.bench.gpu import plan
from qscore_tools.bench.gpu.equivalence import PROBABILITY_TOLERANCE, compare_outputs
from qscore_tools.bench.gpu.gpu_monitor import parse_line, summarize
from qscore_tools.bench.gpu.slim_wheel import slim

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILES = ["digits/1", "digits/2", "bench_mlp/1"]
TORCH_REASON = "torch is not installed (optional: pip install torch==2.13.0, see docs/benchmarks.md GPU run)"


def _inputs(rows: int) -> np.ndarray:
    from qscore_tools.bench.workload import load_pixels

    held_out = load_pixels()[:rows]
    fresh = np.random.default_rng().uniform(0, 16, size=(rows, 64)).astype(np.float32)
    return np.concatenate([held_out, fresh])


def _equivalence(model_version: str, device: str) -> None:
    from qscore_tools.bench.gpu.equivalence import check_model

    rows = 32 if model_version.startswith("bench_mlp") else 450
    check = check_model(ROOT / "triton_repo" / model_version / "model.onnx", _inputs(rows), device)
    assert check.passed, check.as_dict()
    assert check.rows == 2 * rows


@pytest.mark.parametrize("model_version", MODEL_FILES)
def test_interpreter_equals_onnxruntime(model_version: str) -> None:
    """The interpreter (graph walk, attributes, every operator the models use) on its numpy ops:
    what CI checks, since torch's PyPI build for Linux is CUDA's (several GB)."""
    _equivalence(model_version, "numpy")


@pytest.mark.slow
@pytest.mark.parametrize("model_version", MODEL_FILES)
def test_torch_interpretation_equals_onnxruntime(model_version: str) -> None:
    """The same on torch's kernels (CPU), where torch is installed: slow-marked with the dry run,
    the other test that needs torch, so the default (CI) run has no torch to skip. On the GPU
    machine the run itself checks torch on CUDA before it measures (runner.py, `equivalence`)."""
    pytest.importorskip("torch", reason=TORCH_REASON)
    _equivalence(model_version, "cpu")


def test_unknown_operator_is_refused_by_name() -> None:
    from onnx import TensorProto, helper

    from qscore_tools.bench.gpu.onnx_torch import OnnxNumpyGraph, UnsupportedModel

    node = helper.make_node("Erf", ["x"], ["y"], name="strange")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
    )
    with pytest.raises(UnsupportedModel, match=r"Erf.*strange"):
        OnnxNumpyGraph(helper.make_model(graph))


def test_compare_outputs_counts_only_real_label_flips() -> None:
    reference_probs = np.array([[0.5, 0.5 - 1e-6, 1e-6], [0.9, 0.05, 0.05]], dtype=np.float32)
    labels = np.array([[0], [0]])
    tie_flip = np.array([[1], [0]])
    diff, mismatches, ties = compare_outputs([reference_probs, labels], [reference_probs, tie_flip])
    assert (diff, mismatches, ties) == (0.0, 0, 1)
    real_flip = np.array([[0], [1]])
    shifted = reference_probs + np.float32(2 * PROBABILITY_TOLERANCE)
    diff, mismatches, _ = compare_outputs([reference_probs, labels], [shifted, real_flip])
    assert mismatches == 1 and diff > PROBABILITY_TOLERANCE


def test_wheels_and_tree_fit_one_call() -> None:
    travel = plan.travel_plan(ROOT)
    assert travel["total_bytes"] <= plan.TRAVEL_LIMIT_BYTES - 4 * 1024 * 1024, travel  # 4 MiB to spare
    names = [w.requirement.split("==")[0] for w in plan.planned_wheels()]
    assert {"nvidia-pytriton", "tritonclient", "python-rapidjson"} <= set(names)
    assert len(names) == len(set(names)), "two versions of one package stop the install"
    carried = sorted((ROOT / ".whl").glob("*.whl"))
    if carried:  # fetched here: the real files must fit too, one per planned wheel
        assert len(carried) == len(names)
        assert (
            sum(f.stat().st_size for f in carried) + travel["tracked_tree_bytes"] <= plan.TRAVEL_LIMIT_BYTES
        )


def test_time_plan_ends_well_inside_eight_minutes() -> None:
    for settings in (plan.GpuBenchSettings(), plan.GpuBenchSettings.dry()):
        timeline = plan.time_plan(settings)
        assert timeline["worst_case_end_s"] <= plan.HARD_LIMIT_S - 30, timeline
    assert plan.HARD_LIMIT_S <= 8 * 60 - 30
    run_sh = (ROOT / "bench" / "gpu" / "run.sh").read_text()
    assert re.search(rf"^HARD_LIMIT_S={plan.HARD_LIMIT_S}\b", run_sh, flags=re.MULTILINE)
    gpu = plan.GpuBenchSettings()
    assert plan.START_ALLOWANCE_S + 2 * len(plan.searches(gpu)) * plan.point_cost_s(gpu) <= gpu.budget_s


def test_searches_put_the_ceiling_and_batching_gain_first() -> None:
    settings = plan.GpuBenchSettings()
    labels = [s.label for s in plan.searches(settings)]
    assert labels[:5] == [
        "bench_mlp mb64 db full",
        "bench_mlp mb256 db full",
        "bench_mlp mb64 db rows",
        "bench_mlp mb256 db rows",
        "bench_mlp mb256 nodb rows",
    ]
    assert len(labels) == len(set(labels)) == 14


def test_variant_repository_differs_from_production_only_where_documented(tmp_path: Path) -> None:
    from google.protobuf import json_format

    from qscore_local.triton.repository import read_config
    from qscore_tools.bench.gpu.repository import DeviceSettings, Variant, derive_gpu_repository

    wanted = [Variant("digits", 64, False), Variant("bench_mlp", 256, True)]
    repo = derive_gpu_repository(
        ROOT / "triton_repo", tmp_path / "models", wanted, DeviceSettings("cuda", "GPU")
    )
    # repository.py's docstring lists these (MessageToDict spells them in camelCase).
    documented = {"name", "backend", "maxBatchSize", "dynamicBatching", "instanceGroup", "parameters"}
    documented |= {"versionPolicy"}
    for variant in wanted:
        derived = json_format.MessageToDict(read_config(repo / variant.name / "config.pbtxt"))
        production = json_format.MessageToDict(
            read_config(ROOT / "triton_repo" / variant.model / "config.pbtxt")
        )
        changed = {
            key for key in derived.keys() | production.keys() if derived.get(key) != production.get(key)
        }
        assert changed <= documented, changed - documented
        assert derived["backend"] == "python" and derived["instanceGroup"][0]["kind"] == "KIND_GPU"
        assert ("dynamicBatching" in derived) is variant.dynamic_batching
        version = "2" if variant.model == "digits" else "1"
        files = sorted(p.name for p in (repo / variant.name / version).iterdir())
        assert files == ["model.onnx", "model.py", "onnx_torch.py"]
        assert (repo / variant.name / version / "model.onnx").resolve().is_file()


def test_slim_wheel_keeps_one_python_stub(tmp_path: Path) -> None:
    source, target = tmp_path / "in.whl", tmp_path / "out.whl"
    stub = "pytriton/tritonserver/python_backend_stubs/{}/triton_python_backend_stub"
    names = [stub.format(v) for v in ("3.11", "3.12", "3.13")]
    names += ["nvidia_pytriton.libs/libpython3-419a3a08.13.so.1.0", "pytriton/tritonserver/bin/tritonserver"]
    with zipfile.ZipFile(source, "w") as wheel:
        for name in names:
            wheel.writestr(name, b"x")
        wheel.writestr("nvidia_pytriton-0.7.0.dist-info/RECORD", "".join(f"{n},sha256=x,1\n" for n in names))
    left_out = slim(source, target, "3.12")
    assert sorted(left_out) == sorted([names[0], names[2], names[3]])
    with zipfile.ZipFile(target) as wheel:
        kept = set(wheel.namelist())
        record = wheel.read("nvidia_pytriton-0.7.0.dist-info/RECORD").decode()
    assert {names[1], names[4]} <= kept and not kept & set(left_out)
    assert names[1] in record and names[0] not in record and "libpython3" not in record


def test_nvidia_smi_lines_parse_and_summarize() -> None:
    first = parse_line("87, 40, 12000, 350.5, 1980\n", at=1.0)
    second = parse_line("93, 45, 12100, 360.5, 1980\n", at=2.0)
    assert parse_line("[N/A], 1, 2, 3, 4", at=0.0) is None and parse_line("garbage", at=0.0) is None
    no_power = parse_line("50, 1, 2, [N/A], 4", at=0.0)
    assert no_power is not None and summarize([no_power])["power_mean_w"] is None  # type: ignore[index]
    assert first is not None and second is not None
    summary = summarize([first, second])
    assert (
        summary is not None and summary["gpu_util_mean_pct"] == 90.0 and summary["gpu_util_max_pct"] == 93.0
    )
    assert summarize([]) is None


@pytest.mark.slow
def test_cpu_dry_run_end_to_end(tmp_path: Path) -> None:
    """The whole script on CPU through a real Triton (one model, one max batch): about a minute."""
    pytest.importorskip("torch", reason=TORCH_REASON)
    command = [sys.executable, "-m", "qscore_tools.bench.gpu", "--dry-run", "--models", "digits"]
    command += ["--max-batch-sizes", "64", "--budget-s", "90", "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import json

    document = json.loads(next(tmp_path.glob("gpu-*.json")).read_text())
    assert all(check["passed"] for check in document["equivalence"] + document["served_checks"])
    assert document["summary"][0]["ceiling_samples_per_s"] > 0
    assert (tmp_path / "tritonserver.log").is_file()


def test_direct_path_imports_only_what_the_gpu_machine_has_or_carries() -> None:
    """The runner's and the load generator's imports, in a fresh interpreter, by distribution name."""
    modules = "qscore_tools.bench.gpu.__main__ qscore_tools.bench.direct_client tritonclient.grpc.aio onnx"
    code = (
        "import importlib, sys\n"
        f"for name in {modules.split()!r}: importlib.import_module(name)\n"
        "from qscore_tools.bench.gpu.plan import missing_there\n"
        "print(missing_there(list(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_missing_there_sees_a_package_the_machine_lacks() -> None:
    assert plan.missing_there(["azure.servicebus", "numpy", "google.protobuf"]) == ["azure-servicebus"]


def test_carried_grpcio_and_protobuf_only_where_the_machine_needs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qscore_tools.bench.gpu import wheel_choice

    wheels = [Path(".whl/grpcio-1.85.3-cp312-cp312-manylinux2014_x86_64.whl")]
    wheels += [Path(".whl/protobuf-6.33.6-cp39-abi3-manylinux2014_x86_64.whl")]
    wheels += [Path(".whl/tritonclient-2.73.0-py3-none-any.whl")]
    machine = {"grpcio": (1, 90, 0), "protobuf": (5, 29, 3), "tritonclient": (2, 73, 0)}
    monkeypatch.setattr(wheel_choice, "installed_version", machine.get)
    install, kept = wheel_choice.wheels_to_install(wheels)
    assert kept == ["grpcio"]  # new enough; protobuf 5 is not, and tritonclient is always carried
    assert [w.name.split("-")[0] for w in install] == ["protobuf", "tritonclient"]


def test_server_figures_undo_tritons_per_request_compute_time() -> None:
    from qscore_tools.bench.gpu.runner import COUNTERS, server_figures

    start = dict.fromkeys(COUNTERS, 0.0)
    # 100 executions of 8 one-row requests, 5 ms each, in a 2 s window; Triton counts 5 ms x 800.
    end = dict(zip(COUNTERS, (800.0, 800.0, 100.0, 800 * 5000.0), strict=True))
    figures = server_figures(start, end, seconds=2.0)
    assert figures == {
        "executions": 100.0,
        "rows_per_execution": 8.0,
        "requests_per_execution": 8.0,
        "instance_busy_fraction": 0.25,
    }
    assert server_figures(None, end, 2.0) is None


def test_model_counters_read_one_model_from_triton_metrics() -> None:
    from qscore_tools.bench.gpu.runner import model_counters

    text = (
        "# HELP nv_inference_count Number of inferences performed\n"
        'nv_inference_count{model="digits__mb64_db",version="2"} 640\n'
        'nv_inference_count{model="digits__mb64_nodb",version="2"} 99\n'
        'nv_inference_exec_count{model="digits__mb64_db",version="2"} 10\n'
    )
    counters = model_counters(text, "digits__mb64_db")
    assert counters["nv_inference_count"] == 640.0 and counters["nv_inference_exec_count"] == 10.0
    assert counters["nv_inference_request_success"] == 0.0
