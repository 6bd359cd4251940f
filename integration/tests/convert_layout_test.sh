#!/usr/bin/env bash
# `ocix convert` between OCI layouts: the converted image describes exactly
# the same tree (its flattened manifest is byte-identical), `ocix verify`
# passes and names the file when one byte of one chunk is flipped, conversion
# is deterministic, two images on one base share the converted base layer,
# --prefetch puts the listed files first, and --flatten keeps the tree.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

need_root "the test image build needs root (mknod, chown)"
need_cmd umoci tar python3 jq cmp zstd
need_ocix

cd "$TEST_TMP"
export TMPDIR="$TEST_TMP"

log "building the test image (three layers: whiteouts, opaque dir, hardlinks, sparse, xattrs)"
"$INTEGRATION_LIB/build_test_image.sh" src t

log "convert"
"$OCIX" convert -q oci:src:t oci:dst:t >root1
"$OCIX" manifest src:t before.ocix
"$OCIX" manifest dst:t after.ocix
# The OCIX tar stores sparse files densely, so only the hole maps may differ;
# the layers' TOCs keep them (checked below).
strip_holes() { "$OCIX" inspect --json "$1" | jq -c '.entries[] | del(.data)'; }
diff <(strip_holes before.ocix) <(strip_holes after.ocix) || fail "the converted image describes a different tree"

mdigest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "t") | .digest' dst/index.json)
manifest="dst/blobs/sha256/${mdigest#sha256:}"
[[ $(jq '[.layers[] | select(.mediaType == "application/vnd.oci.image.layer.v1.tar+zstd")] | length' "$manifest") == \
  $(jq '.layers | length' "$manifest") ]] || fail "not every layer is tar+zstd"
[[ $(jq '[.layers[] | select(.annotations["containerd.io/snapshot/ocix/toc.digest"] != null)] | length' "$manifest") == \
  $(jq '.layers | length' "$manifest") ]] || fail "a layer lacks the OCIX annotations"
config="dst/blobs/sha256/$(jq -r '.config.digest' "$manifest" | cut -d: -f2)"
# diff_ids are the digests of the uncompressed tars, as runtimes check them.
i=0
for l in $(jq -r '.layers[].digest' "$manifest"); do
  want=$(jq -r ".rootfs.diff_ids[$i]" "$config")
  got="sha256:$(zstd -dc "dst/blobs/sha256/${l#sha256:}" | sha256sum | cut -d' ' -f1)"
  [[ $want == "$got" ]] || fail "layer $i: diff_id $want, uncompressed digest $got"
  i=$((i + 1))
done

log "verify"
"$OCIX" verify oci:dst:t >/dev/null || fail "verify failed on a good image"

log "verify names the file whose chunk has a flipped byte"
cp -a dst bad
# The largest regular file of the last layer: find its first chunk frame.
last=$(jq -r '.layers[-1].digest' "$manifest" | cut -d: -f2)
"$OCIX" inspect --layer --json "bad/blobs/sha256/$last" >toc.json
holes=$(for l in $(jq -r '.layers[].digest' "$manifest"); do
  "$OCIX" inspect --layer --json "dst/blobs/sha256/${l#sha256:}" | jq -c '.manifest.entries[] | select(.path == "/sparse") | .data'
done)
[[ $holes == *"[[0,4096],[5242880,4096]]"* ]] || fail "the TOC lost the sparse file's hole map: $holes"
read -r victim offset size < <(jq -r '
  (.manifest.entries | map(select(.type == "file")) | max_by(.size)) as $f
  | (.contents[] | select(.b3 == $f.b3) | .chunks[0]) as $c
  | "\($f.path) \($c[0]) \($c[1])"' toc.json)
python3 - "bad/blobs/sha256/$last" $((offset + size / 2)) <<'PY'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x01]))
PY
if "$OCIX" verify oci:bad:t >/dev/null 2>err.txt; then fail "verify passed on a corrupt layer"; fi
grep -qF "\"$victim\"" err.txt || fail "verify did not name $victim: $(cat err.txt)"
log "verify said: $(cat err.txt)"

