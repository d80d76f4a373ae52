#!/usr/bin/env bash
# The GPU benchmark in one command, on the lent GPU machine (or here: --dry-run, on CPU).
#   device tool, from the repository root, with carry [".whl"]:
#     bash bench/gpu/run.sh
#   here, the CPU dry run (shared venv, no install):
#     PYTHON=.venv/bin/python bash bench/gpu/run.sh --skip-install --dry-run
# It installs the carried wheels from .whl/ into /tmp/qscore-site (no registry there), then runs
# `python -m qscore_tools.bench.gpu` under a hard time limit. Results: $OUT (else .qscore/gpu-bench).
# Every other argument goes to the Python entry (--budget-s, --models, --max-batch-sizes, ...).
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
SITE=${QSCORE_GPU_SITE:-/tmp/qscore-site}
HARD_LIMIT_S=420 # keep equal to qscore_tools/bench/gpu/plan.py HARD_LIMIT_S
OUT_DIR=${OUT:-.qscore/gpu-bench}
mkdir -p "$OUT_DIR"
started=$(date +%s)

install=1
args=()
for arg in "$@"; do
  if [ "$arg" = "--skip-install" ]; then install=0; else args+=("$arg"); fi
done

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$install" = 1 ]; then
  shopt -s nullglob
  all_wheels=(.whl/*.whl)
  if [ ${#all_wheels[@]} -eq 0 ]; then
    echo "error: no wheels in .whl/ (run bench/gpu/fetch-wheels.sh here, carry .whl; or --skip-install)" >&2
    exit 2
  fi
  # grpcio and protobuf are carried in case the machine's are too old for tritonclient 2.73.
  mapfile -t wheels < <("$PYTHON" -m qscore_tools.bench.gpu.wheel_choice "${all_wheels[@]}")
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "${wheels[@]}" || { echo "error: installing the carried wheels failed" >&2; exit 2; }
  export PYTHONPATH="$PWD:$SITE"
  echo "installed ${#wheels[@]} wheels into $SITE in $(($(date +%s) - started)) s"
fi

export PYTHONUNBUFFERED=1
left=$((HARD_LIMIT_S - ($(date +%s) - started)))
timeout --signal=TERM --kill-after=10 "$left" "$PYTHON" -m qscore_tools.bench.gpu --out "$OUT_DIR" "${args[@]}" \
  2>&1 | tee "$OUT_DIR/run.log"
code=${PIPESTATUS[0]}
[ "$code" = 124 ] && echo "error: the run passed its ${HARD_LIMIT_S} s hard limit; partial results in $OUT_DIR" >&2
echo "run.sh: exit $code after $(($(date +%s) - started)) s"
exit "$code"
