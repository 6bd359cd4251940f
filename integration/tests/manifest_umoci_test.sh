#!/usr/bin/env bash
# `ocix manifest` of a three-layer image (umoci's own layer, a hand-made GNU
# tar layer with whiteouts, an opaque dir and a sparse file, and a tar without
# end-of-archive blocks) must describe exactly the tree `umoci unpack`
# produces, and must not depend on the run, the time zone or layer compression.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

need_root "umoci unpack and the image build need root (mknod, chown)"
need_cmd umoci tar python3 b3sum jq cmp zstd
need_ocix

cd "$TEST_TMP"
layout="$TEST_TMP/layout"
tag=ocix-test

log "building test image"
"$INTEGRATION_LIB/build_test_image.sh" "$layout" "$tag"

log "umoci unpack"
# Not --rootless: owners, device nodes and setuid bits must be real.
umoci unpack --image "$layout:$tag" bundle >/dev/null

log "ocix manifest"
"$OCIX" manifest "$layout:$tag" out.ocix
"$OCIX" manifest --format-version 0 "$layout:$tag" out0.ocix
"$OCIX" inspect --json out.ocix >m.json

failures=0
bad() {
  printf 'FAIL: %s\n' "$*" >&2
  failures=$((failures + 1))
}

log "compare with the unpacked tree"
python3 "$INTEGRATION_LIB/compare_tree.py" m.json bundle/rootfs || bad "compare_tree.py"

# expect JQ_FILTER WANT: jq's compact, key-sorted output for m.json must be
# WANT. e(PATH) in the filter is that path's entry (null if absent).
expect() {
  local got
  got="$(jq -cS "def e(p): .entries | map(select(.path == p)) | .[0]; $1" m.json)" ||
    { bad "jq failed: $1"; return; }
  [[ $got == "$2" ]] || bad "$1: got $got, want $2"
}

log "checking layer-2 semantics"
# Sparse: GNU tar stored [0,4K) and [5M,5M+4K); the map it writes also ends
# with a zero-length region at 8M, which is no data and must not appear.
expect 'e("/sparse") | [.type, .size, .data]' '["file",8388608,[[0,4096],[5242880,4096]]]'
expect '[.entries[] | select(has("data")) | .path]' '["/sparse"]'

# Whiteouts: a file, a whole dir (with everything below), hardlink names.
expect '[.entries[].path | select(. == "/etc/gone" or . == "/olddir" or startswith("/olddir/")
          or . == "/c3/one" or . == "/h4" or startswith("/dir2file/"))]' '[]'
expect '[.entries[].path | select(test("/\\.wh\\."))]' '[]'
expect '[.entries[] | select(.type == "whiteout" or .opaque) | .path]' '[]'

# Opaque dir: layer-1 children gone; the new file stays although the tar has
# it before the opaque marker; the dir takes its layer-2 metadata.
expect '[.entries[].path | select(startswith("/opq/"))]' '["/opq/new"]'
expect 'e("/opq") | [.type, .mode, .xattrs]' '["dir",488,{"user.opq":"6c6179657232"}]'
# A dir entry over a dir replaces all its attributes, xattrs included.
expect 'e("/xattr-cleared") | [.type, .mode, .xattrs]' '["dir",457,null]'

# Replacements: file by file (new content, mode, owner), symlink and file by
# dirs, dir by file. /etc has no entry in layer 2 and keeps its layer-1 time.
expect 'e("/etc/motd") | [.type, .mode, .uid, .gid, .size]' '["file",384,1000,1000,29]'
expect 'e("/etc") | .mtime' '{"nsec":0,"sec":1234567890}'
expect '[e("/link2dir").type, e("/file2dir").type, e("/dir2file").type]' \
  '["dir","dir","file"]'

# Hardlinks in both tar orders, and groups whose tar primary was deleted or
# replaced: the primary is always the canonically first surviving name.
expect '[.entries[] | select(.type == "hardlink") | [.path, .link]]' \
  '[["/c3/two","/t3"],["/x4/bbb","/x4/aaa"],["/bin/linked2","/bin/linked"],["/aa/longer-name","/hl2"],["/zz/longer-name","/a"],["/zz1/longer-name","/hl1"]]'
