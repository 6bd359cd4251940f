#!/usr/bin/env bash
# Builds stargz-grpc (main.go here: the stargz-snapshotter library's
# snapshotter served over gRPC as a containerd proxy snapshotter) offline from
# Debian's packages, in GOPATH mode, like integration/conformance/run.sh.
# Benchmark tooling, not product.
#
# Usage: build.sh OUT_DIR      (writes OUT_DIR/stargz-grpc; Go cache in OUT_DIR/gocache)
#   Rebuilds only when main.go or the Debian package version changed.
#   Installs golang-github-containerd-stargz-snapshotter-dev and
#   stargz-snapshotter (ctr-remote) with apt-get when missing (root).
#   Prints the binary's path on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
gopath=/usr/share/gocode
lib=$gopath/src/github.com/containerd/stargz-snapshotter

if [[ ! -d $lib/snapshot ]] || ! command -v ctr-remote >/dev/null 2>&1; then
  echo "stargz/build.sh: installing Debian's stargz-snapshotter packages" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    golang-github-containerd-stargz-snapshotter-dev stargz-snapshotter >&2
fi
command -v go >/dev/null 2>&1 || { echo "stargz/build.sh: no go toolchain (apt-get install golang-go)" >&2; exit 1; }

stamp="$(sha256sum "$here/main.go" | cut -c1-16) $(dpkg-query -W -f '${Version}' golang-github-containerd-stargz-snapshotter-dev) $(go env GOVERSION)"
if [[ -x $out/stargz-grpc && -f $out/stargz-grpc.stamp && $(cat "$out/stargz-grpc.stamp") == "$stamp" ]]; then
  echo "$out/stargz-grpc"
  exit 0
fi
echo "stargz/build.sh: building stargz-grpc (go $(go env GOVERSION), GOPATH=$gopath, offline; ~2 min cold)" >&2
(
  cd "$here"
  env -u GOROOT -u GOBIN -u GOEXPERIMENT \
    GO111MODULE=off GOPATH="$gopath" GOFLAGS=-trimpath \
    GOPROXY=off GOSUMDB=off GONOSUMDB= GOPRIVATE= GOTOOLCHAIN=local \
    GOCACHE="$out/gocache" GOTMPDIR="$out" CGO_ENABLED=0 \
    go build -o "$out/stargz-grpc.new" .
)
mv -f "$out/stargz-grpc.new" "$out/stargz-grpc"
echo "$stamp" >"$out/stargz-grpc.stamp"
echo "$out/stargz-grpc"
