#!/usr/bin/env bash
# containerd's snapshotter conformance suite (snapshots/testsuite from Debian's
# golang-github-containerd-containerd-dev) against ocix-snapshotter, over gRPC
# through containerd's proxy client. Builds the Go test binary offline with
# Debian's golang in GOPATH mode, then runs it. See README.md here.
#
# Environment:
#   OCIX_SNAPSHOTTER      the daemon (default: build/snapshotter/ocix-snapshotter)
#   CONFORMANCE_TARGET    ocix (default) | overlay-inproc | overlay-daemon
#   CONFORMANCE_BUILD_DIR where the test binary and Go build cache live
#                         (default: a temp dir removed on exit)
#   CONFORMANCE_LOG_DIR   also write each daemon's output to DIR/<subtest>.log
#   OCIX_SNAPSHOTTER_ARGS extra daemon arguments (e.g. "--config FILE")
# Extra arguments go to the test binary, e.g. -test.run 'Conformance/Update$'.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

SRC_DIR="$INTEGRATION_DIR/conformance"
GOPATH_DEBIAN=/usr/share/gocode
TARGET="${CONFORMANCE_TARGET:-ocix}"

need_root "the snapshotter conformance suite mounts overlayfs and needs root"

command -v go >/dev/null 2>&1 ||
  fail "no go toolchain: install Debian's golang-go (and golang-github-containerd-containerd-dev)"
[[ -d $GOPATH_DEBIAN/src/github.com/containerd/containerd/snapshots/testsuite ]] ||
  fail "containerd's snapshotter test suite is missing: install golang-github-containerd-containerd-dev"

if [[ $TARGET == ocix ]]; then
  OCIX_SNAPSHOTTER="${OCIX_SNAPSHOTTER:-$REPO_ROOT/build/snapshotter/ocix-snapshotter}"
  case $OCIX_SNAPSHOTTER in /*) ;; *) OCIX_SNAPSHOTTER="$PWD/$OCIX_SNAPSHOTTER" ;; esac
  [[ -x $OCIX_SNAPSHOTTER ]] || fail "ocix-snapshotter not found at $OCIX_SNAPSHOTTER (set OCIX_SNAPSHOTTER=...)"
  export OCIX_SNAPSHOTTER
fi
export CONFORMANCE_TARGET="$TARGET"

build_dir="${CONFORMANCE_BUILD_DIR:-$TEST_TMP/build}"
mkdir -p "$build_dir"
# shellcheck disable=SC2317 # called through on_exit
cleanup_conformance() {
  # Belt and braces: whatever a crashed test left mounted below our temp dir.
  awk -v d="$TEST_TMP/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r |
    xargs -r -n1 umount -l 2>/dev/null || true
  # A kept temp dir (failure) needs the logs, not the Go build cache.
  [[ -n ${CONFORMANCE_BUILD_DIR:-} ]] || rm -rf "$TEST_TMP/build/gocache"
}
on_exit cleanup_conformance
build_dir="$(cd "$build_dir" && pwd)"

# Offline, reproducible Go build: GOPATH mode against Debian's packaged
# sources only. No modules, no proxy, no network, no toolchain switching;
# Go's "minimal module compatibility" maps gotest.tools/v3/... to Debian's
# /usr/share/gocode/src/gotest.tools (whose go.mod says gotest.tools/v3).
log "building the conformance test binary (go $(go env GOVERSION), GOPATH=$GOPATH_DEBIAN)"
(
  cd "$SRC_DIR"
  env -u GOROOT -u GOBIN -u GOEXPERIMENT \
    GO111MODULE=off GOPATH="$GOPATH_DEBIAN" GOFLAGS=-trimpath \
    GOPROXY=off GOSUMDB=off GONOSUMDB= GOPRIVATE= GOTOOLCHAIN=local \
    GOCACHE="$build_dir/gocache" GOTMPDIR="$build_dir" CGO_ENABLED=0 \
    go test -c -o "$build_dir/conformance.test" .
) || fail "could not build the conformance test binary"

log "running containerd's snapshotter conformance suite against $TARGET"
# Keep socket paths short (sun_path is 108 bytes): the suite makes its temp
# roots under TMPDIR.
export TMPDIR="$TEST_TMP"
cd "$TEST_TMP"
set +e
"$build_dir/conformance.test" -test.v -test.root -test.timeout 840s \
  -test.run '^TestSnapshotterConformance$' "$@" 2>&1 | tee "$TEST_TMP/test.log"
rc=${PIPESTATUS[0]}
set -e

passed=$(grep -cE '^\s+--- PASS: TestSnapshotterConformance/' "$TEST_TMP/test.log" || true)
failed=$(grep -cE '^\s+--- FAIL: TestSnapshotterConformance/' "$TEST_TMP/test.log" || true)
skipped=$(grep -cE '^\s+--- SKIP: TestSnapshotterConformance/' "$TEST_TMP/test.log" || true)
if ((failed)); then
  echo "failed subtests:"
  grep -E '^\s+--- FAIL: TestSnapshotterConformance/' "$TEST_TMP/test.log" | sed 's/^\s*--- FAIL: /  /'
fi
echo "conformance ($TARGET): $passed passed, $failed failed, $skipped skipped"
if ((rc != 0)); then
  exit 1
fi
if ((passed == 0)); then
  fail "no conformance subtest ran"
fi
exit 0
