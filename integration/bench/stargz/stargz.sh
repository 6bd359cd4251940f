# shellcheck shell=bash
# Helpers to run stargz-grpc (build.sh here) for a benchmark, plugged into a
# private containerd as the proxy snapshotter "stargz". Like
# integration/lib/snapshotter.sh. Source after integration/lib/common.sh:
#   . "$INTEGRATION_DIR/bench/stargz/stargz.sh"
#   STARGZ_GRPC=$("$INTEGRATION_DIR/bench/stargz/build.sh" /var/cache/ocix-test/stargz-build)
#   stargz_start "$TEST_TMP/stargz" -insecure-host 10.241.1.6:5000 || fail "stargz did not start"
#   on_exit stargz_stop
#   containerd_start "$TEST_TMP/ctrd" "$STARGZ_PROXY_TOML"
#   ctr-remote -a "$CONTAINERD_ADDRESS" -n "$CTR_NAMESPACE" image rpull --plain-http --snapshotter stargz REF
#   ctrd run --rm --snapshotter stargz REF id CMD...
#
# stargz_start DIR [stargz-grpc args...]
#   Socket DIR/stargz.sock, root DIR/root, log DIR/stargz.log (appended).
#   Waits (bounded) for the socket. Sets STARGZ_PID, STARGZ_ADDRESS,
#   STARGZ_ROOT, STARGZ_PROXY_TOML (a proxy_plugins section for containerd).
#   Extra args, e.g. -insecure-host HOST:PORT (plain HTTP registry),
#   -config FILE (containerd-stargz-grpc config.toml: noprefetch,
#   no_background_fetch, ...), -log-level debug.
# stargz_stop   TERM (the daemon unmounts its layers), then KILL; unmounts
#   whatever is left under DIR.

stargz_start() {
  local dir=$1
  shift
  : "${STARGZ_GRPC:?STARGZ_GRPC must name the stargz-grpc binary (stargz/build.sh)}"
  mkdir -p "$dir"
  STARGZ_DIR=$(cd "$dir" && pwd)
  STARGZ_ADDRESS="$STARGZ_DIR/stargz.sock"
  STARGZ_ROOT="$STARGZ_DIR/root"
  STARGZ_PROXY_TOML="$STARGZ_DIR/proxy.toml"
  cat >"$STARGZ_PROXY_TOML" <<TOML
[proxy_plugins]
  [proxy_plugins.stargz]
    type = "snapshot"
    address = "$STARGZ_ADDRESS"
TOML
  rm -f "$STARGZ_ADDRESS"
  "$STARGZ_GRPC" -address "$STARGZ_ADDRESS" -root "$STARGZ_ROOT" "$@" >>"$STARGZ_DIR/stargz.log" 2>&1 &
  STARGZ_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -S $STARGZ_ADDRESS ]] && return 0
    kill -0 "$STARGZ_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "stargz_start: stargz-grpc did not come up; log:" >&2
  tail -n 30 "$STARGZ_DIR/stargz.log" >&2
  return 1
}

stargz_stop() {
  if [[ -n ${STARGZ_PID:-} ]]; then
    kill "$STARGZ_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
      kill -0 "$STARGZ_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$STARGZ_PID" 2>/dev/null || true
    wait "$STARGZ_PID" 2>/dev/null || true
    STARGZ_PID=
  fi
  [[ -n ${STARGZ_DIR:-} ]] || return 0
  awk -v d="$STARGZ_DIR/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}
