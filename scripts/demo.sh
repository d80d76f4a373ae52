#!/usr/bin/env bash
# The main job on the embedded default: local bus, local Triton, workers, a producer, a summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
exec .venv/bin/qscore demo "$@"
