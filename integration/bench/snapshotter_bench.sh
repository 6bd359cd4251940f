#!/usr/bin/env bash
# Cold start through a shaped link: containerd's overlayfs snapshotter vs
# ocix vs stargz (the anchor), all pulling from a docker-registry in a
# private network namespace (integration/bench/netns.sh). One command, one
# run, everything issue 6 asks for:
#
#  1. images (mmdebstrap, cached tarballs): minbase; python3; large
#     (gcc g++ python3-numpy); shareda / sharedb = the minbase layer plus a
#     layer above it (python3, resp. python3 + curl). Each is pushed as
#     NAME:plain (tar+gzip), NAME:ocix (ocix convert) and NAME:esgz
#     (ctr-remote image convert --estargz --oci).
#  2. cold start per workload x method x run (interleaved), the node made
#     cold first: containerd, ocix-snapshotter and stargz-grpc stopped, their
#     roots (images, content, snapshots, chunk cache) removed, page cache
#     dropped, all started again empty. Then
#       overlayfs: ctr image pull --plain-http NAME:plain   + ctr run
#       ocix:      ocix pull --hosts-dir DIR NAME:ocix       + ctr run --snapshotter ocix
#       stargz:    ctr-remote image rpull NAME:esgz          + ctr run --snapshotter stargz
#     Recorded: pull, run and total seconds; response bytes in the
#     registry's access log and IP bytes on the wire; for ocix also the
#     daemon's counters (ocix_fetched_bytes_total, ocix_fuse_read_bytes_total)
#     and the compressed frame bytes of the chunks in its cache after the run
#     (chunk files x frame sizes from the layers' TOCs) plus the TOC bytes.
#  3. shared cache: run shareda, then sharedb on the same node: what sharedb
#     fetched vs the chunks of sharedb that were not in the cache yet.
#  4. warm path (ocix vs overlayfs, large image, every chunk cached): the
#     sequential read of the 20 largest files and a find+stat walk of /usr,
#     timed inside the container, page cache dropped before each; the
#     daemon's RSS per path of the mounted layers.
#  5. bandwidth sweep: the python3 workload at every rate of SWEEP_RATES.
#  6. plot.py: tables (median, min-max) and PNGs into docs/benchmarks.md
#     (between the snapshotter-bench markers) and docs/img/ (WRITE_DOCS=1).
#
# Usage (root): integration/bench/snapshotter_bench.sh
# Environment:
#   RATE_MBIT (100), RTT_MS (20)   the link; 0 disables either
#   RUNS (3)                        runs per cell
#   METHODS ("overlayfs ocix stargz")
#   WORKLOADS ("python3 gcc numpy ls")
#   SWEEP_RATES ("20 100 1000"), SWEEP_WORKLOADS ("python3")   "" skips the sweep
#   SHARED (1), WARM (1)            0 skips step 3 / step 4
#   OCIX_PREFETCH (none)            ocix-snapshotter [prefetch] mode
#   OCIX_READAHEAD (2MiB)           ocix-snapshotter [fetch] readahead (0: off)
#   STARGZ_PREFETCH (0)             1: stargz with its default prefetch and background fetch
#   WRITE_DOCS (1)                  write docs/benchmarks.md's section and docs/img/*.png
#   STARGZ_BUILD_DIR (/var/cache/ocix-test/stargz-build)  stargz-grpc build cache
#   BENCH_OUT (a dir)               also copy results there
#   BENCH_TIMEOUT (600)             limit in seconds on every pull and run
#   START_AT                        e.g. "19:46 UTC": build and push, then wait (<= 1 h) before measuring
#   OCIX, OCIX_SNAPSHOTTER          binaries (default build/...)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/common.sh
. "$here/../lib/common.sh"
# shellcheck source=../lib/containerd.sh
. "$INTEGRATION_LIB/containerd.sh"
# shellcheck source=../lib/snapshotter.sh
. "$INTEGRATION_LIB/snapshotter.sh"
# shellcheck source=netns.sh
. "$here/netns.sh"
# shellcheck source=stargz/stargz.sh
. "$here/stargz/stargz.sh"

