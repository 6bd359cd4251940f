# shellcheck shell=bash
# A shaped network path to a private docker-registry, for the benchmarks.
# Source after integration/lib/common.sh (needs root):
#   . "$INTEGRATION_DIR/bench/netns.sh"
#   netns_setup "$TEST_TMP/net" || fail "no shaped network"
#   on_exit netns_teardown
#   netns_registry_start "$TEST_TMP/registry" || fail "registry did not start"
#   ... clients use $NETNS_REGISTRY (10.241.X.6:5000), plain HTTP:
#       ctr ... --plain-http, ocix --hosts-dir $NETNS_HOSTS_DIR,
#       ocix-snapshotter [registry] hosts_dir = $NETNS_HOSTS_DIR
#   netns_shape 20 20     # change rate (Mbit/s) and RTT (ms) at any time
#
# Layout: three network namespaces' worth of path, all ours except the
# host's end of one veth pair:
#
#   host netns            "router" netns                 "server" netns
#   obhX 10.241.X.1/30 ── obrX 10.241.X.2/30
#                         obqX 10.241.X.5/30 ─────────── obsX 10.241.X.6/30
#                                                        docker-registry :5000
#
# The host gets one route, 10.241.X.4/30 via 10.241.X.2, on its own veth.
# X is a free /24 in 10.241.0.0/16 (no host address in it), chosen under a
# lock, so parallel runs do not collide.
#
# Shaping, in the router namespace only: a token bucket (tbf) of RATE_MBIT
# on both of its egress interfaces (each direction), and a delay of RTT_MS/2
# each way. This kernel's build has no netem (CONFIG_NET_SCH_NETEM is not
# set and modules cannot be loaded), so the delay is done by a small
# NFQUEUE program (Python, raw netlink, written to DIR) that holds every
# forwarded packet for RTT/2 and then accepts it, FIFO, with batch verdicts.
# With NETNS_FORCE_NFQUEUE=0 and a kernel that has netem, netem is used
# instead. The delay sits in a forwarding namespace on purpose: a delay on
# the sender's own egress would keep packets charged to the sending socket
# and TCP small queues would throttle it far below the link rate.
#
# Settable: RATE_MBIT (default 100), RTT_MS (default 20), or netns_setup's
# arguments; 0 disables either. NETNS_RATE_MBIT, NETNS_RTT_MS: the current
# shaping (netns_shape never changes the caller's RATE_MBIT, RTT_MS).
# Sets NETNS_ID, NETNS_ROUTER, NETNS_SERVER (netns names), NETNS_HOST_IP,
# NETNS_SERVER_IP, NETNS_REGISTRY (IP:5000), NETNS_HOSTS_DIR (containerd
# hosts.toml dir saying http:// for the registry), NETNS_DIR.
#
# netns_setup DIR [RATE_MBIT] [RTT_MS]
# netns_shape RATE_MBIT RTT_MS      (re)apply shaping
# netns_registry_start DIR          docker-registry in the server netns, access
#                                   log in DIR/access.log; waits (bounded)
# netns_registry_stop
# netns_tx_bytes                    bytes the router sent towards the host
#                                   (IP packets: payload + TCP/IP headers)
# netns_registry_log_bytes          response body bytes in the access log
# netns_blob_get_seconds DIGEST_PATH  time of one GET of a registry path
# netns_teardown                    stops everything, deletes the namespaces
#                                   and the host veth (idempotent)

NETNS_LOCK=${NETNS_LOCK:-/run/ocix-bench-netns.lock}

_netns_nfq_py() {
  cat <<'PY'
#!/usr/bin/env python3
# Holds every packet of one NFQUEUE queue for DELAY_MS, then accepts it.
# Raw nfnetlink_queue, no library: bind, copy mode META (no payload copy),
# F_GSO (no segmentation for us), then FIFO batch verdicts.
# Usage: nfq_delay.py QUEUE_NUM DELAY_MS READY_FILE
import collections, os, select, signal, socket, struct, sys, time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
MSG_PACKET, MSG_VERDICT, MSG_CONFIG, MSG_VERDICT_BATCH = 0, 1, 2, 3
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
SOL_NETLINK, NETLINK_NO_ENOBUFS = 270, 5
SO_RCVBUFFORCE = 33
NF_ACCEPT = 1

qnum, delay = int(sys.argv[1]), float(sys.argv[2]) / 1000.0
ready_file = sys.argv[3]
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
sock.bind((0, 0))
seq = 0


def attr(t, data):
    n = 4 + len(data)
    return struct.pack("=HH", n, t) + data + b"\0" * ((4 - n % 4) % 4)


def msg(mtype, attrs, flags=NLM_F_REQUEST, family=socket.AF_UNSPEC):
    global seq
    seq += 1
    body = struct.pack("!BBH", family, 0, qnum) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | mtype, flags, seq, 0) + body


