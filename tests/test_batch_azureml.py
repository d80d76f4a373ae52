"""Azure ML batch endpoint: the scoring script's init()/run() on a mini-batch of files against the
real local Triton (outputs equal `qscore batch score`'s), and the endpoint and deployment YAML
loaded and validated offline by azure-ai-ml's own loaders."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow.parquet as pq
import pytest

from qscore.batch.formats import Format, read_batches
from qscore_local.triton.launcher import TritonEndpoints
from tests.batch_data import write_digits_jsonl, write_digits_parquet

ROOT = Path(__file__).resolve().parents[1]
AZUREML = ROOT / "deploy" / "azureml"


def _load_score_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("qscore_azureml_score", AZUREML / "code" / "score.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def entry(triton: TritonEndpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("QSCORE_TRITON_URL", triton.grpc_url)
    monkeypatch.setenv("QSCORE_BATCH_MODEL", "digits")
    monkeypatch.setenv("QSCORE_BATCH_ID_COLUMN", "id")
    monkeypatch.setenv("QSCORE_BATCH_CHUNK_ROWS", "500")
    monkeypatch.setenv("QSCORE_REGISTRY_PATH", str(tmp_path / "reg.json"))
    monkeypatch.setenv("AZUREML_BI_OUTPUT_PATH", str(tmp_path / "outputs"))
    from qscore.batch import azureml_entry

    script = _load_score_script()
    script.init()
    try:
        yield script
    finally:
        azureml_entry.shutdown()


def test_init_and_run_score_a_mini_batch_of_files_as_the_cli_does(
    entry: ModuleType, triton: TritonEndpoints, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    labels = {
        "a.parquet": write_digits_parquet(inputs / "a.parquet", 1_200, row_group_rows=300),
        "b.parquet": write_digits_parquet(inputs / "b.parquet", 700),
        "c.jsonl": write_digits_jsonl(inputs / "c.jsonl", 300),
    }
    lines = entry.run([str(inputs / name) for name in labels])
    outputs = tmp_path / "outputs"
    assert lines == [
        f"a.parquet,{outputs / 'a.scores.parquet'},1200,1200,0",
        f"b.parquet,{outputs / 'b.scores.parquet'},700,700,0",
        f"c.jsonl,{outputs / 'c.scores.jsonl'},300,300,0",
    ]
    for name, expected in labels.items():
        fmt = Format.JSONL if name.endswith(".jsonl") else Format.PARQUET
        out = outputs / f"{Path(name).stem}.scores{fmt.suffix}"
        got = {
            c: [v for b in read_batches(out, fmt) for v in b.column(c).to_pylist()] for c in ("id", "label")
        }
        assert len(got["id"]) == len(expected) and (np.asarray(got["label"]) == expected).mean() >= 0.95
    # The same file through `qscore batch score`: the same table, value for value.
    from qscore_cli import main

    cli_out = tmp_path / "cli.parquet"
    argv = ["qscore", "batch", "score", str(inputs / "a.parquet"), "--model", "digits", "-o", str(cli_out)]
    argv += ["--id-column", "id", "--chunk-rows", "500", "--triton-url", triton.grpc_url, "--no-progress"]
    argv += ["--registry", str(tmp_path / "reg.json")]
    saved, sys.argv = sys.argv, argv
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    finally:
        sys.argv = saved
    assert pq.read_table(cli_out).equals(pq.read_table(outputs / "a.scores.parquet"))
    # A retried mini-batch finds the files done (their manifests say so) and scores nothing again.
    assert entry.run([str(inputs / "b.parquet")]) == [lines[1]]


def test_init_without_its_settings_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "QSCORE_TRITON_URL",
        "QSCORE_BATCH_MODEL",
        "AZUREML_BI_OUTPUT_PATH",
        "QSCORE_BATCH_OUTPUT_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    from qscore.batch import azureml_entry

    with pytest.raises(ValueError, match="QSCORE_TRITON_URL, QSCORE_BATCH_MODEL, AZUREML_BI_OUTPUT_PATH"):
        azureml_entry.init()
    with pytest.raises(RuntimeError, match="init"):
        azureml_entry.run(["x.parquet"])


@pytest.mark.filterwarnings("ignore")  # azure-ai-ml on marshmallow 3: its own deprecations
def test_endpoint_and_deployment_load_and_validate_with_azure_ai_ml(tmp_path: Path) -> None:
    import warnings

    from azure.ai.ml import load_batch_deployment, load_batch_endpoint
    from marshmallow.exceptions import ValidationError

    endpoint = load_batch_endpoint(AZUREML / "endpoint.yml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "use ModelBatchDeployment": the CLI loads this form too
        deployment = load_batch_deployment(AZUREML / "deployment.yml")
    assert deployment.endpoint_name == endpoint.name and endpoint.auth_mode == "aad_token"
    code = AZUREML / str(deployment.code_configuration.code)
    assert (code / deployment.code_configuration.scoring_script).is_file()
    assert deployment.output_action == "append_row" and deployment.mini_batch_size >= 1
    env = deployment.environment_variables
    assert {"QSCORE_TRITON_URL", "QSCORE_BATCH_MODEL"} <= set(env)
    assert not deployment.environment.image.endswith(":latest")
    pip = deployment.environment.conda_file["dependencies"][-1]["pip"]
    assert any(p.startswith("qscore[batch]") for p in pip) and any(p.startswith("azureml-core") for p in pip)
    # The loader really validates: a misspelt setting is refused.
    seeded = tmp_path / "deployment.yml"
    text = (AZUREML / "deployment.yml").read_text().replace("mini_batch_size:", "mini_batch_sise:")
    seeded.write_text(text)
    (tmp_path / "code").symlink_to(code)
    (tmp_path / "environment").symlink_to(AZUREML / "environment")
    with warnings.catch_warnings(), pytest.raises(ValidationError, match="mini_batch_sise"):
        warnings.simplefilter("ignore")
        load_batch_deployment(seeded)


def test_the_routing_table_comes_from_the_registered_release_package(tmp_path: Path) -> None:
    from qscore.batch.azureml_entry import FileScoringSettings

    package = tmp_path / "model" / "release"
    package.mkdir(parents=True)
    (package / "registry.json").write_text("{}")
    base = {"QSCORE_TRITON_URL": "t:8001", "QSCORE_BATCH_MODEL": "digits", "QSCORE_BATCH_OUTPUT_DIR": "o"}
    found = FileScoringSettings.from_env({**base, "AZUREML_MODEL_DIR": str(tmp_path / "model")})
    assert found.registry_path == package / "registry.json"
    pinned = FileScoringSettings.from_env(
        {**base, "QSCORE_REGISTRY_PATH": "/r.json", "QSCORE_BATCH_MAP": "x=a;y=b,c"}
    )
    assert pinned.registry_path == Path("/r.json") and pinned.overrides == {"x": "a", "y": "b,c"}