log "determinism"
TZ=Pacific/Kiritimati "$OCIX" convert -q oci:src:t oci:dst2:t >root2
cmp root1 root2 || fail "converting twice gave different images"

log "two images on one base share the converted base layer"
mkdir -p extra1/etc extra2/etc
echo one >extra1/etc/one
echo two >extra2/etc/two
tar --format=posix --numeric-owner --mtime=@1700000000 -C extra1 -cf extra1.tar .
tar --format=posix --numeric-owner --mtime=@1700000000 -C extra2 -cf extra2.tar .
umoci init --layout two >/dev/null
umoci new --image two:base >/dev/null
umoci raw add-layer --image two:base "$TEST_TMP/extra1.tar" >/dev/null  # the shared base layer
umoci tag --image two:base a
umoci tag --image two:base b
umoci raw add-layer --image two:a "$TEST_TMP/extra1.tar" >/dev/null
umoci raw add-layer --image two:b "$TEST_TMP/extra2.tar" >/dev/null
"$OCIX" convert -q oci:two:a oci:twox:a >/dev/null
"$OCIX" convert -q oci:two:b oci:twox:b >/dev/null
base_of() {
  local d
  d=$(jq -r --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' twox/index.json)
  jq -r '.layers[0].digest' "twox/blobs/sha256/${d#sha256:}"
}
[[ $(base_of a) == "$(base_of b)" ]] || fail "base layers differ: $(base_of a) vs $(base_of b)"

log "prefetch"
first_layer=$(jq -r '.layers[0].digest' "$manifest" | cut -d: -f2)
"$OCIX" inspect --layer --json "dst/blobs/sha256/$first_layer" |
  jq -r '.manifest.entries | map(select(.type == "file" and .size > 0)) | .[-3:][] | .path' >prefetch.txt
"$OCIX" convert -q --prefetch prefetch.txt oci:src:t oci:pf:t >/dev/null
"$OCIX" verify oci:pf:t >/dev/null || fail "verify failed with --prefetch"
"$OCIX" manifest pf:t pf.ocix
cmp after.ocix pf.ocix || fail "--prefetch changed the tree"
pmd=$(jq -r '.manifests[0].digest' pf/index.json)
plast=$(jq -r '.layers[0].digest' "pf/blobs/sha256/${pmd#sha256:}" | cut -d: -f2)
"$OCIX" inspect --layer --json "pf/blobs/sha256/$plast" >pftoc.json
[[ $(jq -c '.prefetch | sort' pftoc.json) == "$(sort prefetch.txt | jq -R . | jq -sc .)" ]] ||
  fail "TOC prefetch list $(jq -c .prefetch pftoc.json) is not $(jq -R . prefetch.txt | jq -sc .)"
zstd -dc -q "pf/blobs/sha256/$plast" >pf.tar
first=$(tar -t --quoting-style=literal -f pf.tar | sed -n "1,$(wc -l <prefetch.txt)p" | sed 's|^\./|/|; s|^\([^/]\)|/\1|' | sort)
[[ $first == "$(sort prefetch.txt)" ]] || fail "prefetch files are not first in the tar: $first"

log "flatten"
"$OCIX" convert -q --flatten oci:src:t oci:flat:t >/dev/null
fmd=$(jq -r '.manifests[0].digest' flat/index.json)
[[ $(jq '.layers | length' "flat/blobs/sha256/${fmd#sha256:}") == 1 ]] || fail "--flatten gave more than one layer"
"$OCIX" manifest flat:t flat.ocix
diff <(strip_holes before.ocix) <(strip_holes flat.ocix) || fail "--flatten changed the tree"
"$OCIX" verify oci:flat:t >/dev/null || fail "verify failed on the flattened image"

echo "convert_layout_test: PASS"
