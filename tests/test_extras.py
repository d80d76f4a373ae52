"""Extras match the deployables: every part's imports come from its own extra, and the
Functions app's requirements.txt is what pyproject.toml says.

The import check is static (every `import` in a part, function-level ones too, read with
`ast`) against the distributions each extra pulls in, transitively, as installed in this
environment; the fresh-venv installs (`pip install '.[worker]'` in an empty venv) are
`qscore release images`' job: the worker image holds only that extra and its smoke test runs
the worker from inside it (tests/test_release_images.py).
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from qscore_tools.release import extras

ROOT = Path(__file__).resolve().parent.parent
PROJECT = extras.load_project(ROOT / "pyproject.toml")
FIRST_PARTY = {"qscore", "workers", "functions", "function_app", "qscore_local", "qscore_tools", "qscore_cli"}

# part -> (extras it is installed with, imports allowed that no extra provides, and why)
PARTS: dict[str, tuple[list[str], set[str]]] = {
    # qscore/monitoring/plot.py imports matplotlib lazily: `qscore model drift --plot` (plot extra).
    "qscore": ([], {"matplotlib"}),
    # Core modules that need an extra of their own (they are imported only where it is installed).
    "qscore/batch": (["batch"], set()),
    # Spark's DataFrame scoring: the spark extra (pyspark, pandas), never the worker image's.
    "qscore/batch/spark.py": (["spark"], set()),
    "qscore/registry/catalog.py": (["registry"], set()),
    "qscore/monitoring/feedback.py": (["registry"], {"matplotlib"}),  # --plot: the plot extra
    # Renders digit images (demo, `qscore enqueue --image`, tests): Pillow comes with the local stack.
    "qscore/inference/images.py": (["local"], set()),
    "workers": (["worker"], set()),
    "functions": (["functions"], set()),
    "function_app.py": (["functions"], set()),
    # Runs inside tritonserver's Python backend, which provides it.
    "qscore_local": (["local"], {"triton_python_backend_utils"}),
    # The SDK's own test suite runs on this shim (pytest, and its own modules by plain name).
    "qscore_local/bus/conformance": (["local", "dev"], {"servicebus_preparer"}),
    "qscore_tools/bench": (["bench"], set()),
    # The GPU run: torch is installed on demand (the GPU machine has it; here the CPU build on
    # disk); onnx_torch and the backend utils sit beside the model.py tritonserver runs.
    "qscore_tools/bench/gpu": (["gpu"], {"torch", "triton_python_backend_utils", "onnx_torch"}),
    # validate.py (kubernetes_validate, jsonschema): the offline manifest check (release extra).
    "qscore_tools/scaling": (["bench", "release"], set()),
    "qscore_tools/training": (["train"], set()),
    # torch: installed on demand (the CPU build on disk), the ONNX file is committed.
    "qscore_tools/training/digit_images.py": (["train-images"], {"torch"}),
    # pipconf.py falls back to the CA bundle pip vendors; pip is in every venv.
    "qscore_tools/release": (["release"], {"pip"}),
}


def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in FIRST_PARTY and n not in sys.stdlib_module_names}


def _closure(requirements: list[str]) -> set[str]:
    """Installed distributions (normalised names) that `requirements` pull in, transitively."""
    seen: set[str] = set()
    pending = [(Requirement(r), "") for r in requirements]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = requirement.name.lower().replace("_", "-")
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        wanted = ["", *sorted(requirement.extras)]
        key = f"{name}[{','.join(wanted)}]"
        if key in seen:
            continue
        seen.add(key)
        for child in dist.requires or []:
            pending.extend((Requirement(child), e) for e in wanted)
    return {key.split("[")[0] for key in seen}


def _sources(part: str) -> list[Path]:
    """The part's files, less those of a more specific part inside it."""
    target = ROOT / part
    if target.is_file():
        return [target]
    inner = [ROOT / other for other in PARTS if other != part and other.startswith(f"{part}/")]
    return sorted(
        path for path in target.rglob("*.py") if not any(path == i or i in path.parents for i in inner)
    )


@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_part_imports_only_what_its_extra_installs(part: str) -> None:
    chosen, allowed = PARTS[part]
    installed = _closure(extras.requirements(PROJECT, chosen))
    provider = metadata.packages_distributions()
    missing = sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _sources(part)
        for name in _third_party_imports(path) - allowed
        if not {d.lower().replace("_", "-") for d in provider.get(name, [name])} & installed
    )
    assert not missing, f"not in qscore[{','.join(chosen)}]:\n" + "\n".join(missing)


def test_the_check_sees_a_missing_dependency(tmp_path: Path) -> None:
    seeded = tmp_path / "bad.py"
    seeded.write_text("def f():\n    import proton\n    import json\n")
    assert _third_party_imports(seeded) == {"proton"}
    assert "python-qpid-proton" not in _closure(extras.requirements(PROJECT, ["worker"]))
    assert "python-qpid-proton" in _closure(extras.requirements(PROJECT, ["local"]))


def test_the_cli_module_level_imports_need_only_the_cli_extra() -> None:
    """`qscore worker` is the worker image's entrypoint: importing qscore_cli must not need more."""
    installed = _closure(extras.requirements(PROJECT, ["worker"]))
    provider = metadata.packages_distributions()
    wrong = []
    for path in _sources("qscore_cli"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: commands import their heavy parts lazily
            if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                name = (module or "").split(".")[0]
                if name in FIRST_PARTY or name in sys.stdlib_module_names:
                    continue
                if not {d.lower() for d in provider.get(name, [name])} & installed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong


def test_the_worker_image_carries_no_spark_and_no_azure_ml_sdk() -> None:
    worker = _closure(extras.requirements(PROJECT, ["worker"]))
    assert not {"pyspark", "py4j", "azure-ai-ml", "pandas"} & worker
    assert "pyspark" in _closure(extras.requirements(PROJECT, ["spark"]))
    assert "azure-ai-ml" in _closure(extras.requirements(PROJECT, ["azureml"]))


def test_dev_is_everything() -> None:
    # torch: GBs, on demand.
    named = set(PROJECT["optional-dependencies"]) - {"dev", "gpu", "train-images"}
    assert set(extras.expand_extras(PROJECT, ["dev"])) == named | {"dev"}


def test_the_core_holds_no_extra_s_package() -> None:
    core = {Requirement(r).name for r in PROJECT["dependencies"]}
    for banned in ("nvidia-pytriton", "onnxruntime", "matplotlib", "python-qpid-proton", "azure-functions"):
        assert banned not in core


def test_functions_requirements_txt_is_generated_from_pyproject() -> None:
    committed = (ROOT / extras.FUNCTIONS_REQUIREMENTS).read_text()
    assert committed == extras.functions_requirements_text(PROJECT), (
        "requirements.txt is stale: python -m qscore_tools.release.extras --write"
    )
    assert "azure-functions-durable" in committed and "nvidia-pytriton" not in committed


def test_unknown_extra_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert extras.main(["--pyproject", str(ROOT / "pyproject.toml"), "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: pyproject.toml has no extra 'nope'")