def config(attrs):
    sock.send(msg(MSG_CONFIG, attrs, NLM_F_REQUEST | NLM_F_ACK))
    data = sock.recv(65536)
    ln, typ = struct.unpack_from("=IH", data, 0)
    if typ == NLMSG_ERROR:
        err = struct.unpack_from("=i", data, 16)[0]
        if err != 0:
            raise OSError(-err, os.strerror(-err))


config([attr(1, struct.pack("!BxH", 1, 0))])  # NFQA_CFG_CMD: BIND
config([attr(2, struct.pack("!IB", 0, 1))])  # NFQA_CFG_PARAMS: copy META
config([attr(3, struct.pack("!I", 200000))])  # NFQA_CFG_QUEUE_MAXLEN
config([attr(4, struct.pack("!I", 4)), attr(5, struct.pack("!I", 4))])  # MASK, FLAGS: F_GSO

held = collections.deque()  # (due, packet id), in arrival (= id) order
count = 0
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
with open(ready_file, "w") as f:
    f.write("%d\n" % os.getpid())

while running or held:
    now = time.monotonic()
    last = None
    while held and held[0][0] <= now:
        last = held.popleft()[1]
    if last is not None:
        # NFQA_VERDICT_HDR: verdict, id; batch = every id <= this one.
        sock.send(msg(MSG_VERDICT_BATCH, [attr(2, struct.pack("!II", NF_ACCEPT, last))]))
    if not running:
        if held:
            time.sleep(max(0.0, held[0][0] - time.monotonic()))
        continue
    timeout = max(0.0, held[0][0] - now) if held else 0.5
    try:
        r, _, _ = select.select([sock], [], [], timeout)
    except InterruptedError:
        continue
    if not r:
        continue
    try:
        data = sock.recv(1 << 20)
    except (InterruptedError, BlockingIOError):
        continue
    t = time.monotonic() + delay
    off = 0
    while off + 16 <= len(data):
        ln, typ = struct.unpack_from("=IH", data, off)
        if ln < 16:
            break
        if typ == (NFNL_SUBSYS_QUEUE << 8) | MSG_PACKET:
            a = off + 20
            end = off + ln
            while a + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x3FFF == 1:  # NFQA_PACKET_HDR: id, hw_protocol, hook
                    held.append((t, struct.unpack_from("!I", data, a + 4)[0]))
                    count += 1
                    break
                a += (alen + 3) & ~3
        off += (ln + 3) & ~3
print("nfq_delay: %d packets delayed by %.1f ms" % (count, delay * 1000), file=sys.stderr)
PY
}

_netns_in() { # NETNS CMD...
  ip netns exec "$@"
}

