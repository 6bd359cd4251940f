#!/usr/bin/env bash
# `ocix pull` against STOCK containerd with its overlayfs snapshotter. That
# snapshotter prepares nothing remotely, so every layer takes the fallback
# (content store + diff service apply), which checks the whole client side:
# lease, content with containerd's GC labels, chain IDs, snapshots, the image
# record, then `ctr run` finding the image unpacked, and the garbage
# collector keeping what the image references and collecting it after
# `ctr image rm`. Also an index, an OCIX-converted image, and the errors.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/registry.sh
. "$INTEGRATION_LIB/registry.sh"
# shellcheck source=SCRIPTDIR/../lib/containerd.sh
. "$INTEGRATION_LIB/containerd.sh"

need_root "containerd, runc and umoci need root"
need_cmd umoci skopeo containerd ctr runc jq docker-registry curl sha256sum
need_ocix

cd "$TEST_TMP"
export TMPDIR="$TEST_TMP"
SN=overlayfs

log "building a two-layer busybox image"
"$INTEGRATION_LIB/busybox_image.sh" "$TEST_TMP/src" bb >/dev/null
umoci unpack --image "$TEST_TMP/src:bb" "$TEST_TMP/bundle" >/dev/null
echo "pulled by ocix" >"$TEST_TMP/bundle/rootfs/etc/ocix-pull"
umoci repack --image "$TEST_TMP/src:bb2" "$TEST_TMP/bundle"
rm -rf "$TEST_TMP/bundle"

registry_start "$TEST_TMP/registry" || fail "registry did not start"
on_exit registry_stop
reg=$REGISTRY_ADDR
skopeo copy --quiet --dest-tls-verify=false "oci:$TEST_TMP/src:bb" "docker://$reg/busybox:one"
skopeo copy --quiet --dest-tls-verify=false "oci:$TEST_TMP/src:bb2" "docker://$reg/busybox:two"

containerd_start "$TEST_TMP/containerd" || fail "containerd did not start"
on_exit containerd_stop
ns=$CTR_NAMESPACE

