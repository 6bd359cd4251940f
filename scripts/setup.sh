#!/usr/bin/env bash
# Installs every Debian 12 package the project needs (idempotent) and builds.
# Usage (as root on Debian 12): scripts/setup.sh [--no-build | --build-only]
# BUILD_DIR, BUILD_TYPE and CMAKE_ARGS choose the build (default: build/,
# RelWithDebInfo).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  # toolchain
  build-essential cmake ninja-build pkg-config git clang clang-format clang-tidy
  libclang-rt-14-dev llvm
  # libraries
  libcbor-dev libarchive-dev librust-blake3-dev libcli11-dev libspdlog-dev
  libfmt-dev libtomlplusplus-dev libzstd-dev zlib1g-dev libssl-dev
  libcurl4-openssl-dev libsqlite3-dev libfuse3-dev fuse3 nlohmann-json3-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libmicrohttpd-dev
  libgtest-dev libgmock-dev
  # image tooling for tests, benchmarks and the demo
  umoci skopeo mmdebstrap busybox-static b3sum zstd jq attr python3-jwt python3-cryptography
  containerd runc docker-registry apache2-utils iproute2 python3 curl
  # containerd's snapshotter conformance suite, built offline (test tooling)
  golang-go golang-github-containerd-containerd-dev
)

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # containerd and docker-registry start system services on install; tests run
  # their own instances, so keep the maintainer scripts from starting them.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {
  local dir="${BUILD_DIR:-build}"
  # shellcheck disable=SC2086 # CMAKE_ARGS is a list of flags
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" ${CMAKE_ARGS:-}
  cmake --build "$dir" -j"$(nproc)"
}

case "${1:-}" in
  --no-build) install_packages ;;
  --build-only) build ;;
  "") install_packages; build ;;
  *) echo "usage: $0 [--no-build | --build-only]" >&2; exit 2 ;;
esac
