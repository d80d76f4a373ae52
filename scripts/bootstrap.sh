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
# Debian's Prometheus (prometheus + promtool): the monitoring tests scrape a real worker and
# unit-test the alert rules with it. apt-get update only when it is missing.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  if [ -n "$sudo_cmd" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "bootstrap: not root and no sudo: install Debian's prometheus package yourself" \
      "(the Prometheus and promtool tests are skipped without it)" >&2
  else
    echo "bootstrap: installing Debian's prometheus package (promtool, prometheus)" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
fi
