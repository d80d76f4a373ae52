#!/usr/bin/env bash
# The azure-servicebus SDK's own queue and session tests against `qscore bus serve` (issue 12).
# Downloads the installed SDK version's tests into .qscore/conformance (git-ignored) on first use.
# Usage: scripts/bus-conformance.sh [--short] [--timeout S] [--json out.json] [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-.venv/bin/python}" -m qscore_local.bus.conformance "$@"