# What the registry says: manifest, config, layers, diff IDs, chain IDs.
accept='Accept: application/vnd.oci.image.manifest.v1+json'
curl -fsS -H "$accept" "http://$reg/v2/busybox/manifests/two" >manifest.json
mdigest="sha256:$(sha256sum <manifest.json | cut -d' ' -f1)"
cdigest=$(jq -r .config.digest manifest.json)
mapfile -t layers < <(jq -r '.layers[].digest' manifest.json)
curl -fsS "http://$reg/v2/busybox/blobs/$cdigest" >config.json
mapfile -t diffids < <(jq -r '.rootfs.diff_ids[]' config.json)
((${#layers[@]} == 2 && ${#diffids[@]} == 2)) || fail "expected a two-layer image"
chain0=${diffids[0]}
chain1="sha256:$(printf '%s %s' "$chain0" "${diffids[1]}" | sha256sum | cut -d' ' -f1)"

# Listings are read whole before grep: with pipefail, `ctr ... | grep -q`
# fails when grep exits early and ctr gets SIGPIPE.
has_content() { grep -qxF "$1" <<<"$(ctrd content ls -q)"; }
# Labels of a content blob (k=v,...) / a snapshot's info (JSON).
content_labels() { ctrd content ls | awk -v d="$1" '$1 == d {print $NF}'; }
snapshot_info() { ctrd snapshots --snapshotter "$SN" info "$1"; }
committed_snapshots() {
  ctrd snapshots --snapshotter "$SN" ls | awk '$NF == "Committed" {print $1, (NF == 3 ? $2 : "")}' | sort
}

ref="$reg/busybox:two"
log "ocix pull $ref (every layer falls back: overlayfs prepares nothing remotely)"
"$OCIX" pull -q --snapshotter "$SN" -a "$CONTAINERD_ADDRESS" -n "$ns" "$ref" >pull1.txt ||
  fail "ocix pull failed: $(cat pull1.txt)"
cat pull1.txt >&2
[[ $(grep -c ' applied$' pull1.txt) == 2 ]] || fail "expected two applied layers: $(cat pull1.txt)"
grep -q "^layer 1/2 ${layers[0]} applied$" pull1.txt || fail "layer line: $(cat pull1.txt)"
grep -q '2 layers: 0 remote, 2 applied, 0 present' pull1.txt || fail "summary: $(tail -n1 pull1.txt)"

log "image record, content and GC labels"
grep -qxF "$ref" <<<"$(ctrd image ls -q)" || fail "ctr image ls does not list $ref: $(ctrd image ls)"
[[ $(ctrd image ls | awk -v r="$ref" '$1 == r {print $3}') == "$mdigest" ]] || fail "image target: $(ctrd image ls)"
for d in "$mdigest" "$cdigest" "${layers[@]}"; do
  has_content "$d" || fail "content store lacks $d"
done
mlabels=$(content_labels "$mdigest")
for want in "containerd.io/gc.ref.content.config=$cdigest" "containerd.io/gc.ref.content.l.0=${layers[0]}" \
  "containerd.io/gc.ref.content.l.1=${layers[1]}" "containerd.io/distribution.source.127.0.0.1=busybox"; do
  [[ ,$mlabels, == *",$want,"* ]] || fail "manifest labels lack $want: $mlabels"
done
clabels=$(content_labels "$cdigest")
[[ ,$clabels, == *",containerd.io/gc.ref.snapshot.$SN=$chain1,"* ]] || fail "config labels: $clabels"
l0labels=$(content_labels "${layers[0]}")
[[ ,$l0labels, == *",containerd.io/uncompressed=${diffids[0]},"* ]] || fail "layer labels: $l0labels"

log "snapshots are committed under the chain IDs"
printf '%s \n%s %s\n' "$chain0" "$chain1" "$chain0" | sort >want_snapshots.txt
committed_snapshots >snapshots1.txt
diff -u want_snapshots.txt snapshots1.txt >&2 || fail "committed snapshots differ from the chain IDs"
info=$(snapshot_info "$chain1")
for key in containerd.io/snapshot.ref containerd.io/snapshot/cri.image-ref containerd.io/snapshot/cri.layer-digest \
  containerd.io/snapshot/cri.manifest-digest containerd.io/snapshot/cri.image-layers; do
  [[ -n $(jq -r --arg k "$key" '.Labels[$k] // empty' <<<"$info") ]] || fail "snapshot $chain1 lacks label $key: $info"
done
[[ $(jq -r '.Labels["containerd.io/snapshot/cri.layer-digest"]' <<<"$info") == "${layers[1]}" ]] ||
  fail "cri.layer-digest: $info"
[[ $(jq -r '.Labels["containerd.io/snapshot/cri.manifest-digest"]' <<<"$info") == "$mdigest" ]] ||
  fail "cri.manifest-digest: $info"
[[ -z $(ctrd snapshots --snapshotter "$SN" ls | awk '$NF == "Active"') ]] || fail "extraction snapshots left behind"
[[ -z $(ctrd leases ls -q) ]] || fail "leases left behind: $(ctrd leases ls)"

log "ctr run finds the image unpacked"
out=$(ctrd run --rm --snapshotter "$SN" "$ref" run1 cat /etc/ocix-pull)
[[ $out == "pulled by ocix" ]] || fail "container said: $out"
committed_snapshots >snapshots2.txt
diff -u snapshots1.txt snapshots2.txt >&2 || fail "ctr run unpacked again"

log "pulling again: every layer is present, no layer is downloaded"
CONTAINERD_ADDRESS="$CONTAINERD_ADDRESS" CONTAINERD_NAMESPACE="$ns" "$OCIX" pull -q --snapshotter "$SN" "$ref" \
  >pull2.txt || fail "second pull failed: $(cat pull2.txt)"
grep -q '2 layers: 0 remote, 0 applied, 2 present' pull2.txt || fail "second pull: $(cat pull2.txt)"
layer_bytes=$(jq '[.layers[].size] | add' manifest.json)
dl=$(sed -n 's/.*; \([0-9.]*\) MB downloaded.*/\1/p' pull2.txt)
awk -v d="$dl" -v l="$layer_bytes" 'BEGIN { exit !(d * 1e6 < l) }' || fail "second pull downloaded $dl MB"

log "the garbage collector keeps what the image references"
ctrd container create --snapshotter "$SN" "$ref" c1 >/dev/null
ctrd container delete c1 >/dev/null
# Deleting a lease with --sync runs the collector and waits for it.
gc_now() { local l; l=$(ctrd leases create | awk '{print $1}'); ctrd leases delete --sync "$l" >/dev/null; }
gc_now
for d in "$mdigest" "$cdigest" "${layers[@]}"; do
  has_content "$d" || fail "GC removed $d while the image references it"
done
committed_snapshots >snapshots3.txt
diff -u snapshots1.txt snapshots3.txt >&2 || fail "GC removed snapshots the image references"

log "and collects it after ctr image rm"
ctrd image rm --sync "$ref" >/dev/null
[[ -z $(committed_snapshots) ]] || fail "snapshots survive the image: $(committed_snapshots)"
for d in "$mdigest" "$cdigest" "${layers[@]}"; do
  ! has_content "$d" || fail "content $d survives the image"
done

log "an index: the image record points at it, only the host's manifest is unpacked"
case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
curl -fsS -H "$accept" "http://$reg/v2/busybox/manifests/one" >manifest_one.json
other="sha256:$(sha256sum <manifest_one.json | cut -d' ' -f1)"
jq -n --arg m "$mdigest" --argjson ms "$(stat -c %s manifest.json)" --arg o "$other" \
  --argjson os "$(stat -c %s manifest_one.json)" --arg arch "$arch" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $o, size: $os,
       platform: {os: "linux", architecture: "s390x"}},
      {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
       platform: {os: "linux", architecture: $arch}}]}' >index.json
curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary @index.json \
  "http://$reg/v2/busybox/manifests/multi" >/dev/null
idigest="sha256:$(sha256sum <index.json | cut -d' ' -f1)"
"$OCIX" pull -q --snapshotter "$SN" -a "$CONTAINERD_ADDRESS" -n "$ns" "$reg/busybox:multi" >pull3.txt ||
  fail "index pull failed: $(cat pull3.txt)"
[[ $(ctrd image ls | awk -v r="$reg/busybox:multi" '$1 == r {print $3}') == "$idigest" ]] ||
  fail "index image target: $(ctrd image ls)"
ilabels=$(content_labels "$idigest")
[[ ,$ilabels, == *",containerd.io/gc.ref.content.m.0=$other,"* && ,$ilabels, == *",containerd.io/gc.ref.content.m.1=$mdigest,"* ]] ||
  fail "index labels: $ilabels"
out=$(ctrd run --rm --snapshotter "$SN" "$reg/busybox:multi" run2 cat /etc/ocix-pull)
[[ $out == "pulled by ocix" ]] || fail "container from the index said: $out"
ctrd image rm --sync "$reg/busybox:multi" >/dev/null

log "an OCIX image: overlayfs falls back, the OCIX annotations reach the snapshotter as labels"
"$OCIX" convert -q "$reg/busybox:two" "$reg/busybox:ocix" >/dev/null
"$OCIX" pull -q --snapshotter "$SN" -a "$CONTAINERD_ADDRESS" -n "$ns" "$reg/busybox:ocix" >pull4.txt ||
  fail "OCIX pull failed: $(cat pull4.txt)"
grep -q '2 layers: 0 remote, 2 applied, 0 present' pull4.txt || fail "OCIX pull: $(cat pull4.txt)"
top=$(content_labels "$(curl -fsS -H "$accept" "http://$reg/v2/busybox/manifests/ocix" | jq -r .config.digest)" |
  tr ',' '\n' | sed -n "s/^containerd.io\/gc.ref.snapshot.$SN=//p")
[[ -n $top ]] || fail "no snapshot GC label on the OCIX config"
[[ $(snapshot_info "$top" | jq -r '.Labels["containerd.io/snapshot/ocix/toc.digest"] // empty') == sha256:* ]] ||
  fail "the OCIX layer's annotations are not snapshot labels: $(snapshot_info "$top")"
out=$(ctrd run --rm --snapshotter "$SN" "$reg/busybox:ocix" run3 cat /etc/ocix-pull)
[[ $out == "pulled by ocix" ]] || fail "container from the OCIX image said: $out"
[[ -z $(ctrd leases ls -q) ]] || fail "leases left behind: $(ctrd leases ls)"

log "errors are clear and bounded"
start=$SECONDS
if "$OCIX" pull -a "$TEST_TMP/no-such.sock" "$ref" >err1.txt 2>&1; then fail "pull without containerd succeeded"; fi
grep -q 'is containerd running' err1.txt || fail "unclear error without containerd: $(cat err1.txt)"
if "$OCIX" pull --snapshotter no-such -a "$CONTAINERD_ADDRESS" -n "$ns" "$ref" >err2.txt 2>&1; then
  fail "pull into a missing snapshotter succeeded"
fi
grep -q 'snapshotter' err2.txt || fail "unclear error for a missing snapshotter: $(cat err2.txt)"
((SECONDS - start < 60)) || fail "errors took $((SECONDS - start)) s"
[[ -z $(ctrd leases ls -q) ]] || fail "a failed pull left its lease: $(ctrd leases ls)"

echo "pull_overlayfs_test: PASS"
