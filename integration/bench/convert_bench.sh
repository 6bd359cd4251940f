#!/usr/bin/env bash
# `ocix convert` on a realistic image (Debian bookworm minbase + python3), in
# one run: conversion time vs `zstd -3` of the same uncompressed tar, layer
# size vs plain tar+zstd, TOC bytes per file and TOC size vs the seed-format
# (version 0) manifest of the same tree, and a sweep of chunk sizes.
# Usage (root): integration/bench/convert_bench.sh [RUNS]  (default 3)
# WRITE_DOCS=1 replaces the section in docs/benchmarks.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ocix=${OCIX:-$repo/build/cli/ocix}
runs=${1:-3}
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/ocix-bench.XXXXXX")
trap '[[ ${KEEP_TMP:-0} == 1 ]] || rm -rf "$tmp"' EXIT
export TMPDIR=$tmp

bash "$repo/integration/lib/debian_image.sh" "$tmp/src" python3 --include=python3 >/dev/null 2>&1
mdigest=$(jq -r '.manifests[0].digest' "$tmp/src/index.json" | cut -d: -f2)
blob_digest=$(jq -r '.layers[-1].digest' "$tmp/src/blobs/sha256/$mdigest" | cut -d: -f2)
blob="$tmp/src/blobs/sha256/$blob_digest"
gzip -dc "$blob" > "$tmp/layer.tar"
tar_bytes=$(stat -c %s "$tmp/layer.tar")

median() {
  python3 - "$runs" "$1" <<'PY'
import statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2]
times = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(["bash", "-c", cmd], check=True, capture_output=True)
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.3f}")
PY
}

# Baseline and ours read the same bytes: an uncompressed tar layer.
umoci init --layout "$tmp/plain" >/dev/null
umoci new --image "$tmp/plain:py" >/dev/null
# umoci stores layers gzipped; rewrite the layer as plain tar for a fair input.
python3 - "$tmp/plain" "$tmp/layer.tar" <<'PY'
import hashlib, json, os, shutil, sys
layout, tar = sys.argv[1], sys.argv[2]
data_digest = hashlib.sha256(open(tar, "rb").read()).hexdigest()
shutil.copy(tar, f"{layout}/blobs/sha256/{data_digest}")
index = json.load(open(f"{layout}/index.json"))
m_desc = index["manifests"][0]
m = json.load(open(f"{layout}/blobs/sha256/{m_desc['digest'][7:]}"))
cfg = json.load(open(f"{layout}/blobs/sha256/{m['config']['digest'][7:]}"))
cfg["rootfs"]["diff_ids"] = ["sha256:" + data_digest]
cb = json.dumps(cfg).encode(); cd = hashlib.sha256(cb).hexdigest()
open(f"{layout}/blobs/sha256/{cd}", "wb").write(cb)
m["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cd, "size": len(cb)}
m["layers"] = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + data_digest,
                "size": os.path.getsize(tar)}]
mb = json.dumps(m).encode(); md = hashlib.sha256(mb).hexdigest()
open(f"{layout}/blobs/sha256/{md}", "wb").write(mb)
m_desc.update({"digest": "sha256:" + md, "size": len(mb)})
json.dump(index, open(f"{layout}/index.json", "w"))
PY

