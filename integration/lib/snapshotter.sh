# shellcheck shell=bash
# Helpers to run a private ocix-snapshotter for a test, plugged into a
# private containerd as the proxy snapshotter "ocix". Source after common.sh:
#   . "$INTEGRATION_LIB/snapshotter.sh"
#   snapshotter_start "$TEST_TMP/snap" || fail "snapshotter did not start"
#   on_exit snapshotter_stop
#   containerd_start "$TEST_TMP/ctrd" "$SNAPSHOTTER_PROXY_TOML"
#
# snapshotter_start DIR [CONFIG_TOML]
#   Socket DIR/ocix.sock, root DIR/root, log DIR/snapshotter.log (appended,
#   so restarts keep one log), $OCIX_SNAPSHOTTER (the built daemon). Waits
#   (bounded) for the socket. Sets SNAPSHOTTER_PID, SNAPSHOTTER_ADDRESS,
#   SNAPSHOTTER_ROOT and SNAPSHOTTER_PROXY_TOML (a proxy_plugins section for
#   containerd_start, written once).
# snapshotter_stop     TERM (then KILL), and unmounts what it left under DIR.
# snapshotter_wait_containerd   after a restart: waits (bounded) until
#   containerd's connection to the snapshotter works again (its gRPC client
#   backs off after the socket went away). Needs containerd.sh's ctrd.
# snapshotter_kill9    kill -9, leaving its mounts as a crash would.

snapshotter_start() {
  local dir=$1 config=${2:-}
  : "${OCIX_SNAPSHOTTER:?OCIX_SNAPSHOTTER must name the ocix-snapshotter binary}"
  mkdir -p "$dir"
  SNAPSHOTTER_DIR=$dir
  SNAPSHOTTER_ADDRESS="$dir/ocix.sock"
  SNAPSHOTTER_ROOT="$dir/root"
  SNAPSHOTTER_PROXY_TOML="$dir/proxy.toml"
  cat >"$SNAPSHOTTER_PROXY_TOML" <<TOML
[proxy_plugins]
  [proxy_plugins.ocix]
    type = "snapshot"
    address = "$SNAPSHOTTER_ADDRESS"
TOML
  local args=(--address "$SNAPSHOTTER_ADDRESS" --root "$SNAPSHOTTER_ROOT" --log-level "${SNAPSHOTTER_LOG_LEVEL:-debug}")
  [[ -n $config ]] && args+=(--config "$config")
  # A socket left by a killed daemon would look like a ready one.
  rm -f "$SNAPSHOTTER_ADDRESS"
  "$OCIX_SNAPSHOTTER" "${args[@]}" >>"$dir/snapshotter.log" 2>&1 &
  SNAPSHOTTER_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -S $SNAPSHOTTER_ADDRESS ]] && return 0
    kill -0 "$SNAPSHOTTER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "snapshotter_start: ocix-snapshotter did not come up; log:" >&2
  tail -n 30 "$dir/snapshotter.log" >&2
  return 1
}

snapshotter_kill9() {
  [[ -n ${SNAPSHOTTER_PID:-} ]] || return 0
  kill -9 "$SNAPSHOTTER_PID" 2>/dev/null || true
  wait "$SNAPSHOTTER_PID" 2>/dev/null || true
  SNAPSHOTTER_PID=
}

snapshotter_stop() {
  if [[ -n ${SNAPSHOTTER_PID:-} ]]; then
    kill "$SNAPSHOTTER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
      kill -0 "$SNAPSHOTTER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$SNAPSHOTTER_PID" 2>/dev/null || true
    wait "$SNAPSHOTTER_PID" 2>/dev/null || true
    SNAPSHOTTER_PID=
  fi
  [[ -n ${SNAPSHOTTER_DIR:-} ]] || return 0
  awk -v d="$SNAPSHOTTER_DIR" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}

snapshotter_wait_containerd() {
  local i
  for ((i = 0; i < 100; i++)); do
    ctrd snapshots --snapshotter ocix ls >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "snapshotter_wait_containerd: containerd cannot reach the snapshotter" >&2
  return 1
}
