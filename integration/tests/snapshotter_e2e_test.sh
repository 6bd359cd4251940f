#!/usr/bin/env bash
# The product path end to end, all real: docker-registry, containerd 1.6 with
# ocix-snapshotter as its proxy snapshotter, runc. A two-layer python3 image
# (mmdebstrap + a layer with an app) is converted to OCIX in the test, pulled
# with `ocix pull` (layers prepared remotely, nothing downloaded whole) and
# run with `ctr run --snapshotter ocix`. Then: an ordinary image through the
# overlayfs fallback, metrics, restart after kill -9 with the registry gone,
# and removal unmounting what it mounted.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/registry.sh
. "$INTEGRATION_LIB/registry.sh"
# shellcheck source=SCRIPTDIR/../lib/containerd.sh
. "$INTEGRATION_LIB/containerd.sh"
# shellcheck source=SCRIPTDIR/../lib/snapshotter.sh
. "$INTEGRATION_LIB/snapshotter.sh"

need_root "containerd, runc, FUSE and overlayfs need root"
need_cmd mmdebstrap umoci skopeo containerd ctr runc jq docker-registry curl
need_ocix
[[ -x ${OCIX_SNAPSHOTTER:-} ]] || fail "OCIX_SNAPSHOTTER must name the built ocix-snapshotter"

cd "$TEST_TMP"
export TMPDIR="$TEST_TMP"

log "building the image: python3 (mmdebstrap) plus an app layer"
"$INTEGRATION_LIB/debian_image.sh" "$TEST_TMP/src" python3 --include=python3 >/dev/null
umoci unpack --image "$TEST_TMP/src:python3" bundle >/dev/null
mkdir -p bundle/rootfs/app
cat >bundle/rootfs/app/hello.py <<'PY'
import json, sys
print(json.dumps({"hello": "ocix", "python": list(sys.version_info[:2])}))
PY
umoci repack --image "$TEST_TMP/src:app" bundle >/dev/null
rm -rf bundle

registry_start "$TEST_TMP/registry" || fail "registry did not start"
on_exit registry_stop
reg=$REGISTRY_ADDR
skopeo copy --quiet --dest-tls-verify=false "oci:$TEST_TMP/src:app" "docker://$reg/app:plain"
"$OCIX" convert -q "$reg/app:plain" "$reg/app:ocix" >/dev/null

# Every client reaches the registry through a counting proxy.
proxy_port=$(registry_free_port)
/usr/bin/python3 "$INTEGRATION_LIB/fault_proxy.py" --upstream "$reg" --port "$proxy_port" --lifetime 1200 \
  >>proxy.log 2>&1 &
PROXY_PID=$!
on_exit 'kill $PROXY_PID 2>/dev/null; wait $PROXY_PID 2>/dev/null'
registry_wait_http "http://127.0.0.1:$proxy_port/v2/" || fail "proxy did not start"
via=127.0.0.1:$proxy_port
proxy_bytes() { curl -fsS "http://127.0.0.1:$proxy_port/__proxy/stats" | jq .bytes_served; }
blob_requests() { # DIGEST -> GETs of that blob seen by the proxy
  curl -fsS "http://127.0.0.1:$proxy_port/__proxy/stats" | jq --arg d "$1" '[.paths | to_entries[] | select(.key | endswith($d)) | .value] | add // 0'
}

metrics_port=$(registry_free_port)
cat >snap.toml <<TOML
[prefetch]
mode = "none"
[metrics]
address = "127.0.0.1:$metrics_port"
TOML
snapshotter_start "$TEST_TMP/snap" "$TEST_TMP/snap.toml" || fail "ocix-snapshotter did not start"
on_exit snapshotter_stop
containerd_start "$TEST_TMP/ctrd" "$SNAPSHOTTER_PROXY_TOML" || fail "containerd did not start"
on_exit containerd_stop
ctrd plugins ls | grep -c 'io.containerd.snapshotter.v1 *ocix .* ok' >/dev/null || fail "containerd did not load the ocix proxy plugin"

"$OCIX_SNAPSHOTTER" --version | grep -c '^ocix-snapshotter ' >/dev/null || fail "--version"