netns_setup() {
  local dir=$1
  local rate=${2:-${RATE_MBIT:-100}} rtt=${3:-${RTT_MS:-20}}
  mkdir -p "$dir"
  NETNS_DIR=$(cd "$dir" && pwd)
  local x used
  exec {_netns_lockfd}>"$NETNS_LOCK"
  flock -w 30 "$_netns_lockfd" || { echo "netns_setup: lock $NETNS_LOCK busy" >&2; return 1; }
  used=$(ip -4 -o addr show | awk '{print $4}' | awk -F. '$1 == 10 && $2 == 241 {print $3}' | sort -un)
  for ((x = 1; x < 255; x++)); do
    grep -qx "$x" <<<"$used" || break
    ((x == 254)) && { echo "netns_setup: no free 10.241.X.0/24" >&2; flock -u "$_netns_lockfd"; return 1; }
  done
  NETNS_ID=$x
  NETNS_ROUTER="ocixb-$x-$$-r"
  NETNS_SERVER="ocixb-$x-$$-s"
  NETNS_HOST_IF="obh$x"
  NETNS_HOST_IP="10.241.$x.1"
  NETNS_ROUTER_IP="10.241.$x.2"
  NETNS_SERVER_IP="10.241.$x.6"
  NETNS_REGISTRY="$NETNS_SERVER_IP:5000"
  echo "$NETNS_ROUTER $NETNS_SERVER $NETNS_HOST_IF" >"$NETNS_DIR/names"
  if ! {
    ip netns add "$NETNS_ROUTER" &&
      ip netns add "$NETNS_SERVER" &&
      ip link add "obh$x" type veth peer name "obr$x" netns "$NETNS_ROUTER" &&
      ip addr add "$NETNS_HOST_IP/30" dev "obh$x" &&
      ip link set "obh$x" up &&
      ip -n "$NETNS_ROUTER" link add "obq$x" type veth peer name "obs$x" netns "$NETNS_SERVER" &&
      ip -n "$NETNS_ROUTER" addr add "$NETNS_ROUTER_IP/30" dev "obr$x" &&
      ip -n "$NETNS_ROUTER" addr add "10.241.$x.5/30" dev "obq$x" &&
      ip -n "$NETNS_ROUTER" link set lo up &&
      ip -n "$NETNS_ROUTER" link set "obr$x" up &&
      ip -n "$NETNS_ROUTER" link set "obq$x" up &&
      _netns_in "$NETNS_ROUTER" sysctl -qw net.ipv4.ip_forward=1 &&
      ip -n "$NETNS_SERVER" addr add "$NETNS_SERVER_IP/30" dev "obs$x" &&
      ip -n "$NETNS_SERVER" link set lo up &&
      ip -n "$NETNS_SERVER" link set "obs$x" up &&
      ip -n "$NETNS_SERVER" route add default via "10.241.$x.5" &&
      ip route add "10.241.$x.4/30" via "$NETNS_ROUTER_IP" dev "obh$x"
  }; then
    flock -u "$_netns_lockfd"
    echo "netns_setup: could not build the namespaces" >&2
    netns_teardown
    return 1
  fi
  flock -u "$_netns_lockfd"
  exec {_netns_lockfd}>&-

  NETNS_HOSTS_DIR="$NETNS_DIR/hosts.d"
  mkdir -p "$NETNS_HOSTS_DIR/$NETNS_REGISTRY"
  cat >"$NETNS_HOSTS_DIR/$NETNS_REGISTRY/hosts.toml" <<TOML
server = "http://$NETNS_REGISTRY"

[host."http://$NETNS_REGISTRY"]
  capabilities = ["pull", "resolve", "push"]
TOML
  _netns_nfq_py >"$NETNS_DIR/nfq_delay.py"
  export NETNS_ID NETNS_ROUTER NETNS_SERVER NETNS_HOST_IP NETNS_SERVER_IP NETNS_REGISTRY NETNS_HOSTS_DIR NETNS_DIR
  netns_shape "$rate" "$rtt" || { netns_teardown; return 1; }
}

_netns_has_netem() {
  [[ ${NETNS_FORCE_NFQUEUE:-1} == 0 ]] || return 1
  tc qdisc add dev "$NETNS_HOST_IF" root netem delay 1ms 2>/dev/null || return 1
  tc qdisc del dev "$NETNS_HOST_IF" root 2>/dev/null
  return 0
}

_netns_stop_delay() {
  if [[ -n ${NETNS_DELAY_PID:-} ]]; then
    # Rule first: packets still held are released (accepted) before it exits.
    _netns_in "$NETNS_ROUTER" iptables-legacy -w 5 -F FORWARD 2>/dev/null || true
    kill "$NETNS_DELAY_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do
      kill -0 "$NETNS_DELAY_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$NETNS_DELAY_PID" 2>/dev/null || true
    wait "$NETNS_DELAY_PID" 2>/dev/null || true
    NETNS_DELAY_PID=
  fi
  _netns_in "$NETNS_ROUTER" iptables-legacy -w 5 -F FORWARD 2>/dev/null || true
}

