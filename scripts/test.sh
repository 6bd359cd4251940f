#!/usr/bin/env bash
# Runs every test: formatting, unit tests, fuzz-corpus replays and integration
# tests (real umoci, mmdebstrap, ...) on a release build, then the unit tests
# and corpus replays again under ASan+UBSan. Installs what it needs first.
# Usage (as root on Debian 12): scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

echo "== setup and release build"
scripts/setup.sh

echo "== clang-format"
git ls-files '*.cc' '*.h' | xargs clang-format --dry-run --Werror

echo "== tests (release build)"
(cd build && ctest --output-on-failure -j"$jobs" --timeout 1500)

echo "== ASan+UBSan build: unit tests and fuzz corpus replays"
BUILD_DIR=build-asan BUILD_TYPE=Debug CMAKE_ARGS="-DOCIX_SANITIZE=ON" scripts/setup.sh --build-only
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j"$jobs" -LE integration)