manifest=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/app/manifests/ocix")
mapfile -t layers < <(jq -r '.layers[].digest' <<<"$manifest")
((${#layers[@]} == 2)) || fail "expected a two-layer image, got ${#layers[@]}"
image_bytes=$(jq '[.layers[].size] | add' <<<"$manifest")

log "ocix pull $via/app:ocix"
b0=$(proxy_bytes)
"$OCIX" pull -a "$CONTAINERD_ADDRESS" -n "$CTR_NAMESPACE" "$via/app:ocix" >pull.txt 2>&1 ||
  fail "ocix pull failed: $(cat pull.txt)"
cat pull.txt >&2
remote=$(grep -c "^layer .* remote$" pull.txt || true)
((remote == 2)) || fail "expected both layers prepared remotely: $(cat pull.txt)"
grep -q "remote snapshot .* ready" snap/snapshotter.log || fail "the snapshotter did not prepare a remote snapshot"
ctrd image ls | grep -c "$via/app:ocix" >/dev/null || fail "image not recorded in containerd"
[[ $(ctrd snapshots --snapshotter ocix ls | grep -c Committed) -ge 2 ]] || fail "committed snapshots missing"
[[ $(grep -c "fuse.ocix\|ocix-" /proc/mounts) -ge 2 ]] || fail "no FUSE layer mounted: $(grep ocix /proc/mounts)"

log "ctr run --snapshotter ocix"
out=$(ctrd run --rm --snapshotter ocix "$via/app:ocix" app1 python3 /app/hello.py)
[[ $out == '{"hello": "ocix", "python": [3, 11]}' ]] || fail "unexpected output: $out"
b1=$(proxy_bytes)
fetched=$((b1 - b0))
for l in "${layers[@]}"; do
  size=$(jq --arg d "$l" '.layers[] | select(.digest == $d) | .size' <<<"$manifest")
  # The layer is read in ranges; a whole download would be one GET of size bytes.
  log "layer $l ($size bytes): $(blob_requests "$l") range requests"
done
log "pull + run moved $fetched bytes through the registry for a $image_bytes-byte image"
echo "e2e_fetched=$fetched image=$image_bytes" >>figures.txt
((fetched * 3 < image_bytes)) || fail "fetched $fetched of $image_bytes bytes: not lazy"

log "metrics"
curl -fsS "http://127.0.0.1:$metrics_port/metrics" >metrics.txt || fail "no metrics endpoint"
for m in ocix_fetched_bytes_total ocix_cache_hits_total ocix_cache_misses_total ocix_verification_failures_total \
  ocix_fetch_duration_seconds_bucket ocix_fuse_operations_total ocix_mounted_layers ocix_served_frame_bytes_total \
  ocix_readahead_frame_bytes_total ocix_cache_rechecked_chunks_total; do
  grep -q "^$m" metrics.txt || fail "metric $m missing: $(head -50 metrics.txt)"
done
# The run read files through the lazy layers: FUSE requests by kind, and
# the compressed bytes those reads needed.
for op in lookup getattr open read; do
  n=$(awk -v k="ocix_fuse_operations_total{op=\"$op\"}" '$1 == k {print $2}' metrics.txt)
  ((${n:-0} > 0)) || fail "no FUSE $op counted: $(grep ocix_fuse_operations_total metrics.txt)"
done
served=$(awk '$1 == "ocix_served_frame_bytes_total" {printf "%.0f", $2}' metrics.txt)
((served > 0)) || fail "no served frame bytes counted"
mounted=$(awk '$1 == "ocix_mounted_layers" {print $2}' metrics.txt)
[[ $mounted == 2 ]] || fail "ocix_mounted_layers is $mounted, expected 2"

log "an ordinary image through the overlayfs fallback"
ctrd image pull --plain-http --snapshotter ocix "$via/app:plain" >plainpull.txt || fail "ctr image pull: $(tail -5 plainpull.txt)"
out=$(ctrd run --rm --snapshotter ocix "$via/app:plain" plain1 python3 /app/hello.py)
[[ $out == '{"hello": "ocix", "python": [3, 11]}' ]] || fail "plain image output: $out"

log "restart after kill -9, with the registry and proxy gone"
snapshotter_kill9
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
registry_stop
snapshotter_start "$TEST_TMP/snap" "$TEST_TMP/snap.toml" || fail "restart failed"
snapshotter_wait_containerd || fail "containerd did not reconnect"
grep -q "remounted 2 remote layers (0 failed)" snap/snapshotter.log || fail "remote layers not remounted: $(tail -5 snap/snapshotter.log)"
out=$(ctrd run --rm --snapshotter ocix "$via/app:ocix" app2 python3 /app/hello.py) || fail "run after restart failed"
[[ $out == '{"hello": "ocix", "python": [3, 11]}' ]] || fail "output after restart: $out"
[[ $(ctrd snapshots --snapshotter ocix ls | grep -c Committed) -ge 2 ]] || fail "metadata lost in the restart"

log "a clean restart keeps everything too"
snapshotter_stop
snapshotter_start "$TEST_TMP/snap" "$TEST_TMP/snap.toml" || fail "restart failed"
snapshotter_wait_containerd || fail "containerd did not reconnect"
out=$(ctrd run --rm --snapshotter ocix "$via/app:ocix" app3 python3 /app/hello.py) || fail "run after clean restart failed"
[[ $out == '{"hello": "ocix", "python": [3, 11]}' ]] || fail "output after clean restart: $out"

log "removing the images removes the snapshots and unmounts the layers"
ctrd image rm --sync "$via/app:ocix" "$via/app:plain" >/dev/null
for _ in $(seq 50); do
  [[ -z $(ctrd snapshots --snapshotter ocix ls | tail -n +2) ]] && break
  sleep 0.2
done
[[ -z $(ctrd snapshots --snapshotter ocix ls | tail -n +2) ]] || fail "snapshots left: $(ctrd snapshots --snapshotter ocix ls)"
if grep -q " $TEST_TMP/snap/root/snapshots/.* fuse" /proc/mounts; then fail "FUSE layers still mounted"; fi
[[ -z $(ls snap/root/snapshots) ]] || fail "snapshot directories left: $(ls snap/root/snapshots)"

echo "snapshotter_e2e_test: PASS"
