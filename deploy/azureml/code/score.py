"""The Azure ML batch deployment's scoring script (deploy/azureml/deployment.yml).

The batch endpoint calls `init()` once per worker process and `run(mini_batch)` with a list of
file paths; both live in qscore.batch.azureml_entry, which scores each file as
`qscore batch score --engine direct` would (same readers, column mapping, registry routing,
writers) into the job's output folder.
"""

from qscore.batch.azureml_entry import init, run

__all__ = ["init", "run"]
