# shellcheck shell=bash
# Helpers to run a real Debian docker-registry (distribution v2) for a test.
# Source after common.sh:
#   . "$INTEGRATION_LIB/registry.sh"
#   registry_start "$TEST_TMP/reg" || fail "registry did not start"
#   on_exit registry_stop
#   ... push to 127.0.0.1:$REGISTRY_PORT ...
#
# registry_start DIR [--htpasswd FILE] [--token REALM SERVICE ISSUER CERT]
#   Writes DIR/config.yml, stores blobs in DIR/data, logs to DIR/registry.log,
#   listens on 127.0.0.1 on a free port and waits (bounded) until /v2/
#   answers. Sets REGISTRY_PID, REGISTRY_PORT, REGISTRY_ADDR (127.0.0.1:PORT).
#   Returns non-zero (after printing the log) if it does not come up.
# registry_stop [PID]   stops the registry (default $REGISTRY_PID): TERM, then KILL.
# registry_htpasswd FILE USER PASSWORD   writes a bcrypt htpasswd file.
# registry_free_port    prints a currently free TCP port on 127.0.0.1.

REGISTRY_BIN="${REGISTRY_BIN:-/usr/bin/docker-registry}"

registry_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

registry_htpasswd() {
  htpasswd -Bbn "$2" "$3" > "$1"
}

# Polls URL until it answers with one of the HTTP codes in $2 (default 200
# or 401), at most $3 times (default 100) 0.1 s apart.
registry_wait_http() {
  local url=$1 codes=${2:-"200 401"} tries=${3:-100} code i
  for ((i = 0; i < tries; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null || true)
    [[ " $codes " == *" $code "* ]] && return 0
    sleep 0.1
  done
  return 1
}

registry_start() {
  local dir=$1 auth=""
  shift
  while (($#)); do
    case $1 in
      --htpasswd)
        auth=$'auth:\n  htpasswd:\n    realm: ocix-registry\n    path: '"$2"
        shift 2 ;;
      --token)
        auth=$'auth:\n  token:\n    realm: '"$2"$'\n    service: '"$3"$'\n    issuer: '"$4"$'\n    rootcertbundle: '"$5"
        shift 5 ;;
      *) echo "registry_start: unknown option $1" >&2; return 2 ;;
    esac
  done
  [[ -x $REGISTRY_BIN ]] || { echo "registry_start: $REGISTRY_BIN not found" >&2; return 1; }
  mkdir -p "$dir/data"
  local _attempt
  # The free port may be taken between probing and binding: try a few.
  for _attempt in 1 2 3; do
    REGISTRY_PORT=$(registry_free_port)
    REGISTRY_ADDR="127.0.0.1:$REGISTRY_PORT"
    cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  secret: ocix-test-secret
$auth
YAML
    "$REGISTRY_BIN" serve "$dir/config.yml" >> "$dir/registry.log" 2>&1 &
    REGISTRY_PID=$!
    if registry_wait_http "http://$REGISTRY_ADDR/v2/"; then
      export REGISTRY_PID REGISTRY_PORT REGISTRY_ADDR
      return 0
    fi
    registry_stop "$REGISTRY_PID"
  done
  echo "registry_start: docker-registry did not answer on /v2/; log:" >&2
  cat "$dir/registry.log" >&2
  return 1
}

registry_stop() {
  local pid=${1:-${REGISTRY_PID:-}} i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [[ $pid == "${REGISTRY_PID:-}" ]] && unset REGISTRY_PID
  return 0
}
