#!/usr/bin/env bash
# `ocix mount`: a converted multi-layer image (whiteouts, opaque directories,
# replaced files, hardlinks, sparse file, xattrs) mounted lazily as FUSE
# lowers under overlayfs must equal `umoci unpack` of the original image,
# path by path and byte by byte; `ocix umount` leaves nothing behind.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

need_root "FUSE and overlayfs mounts need root"
need_cmd umoci tar jq b3sum
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need_ocix

cd "$TEST_TMP"
export TMPDIR="$TEST_TMP"
cache="$TEST_TMP/cache"
state="$TEST_TMP/state"
mnt="$TEST_TMP/mnt"
mkdir -p "$mnt"
cleanup_mount() {
  "$OCIX" umount --state-dir "$state" "$mnt" 2>/dev/null || true
  # Belt and braces: whatever is still mounted below our temp dir.
  awk -v d="$TEST_TMP" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
on_exit cleanup_mount

log "building and converting the test image"
"$INTEGRATION_LIB/build_test_image.sh" src t
"$OCIX" convert -q oci:src:t oci:dst:t >/dev/null
"$OCIX" manifest src:t flat.ocix
"$OCIX" inspect --json flat.ocix >flat.json

log "umoci unpack of the original image"
umoci unpack --image src:t bundle >/dev/null
python3 "$INTEGRATION_LIB/compare_tree.py" flat.json bundle/rootfs >/dev/null || fail "the manifest does not match umoci unpack"

log "ocix mount"
"$OCIX" mount --cache "$cache" --state-dir "$state" oci:dst:t "$mnt" >/dev/null
grep -q " $mnt overlay " /proc/mounts || fail "no overlay at $mnt"
[[ $(grep -c "fuse.ocix" /proc/mounts) -ge 3 ]] || fail "expected a FUSE mount per layer"

log "the mounted tree equals umoci unpack (every path, every byte)"
python3 "$INTEGRATION_LIB/compare_tree.py" flat.json "$mnt" || fail "the mounted tree differs"

log "read-only"
if touch "$mnt/newfile" 2>/dev/null; then fail "the mount is writable"; fi

log "ocix umount"
"$OCIX" umount --state-dir "$state" "$mnt"
sleep 0.5
if grep -q "$TEST_TMP" /proc/mounts; then fail "mounts left behind: $(grep "$TEST_TMP" /proc/mounts)"; fi
[[ -z $(ls -A "$state" | grep -v '\.log$' || true) ]] || fail "state left behind"

log "a layer whose TOC is damaged fails the mount with a clear error"
cp -a dst broken
bmd=$(jq -r '.manifests[0].digest' broken/index.json)
blayer=$(jq -r '.layers[0].digest' "broken/blobs/sha256/${bmd#sha256:}")
toc_off=$(jq -r '.layers[0].annotations["containerd.io/snapshot/ocix/toc.offset"]' "broken/blobs/sha256/${bmd#sha256:}")
python3 - "broken/blobs/sha256/${blayer#sha256:}" "$((toc_off + 5))" <<'PY'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0xff]))
PY
if "$OCIX" mount --cache "$cache" --state-dir "$state" oci:broken:t "$mnt" 2>err.txt; then fail "mounted a broken TOC"; fi
grep -q "TOC digest mismatch" err.txt || fail "unclear error for a broken TOC: $(cat err.txt)"
if grep -q " $mnt " /proc/mounts; then fail "a failed mount left $mnt mounted"; fi

echo "mount_test: PASS"
