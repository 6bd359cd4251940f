#!/usr/bin/env bash
# Fuzzes the parsers with libFuzzer under ASan+UBSan (clang build in
# build-fuzz/). Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Crashes land in tests/fuzz/artifacts/; keep each as a named regression input
# in tests/fuzz/corpus/TARGET/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(ls tests/fuzz/corpus)
CC=clang CXX=clang++ BUILD_DIR=build-fuzz BUILD_TYPE=RelWithDebInfo \
  CMAKE_ARGS="-DOCIX_FUZZ=ON -DOCIX_SANITIZE=ON" scripts/setup.sh --build-only >/dev/null
mkdir -p tests/fuzz/artifacts
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  cp tests/fuzz/corpus/"$t"/* "$work"/
  echo "== fuzzing $t for ${secs}s"
  ASAN_OPTIONS=detect_leaks=1 build-fuzz/tests/fuzz/"$t"_fuzz -max_total_time="$secs" -max_len=65536 \
    -artifact_prefix=tests/fuzz/artifacts/"$t"- -print_final_stats=1 "$work" 2>&1 | tail -n 12
  rm -rf "$work"
done
