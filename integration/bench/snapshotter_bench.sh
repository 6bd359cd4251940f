#!/usr/bin/env bash
# Cold start through a shaped link: containerd's overlayfs snapshotter vs
# ocix vs stargz (the anchor), all pulling from a docker-registry in a
# private network namespace (integration/bench/netns.sh).
#
# SKELETON (issue 6, step C): one workload (python3 -c 'print(1)') on the
# python3 image, RUNS cold runs per method (default 1). Per run, for each
# method, the node is made cold first: containerd and both snapshotters are
# stopped, their roots (images, content, snapshots, chunk cache) removed and
# started again empty, and the page cache dropped (sync; drop_caches). Then:
#   overlayfs: ctr image pull --plain-http REF            + ctr run REF
#   ocix:      ocix pull --hosts-dir DIR REF:ocix          + ctr run --snapshotter ocix
#   stargz:    ctr-remote image rpull --plain-http REF:esgz + ctr run --snapshotter stargz
# and reports pull, run and total seconds, and the bytes the registry served
# during pull + run (response bytes in its access log, and IP bytes on the
# wire from the router namespace's counters).
#
# Usage (root): integration/bench/snapshotter_bench.sh
# Environment:
#   RATE_MBIT (100), RTT_MS (20)   the link; 0 disables either
#   RUNS (1)                        cold runs per method
#   METHODS ("overlayfs ocix stargz")
#   OCIX_PREFETCH (list)            ocix-snapshotter [prefetch] mode
#   STARGZ_BUILD_DIR (/var/cache/ocix-test/stargz-build)  stargz-grpc build cache
#   BENCH_OUT (a file)              also append results as TSV there
#   BENCH_TIMEOUT (600)             limit in seconds on every pull and run
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
need_cmd mmdebstrap umoci skopeo containerd ctr runc jq docker-registry curl ip tc iptables-legacy python3 go
need_ocix
OCIX_SNAPSHOTTER=${OCIX_SNAPSHOTTER:-$REPO_ROOT/build/snapshotter/ocix-snapshotter}
[[ -x $OCIX_SNAPSHOTTER ]] || fail "ocix-snapshotter not found at $OCIX_SNAPSHOTTER"
RATE_MBIT=${RATE_MBIT:-100}
RTT_MS=${RTT_MS:-20}
RUNS=${RUNS:-1}
METHODS=${METHODS:-"overlayfs ocix stargz"}
T=${BENCH_TIMEOUT:-600}
WORKLOAD=(python3 -c 'print(1)')

cd "$TEST_TMP"
export TMPDIR="$TEST_TMP"
mkdir -p logs

log "building stargz-grpc (offline, Debian's packages)"
STARGZ_GRPC=$("$here/stargz/build.sh" "${STARGZ_BUILD_DIR:-/var/cache/ocix-test/stargz-build}")
command -v ctr-remote >/dev/null || fail "ctr-remote missing (apt-get install stargz-snapshotter)"

log "image: Debian bookworm minbase + python3 (mmdebstrap, cached)"
"$INTEGRATION_LIB/debian_image.sh" "$TEST_TMP/src" python3 --include=python3 >/dev/null

netns_setup "$TEST_TMP/net" 0 0 || fail "could not set up the network namespaces"
on_exit netns_teardown
netns_registry_start "$TEST_TMP/registry" || fail "registry did not start"
R=$NETNS_REGISTRY
HOSTS=$NETNS_HOSTS_DIR
log "registry at http://$R (namespace $NETNS_SERVER), unshaped while images are pushed"

# --- the daemons, restartable from empty roots ---------------------------
cat >"$TEST_TMP/ocix.toml" <<TOML
[prefetch]
mode = "${OCIX_PREFETCH:-list}"
[registry]
hosts_dir = "$HOSTS"
TOML

