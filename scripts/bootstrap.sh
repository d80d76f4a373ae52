#!/usr/bin/env bash
# Creates .venv/ at the repo root and installs qscore with its dev extras into it.
# Idempotent: reinstalls only when pyproject.toml changed since the last run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${QSCORE_PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=.venv/.qscore-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing qscore[dev] into .venv (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" > "$stamp"
fi
# Azurite (the Azure Storage emulator, the real Blob part locally) from npm into .qscore/npm/
# (ignored by git); qscore_local/azurite finds it there. Node.js and npm come from Debian
# (bookworm's nodejs 18 runs Azurite) when they are missing.
azurite_version="3.35.0"
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "bootstrap: installing nodejs and npm (apt)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if command -v npm >/dev/null 2>&1; then
  if [ "$(cat .qscore/npm/.azurite-version 2>/dev/null)" != "$azurite_version" ]; then
    echo "bootstrap: installing azurite@$azurite_version into .qscore/npm" >&2
    mkdir -p .qscore/npm
    npm install --prefix .qscore/npm --no-audit --no-fund --loglevel=error "azurite@$azurite_version"
    echo "$azurite_version" > .qscore/npm/.azurite-version
  fi
else
  echo "bootstrap: npm not found; Blob tests need Azurite (apt-get install nodejs npm, then rerun;" \
    "they skip without it, and fail under CI=true)" >&2
fi
# Debian packages the tests need, installed as root or through sudo (apt-get update first).
# Without root or sudo it says what to install by hand; the tests that need them skip, and
# fail under CI=true.
apt_install() {
  local why="$1"
  shift
  local sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  if [ -n "$sudo_cmd" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "bootstrap: not root and no sudo: install Debian's $* yourself ($why)" >&2
    return 0
  fi
  echo "bootstrap: installing Debian's $* ($why)" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# Debian's Prometheus (prometheus + promtool): the monitoring tests scrape a real worker and
# unit-test the alert rules with it; its Pushgateway receives the model-quality job's metrics
# (tests/test_model_quality.py). apt-get update only when one is missing.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1 \
  || ! command -v prometheus-pushgateway >/dev/null 2>&1; then
  apt_install "the Prometheus, promtool and Pushgateway tests" prometheus prometheus-pushgateway
fi
# Java for Spark (pyspark, the spark extra: tests/test_batch_spark.py runs Spark local[2]).
# pyspark 4 needs Java 17+; Debian's headless JRE, only when no java is on the PATH.
if ! command -v java >/dev/null 2>&1; then
  apt_install "the Spark tests" openjdk-17-jre-headless
fi