t_zstd=$(median "zstd -3 -T1 -q -c '$tmp/layer.tar' > '$tmp/layer.tar.zst'")
zstd_bytes=$(stat -c %s "$tmp/layer.tar.zst")
t_ocix=$(median "rm -rf '$tmp/out' && '$ocix' convert -q oci:'$tmp/plain':py oci:'$tmp/out':py")
omd=$(jq -r '.manifests[0].digest' "$tmp/out/index.json" | cut -d: -f2)
oblob="$tmp/out/blobs/sha256/$(jq -r '.layers[0].digest' "$tmp/out/blobs/sha256/$omd" | cut -d: -f2)"
ocix_bytes=$(stat -c %s "$oblob")
toc_bytes=$(jq -r '.layers[0].annotations["containerd.io/snapshot/ocix/toc.size"]' "$tmp/out/blobs/sha256/$omd")
"$ocix" inspect --layer --json "$oblob" > "$tmp/toc.json"
files=$(jq '[.manifest.entries[] | select(.type == "file")] | length' "$tmp/toc.json")
entries=$(jq '.manifest.entries | length' "$tmp/toc.json")
"$ocix" manifest --format-version 0 "$tmp/src:python3" "$tmp/v0.ocix"
"$ocix" manifest "$tmp/src:python3" "$tmp/v1.ocix"
v0_bytes=$(stat -c %s "$tmp/v0.ocix")
v0_zst=$(zstd -19 -q -c "$tmp/v0.ocix" | wc -c)
v1_bytes=$(stat -c %s "$tmp/v1.ocix")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

sweep=""
for cs in 262144 524288 1048576 4194304; do
  rm -rf "$tmp/cs"
  t=$(median "rm -rf '$tmp/cs' && '$ocix' convert -q --chunk-size $cs oci:'$tmp/plain':py oci:'$tmp/cs':py")
  d=$(jq -r '.manifests[0].digest' "$tmp/cs/index.json" | cut -d: -f2)
  lb=$(jq -r '.layers[0].size' "$tmp/cs/blobs/sha256/$d")
  tb=$(jq -r '.layers[0].annotations["containerd.io/snapshot/ocix/toc.size"]' "$tmp/cs/blobs/sha256/$d")
  sweep+="| $((cs / 1024)) KiB | $lb | $(ratio "$lb" "$zstd_bytes") | $tb | $t |"$'\n'
done

table=$(cat <<TABLE
Input: Debian bookworm minbase + python3 (\`mmdebstrap --variant=minbase --include=python3\`), one layer:
$tar_bytes bytes of tar, $entries entries, $files regular files. Median of $runs runs.
Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r).

| measure | ocix | baseline | ratio (ocix / baseline) |
| --- | --- | --- | --- |
| time to compress the tar (s): \`ocix convert\` (single thread, incl. BLAKE3, TOC, verify of input digest) vs \`zstd -3 -T1\` | $t_ocix | $t_zstd | $(ratio "$t_ocix" "$t_zstd") |
| layer size (bytes): OCIX tar+zstd vs plain \`zstd -3\` of the same tar | $ocix_bytes | $zstd_bytes | $(ratio "$ocix_bytes" "$zstd_bytes") |
| TOC (compressed) vs seed-format (v0) manifest of the same tree (bytes) | $toc_bytes | $v0_bytes | $(ratio "$toc_bytes" "$v0_bytes") |
| TOC vs v0 manifest compressed with \`zstd -19\` (bytes) | $toc_bytes | $v0_zst | $(ratio "$toc_bytes" "$v0_zst") |

TOC bytes per file: $(awk -v a="$toc_bytes" -v b="$files" 'BEGIN { printf "%.1f", a / b }') per regular file,
$(awk -v a="$toc_bytes" -v b="$entries" 'BEGIN { printf "%.1f", a / b }') per entry. The TOC holds the whole version 1
manifest ($v1_bytes bytes uncompressed, flattened) plus every chunk's location.

Chunk size sweep (same input; the default is 1 MiB):

| chunk size | layer bytes | vs zstd -3 | TOC bytes | convert time (s) |
| --- | --- | --- | --- | --- |
$sweep
TABLE
)
echo "$table"
if [[ ${WRITE_DOCS:-0} == 1 ]]; then
  python3 - "$repo/docs/benchmarks.md" "$table" <<'PY'
import re, sys
path, table = sys.argv[1], sys.argv[2]
begin, end = "<!-- convert-bench:begin -->", "<!-- convert-bench:end -->"
text = open(path).read()
text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: begin + "\n" + table + "\n" + end, text, flags=re.S)
open(path, "w").write(text)
PY
fi