start_node() {
  snapshotter_start "$TEST_TMP/node/ocix" "$TEST_TMP/ocix.toml" || fail "ocix-snapshotter did not start"
  stargz_start "$TEST_TMP/node/stargz" -insecure-host "$R" || fail "stargz-grpc did not start"
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

log "pushing python3:plain (tar+gzip), python3:ocix (ocix convert), python3:esgz (ctr-remote convert --estargz)"
skopeo copy --quiet --dest-tls-verify=false "oci:$TEST_TMP/src:python3" "docker://$R/python3:plain"
"$OCIX" convert -q --hosts-dir "$HOSTS" "$R/python3:plain" "$R/python3:ocix" >/dev/null || fail "ocix convert"
tctr image pull --plain-http "$R/python3:plain" >/dev/null || fail "ctr image pull (for eStargz conversion)"
ctr_remote image convert --estargz --oci "$R/python3:plain" "$R/python3:esgz" >/dev/null || fail "ctr-remote convert --estargz"
ctr_remote image push --plain-http "$R/python3:esgz" >/dev/null 2>&1 || fail "pushing the eStargz image"
layer_size() { # TAG -> total layer bytes of the manifest
  curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/python3/manifests/$1" | jq '[.layers[].size] | add'
}
for tag in plain ocix esgz; do
  log "python3:$tag layers: $(layer_size "$tag") bytes"
done

netns_shape "$RATE_MBIT" "$RTT_MS" || fail "could not shape the link"
log "link shaped: $RATE_MBIT Mbit/s, RTT $RTT_MS ms; TCP connect to the registry: $(curl -s -o /dev/null -w '%{time_connect}' "http://$R/v2/") s"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

results=$TEST_TMP/results.tsv
printf 'method\trun\trate_mbit\trtt_ms\tpull_s\trun_s\ttotal_s\tregistry_bytes\twire_bytes\toutput\n' >"$results"

measure() { # METHOD RUN
  local m=$1 run=$2 ref pull_cmd run_args
  case $m in
    overlayfs)
      ref="$R/python3:plain"
      pull_cmd=(tctr image pull --plain-http "$ref")
      run_args=() ;;
    ocix)
      ref="$R/python3:ocix"
      pull_cmd=(timeout "$T" "$OCIX" pull -q -a "$CONTAINERD_ADDRESS" -n "$CTR_NAMESPACE" --hosts-dir "$HOSTS" "$ref")
      run_args=(--snapshotter ocix) ;;
    stargz)
      ref="$R/python3:esgz"
      pull_cmd=(ctr_remote image rpull --plain-http --snapshotter stargz "$ref")
      run_args=(--snapshotter stargz) ;;
    *) fail "unknown method $m" ;;
  esac
  cold_node "$m.$run"
  local b0 w0 t0 t1 t2 out
  b0=$(netns_registry_log_bytes)
  w0=$(netns_tx_bytes)
  t0=$(now)
  "${pull_cmd[@]}" >"logs/pull.$m.$run" 2>&1 || fail "$m pull failed: $(tail -5 "logs/pull.$m.$run")"
  t1=$(now)
  out=$(tctr run --rm "${run_args[@]}" "$ref" "bench-$m-$run" "${WORKLOAD[@]}" 2>&1) || fail "$m run failed: $out"
  t2=$(now)
  local b1 w1
  b1=$(netns_registry_log_bytes)
  w1=$(netns_tx_bytes)
  [[ $out == 1 ]] || fail "$m: unexpected output: $out"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$run" "$RATE_MBIT" "$RTT_MS" \
    "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(secs "$t0" "$t2")" "$((b1 - b0))" "$((w1 - w0))" "$out" >>"$results"
  log "$m run $run: pull $(secs "$t0" "$t1") s, run $(secs "$t1" "$t2") s, registry $((b1 - b0)) bytes"
}

for ((run = 1; run <= RUNS; run++)); do
  for m in $METHODS; do
    measure "$m" "$run"
  done
done

echo
echo "Workload: ${WORKLOAD[*]} on Debian bookworm minbase + python3; link $RATE_MBIT Mbit/s, RTT $RTT_MS ms; cold node."
column -t -s $'\t' "$results"
[[ -n ${BENCH_OUT:-} ]] && tail -n +2 "$results" >>"$BENCH_OUT"
echo "snapshotter_bench: done (KEEP_TMP=1 keeps the daemons' logs in $TEST_TMP/logs)"
