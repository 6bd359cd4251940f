# shellcheck shell=bash
# Helpers to run a private containerd (Debian's, with runc) for a test.
# Source after common.sh:
#   . "$INTEGRATION_LIB/containerd.sh"
#   containerd_start "$TEST_TMP/ctrd" || fail "containerd did not start"
#   on_exit containerd_stop
#   ctrd image pull --plain-http ...        # ctr against this containerd
#
# containerd_start DIR [EXTRA_TOML_FILE]
#   Root, state and socket under DIR (DIR/config.toml, DIR/containerd.log);
#   CRI is disabled (not needed, slow to start) unless CONTAINERD_CRI=1. EXTRA_TOML_FILE is appended
#   to the config (e.g. a proxy_plugins section). Waits (bounded) for the
#   socket. Sets CONTAINERD_PID, CONTAINERD_ADDRESS.
# containerd_stop   kills the tasks it ran, stops containerd, unmounts what
#   it left under DIR.
# ctrd ARGS...      ctr with --address and the namespace $CTR_NAMESPACE.

CTR_NAMESPACE="${CTR_NAMESPACE:-ocix-test}"

containerd_start() {
  local dir=$1 extra=${2:-}
  mkdir -p "$dir/root" "$dir/state"
  CONTAINERD_DIR=$dir
  CONTAINERD_ADDRESS="$dir/containerd.sock"
  cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
$([[ ${CONTAINERD_CRI:-0} == 1 ]] || echo 'disabled_plugins = ["io.containerd.grpc.v1.cri"]')
[grpc]
  address = "$CONTAINERD_ADDRESS"
[ttrpc]
  address = "$CONTAINERD_ADDRESS.ttrpc"
[debug]
  level = "info"
TOML
  [[ -n $extra ]] && cat "$extra" >>"$dir/config.toml"
  containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  local i
  for ((i = 0; i < 150; i++)); do
    if [[ -S $CONTAINERD_ADDRESS ]] && ctr --address "$CONTAINERD_ADDRESS" version >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$CONTAINERD_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "containerd_start: containerd did not come up; log:" >&2
  tail -n 30 "$dir/containerd.log" >&2
  return 1
}

ctrd() {
  ctr --address "$CONTAINERD_ADDRESS" --namespace "$CTR_NAMESPACE" "$@"
}

containerd_stop() {
  [[ -n ${CONTAINERD_PID:-} ]] || return 0
  local t
  # Tasks first, so runc's shims and their mounts go away.
  for t in $(ctrd task ls -q 2>/dev/null); do
    ctrd task kill -s KILL "$t" >/dev/null 2>&1
    ctrd task delete -f "$t" >/dev/null 2>&1
  done
  for t in $(ctrd container ls -q 2>/dev/null); do ctrd container delete "$t" >/dev/null 2>&1; done
  kill "$CONTAINERD_PID" 2>/dev/null
  local i
  for ((i = 0; i < 50; i++)); do
    kill -0 "$CONTAINERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$CONTAINERD_PID" 2>/dev/null
  wait "$CONTAINERD_PID" 2>/dev/null
  # Shims outlive containerd; stop the ones rooted in our state dir.
  pkill -9 -f "containerd-shim-runc-v2 .*-address $CONTAINERD_ADDRESS" 2>/dev/null
  # Whatever is still mounted below our dir (rootfs overlays, shm).
  awk -v d="$CONTAINERD_DIR" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  CONTAINERD_PID=
}
