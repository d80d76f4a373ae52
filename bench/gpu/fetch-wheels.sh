#!/usr/bin/env bash
# Download the wheels the GPU run carries into .whl/ (ignored by git), for the lent machine's
# Python 3.12 on x86-64, then check that wheels + working tree fit the 64 MiB a call may carry.
# Run here (a machine with PyPI), from the repository root: bash bench/gpu/fetch-wheels.sh
# The list, with the expected sizes, is bench/gpu/wheels.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=bench/gpu/wheels.txt
DEST=.whl
LIMIT=$((64 * 1024 * 1024))
# The device README's platform tags, plus 2_35 and 2_24 (nvidia-pytriton and python-rapidjson use them).
PLATFORMS=(manylinux_2_35_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
  manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done

mkdir -p "$DEST"
mapfile -t requirements < <(sed -e 's/#.*//' "$WHEELS" | awk 'NF {print $1}')
for requirement in "${requirements[@]}"; do
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platform_args[@]}" -d "$DEST" "$requirement"
done

# The machine runs Python 3.12: drop the other stubs and the bundled libpython3.13 (-15.8 MB).
PYTHONPATH="$PWD" python3 -m qscore_tools.bench.gpu.slim_wheel "$DEST"/nvidia_pytriton-*.whl --keep-python 3.12

# Exactly one file per planned wheel: two versions of one package stop the install there.
expected=${#requirements[@]}
found=$(find "$DEST" -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "$found" -ne "$expected" ]; then
  echo "error: $DEST holds $found wheels, $WHEELS plans $expected: remove the others" >&2
  exit 1
fi
wheel_bytes=$(find "$DEST" -maxdepth 1 -type f -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s}')
tree_bytes=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s}')
untracked_bytes=$(git ls-files -z --others --exclude-standard | xargs -0 -r stat -c %s | awk '{s += $1} END {print s + 0}')
total=$((wheel_bytes + tree_bytes + untracked_bytes))
ls -l "$DEST"
# Sizes differ from wheels.txt only if PyPI or zlib changed: say so, the limit check below still holds.
while read -r requirement size; do
  name=${requirement%%==*}; version=${requirement##*==}
  file=$(find "$DEST" -maxdepth 1 -type f -iname "$(echo "$name" | tr - _)-$version-*.whl" | head -1)
  actual=$(stat -c %s "$file")
  [ "$actual" = "$size" ] || echo "note: $(basename "$file") is $actual B, wheels.txt says $size B"
done < <(sed -e 's/#.*//' "$WHEELS" | awk 'NF')
printf 'wheels %d B + tracked tree %d B + untracked %d B = %d B of %d B (%.1f of 64 MiB)\n' \
  "$wheel_bytes" "$tree_bytes" "$untracked_bytes" "$total" "$LIMIT" "$(echo "$total / 1048576" | bc -l)"
if [ "$total" -gt "$LIMIT" ]; then
  echo "error: over the 64 MiB a call carries: split the wheels over two calls (see docs/benchmarks.md)" >&2
  exit 1
fi