need_root "namespaces, containerd, FUSE and overlayfs need root"
# Bench-only dependencies (scripts/setup.sh does not install them).
missing=()
command -v ctr-remote >/dev/null || missing+=(stargz-snapshotter)
[[ -d /usr/share/gocode/src/github.com/containerd/stargz-snapshotter ]] || missing+=(golang-github-containerd-stargz-snapshotter-dev)
command -v iptables-legacy >/dev/null || missing+=(iptables)
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || missing+=(python3-matplotlib)
if ((${#missing[@]})); then
  log "installing bench dependencies: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "${missing[@]}" >&2 || fail "apt-get install ${missing[*]}"
fi
need_cmd mmdebstrap umoci skopeo containerd ctr ctr-remote runc jq docker-registry curl ip tc iptables-legacy python3 go
need_ocix
OCIX_SNAPSHOTTER=${OCIX_SNAPSHOTTER:-$REPO_ROOT/build/snapshotter/ocix-snapshotter}
[[ -x $OCIX_SNAPSHOTTER ]] || fail "ocix-snapshotter not found at $OCIX_SNAPSHOTTER"
RATE_MBIT=${RATE_MBIT:-100}
RTT_MS=${RTT_MS:-20}
RUNS=${RUNS:-3}
METHODS=${METHODS:-"overlayfs ocix stargz"}
WORKLOADS=${WORKLOADS:-"python3 gcc numpy ls"}
SWEEP_RATES=${SWEEP_RATES-"20 100 1000"}
SWEEP_WORKLOADS=${SWEEP_WORKLOADS:-python3}
T=${BENCH_TIMEOUT:-600}
export OCIX_TEST_CACHE=${OCIX_TEST_CACHE-/var/cache/ocix-test}
[[ -n $OCIX_TEST_CACHE ]] || fail "the bench needs the mmdebstrap tarball cache (OCIX_TEST_CACHE)"
bench_start=$(date +%s)

# Workloads: image, expected output, command.
declare -A W_IMAGE W_OUT W_CMD
W_IMAGE[ls]=minbase W_OUT[ls]=etc W_CMD[ls]="ls /"
W_IMAGE[python3]=python3 W_OUT[python3]=1 W_CMD[python3]="python3 -c 'print(1)'"
W_IMAGE[gcc]=large W_OUT[gcc]=hello
W_CMD[gcc]="printf '#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n' >/tmp/hello.c && gcc -o /tmp/hello /tmp/hello.c && /tmp/hello"
W_IMAGE[numpy]=large W_OUT[numpy]=6
W_CMD[numpy]="python3 -c 'import numpy; print(int(numpy.arange(4).sum()))'"
W_IMAGE[shareda]=shareda W_OUT[shareda]=1 W_CMD[shareda]="python3 -c 'print(1)'"
W_IMAGE[sharedb]=sharedb W_OUT[sharedb]=curl W_CMD[sharedb]="python3 -c 'print(1)' >/dev/null && curl --version | cut -d' ' -f1 | head -n1"

cd "$TEST_TMP"
export TMPDIR="$TEST_TMP"
mkdir -p logs toc out

log "building stargz-grpc (offline, Debian's packages)"
# shellcheck disable=SC2034 # read by stargz_start
STARGZ_GRPC=$("$here/stargz/build.sh" "${STARGZ_BUILD_DIR:-/var/cache/ocix-test/stargz-build}")

# --- images --------------------------------------------------------------
cache_tar() { # mmdebstrap extra args -> the cached tarball debian_image.sh wrote
  local name=minbase-bookworm
  (($#)) && name+="-$(printf '%s\0' "$@" | sha256sum | cut -c1-12)"
  echo "$OCIX_TEST_CACHE/$name.tar"
}
log "images: minbase, python3, large (gcc g++ python3-numpy), sharedb's tarball (mmdebstrap, cached)"
"$INTEGRATION_LIB/debian_image.sh" "$TEST_TMP/src" minbase >/dev/null
"$INTEGRATION_LIB/debian_image.sh" "$TEST_TMP/src" python3 --include=python3 >/dev/null
"$INTEGRATION_LIB/debian_image.sh" "$TEST_TMP/src" large --include=gcc,g++,python3-numpy >/dev/null
"$INTEGRATION_LIB/debian_image.sh" "$TEST_TMP/src" sharedb-flat --include=python3,curl >/dev/null
# shareda / sharedb: the minbase layer, then umoci's diff to the full tree.
above_base() { # TAG TARBALL
  local b=$TEST_TMP/bundle-$1
  umoci unpack --image "$TEST_TMP/src:minbase" "$b" >/dev/null
  rm -rf "$b/rootfs"
  mkdir "$b/rootfs"
  tar -xpf "$2" -C "$b/rootfs"
  umoci repack --image "$TEST_TMP/src:$1" --history.created_by="mmdebstrap diff above minbase" "$b" >/dev/null
  rm -rf "$b"
}
umoci tag --image "$TEST_TMP/src:minbase" shareda
umoci tag --image "$TEST_TMP/src:minbase" sharedb
above_base shareda "$(cache_tar --include=python3)"
above_base sharedb "$(cache_tar --include=python3,curl)"
IMAGES="minbase python3 large shareda sharedb"

netns_setup "$TEST_TMP/net" 0 0 || fail "could not set up the network namespaces"
on_exit netns_teardown
netns_registry_start "$TEST_TMP/registry" || fail "registry did not start"
R=$NETNS_REGISTRY
HOSTS=$NETNS_HOSTS_DIR
log "registry at http://$R (namespace $NETNS_SERVER), unshaped while images are pushed"

# --- the daemons, restartable from empty roots ---------------------------
METRICS_ADDR=127.0.0.1:$((20000 + $$ % 20000))
cat >"$TEST_TMP/ocix.toml" <<TOML
[prefetch]
mode = "${OCIX_PREFETCH:-none}"
[fetch]
readahead = "${OCIX_READAHEAD:-2MiB}"
[registry]
hosts_dir = "$HOSTS"
[metrics]
address = "$METRICS_ADDR"
TOML
if [[ ${STARGZ_PREFETCH:-0} == 1 ]]; then
  : >"$TEST_TMP/stargz.toml"
else
  printf 'noprefetch = true\nno_background_fetch = true\n' >"$TEST_TMP/stargz.toml"
fi

start_node() {
  SNAPSHOTTER_LOG_LEVEL=info snapshotter_start "$TEST_TMP/node/ocix" "$TEST_TMP/ocix.toml" || fail "ocix-snapshotter did not start"
  stargz_start "$TEST_TMP/node/stargz" -insecure-host "$R" -config "$TEST_TMP/stargz.toml" || fail "stargz-grpc did not start"
  cat "$SNAPSHOTTER_PROXY_TOML" >"$TEST_TMP/proxies.toml"
  sed 1d "$STARGZ_PROXY_TOML" >>"$TEST_TMP/proxies.toml"
  containerd_start "$TEST_TMP/node/containerd" "$TEST_TMP/proxies.toml" || fail "containerd did not start"
}
# The lib's stop functions are written for on_exit (errexit off).
stop_node() {
  local had_e=0
  [[ $- == *e* ]] && had_e=1
  set +e
  containerd_stop
  stargz_stop
  snapshotter_stop
  if ((had_e)); then set -e; fi
  return 0
}
# Everything off, every root removed (logs kept), caches dropped, back on.
cold_node() { # LABEL
  stop_node
  local f
  for f in node/ocix/snapshotter.log node/stargz/stargz.log node/containerd/containerd.log; do
    if [[ -f $f ]]; then cat "$f" >>"logs/$(basename "$f").$1"; fi
  done
  if grep -q " $TEST_TMP/node/" /proc/mounts; then
    fail "mounts left under $TEST_TMP/node: $(grep " $TEST_TMP/node/" /proc/mounts)"
  fi
  rm -rf "$TEST_TMP/node"
  sync
  echo 3 >/proc/sys/vm/drop_caches
  start_node
}
on_exit stop_node
start_node

ctr_remote() { timeout "$T" ctr-remote --address "$CONTAINERD_ADDRESS" --namespace "$CTR_NAMESPACE" "$@"; }
tctr() { timeout "$T" ctr --address "$CONTAINERD_ADDRESS" --namespace "$CTR_NAMESPACE" "$@"; }

manifest() { # NAME TAG
  curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$R/v2/$1/manifests/$2"
}
printf 'image\tformat\tlayers\tbytes\n' >out/images.tsv
for img in $IMAGES; do
  log "pushing $img:plain, $img:ocix, $img:esgz"
  skopeo copy --quiet --dest-tls-verify=false "oci:$TEST_TMP/src:$img" "docker://$R/$img:plain"
  timeout "$T" "$OCIX" convert -q --hosts-dir "$HOSTS" "$R/$img:plain" "$R/$img:ocix" >/dev/null || fail "ocix convert $img"
  tctr image pull --plain-http "$R/$img:plain" >/dev/null || fail "ctr image pull $img (for eStargz conversion)"
  ctr_remote image convert --estargz --oci "$R/$img:plain" "$R/$img:esgz" >/dev/null || fail "ctr-remote convert --estargz $img"
  ctr_remote image push --plain-http "$R/$img:esgz" >/dev/null 2>&1 || fail "pushing $img:esgz"
  for tag in plain ocix esgz; do
    manifest "$img" "$tag" | jq -r --arg i "$img" --arg t "$tag" '[$i, $t, (.layers | length), ([.layers[].size] | add)] | @tsv' >>out/images.tsv
  done
  # The OCIX layers' TOCs: chunk -> compressed frame size, TOC bytes, paths.
  manifest "$img" ocix >"toc/$img.manifest.json"
  for d in $(jq -r '.layers[].digest' "toc/$img.manifest.json"); do
    curl -fsS -o "toc/blob" "http://$R/v2/$img/blobs/$d"
    "$OCIX" inspect --layer --json "toc/blob" >"toc/$img.${d#sha256:}.json"
  done
  rm -f toc/blob
  /usr/bin/python3 - "toc/$img.manifest.json" "toc/$img" <<'PY'
import json, sys, os
man = json.load(open(sys.argv[1]))
frames, toc_bytes, paths, total = {}, 0, 0, 0
for l in man["layers"]:
    toc_bytes += int(l["annotations"]["containerd.io/snapshot/ocix/toc.size"])
    t = json.load(open(os.path.join(os.path.dirname(sys.argv[1]), os.path.basename(sys.argv[2]) + "." + l["digest"].split(":")[1] + ".json")))
    paths += len(t["manifest"]["entries"])
    for c in t["contents"]:
        for ch in c["chunks"]:
            b3 = ch[2] if len(ch) > 2 else c["b3"]
            if b3 not in frames:
                frames[b3] = ch[1]
                total += ch[1]
json.dump({"frames": frames, "toc_bytes": toc_bytes, "paths": paths, "frame_bytes": total}, open(sys.argv[2] + ".frames.json", "w"))
PY
done
# Nothing of the push phase may stay on the node.
cold_node setup
column -t -s $'\t' out/images.tsv >&2

# chunk files in the ocix cache now
cache_chunks() {
  find "$TEST_TMP/node/ocix/root" -path '*/chunks/*' -type f -regextype egrep -regex '.*/[0-9a-f]{64}' -printf '%f\n' 2>/dev/null | sort
}
frame_bytes() { # IMAGE CHUNKLIST_FILE -> compressed frame bytes of those chunks (per the image's TOCs)
  /usr/bin/python3 -c '
import json, sys
f = json.load(open(sys.argv[1]))["frames"]
print(sum(f.get(l.strip(), 0) for l in open(sys.argv[2]) if l.strip()))' "toc/$1.frames.json" "$2"
}
metric() { # NAME: sum of the samples of one metric (0 when absent)
  curl -fsS --max-time 5 "http://$METRICS_ADDR/metrics" 2>/dev/null |
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

results=$TEST_TMP/out/results.tsv
printf 'phase\tworkload\tmethod\trun\trate_mbit\trtt_ms\tpull_s\trun_s\ttotal_s\tregistry_bytes\twire_bytes\tocix_fetched_bytes\tfuse_read_bytes\tcache_frame_bytes\ttoc_bytes\tcache_chunks\tfetched_chunks\tfetch_requests\tserved_frame_bytes\treadahead_frame_bytes\n' >"$results"

ref_of() { # METHOD IMAGE
  case $1 in
    overlayfs) echo "$R/$2:plain" ;;
    ocix) echo "$R/$2:ocix" ;;
    stargz) echo "$R/$2:esgz" ;;
  esac
}
pull() { # METHOD REF
  case $1 in
    overlayfs) tctr image pull --plain-http "$2" ;;
    ocix) timeout "$T" "$OCIX" pull -q -a "$CONTAINERD_ADDRESS" -n "$CTR_NAMESPACE" --hosts-dir "$HOSTS" "$2" ;;
    stargz) ctr_remote image rpull --plain-http --snapshotter stargz "$2" ;;
  esac
}
snap_args() {
  case $1 in
    overlayfs) ;;
    *) echo "--snapshotter $1" ;;
  esac
}

