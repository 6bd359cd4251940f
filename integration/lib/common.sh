# shellcheck shell=bash
# Shared helpers for integration tests. Source it from a test script:
#   . "$(dirname "$0")/../lib/common.sh"
# Tests exit 0 on pass, 1 on failure, 77 on skip (automake/ctest convention).

# Paths every test needs; callers may override through the environment.
INTEGRATION_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INTEGRATION_LIB="$INTEGRATION_DIR/lib"
REPO_ROOT="$(cd "$INTEGRATION_DIR/.." && pwd)"
OCIX="${OCIX:-$REPO_ROOT/build/cli/ocix}"
# Tests cd into their temp dir, so pin a relative OCIX to an absolute path.
case $OCIX in
  /*) ;;
  */*) OCIX="$PWD/$OCIX" ;;
  *) OCIX="$(command -v "$OCIX" || echo "$OCIX")" ;;
esac
export INTEGRATION_DIR INTEGRATION_LIB REPO_ROOT OCIX

log() {
  printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

skip() {
  printf 'SKIP: %s\n' "$*"
  exit 77
}

need_root() {
  [[ $(id -u) -eq 0 ]] || skip "${1:-needs root}"
}

# Skips the test unless every named command is available.
need_cmd() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || skip "missing command: $c"
  done
}

# Skips the test when the ocix binary has not been built yet.
need_ocix() {
  [[ -x $OCIX ]] || skip "ocix binary not found at $OCIX (set OCIX=...)"
}

# Per-test scratch directory. Removed on exit unless the test failed or
# KEEP_TMP=1, so a failing run leaves its evidence behind.
TEST_TMP="$(mktemp -d "${TMPDIR:-/tmp}/ocix-test.XXXXXX")"
export TEST_TMP

# Commands registered with on_exit run (last first) before the temp dir goes,
# so tests can stop things they started.
_ON_EXIT=()
on_exit() {
  _ON_EXIT+=("$1")
}

_common_exit() {
  local rc=$? i
  set +e
  for ((i = ${#_ON_EXIT[@]} - 1; i >= 0; i--)); do
    eval "${_ON_EXIT[i]}"
  done
  # 77 is a skip, not a failure: nothing worth keeping.
  if [[ ${KEEP_TMP:-0} == 1 ]] || { ((rc != 0)) && ((rc != 77)); }; then
    printf 'kept temp dir: %s\n' "$TEST_TMP" >&2
  else
    rm -rf -- "$TEST_TMP"
  fi
  exit "$rc"
}
trap _common_exit EXIT
