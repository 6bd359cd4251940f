#!/usr/bin/env bash
# Installs every Debian 12 package the project needs (idempotent) and builds.
# Usage: scripts/setup.sh [--no-build]   (as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang clang-format clang-tidy
  libclang-rt-14-dev llvm git
  # libraries
  libcbor-dev libarchive-dev librust-blake3-dev libcli11-dev libspdlog-dev
  libfmt-dev libtomlplusplus-dev libzstd-dev zlib1g-dev libssl-dev
  libcurl4-openssl-dev libsqlite3-dev libfuse3-dev fuse3 nlohmann-json3-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libgtest-dev libgmock-dev
  # image tooling for tests and the demo
  umoci skopeo mmdebstrap busybox-static b3sum zstd jq
  containerd runc docker-registry apache2-utils iproute2 python3 curl
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages like containerd and docker-registry start services on install; we
  # run our own instances, so keep the package scripts from starting them.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ "${1:-}" != "--no-build" ]]; then
  BUILD_DIR="${BUILD_DIR:-build}"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" ${CMAKE_ARGS:-}
  cmake --build "$BUILD_DIR" -j"$(nproc)"
fi
