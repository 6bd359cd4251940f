#!/usr/bin/env bash
# `ocix manifest` throughput on a Debian minbase image, beside the naive way
# to learn the same hashes (extract the layer with tar, then b3sum every
# file) and a raw `gzip -dc | b3sum` stream, all in this one run.
# Usage (root): integration/bench/manifest_bench.sh [RUNS]   (default 5)
# Prints a markdown table; with WRITE_DOCS=1 also replaces the section in
# docs/benchmarks.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ocix=${OCIX:-$repo/build/cli/ocix}
runs=${1:-5}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ocix-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

bash "$repo/integration/lib/debian_image.sh" "$tmp/layout" minbase >/dev/null 2>&1
layer_digest=$(jq -r '.manifests[0].digest' "$tmp/layout/index.json" | cut -d: -f2)
manifest=$(cat "$tmp/layout/blobs/sha256/$layer_digest")
blob_digest=$(jq -r '.layers[-1].digest' <<<"$manifest" | cut -d: -f2)
blob="$tmp/layout/blobs/sha256/$blob_digest"
tar_bytes=$(gzip -dc "$blob" | wc -c)
files=$(gzip -dc "$blob" | tar -t | wc -l)

# Median wall time in seconds of a command, run $runs times after one
# warm-up (so every method reads the blob from the page cache).
median() {
  python3 - "$runs" "$1" <<'PY'
import statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2]
subprocess.run(["bash", "-c", cmd], check=True, capture_output=True)
times = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(["bash", "-c", cmd], check=True, capture_output=True)
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.3f}")
PY
}

t_ocix=$(median "'$ocix' manifest '$tmp/layout:minbase' '$tmp/out.ocix'")
t_tar=$(median "rm -rf '$tmp/x' && mkdir '$tmp/x' && tar -xzf '$blob' -C '$tmp/x' && find '$tmp/x' -type f -print0 | xargs -0 -r b3sum > /dev/null")
t_raw=$(median "gzip -dc '$blob' | b3sum")
manifest_bytes=$(stat -c %s "$tmp/out.ocix")
entries=$("$ocix" inspect "$tmp/out.ocix" | sed -n '1s/.*entries=//p')

mbps() { awk -v b="$tar_bytes" -v t="$1" 'BEGIN { printf "%.1f", b / t / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

table=$(cat <<TABLE
Input: Debian bookworm minbase (\`mmdebstrap --variant=minbase\`), one tar+gzip layer:
$(numfmt --to=iec "$(stat -c %s "$blob")") compressed, $tar_bytes bytes uncompressed, $files tar members,
$entries manifest entries, manifest $manifest_bytes bytes (v1). Median of $runs warm runs.
Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r).

| method | time (s) | MB/s of uncompressed tar | time vs ocix manifest |
| --- | --- | --- | --- |
| \`ocix manifest\` (gunzip + tar parse + BLAKE3 of every file + CBOR) | $t_ocix | $(mbps "$t_ocix") | 1.00 |
| \`tar -xzf\` to disk, then \`b3sum\` every file | $t_tar | $(mbps "$t_tar") | $(ratio "$t_tar" "$t_ocix") |
| \`gzip -dc \| b3sum\` (one stream through a pipe, no per-file work) | $t_raw | $(mbps "$t_raw") | $(ratio "$t_raw" "$t_ocix") |
TABLE
)
echo "$table"

if [[ ${WRITE_DOCS:-0} == 1 ]]; then
  doc="$repo/docs/benchmarks.md"
  python3 - "$doc" "$table" <<'PY'
import sys, re
path, table = sys.argv[1], sys.argv[2]
begin, end = "<!-- manifest-bench:begin -->", "<!-- manifest-bench:end -->"
text = open(path).read()
new = begin + "\n" + table + "\n" + end
text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: new, text, flags=re.S)
open(path, "w").write(text)
PY
fi
