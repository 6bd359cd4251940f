#!/usr/bin/env bash
# The main job end to end, on an embedded default:
#   a small OCI image (busybox, built with umoci) -> its OCIX manifest ->
#   a local registry (docker-registry on 127.0.0.1) -> `ocix convert` to OCIX
#   -> `ocix verify` -> stock containerd pulls and runs it (`ctr run`) ->
#   `ocix mount` shows its root filesystem lazily, fetching on first read.
# (The containerd snapshotter that makes `ctr run` itself lazy comes next.)
# Usage (as root on Debian 12): scripts/demo.sh [WORK_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
export OCIX="$root/build/cli/ocix"
ocix=$OCIX
if [[ -n ${1:-} ]]; then
  mkdir -p "$1"
  export TMPDIR=$1
fi
KEEP_TMP=1
# common.sh: a work dir ($TEST_TMP) and cleanup of what we start.
# shellcheck source=../integration/lib/common.sh
. integration/lib/common.sh
# shellcheck source=../integration/lib/registry.sh
. integration/lib/registry.sh
# shellcheck source=../integration/lib/containerd.sh
. integration/lib/containerd.sh
work=$TEST_TMP
mkdir -p "$work/mnt"
on_exit "$ocix umount --state-dir $work/state $work/mnt 2>/dev/null"

echo "== building a busybox OCI image in $work/layout"
bash integration/lib/busybox_image.sh "$work/layout" demo >/dev/null
echo "== ocix manifest (the canonical CBOR description of its tree)"
"$ocix" manifest --verbose "$work/layout:demo" "$work/demo.ocix"
"$ocix" inspect "$work/demo.ocix" | head -n 8

echo "== a local registry, the plain image pushed to it"
registry_start "$work/registry" >/dev/null
on_exit registry_stop
reg=$REGISTRY_ADDR
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:demo" "docker://$reg/busybox:plain"

echo "== ocix convert $reg/busybox:plain $reg/busybox:ocix"
"$ocix" convert "$reg/busybox:plain" "$reg/busybox:ocix"
echo "== ocix verify"
"$ocix" verify "$reg/busybox:ocix"

echo "== stock containerd pulls and runs the OCIX image"
containerd_start "$work/containerd" >/dev/null
on_exit containerd_stop
ctrd image pull --plain-http "$reg/busybox:ocix" >/dev/null
ctrd run --rm "$reg/busybox:ocix" demo1 /bin/sh -c 'echo "hello from an OCIX image: $(cat /etc/passwd | head -n1)"'

echo "== ocix mount: the root filesystem, lazily (nothing fetched until read)"
"$ocix" mount --prefetch none --cache "$work/cache" --state-dir "$work/state" "$reg/busybox:ocix" "$work/mnt" >/dev/null
ls "$work/mnt" "$work/mnt/bin"
sleep 1.2
echo "-- before reading: $("$ocix" cache stats --json --cache "$work/cache" --state-dir "$work/state" | jq -c '{fetched_bytes, entries}')"
cat "$work/mnt/etc/passwd" >/dev/null
sleep 1.2
echo "-- after reading /etc/passwd: $("$ocix" cache stats --json --cache "$work/cache" --state-dir "$work/state" | jq -c '{fetched_bytes, entries}')"
"$ocix" umount --state-dir "$work/state" "$work/mnt"
echo "demo: OK (files kept in $work)"
