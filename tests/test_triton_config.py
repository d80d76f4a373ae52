"""The derived CPU repository matches the production (GPU) configs field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from qscore.inference.client import TritonClient
from qscore_local.triton import onnx_model_source
from qscore_local.triton.repository import (
    CPU_ONLY_FIELDS,
    DEFAULT_REPO,
    INTRA_OP_THREADS_PARAMETER,
    ONNX_FILENAME,
    THREADS_ENV,
    CpuSettings,
    RepositoryError,
    config_to_dict,
    derive_cpu_config,
    derive_cpu_repository,
    list_models,
    read_config,
)

# The ONNX models; digit_images is an ensemble of a Python-backend step and one of them.
MODELS = ["bench_mlp", "digit_images_classifier", "digits"]


def test_repository_holds_the_expected_models() -> None:
    assert list_models(DEFAULT_REPO) == sorted([*MODELS, "digit_images", "digit_images_preprocess"])


@pytest.mark.parametrize("model", MODELS)
def test_production_config_is_gpu_onnxruntime(model: str) -> None:
    config = config_to_dict(read_config(DEFAULT_REPO / model / "config.pbtxt"))
    assert config["name"] == model
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] > 0
    assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) > 0
    assert {group["kind"] for group in config["instance_group"]} == {"KIND_GPU"}
    dims = ["1", "32", "32"] if model == "digit_images_classifier" else ["64"]
    assert config["input"] == [{"name": "pixels", "data_type": "TYPE_FP32", "dims": dims}]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("probabilities", "TYPE_FP32", ["10"]),
        ("label", "TYPE_INT64", ["1"]),
    ]


def test_digits_serves_both_versions_and_bench_model_is_labelled() -> None:
    digits = config_to_dict(read_config(DEFAULT_REPO / "digits" / "config.pbtxt"))
    assert "all" in digits["version_policy"]
    assert sorted(p.name for p in (DEFAULT_REPO / "digits").iterdir() if p.is_dir()) == ["1", "2"]
    bench = config_to_dict(read_config(DEFAULT_REPO / "bench_mlp" / "config.pbtxt"))
    assert bench["parameters"]["qscore.benchmark_only"]["string_value"] == "true"
    assert "BENCHMARK MODEL" in (DEFAULT_REPO / "bench_mlp" / "config.pbtxt").read_text()


def test_image_ensemble_takes_bytes_and_names_its_class_output(tmp_path: Path) -> None:
    """digit_images: BYTES in, the classifier's outputs out; serving it derives both steps."""
    ensemble = config_to_dict(read_config(DEFAULT_REPO / "digit_images" / "config.pbtxt"))
    assert ensemble["platform"] == "ensemble"
    assert ensemble["input"] == [{"name": "image", "data_type": "TYPE_STRING", "dims": ["1"]}]
    assert ensemble["parameters"]["qscore.predicted_class_output"]["string_value"] == "label"
    steps = [step["model_name"] for step in ensemble["ensemble_scheduling"]["step"]]
    assert steps == ["digit_images_preprocess", "digit_images_classifier"]
    served = derive_cpu_repository(DEFAULT_REPO, tmp_path / "models", models=["digit_images"])
    assert served == ["digit_images", *steps]
    assert (tmp_path / "models" / "digit_images_preprocess" / "1" / "model.py").is_file()
    assert read_config(tmp_path / "models" / "digit_images_classifier" / "config.pbtxt").backend == "python"


@pytest.mark.parametrize("model", MODELS)
def test_derived_config_matches_production_field_by_field(model: str, tmp_path: Path) -> None:
    settings = CpuSettings(instance_count=2, intra_op_threads=3)
    derive_cpu_repository(DEFAULT_REPO, tmp_path, models=[model], settings=settings)
    production = config_to_dict(read_config(DEFAULT_REPO / model / "config.pbtxt"))
    derived = config_to_dict(read_config(tmp_path / model / "config.pbtxt"))
    for field in sorted(set(production) | set(derived)):
        if field not in CPU_ONLY_FIELDS:
            assert derived.get(field) == production.get(field), f"{model}: field {field} differs"
    assert derived["backend"] == "python"
    assert derived["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    assert derived["parameters"][INTRA_OP_THREADS_PARAMETER] == {"string_value": "3"}
    for key, value in production.get("parameters", {}).items():
        assert derived["parameters"][key] == value


@pytest.mark.parametrize("model", MODELS)
def test_derived_versions_run_the_production_onnx_files(model: str, tmp_path: Path) -> None:
    derive_cpu_repository(DEFAULT_REPO, tmp_path, models=[model])
    versions = sorted(p.name for p in (DEFAULT_REPO / model).iterdir() if p.is_dir())
    for version in versions:
        target = tmp_path / model / version
        assert (target / "model.py").read_text() == onnx_model_source()
        assert (target / ONNX_FILENAME).resolve() == (
            DEFAULT_REPO / model / version / ONNX_FILENAME
        ).resolve()


def test_runner_and_repository_agree_on_names() -> None:
    source = onnx_model_source()
    assert f'INTRA_OP_THREADS_PARAMETER = "{INTRA_OP_THREADS_PARAMETER}"' in source
    assert f'ONNX_FILENAME = "{ONNX_FILENAME}"' in source


def test_derive_rejects_unknown_model_and_missing_repo(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="nope"):
        derive_cpu_repository(DEFAULT_REPO, tmp_path / "a", models=["nope"])
    with pytest.raises(RepositoryError, match="does not exist"):
        derive_cpu_repository(tmp_path / "missing", tmp_path / "b")


def test_malformed_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.pbtxt").write_text("name: 'broken'\nmax_batch_size: lots\n")
    with pytest.raises(RepositoryError, match="cannot read"):
        derive_cpu_repository(tmp_path, tmp_path / "out")


def test_derive_cpu_config_keeps_production_untouched() -> None:
    production = read_config(DEFAULT_REPO / "digits" / "config.pbtxt")
    before = config_to_dict(production)
    derive_cpu_config(production, CpuSettings())
    assert config_to_dict(production) == before


async def test_served_config_matches_production_contract(triton_client: TritonClient) -> None:
    for model in MODELS:
        production = config_to_dict(read_config(DEFAULT_REPO / model / "config.pbtxt"))
        spec = await triton_client.model_spec(model)
        assert spec.max_batch_size == production["max_batch_size"]
        assert spec.max_queue_delay_us == int(production["dynamic_batching"]["max_queue_delay_microseconds"])
        dims = [1, 32, 32] if model == "digit_images_classifier" else [64]
        assert [(t.name, t.datatype, t.dims) for t in spec.inputs] == [("pixels", "FP32", dims)]
        assert [(t.name, t.datatype, t.dims) for t in spec.outputs] == [
            ("probabilities", "FP32", [10]),
            ("label", "INT64", [1]),
        ]
    assert (await triton_client.model_spec("digits")).versions == ["1", "2"]


def test_thread_count_comes_from_env_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "3")
    assert CpuSettings.from_env() == CpuSettings(instance_count=1, intra_op_threads=3)
    assert CpuSettings.from_env(instance_count=2, intra_op_threads=1) == CpuSettings(2, 1)
