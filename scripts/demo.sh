#!/usr/bin/env bash
# The main job end to end, on an embedded default: build a small OCI image
# (busybox) with umoci, make its OCIX manifest, and inspect it.
# Later stages (registry, containerd, lazy `ctr run`) extend this script.
# Usage (as root on Debian 12): scripts/demo.sh [WORK_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
ocix="$root/build/cli/ocix"
work=${1:-$(mktemp -d /tmp/ocix-demo.XXXXXX)}
mkdir -p "$work"
echo "== building a busybox OCI image in $work/layout"
rm -rf "$work/layout"
bash integration/lib/busybox_image.sh "$work/layout" demo
echo "== ocix manifest $work/layout:demo $work/demo.ocix"
"$ocix" manifest --verbose "$work/layout:demo" "$work/demo.ocix"
echo "== ocix inspect $work/demo.ocix"
"$ocix" inspect "$work/demo.ocix"
echo "== the same tree in the seed's version 0 format"
"$ocix" manifest --format-version 0 "$work/layout:demo" "$work/demo.v0.ocix"
ls -l "$work/demo.ocix" "$work/demo.v0.ocix"
echo "demo: OK (files kept in $work)"
