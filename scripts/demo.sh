#!/usr/bin/env bash
# The main job end to end, on an embedded default:
#   a realistic image (Debian minbase + python3, built with mmdebstrap) ->
#   a local registry (docker-registry on 127.0.0.1) -> `ocix convert` to OCIX
#   -> `ocix verify` -> containerd with ocix-snapshotter as its proxy plugin
#   -> `ocix pull` (layers prepared lazily, nothing downloaded whole) ->
#   `ctr run --snapshotter ocix` -> bytes fetched vs image size.
# Usage (as root on Debian 12): scripts/demo.sh [WORK_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
export OCIX="$root/build/cli/ocix"
export OCIX_SNAPSHOTTER="$root/build/snapshotter/ocix-snapshotter"
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
# shellcheck source=../integration/lib/snapshotter.sh
. integration/lib/snapshotter.sh
work=$TEST_TMP
export TMPDIR=$work

echo "== building a python3 image (mmdebstrap minbase + python3; cached after the first run)"
bash integration/lib/debian_image.sh "$work/layout" python3 --include=python3 >/dev/null

echo "== a local registry, the plain image pushed to it"
registry_start "$work/registry" >/dev/null
on_exit registry_stop
reg=$REGISTRY_ADDR
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:python3" "docker://$reg/python:plain"

echo "== ocix convert $reg/python:plain $reg/python:ocix"
"$ocix" convert "$reg/python:plain" "$reg/python:ocix"
echo "== ocix verify"
"$ocix" verify "$reg/python:ocix"

echo "== ocix-snapshotter, and containerd with it as the proxy snapshotter \"ocix\""
metrics_port=$(registry_free_port)
printf '[prefetch]\nmode = "none"\n[metrics]\naddress = "127.0.0.1:%s"\n' "$metrics_port" >"$work/snapshotter.toml"
SNAPSHOTTER_LOG_LEVEL=info snapshotter_start "$work/snapshotter" "$work/snapshotter.toml" >/dev/null
on_exit snapshotter_stop
containerd_start "$work/containerd" "$SNAPSHOTTER_PROXY_TOML" >/dev/null
on_exit containerd_stop
ctrd plugins ls | awk '$2 == "ocix"'

echo "== ocix pull $reg/python:ocix"
"$ocix" pull -a "$CONTAINERD_ADDRESS" -n "$CTR_NAMESPACE" "$reg/python:ocix"

echo "== ctr run --snapshotter ocix (lazy: file contents come from the registry as python reads them)"
ctrd run --rm --snapshotter ocix "$reg/python:ocix" demo1 python3 -c \
  'import json, sys; print("hello from a lazily pulled OCIX image:", json.dumps({"python": list(sys.version_info[:3])}))'

manifest=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/python/manifests/ocix")
image_bytes=$(jq '[.layers[].size] | add' <<<"$manifest")
toc_bytes=$(jq '[.layers[].annotations["containerd.io/snapshot/ocix/toc.size"] | tonumber] | add' <<<"$manifest")
chunks=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics" | awk '$1 == "ocix_fetched_bytes_total" {print $2}')
fetched=$((toc_bytes + ${chunks%.*}))
printf '== fetched %s bytes (TOC %s + file chunks %s) of a %s-byte image: %.1f%%\n' "$fetched" "$toc_bytes" \
  "${chunks%.*}" "$image_bytes" "$(awk -v a="$fetched" -v b="$image_bytes" 'BEGIN { print 100 * a / b }')"
echo "demo: OK (files kept in $work)"