netns_shape() {
  local rate=$1 rtt=$2 x=$NETNS_ID dev
  NETNS_RATE_MBIT=$rate
  NETNS_RTT_MS=$rtt
  export NETNS_RATE_MBIT NETNS_RTT_MS
  # Rate: tbf on both of the router's egress interfaces. Burst: 64 KiB or
  # 1 ms of the rate (a GSO packet must fit); queue: twice the bandwidth-
  # delay product, at least 256 KiB.
  for dev in "obr$x" "obq$x"; do
    _netns_in "$NETNS_ROUTER" tc qdisc del dev "$dev" root 2>/dev/null || true
    if [[ $rate != 0 ]]; then
      local bps=$((rate * 125000))
      local burst=$((bps / 1000 > 65536 ? bps / 1000 : 65536))
      local limit=$((bps * (rtt > 5 ? rtt : 5) * 2 / 1000))
      ((limit < 262144)) && limit=262144
      _netns_in "$NETNS_ROUTER" tc qdisc add dev "$dev" root tbf rate "${rate}mbit" burst "$burst" limit "$limit" ||
        { echo "netns_shape: tbf on $dev failed" >&2; return 1; }
    fi
  done
  _netns_stop_delay
  [[ $rtt == 0 ]] && return 0
  local half
  half=$(awk -v r="$rtt" 'BEGIN { printf "%.3f", r / 2 }')
  if _netns_has_netem; then
    for dev in "obr$x" "obq$x"; do
      _netns_in "$NETNS_ROUTER" tc qdisc del dev "$dev" root 2>/dev/null || true
      local rate_args=()
      [[ $rate != 0 ]] && rate_args=(rate "${rate}mbit")
      _netns_in "$NETNS_ROUTER" tc qdisc add dev "$dev" root netem delay "${half}ms" "${rate_args[@]}" limit 100000 ||
        return 1
    done
    return 0
  fi
  command -v iptables-legacy >/dev/null || { echo "netns_shape: no netem and no iptables-legacy for the NFQUEUE delay" >&2; return 1; }
  rm -f "$NETNS_DIR/nfq.ready"
  ip netns exec "$NETNS_ROUTER" "${NETNS_PYTHON:-/usr/bin/python3}" "$NETNS_DIR/nfq_delay.py" 0 "$half" "$NETNS_DIR/nfq.ready" \
    >>"$NETNS_DIR/nfq_delay.log" 2>&1 &
  NETNS_DELAY_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $NETNS_DIR/nfq.ready ]] && break
    kill -0 "$NETNS_DELAY_PID" 2>/dev/null || break
    sleep 0.05
  done
  [[ -s $NETNS_DIR/nfq.ready ]] || { echo "netns_shape: delay program did not start:" >&2; cat "$NETNS_DIR/nfq_delay.log" >&2; return 1; }
  # Every forwarded packet, both directions, goes through queue 0. Without a
  # listener the kernel would drop them: the program is up first.
  _netns_in "$NETNS_ROUTER" iptables-legacy -w 5 -A FORWARD -j NFQUEUE --queue-num 0 ||
    { echo "netns_shape: iptables NFQUEUE rule failed" >&2; return 1; }
}

netns_registry_start() {
  local dir=$1 bin=${REGISTRY_BIN:-/usr/bin/docker-registry}
  mkdir -p "$dir/data"
  NETNS_REGISTRY_DIR=$(cd "$dir" && pwd)
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $NETNS_REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $NETNS_REGISTRY
  secret: ocix-bench-secret
YAML
  # ip netns exec execs (not a shell function, which would fork): $! is the registry.
  ip netns exec "$NETNS_SERVER" "$bin" serve "$dir/config.yml" >>"$dir/access.log" 2>>"$dir/registry.log" &
  NETNS_REGISTRY_PID=$!
  local i code
  for ((i = 0; i < 100; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$NETNS_REGISTRY/v2/" 2>/dev/null || true)
    [[ $code == 200 ]] && return 0
    kill -0 "$NETNS_REGISTRY_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "netns_registry_start: no answer from http://$NETNS_REGISTRY/v2/; log:" >&2
  cat "$dir/registry.log" >&2
  netns_registry_stop
  return 1
}

netns_registry_stop() {
  local pid=${NETNS_REGISTRY_PID:-} i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  NETNS_REGISTRY_PID=
  return 0
}

netns_tx_bytes() {
  _netns_in "$NETNS_ROUTER" cat "/sys/class/net/obr$NETNS_ID/statistics/tx_bytes"
}

# Sum of the response sizes of the combined-format access log
# (`"GET /v2/... HTTP/1.1" 206 1234 ...`); HEAD requests have none.
netns_registry_log_bytes() {
  awk '$0 ~ /"(GET|HEAD) \/v2\// { for (i = 1; i < NF; i++) if ($i ~ /HTTP\/[0-9.]+"$/) { if ($(i+2) ~ /^[0-9]+$/) s += $(i+2); break } } END { printf "%.0f\n", s }' \
    "$NETNS_REGISTRY_DIR/access.log"
}

netns_get_seconds() { # PATH (below http://REGISTRY): prints seconds for one GET
  curl -fsS -o /dev/null -w '%{time_total}\n' --max-time 600 "http://$NETNS_REGISTRY$1"
}

netns_teardown() {
  netns_registry_stop || true
  if [[ -n ${NETNS_ROUTER:-} ]]; then
    _netns_stop_delay || true
    # Only processes inside our own namespaces (all started here).
    ip netns pids "$NETNS_SERVER" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns pids "$NETNS_ROUTER" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$NETNS_SERVER" 2>/dev/null || true
    ip netns del "$NETNS_ROUTER" 2>/dev/null || true
  fi
  # Deleting the router netns destroys the pair; in case it did not:
  if [[ -n ${NETNS_HOST_IF:-} ]]; then ip link del "$NETNS_HOST_IF" 2>/dev/null || true; fi
  NETNS_ROUTER='' NETNS_SERVER='' NETNS_HOST_IF=''
  return 0
}
