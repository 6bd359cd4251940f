#!/usr/bin/env bash
# The Kubernetes path: containerd's CRI plugin, configured for the ocix
# snapshotter with snapshot annotations on (integration/deploy/), pulls an
# OCIX image through CRI's PullImage (tests/cri/cri_pull, as the kubelet
# would). The CRI plugin passes containerd.io/snapshot/cri.* labels, so the
# snapshotter prepares every layer remotely and containerd never downloads a
# layer blob. The pulled image then runs with ctr in CRI's namespace.
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
need_cmd umoci skopeo containerd ctr runc jq docker-registry curl
need_ocix
[[ -x ${OCIX_SNAPSHOTTER:-} ]] || fail "OCIX_SNAPSHOTTER must name the built ocix-snapshotter"
[[ -x ${CRI_PULL:-} ]] || fail "CRI_PULL must name the built cri_pull"

cd "$TEST_TMP"
export TMPDIR="$TEST_TMP"

"$INTEGRATION_LIB/busybox_image.sh" "$TEST_TMP/bb" v1 >/dev/null
registry_start "$TEST_TMP/registry" || fail "registry did not start"
on_exit registry_stop
reg=$REGISTRY_ADDR
skopeo copy --quiet --dest-tls-verify=false "oci:$TEST_TMP/bb:v1" "docker://$reg/bb:plain"
"$OCIX" convert -q "$reg/bb:plain" "$reg/bb:ocix" >/dev/null
layer=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/bb/manifests/ocix" |
  jq -r '.layers[0].digest')

snapshotter_start "$TEST_TMP/snap" || fail "ocix-snapshotter did not start"
on_exit snapshotter_stop

# CRI reaches the plain-HTTP registry through a hosts.toml, as a node would.
mkdir -p "certs.d/$reg" cni/bin cni/conf
cat >"certs.d/$reg/hosts.toml" <<TOML
server = "http://$reg"
[host."http://$reg"]
  capabilities = ["pull", "resolve"]
TOML
cat "$SNAPSHOTTER_PROXY_TOML" >extra.toml
cat >>extra.toml <<TOML
[plugins."io.containerd.grpc.v1.cri"]
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "ocix"
    disable_snapshot_annotations = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$TEST_TMP/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$TEST_TMP/cni/bin"
    conf_dir = "$TEST_TMP/cni/conf"
TOML
CONTAINERD_CRI=1 containerd_start "$TEST_TMP/ctrd" "$TEST_TMP/extra.toml" || fail "containerd did not start"
on_exit containerd_stop
ctrd plugins ls | grep -c 'io.containerd.grpc.v1 *cri .* ok' >/dev/null || fail "CRI plugin not loaded: $(ctrd plugins ls | grep cri)"

log "CRI PullImage $reg/bb:ocix"
"$CRI_PULL" "$CONTAINERD_ADDRESS" "$reg/bb:ocix" >cri.txt 2>&1 || fail "CRI pull failed: $(cat cri.txt)"
cat cri.txt >&2
grep -q "remote snapshot .* ready: layer $layer" snap/snapshotter.log ||
  fail "the layer was not prepared remotely; snapshotter log: $(tail -20 snap/snapshotter.log)"
if ctr -a "$CONTAINERD_ADDRESS" -n k8s.io content ls -q | grep -qx "$layer"; then
  fail "containerd downloaded the layer blob into its content store"
fi
ctr -a "$CONTAINERD_ADDRESS" -n k8s.io snapshots --snapshotter ocix ls | grep -c Committed >/dev/null || fail "no committed snapshot"

log "the CRI-pulled image runs from the lazy layer"
out=$(ctr -a "$CONTAINERD_ADDRESS" -n k8s.io run --rm --snapshotter ocix "$reg/bb:ocix" cri1 sh -c 'echo from-$(cat /etc/hostname 2>/dev/null || echo ocix)-ok; ls /bin/busybox')
[[ $out == *"-ok"* && $out == *"/bin/busybox"* ]] || fail "unexpected output: $out"
# ctr's task cleanup for the k8s.io namespace (containerd_stop handles $CTR_NAMESPACE only).
ctr -a "$CONTAINERD_ADDRESS" -n k8s.io image rm --sync "$reg/bb:ocix" >/dev/null 2>&1 || true

echo "cri_pull_test: PASS"
