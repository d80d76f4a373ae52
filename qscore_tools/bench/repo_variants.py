"""A copy of `triton_repo/` with Triton's dynamic batching switched off (the batch-of-one run).

Config files are rewritten; version directories are symlinks to the originals, so no model
file is copied. The launcher then derives its CPU repository from this copy as usual.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from qscore_local.triton.repository import list_models, read_config, version_dirs


def without_dynamic_batching(source: Path, target: Path, models: Sequence[str] | None = None) -> Path:
    """Write the variant repository into the empty directory `target`; returns `target`."""
    from google.protobuf import text_format

    target.mkdir(parents=True, exist_ok=True)
    for name in models if models is not None else list_models(source):
        model_dir = source / name
        config = read_config(model_dir / "config.pbtxt")
        config.ClearField("dynamic_batching")
        (target / name).mkdir()
        (target / name / "config.pbtxt").write_text(text_format.MessageToString(config))
        for version in version_dirs(model_dir):
            os.symlink(version.resolve(), target / name / version.name, target_is_directory=True)
    return target
