"""`python -m qscore.contracts` rewrites the published JSON Schema files from the models."""

import json
from pathlib import Path

from qscore.contracts.messages import json_schemas

SCHEMA_DIR = Path(__file__).parent / "schemas"

if __name__ == "__main__":
    for file_name, schema in json_schemas().items():
        (SCHEMA_DIR / file_name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(f"wrote {SCHEMA_DIR / file_name}")