# One pull + run on the current node; appends a row. PHASE WORKLOAD METHOD RUN
pull_run() {
  local phase=$1 w=$2 m=$3 run=$4 img=${W_IMAGE[$2]} ref id out
  ref=$(ref_of "$m" "$img")
  id="b-$phase-$w-$m-$run"
  local b0 w0 f0 r0 c0 q0 t0 t1 t2
  b0=$(netns_registry_log_bytes)
  w0=$(netns_tx_bytes)
  f0=$(metric ocix_fetched_bytes_total) r0=$(metric ocix_fuse_read_bytes_total) c0=$(metric ocix_fetched_chunks_total)
  q0=$(metric ocix_fetch_requests_total)
  local s0 a0
  s0=$(metric ocix_served_frame_bytes_total) a0=$(metric ocix_readahead_frame_bytes_total)
  t0=$(now)
  pull "$m" "$ref" >"logs/pull.$id" 2>&1 || fail "$m pull of $ref failed: $(tail -5 "logs/pull.$id")"
  t1=$(now)
  # shellcheck disable=SC2046
  out=$(tctr run --rm $(snap_args "$m") "$ref" "$id" sh -c "${W_CMD[$w]}" 2>&1) || fail "$m $w run failed: $out"
  t2=$(now)
  local b1 w1 f1 r1 c1 q1
  b1=$(netns_registry_log_bytes)
  w1=$(netns_tx_bytes)
  f1=$(metric ocix_fetched_bytes_total) r1=$(metric ocix_fuse_read_bytes_total) c1=$(metric ocix_fetched_chunks_total)
  q1=$(metric ocix_fetch_requests_total)
  local s1 a1
  s1=$(metric ocix_served_frame_bytes_total) a1=$(metric ocix_readahead_frame_bytes_total)
  [[ $out == *"${W_OUT[$w]}"* ]] || fail "$m $w: unexpected output: $out"
  local cf=0 cn=0 tb=0 fb="" rb="" fc="" fq="" sb="" ab=""
  if [[ $m == ocix ]]; then
    cache_chunks >"logs/chunks.$id"
    cn=$(wc -l <"logs/chunks.$id")
    cf=$(frame_bytes "$img" "logs/chunks.$id")
    tb=$(jq .toc_bytes "toc/$img.frames.json")
    fb=$((f1 - f0)) rb=$((r1 - r0)) fc=$((c1 - c0)) fq=$((q1 - q0)) sb=$((s1 - s0)) ab=$((a1 - a0))
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$w" "$m" "$run" "$NETNS_RATE_MBIT" "$NETNS_RTT_MS" \
    "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(secs "$t0" "$t2")" "$((b1 - b0))" "$((w1 - w0))" \
    "$fb" "$rb" "$cf" "$tb" "$cn" "$fc" "$fq" "$sb" "$ab" >>"$results"
  log "$phase $w $m run $run @${NETNS_RATE_MBIT}Mbit: pull $(secs "$t0" "$t1") s, run $(secs "$t1" "$t2") s, registry $((b1 - b0)) B${fb:+, ocix fetched $fb B in $fq requests (read-ahead $ab B), read $rb B needing $sb B of frames}"
}