expect '[e("/r5/a").type, e("/r5/b").type, e("/keep-outside").type]' \
  '["file","file","file"]'
expect 'e("/bin/linked") | [.mode, .xattrs]' '[2505,{"user.linked":"31"}]'

# Times: PAX nanoseconds kept; umoci's layer rounded .75 s up to the next second.
expect '[e("/nsdir"), e("/newsym"), e("/times/rounds-up"), e("/times/pre-epoch")] | map(.mtime)' \
  '[{"nsec":1,"sec":1650000000},{"nsec":500000000,"sec":1650000001},{"nsec":0,"sec":1700000001},{"nsec":0,"sec":-86400}]'

# Layer 3 has no end-of-archive blocks.
expect 'e("/layer3/no-eof") | [.type, .size]' '["file",32]'

log "checking determinism"
# Use zone names when tzdata is there, else equivalent POSIX TZ strings.
tz_kiritimati=Pacific/Kiritimati
tz_stjohns=America/St_Johns
if [[ ! -e /usr/share/zoneinfo/$tz_kiritimati ]]; then
  tz_kiritimati='<+14>-14'
  tz_stjohns='NST3:30NDT,M3.2.0,M11.1.0'
fi
for v in default 0; do
  # The default version is what out.ocix was made with; 0 is explicit.
  if [[ $v == 0 ]]; then ref=out0.ocix opt=(--format-version 0); else ref=out.ocix opt=(); fi
  "$OCIX" manifest "${opt[@]}" "$layout:$tag" "again-$v.ocix"
  TZ=$tz_kiritimati "$OCIX" manifest "${opt[@]}" "$layout:$tag" "kiritimati-$v.ocix"
  TZ=$tz_stjohns "$OCIX" manifest "${opt[@]}" "$layout:$tag" "stjohns-$v.ocix"
  for f in "again-$v.ocix" "kiritimati-$v.ocix" "stjohns-$v.ocix"; do
    cmp "$ref" "$f" || bad "format version $v: $f differs from $ref"
  done
done

log "checking layer media types"
# The same layers as plain tar, tar+zstd and tar+gzip (umoci only writes
# gzip and 0.4.7 cannot read zstd, so this is checked against ocix itself):
# the flattened manifest must not change.
cp -a "$layout" mixed
python3 - mixed "$tag" <<'PY'
import gzip, hashlib, json, os, subprocess, sys
layout, tag = sys.argv[1], sys.argv[2]
def blob(d):
    return os.path.join(layout, "blobs", "sha256", d.split(":", 1)[1])
def put(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(blob(digest), "wb") as f:
        f.write(data)
    return digest
index = json.load(open(os.path.join(layout, "index.json")))
desc = next(m for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
manifest = json.load(open(blob(desc["digest"])))
base = "application/vnd.oci.image.layer.v1.tar"
for i, layer in enumerate(manifest["layers"]):
    assert layer["mediaType"] == base + "+gzip", layer["mediaType"]
    raw = gzip.decompress(open(blob(layer["digest"]), "rb").read())
    kind = ("", "+zstd", "+gzip")[i % 3]
    if kind == "+zstd":
        raw = subprocess.run(["zstd", "-q", "-c", "-19"], input=raw,
                             stdout=subprocess.PIPE, check=True).stdout
    elif kind == "+gzip":
        raw = gzip.compress(raw, compresslevel=1, mtime=0)
    layer.update(mediaType=base + kind, digest=put(raw), size=len(raw))
data = json.dumps(manifest).encode()
desc.update(digest=put(data), size=len(data))
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump(index, f)
PY
"$OCIX" manifest "mixed:$tag" mixed.ocix
"$OCIX" inspect --json mixed.ocix >mixed.json
cmp m.json mixed.json || bad "plain/zstd/gzip layers give a different manifest than all-gzip"

if ((failures)); then
  echo "manifest_umoci_test: $failures failure(s)" >&2
  exit 1
fi
echo "manifest_umoci_test: PASS"
