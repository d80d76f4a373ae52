#!/usr/bin/env bash
# Debian packages `qscore release images` needs (and the slow image test): buildah (builds
# and runs images without a daemon), mmdebstrap (the Debian 12 base where official base
# images cannot be pulled), docker-registry (the CNCF registry, run on loopback).
# Idempotent: installs only what is missing. Not part of scripts/bootstrap.sh: CI's default
# test run does not build images (docs/deploying.md, "Images").
set -euo pipefail
missing=()
for pkg in buildah mmdebstrap docker-registry; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "release-deps: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