# START_AT (a time `date -d` understands): measure from then on, e.g. after
# other load on the machine ends; the images are built and pushed before.
if [[ -n ${START_AT:-} ]]; then
  wait_s=$(($(date -d "$START_AT" +%s) - $(date +%s)))
  if ((wait_s > 0 && wait_s <= 3600)); then
    log "waiting $wait_s s until $START_AT (START_AT)"
    sleep "$wait_s"
  fi
fi
netns_shape "$RATE_MBIT" "$RTT_MS" || fail "could not shape the link"
log "link shaped: $RATE_MBIT Mbit/s, RTT $RTT_MS ms; TCP connect to the registry: $(curl -s -o /dev/null -w '%{time_connect}' "http://$R/v2/") s"

# --- 2. cold start ---------------------------------------------------------
for ((run = 1; run <= RUNS; run++)); do
  for w in $WORKLOADS; do
    for m in $METHODS; do
      cold_node "cold.$w.$m.$run"
      pull_run cold "$w" "$m" "$run"
    done
  done
done

# --- 3. shared cache: shareda then sharedb on one node ---------------------
if [[ ${SHARED:-1} == 1 ]]; then
  for ((run = 1; run <= RUNS; run++)); do
    for m in $METHODS; do
      cold_node "shared.$m.$run"
      pull_run shared shareda "$m" "$run"
      [[ $m == ocix ]] && cp "logs/chunks.b-shared-shareda-$m-$run" "logs/chunks.before-b.$run"
      pull_run shared sharedb "$m" "$run"
    done
  done
  # sharedb's chunks that shareda's layers do not have, and their frames.
  /usr/bin/python3 - toc/shareda.frames.json toc/sharedb.frames.json >out/shared_unique.json <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["frames"]
