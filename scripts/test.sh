#!/usr/bin/env bash
# The whole test suite: lint, types, then pytest against the real parts (Triton, bus).
# pytest's exit code is passed through; exit 5 (no tests collected) is a failure too.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh || exit 1
export PATH="$root/.venv/bin:$PATH"
echo "== ruff"; .venv/bin/ruff check . || exit 1
echo "== ruff format --check"; .venv/bin/ruff format --check . || exit 1
echo "== mypy"; .venv/bin/mypy || exit 1
echo "== pytest"
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 5
fi
exit "$rc"
