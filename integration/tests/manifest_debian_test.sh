#!/usr/bin/env bash
# `ocix manifest` of a real Debian bookworm minbase image must describe
# exactly the tree `umoci unpack` produces (thousands of files, real
# hardlinks, setuid binaries, device nodes, a GNU tar layer).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

need_root "mmdebstrap and umoci unpack need root"
need_cmd umoci mmdebstrap python3 b3sum jq
need_ocix

cd "$TEST_TMP"
layout="$TEST_TMP/layout"
tag=minbase

log "building Debian minbase image"
"$INTEGRATION_LIB/debian_image.sh" "$layout" "$tag" || fail "could not build the Debian image (network?)"

log "umoci unpack"
umoci unpack --image "$layout:$tag" bundle >/dev/null

log "ocix manifest"
"$OCIX" manifest "$layout:$tag" out.ocix
"$OCIX" inspect --json out.ocix >m.json

log "compare with the unpacked tree"
python3 "$INTEGRATION_LIB/compare_tree.py" m.json bundle/rootfs || fail "manifest differs from umoci unpack"

# Guard against a trivially passing comparison (e.g. an empty image).
n="$(jq '.entries | length' m.json)"
((n > 5000)) || fail "only $n entries: is this really a Debian rootfs?"
jq -e '[.entries[] | select(.type == "hardlink")] | length > 0' m.json >/dev/null ||
  fail "no hardlinks (Debian minbase has some, e.g. perl)"
jq -e '[.entries[] | select(.type == "file" and .mode >= 1024)] | length > 0' m.json >/dev/null ||
  fail "no setuid/setgid files"

echo "manifest_debian_test: PASS ($n entries)"