b = json.load(open(sys.argv[2]))["frames"]
u = {k: v for k, v in b.items() if k not in a}
print(json.dumps({"unique_chunks": len(u), "unique_frame_bytes": sum(u.values()), "b_frame_bytes": sum(b.values())}))
PY
  # Per run: new chunks during sharedb, their frame bytes, and how many of them were unique to sharedb.
  for ((run = 1; run <= RUNS; run++)); do
    [[ -f logs/chunks.before-b.$run ]] || continue
    comm -13 "logs/chunks.before-b.$run" "logs/chunks.b-shared-sharedb-ocix-$run" >"logs/chunks.new-b.$run"
    /usr/bin/python3 - toc/shareda.frames.json toc/sharedb.frames.json "logs/chunks.new-b.$run" "$run" <<'PY' >>out/shared_new.tsv
import json, sys
a = json.load(open(sys.argv[1]))["frames"]
b = json.load(open(sys.argv[2]))["frames"]
new = [l.strip() for l in open(sys.argv[3]) if l.strip()]
print("\t".join(map(str, [sys.argv[4], len(new), sum(b.get(c, 0) for c in new),
                          sum(1 for c in new if c in a), sum(1 for c in new if c not in b)])))
PY
  done
fi

# --- 4. warm path: large image, every chunk cached -------------------------
if [[ ${WARM:-1} == 1 ]]; then
  netns_shape 0 0 || fail "unshaping"
  printf 'method\trun\tread_s\twalk_s\tbytes\tpaths\trss_kib\tread_fuse_reads\tread_fuse_lookups\twalk_fuse_lookups\n' >out/warm.tsv
  for m in overlayfs ocix; do
    cold_node "warm.$m"
    ref=$(ref_of "$m" large)
    pull "$m" "$ref" >"logs/pull.warm.$m" 2>&1 || fail "warm pull $m"
    # shellcheck disable=SC2046
    big=$(tctr run --rm $(snap_args "$m") "$ref" "warm-list-$m" sh -c \
      'find /usr -xdev -type f -printf "%s %p\n" | sort -rn | head -n 20 | cut -d" " -f2- | tr "\n" " "')
    # Fill the cache: read every file once, 8 readers (not timed).
    # shellcheck disable=SC2046
    tctr run --rm $(snap_args "$m") "$ref" "warm-fill-$m" sh -c 'find / -xdev -type f -print0 | xargs -0 -r -n 64 -P 8 cat >/dev/null' ||
      fail "warm fill $m"
    for ((run = 1; run <= RUNS; run++)); do
      # Two containers, the page, dentry and inode caches dropped before each;
      # timed inside the container, so container start is not counted.
      sync
      echo 3 >/proc/sys/vm/drop_caches
      fr0=$(metric 'ocix_fuse_operations_total{op="read"}') fl0=$(metric 'ocix_fuse_operations_total{op="lookup"}')
      # $big: the file list, split on purpose.
      # shellcheck disable=SC2046,SC2016,SC2086
      o=$(tctr run --rm $(snap_args "$m") "$ref" "warm-read-$m-$run" sh -c '
        a=$(date +%s%N); cat "$@" >/dev/null; b=$(date +%s%N)
        echo "$(( (b - a) / 1000 )) $(cat "$@" | wc -c)"' sh $big) || fail "warm read $m: $o"
      read -r rd by <<<"$o"
      sync
      echo 3 >/proc/sys/vm/drop_caches
      fr1=$(metric 'ocix_fuse_operations_total{op="read"}') fl1=$(metric 'ocix_fuse_operations_total{op="lookup"}')
      # shellcheck disable=SC2046,SC2016
      o=$(tctr run --rm $(snap_args "$m") "$ref" "warm-walk-$m-$run" sh -c '
        c=$(date +%s%N); find /usr -printf "%s %m %U\n" >/dev/null; d=$(date +%s%N)
        echo "$(( (d - c) / 1000 )) $(find /usr | wc -l)"') || fail "warm walk $m: $o"
      read -r wk np <<<"$o"
      fl2=$(metric 'ocix_fuse_operations_total{op="lookup"}')
      rss=0
      if [[ $m == ocix ]]; then
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$SNAPSHOTTER_PID/status")
        # The profile: FUSE operations and cache counters after read + walk.
        curl -fsS --max-time 5 "http://$METRICS_ADDR/metrics" | grep -E '^ocix_(fuse|cache)' >"out/warm_metrics.$run" || true
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$run" "$(awk -v u="$rd" 'BEGIN{printf "%.4f", u/1e6}')" \
        "$(awk -v u="$wk" 'BEGIN{printf "%.4f", u/1e6}')" "$by" "$np" "$rss" \
        "$((fr1 - fr0))" "$((fl1 - fl0))" "$((fl2 - fl1))" >>out/warm.tsv
      log "warm $m run $run: read ${rd} us, walk ${wk} us ($by bytes, $np paths)"
    done
  done
  jq -r '"\(.paths)"' toc/large.frames.json >out/warm_paths
  netns_shape "$RATE_MBIT" "$RTT_MS" || fail "reshaping"
fi

# --- 5. bandwidth sweep -----------------------------------------------------
for rate in $SWEEP_RATES; do
  [[ $rate == "$RATE_MBIT" ]] && continue # the cold-start table has it
  netns_shape "$rate" "$RTT_MS" || fail "could not shape the link to $rate"
  for ((run = 1; run <= RUNS; run++)); do
    for w in $SWEEP_WORKLOADS; do
      for m in $METHODS; do
        cold_node "sweep.$rate.$w.$m.$run"
        pull_run sweep "$w" "$m" "$run"
      done
    done
  done
done
stop_node

# --- 6. report ----------------------------------------------------------------
cat >out/meta.json <<JSON
{"rate_mbit": $RATE_MBIT, "rtt_ms": $RTT_MS, "runs": $RUNS, "ocix_prefetch": "${OCIX_PREFETCH:-none}", "ocix_readahead": "${OCIX_READAHEAD:-2MiB}",
 "stargz_prefetch": ${STARGZ_PREFETCH:-0}, "cores": $(nproc),
 "mem_gib": $(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo), "kernel": "$(uname -r)",
 "cpu": "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)",
 "date": "$(date -u +%Y-%m-%dT%H:%MZ)", "seconds": $(($(date +%s) - bench_start)),
 "containerd": "$(containerd --version | awk '{print $3}')",
 "ocix": "$("$OCIX" --version 2>/dev/null | tail -n1)",
 "command": "$(printf '%q ' RATE_MBIT="$RATE_MBIT" RTT_MS="$RTT_MS" RUNS="$RUNS")integration/bench/snapshotter_bench.sh",
 "workloads": $(for w in $WORKLOADS shareda sharedb; do printf '%s\n%s\n%s\n' "$w" "${W_IMAGE[$w]}" "${W_CMD[$w]}"; done |
   jq -R . | jq -s '[range(0; length; 3) as $i | {(.[$i]): {image: .[$i+1], cmd: .[$i+2]}}] | add')}
JSON
cp toc/*.frames.json out/ 2>/dev/null || true
echo
column -t -s $'\t' "$results"
[[ -f out/warm.tsv ]] && column -t -s $'\t' out/warm.tsv
[[ -n ${BENCH_OUT:-} ]] && mkdir -p "$BENCH_OUT" && cp -r out/. "$BENCH_OUT/"
if [[ ${WRITE_DOCS:-1} == 1 ]]; then
  /usr/bin/python3 "$here/plot.py" out "$REPO_ROOT/docs/benchmarks.md" "$REPO_ROOT/docs/img" || fail "plot.py"
else
  /usr/bin/python3 "$here/plot.py" out - "$TEST_TMP/img" || fail "plot.py"
fi
echo "snapshotter_bench: done in $(($(date +%s) - bench_start)) s (KEEP_TMP=1 keeps the daemons' logs in $TEST_TMP/logs)"
