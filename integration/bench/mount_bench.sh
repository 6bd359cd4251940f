#!/usr/bin/env bash
# `ocix mount` on the python3 image (mmdebstrap minbase + python3), in one run:
#  - warm sequential read of the largest files: ocix (chunks already in the
#    cache, page cache dropped) vs the same files unpacked on the native
#    filesystem (page cache dropped);
#  - a warm `find` + stat walk of the whole tree: ocix vs native (dentry and
#    inode caches dropped);
#  - cold first-read latency of small files (empty cache, local registry);
#  - resident memory of the serving process per 10k files.
# Usage (root): integration/bench/mount_bench.sh [RUNS]  (default 5)
# WRITE_DOCS=1 replaces the section in docs/benchmarks.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
ocix=${OCIX:-$repo/build/cli/ocix}
runs=${1:-5}
# shellcheck source=../lib/common.sh
. "$repo/integration/lib/common.sh"
# shellcheck source=../lib/registry.sh
. "$repo/integration/lib/registry.sh"
t=$TEST_TMP
state=$t/state
mkdir -p "$t/mnt" "$t/native"
cleanup() {
  "$ocix" umount --state-dir "$state" "$t/mnt" 2>/dev/null || true
  awk -v d="$t" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
on_exit cleanup

"$repo/integration/lib/debian_image.sh" "$t/src" python3 --include=python3 >/dev/null 2>&1
registry_start "$t/registry" >/dev/null || fail "registry did not start"
on_exit registry_stop
skopeo copy --quiet --dest-tls-verify=false "oci:$t/src:python3" "docker://$REGISTRY_ADDR/python3:plain"
"$ocix" convert -q "$REGISTRY_ADDR/python3:plain" "$REGISTRY_ADDR/python3:ocix" >/dev/null
"$ocix" convert -q "oci:$t/src:python3" "oci:$t/ocix:python3" >/dev/null
md=$(jq -r '.manifests[0].digest' "$t/src/index.json")
gzip -dc "$t/src/blobs/sha256/$(jq -r '.layers[0].digest' "$t/src/blobs/sha256/${md#sha256:}" | cut -d: -f2)" |
  tar -x -C "$t/native"

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { # CMD: median seconds over $runs runs, caches dropped before each
  local i ts=()
  for ((i = 0; i < runs; i++)); do
    drop
    local s e
    s=$(date +%s.%N)
    bash -c "$1" >/dev/null 2>&1
    e=$(date +%s.%N)
    ts+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }')")
  done
  printf '%s\n' "${ts[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# Warm: mount from the layout with the whole layer prefetched into the cache.
"$ocix" mount --cache "$t/cache" --state-dir "$state" --prefetch all "oci:$t/ocix:python3" "$t/mnt" >/dev/null
for ((i = 0; i < 600; i++)); do
  [[ $("$ocix" cache stats --json --cache "$t/cache" --state-dir "$state" | jq .prefetch_pending) == 0 ]] && break
  sleep 0.5
done
(cd "$t/native" && find . -type f -size +1M -printf '%s %p\n' | sort -rn | head -n 20 | cut -d" " -f2-) >"$t/big.txt"
big_bytes=$(cd "$t/native" && xargs -a "$t/big.txt" -d '\n' stat -c %s | awk '{s += $1} END {print s}')
t_read_ocix=$(median "cd '$t/mnt' && xargs -a '$t/big.txt' -d '\n' cat")
t_read_native=$(median "cd '$t/native' && xargs -a '$t/big.txt' -d '\n' cat")
t_walk_ocix=$(median "find '$t/mnt' -printf '%s %m %U\n'")
t_walk_native=$(median "find '$t/native' -printf '%s %m %U\n'")
entries=$(find "$t/mnt" | wc -l)
pid=$(jq -r .pid "$state"/*/info.json | head -n1)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
"$ocix" umount --state-dir "$state" "$t/mnt"
sleep 0.5

# Cold: an empty cache, the registry on loopback, no prefetch.
mapfile -t small < <(cd "$t/native" && find etc usr/share/doc -type f -size -8k | sort | head -n "$runs")
lat=()
for f in "${small[@]}"; do
  rm -rf "$t/cold"
  "$ocix" mount --cache "$t/cold" --state-dir "$state" --prefetch none "$REGISTRY_ADDR/python3:ocix" "$t/mnt" >/dev/null
  s=$(date +%s.%N)
  cat "$t/mnt/$f" >/dev/null
  e=$(date +%s.%N)
  lat+=("$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", (e - s) * 1000 }')")
  "$ocix" umount --state-dir "$state" "$t/mnt"
  sleep 0.3
done
cold_ms=$(printf '%s\n' "${lat[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

mbps() { awk -v b="$big_bytes" -v t="$1" 'BEGIN { printf "%.0f", b / t / 1e6 }'; }
table=$(cat <<TABLE
Image: Debian bookworm minbase + python3, one layer, $entries paths. Median of $runs runs; page, dentry and
inode caches dropped before each run (\`echo 3 > /proc/sys/vm/drop_caches\`), so the FUSE path is measured, not
the kernel's cache. Native = the same layer unpacked with \`tar -x\` on the same disk.
Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r).

| measure | ocix | native | ratio (ocix / native) |
| --- | --- | --- | --- |
| warm sequential read of the 20 largest files ($big_bytes bytes), s | $t_read_ocix ($(mbps "$t_read_ocix") MB/s) | $t_read_native ($(mbps "$t_read_native") MB/s) | $(ratio "$t_read_ocix" "$t_read_native") |
| warm \`find\` + stat of every path, s | $t_walk_ocix | $t_walk_native | $(ratio "$t_walk_ocix" "$t_walk_native") |

Cold first read of a small file (< 8 KiB; empty cache; registry on loopback; includes the one range request,
decompression, BLAKE3 and the cache write): median $cold_ms ms (samples: ${lat[*]} ms).

Resident memory of the serving process after the walk: $rss_kb KiB for $entries paths =
$(awk -v r="$rss_kb" -v n="$entries" 'BEGIN { printf "%.0f", r / n * 10000 }') KiB per 10k files.
TABLE
)
echo "$table"
if [[ ${WRITE_DOCS:-0} == 1 ]]; then
  python3 - "$repo/docs/benchmarks.md" "$table" <<'PY'
import re, sys
path, table = sys.argv[1], sys.argv[2]
begin, end = "<!-- mount-bench:begin -->", "<!-- mount-bench:end -->"
text = open(path).read()
text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: begin + "\n" + table + "\n" + end, text, flags=re.S)
open(path, "w").write(text)
PY
fi
