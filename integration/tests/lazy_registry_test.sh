#!/usr/bin/env bash
# Lazy mounts from a real registry, measured at the registry's side (a
# counting proxy in front of docker-registry):
#  - the python3 image mounted from the registry equals its original rootfs;
#  - `python3 -c 'import json'` on a mounted python3 image fetches only a
#    small fraction of the layer;
#  - a registry serving a flipped byte: the read fails with EIO, nothing is
#    cached, the corrupt-chunk counter shows it, and the read works once the
#    byte is right again;
#  - the registry unreachable: reads of uncached files fail within the
#    configured bound, cached files keep working, and reads succeed once it is
#    back;
#  - dedup: after image A (minbase) is read completely, image B (python3),
#    which shares A's files, fetches exactly the chunks A did not have.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=SCRIPTDIR/../lib/registry.sh
. "$INTEGRATION_LIB/registry.sh"

need_root "FUSE, overlayfs and chroot need root"
need_cmd mmdebstrap umoci skopeo jq docker-registry chroot curl
[[ -e /dev/fuse ]] || skip "no /dev/fuse"
need_ocix

cd "$TEST_TMP"
export TMPDIR="$TEST_TMP"
state="$TEST_TMP/state"
mkdir -p mnt mntA mntB

umount_all() {
  local m
  for m in mnt mntA mntB; do "$OCIX" umount --state-dir "$state" "$TEST_TMP/$m" 2>/dev/null || true; done
  awk -v d="$TEST_TMP" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
on_exit umount_all

log "images: minbase and python3 (mmdebstrap), pushed and converted"
"$INTEGRATION_LIB/debian_image.sh" "$TEST_TMP/src" minbase >/dev/null
"$INTEGRATION_LIB/debian_image.sh" "$TEST_TMP/src" python3 --include=python3 >/dev/null
registry_start "$TEST_TMP/registry" || fail "registry did not start"
on_exit registry_stop
reg=$REGISTRY_ADDR
for t in minbase python3; do
  skopeo copy --quiet --dest-tls-verify=false "oci:$TEST_TMP/src:$t" "docker://$reg/$t:plain"
  "$OCIX" convert -q "$reg/$t:plain" "$reg/$t:ocix" >/dev/null
done

# The counting proxy; restartable on the same port to play an outage.
proxy_port=$(registry_free_port)
proxy_start() {
  /usr/bin/python3 "$INTEGRATION_LIB/fault_proxy.py" --upstream "$reg" --port "$proxy_port" --lifetime 900 \
    >>proxy.log 2>&1 &
  PROXY_PID=$!
  registry_wait_http "http://127.0.0.1:$proxy_port/v2/" || fail "proxy did not start"
}
proxy_stop() { [[ -n ${PROXY_PID:-} ]] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null; PROXY_PID=; }
proxy_bytes() { curl -fsS "http://127.0.0.1:$proxy_port/__proxy/stats" | jq .bytes_served; }
proxy_start
on_exit proxy_stop
via=127.0.0.1:$proxy_port

layer_of() { # TAG -> digest of the (only) layer
  curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/$1/manifests/ocix" | jq -r '.layers[0].digest'
}
toc_of() { # TAG OUT: the layer's TOC as JSON, read from a downloaded copy
  local d
  d=$(layer_of "$1")
  curl -fsS "http://$reg/v2/$1/blobs/$d" -o "$1.blob"
  "$OCIX" inspect --layer --json "$1.blob" >"$2"
}
toc_of python3 py-toc.json
toc_of minbase mb-toc.json
py_layer_bytes=$(stat -c %s python3.blob)
stats() { "$OCIX" cache stats --json --cache "$1" --state-dir "$state" | jq -r ".$2"; }
wait_prefetch() { # CACHE: until its one live mount has no prefetching left (bounded)
  local i
  for ((i = 0; i < 600; i++)); do
    sleep 0.5
    [[ $(stats "$1" mounts) == 1 && $(stats "$1" prefetch_pending) == 0 ]] && return 0
  done
  fail "prefetch did not finish"
}
wait_gone() { # until no mount state is left (the serving process has exited)
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -z $(find "$state" -mindepth 1 -maxdepth 1 -type d) ]] && return 0
    sleep 0.1
  done
  fail "a serving process did not exit"
}

log "mount python3 lazily (cold cache) and run python3 -c 'import json'"
b0=$(proxy_bytes)
# Read-ahead off: the checks below need files that no read has fetched.
"$OCIX" mount --cache "$TEST_TMP/cache1" --state-dir "$state" --prefetch none --readahead 0 --fetch-attempts 2 \
  --fetch-timeout 2 "$via/python3:ocix" "$TEST_TMP/mnt" >/dev/null
out=$(chroot "$TEST_TMP/mnt" /usr/bin/python3 -c 'import json; print(json.dumps({"lazy": True}))')
[[ $out == '{"lazy": true}' ]] || fail "python3 in the mount said: $out"
b1=$(proxy_bytes)
fetched=$((b1 - b0))
pct=$(awk -v a="$fetched" -v b="$py_layer_bytes" 'BEGIN { printf "%.1f", 100 * a / b }')
log "import json: $fetched bytes from the registry of a $py_layer_bytes-byte layer ($pct%)"
echo "import_json_fetched=$fetched layer=$py_layer_bytes pct=$pct" >>"$TEST_TMP/figures.txt"
((fetched * 5 < py_layer_bytes)) || fail "import json fetched $pct% of the layer"

# Two files nobody has read yet (not part of python's start-up).
read -r victim vdigest voff vsize < <(jq -r '
  (.manifest.entries | map(select(.type == "file" and .size > 20000 and .size < 500000
                                  and (.path | startswith("/usr/share/")))) | .[0]) as $f
  | (.contents[] | select(.b3 == $f.b3) | .chunks[0]) as $c
  | "\($f.path) \($c[2]) \($c[0]) \($c[1])"' py-toc.json)
other=$(jq -r '.manifest.entries | map(select(.type == "file" and .size > 20000 and (.path | startswith("/usr/share/"))))
  | .[1].path' py-toc.json)
log "flip a byte the registry serves for $victim"
py_digest=$(layer_of python3)
store="$TEST_TMP/registry/data/docker/registry/v2/blobs/sha256/${py_digest:7:2}/${py_digest#sha256:}/data"
[[ -f $store ]] || fail "registry blob not found at $store"
flip() {
  /usr/bin/python3 - "$store" $((voff + vsize / 2)) <<'PY'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x40]))
PY
}
flip
if cat "$TEST_TMP/mnt$victim" >/dev/null 2>err.txt; then fail "a corrupt chunk was served"; fi
grep -q "Input/output error" err.txt || fail "expected EIO, got: $(cat err.txt)"
[[ ! -e "$TEST_TMP/cache1/chunks/${vdigest:0:2}/$vdigest" ]] || fail "the corrupt chunk was cached"
sleep 1.2  # stats are published once a second
[[ $(stats "$TEST_TMP/cache1" corrupt_chunks) -ge 1 ]] || fail "corrupt_chunks not counted"
flip  # back to the right byte
want=$(jq -r --arg p "$victim" '.manifest.entries[] | select(.path == $p) | .b3' py-toc.json)
got=$(b3sum --no-names "$TEST_TMP/mnt$victim")
[[ $got == "$want" ]] || fail "after the fix: $victim reads as $got, want $want"

log "the registry becomes unreachable"
proxy_stop
start=$(date +%s.%N)
if cat "$TEST_TMP/mnt$other" >/dev/null 2>err.txt; then fail "read an uncached file with no registry"; fi
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
log "uncached read failed after ${secs}s: $(cat err.txt)"
awk -v s="$secs" 'BEGIN { exit !(s < 30) }' || fail "the failing read took ${secs}s"
chroot "$TEST_TMP/mnt" /usr/bin/python3 -c 'import json' || fail "cached files stopped working"
proxy_start
cat "$TEST_TMP/mnt$other" >/dev/null || fail "the read did not succeed once the registry was back"
"$OCIX" umount --state-dir "$state" "$TEST_TMP/mnt"
wait_gone

log "after a reboot, cached chunks are checked before use (a torn one is fetched again)"
# Chunks are stored without a sync each: a crash may tear one under its
# final name. A new boot id stands for the reboot; flip a byte of a cached one.
cached="$TEST_TMP/cache1/chunks/${vdigest:0:2}/$vdigest"
[[ -f $cached ]] || fail "$victim's chunk is not cached"
chmod u+w "$cached"
/usr/bin/python3 - "$cached" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    b = f.read(1); f.seek(0); f.write(bytes([b[0] ^ 1]))
PY
echo "an-earlier-boot" >"$TEST_TMP/cache1/boot-id"
b0=$(proxy_bytes)
"$OCIX" mount --cache "$TEST_TMP/cache1" --state-dir "$state" --prefetch none --readahead 0 "$via/python3:ocix" \
  "$TEST_TMP/mnt" >/dev/null
[[ -d "$TEST_TMP/cache1/unverified" ]] || fail "the earlier boot's chunks were not set aside"
chroot "$TEST_TMP/mnt" /usr/bin/python3 -c 'import json' || fail "python3 failed after the reboot"
got=$(b3sum --no-names "$TEST_TMP/mnt$victim")
[[ $got == "$want" ]] || fail "after the reboot: $victim reads as $got, want $want"
sleep 1.2
rechecked=$(stats "$TEST_TMP/cache1" rechecked)
corrupt=$(stats "$TEST_TMP/cache1" corrupt_chunks)
refetched=$(stats "$TEST_TMP/cache1" fetched_chunks)
log "rechecked $rechecked cached chunks, $corrupt torn, fetched $refetched chunks ($(($(proxy_bytes) - b0)) bytes with the TOC)"
((rechecked > 10)) || fail "only $rechecked chunks were rechecked"
[[ $corrupt == 1 && $refetched == 1 ]] || fail "expected the torn chunk alone refetched: corrupt=$corrupt fetched=$refetched"
"$OCIX" umount --state-dir "$state" "$TEST_TMP/mnt"
wait_gone

log "dedup: read all of minbase, then all of python3, with one fresh cache (background prefetch of all)"
"$OCIX" mount --cache "$TEST_TMP/cache2" --state-dir "$state" --prefetch all "$via/minbase:ocix" "$TEST_TMP/mntA" >/dev/null
wait_prefetch "$TEST_TMP/cache2"
find "$TEST_TMP/mntA" -type f -print0 | xargs -0 -r cat >/dev/null
sleep 1.2
a_fetched=$(stats "$TEST_TMP/cache2" fetched_bytes)
"$OCIX" umount --state-dir "$state" "$TEST_TMP/mntA"
wait_gone
b0=$(proxy_bytes)
"$OCIX" mount --cache "$TEST_TMP/cache2" --state-dir "$state" --prefetch all "$via/python3:ocix" "$TEST_TMP/mntB" >/dev/null
wait_prefetch "$TEST_TMP/cache2"
find "$TEST_TMP/mntB" -type f -print0 | xargs -0 -r cat >/dev/null
b1=$(proxy_bytes)
sleep 1.2
b_fetched=$(stats "$TEST_TMP/cache2" fetched_bytes)  # this mount's own counters
"$OCIX" cache stats --json --cache "$TEST_TMP/cache2" --state-dir "$state" >b-stats.json
# What B should need: the frames of its chunks whose content A did not have.
expected=$(jq -n --slurpfile a mb-toc.json --slurpfile b py-toc.json '
  ([$a[0].contents[] | .chunks[] | .[2]] | map({(.): true}) | add) as $have
  | [$b[0].contents[] | .chunks[] | select($have[.[2]] | not) | .[1]] | add')
total_b=$(jq '[.contents[] | .chunks[] | .[1]] | add' py-toc.json)
log "B fetched $b_fetched chunk bytes (registry served $((b1 - b0))); chunks A lacked: $expected of $total_b"
echo "dedup_b_fetched=$b_fetched expected=$expected total_b=$total_b registry=$((b1 - b0))" >>"$TEST_TMP/figures.txt"
[[ $b_fetched == "$expected" ]] || fail "B fetched $b_fetched bytes of chunks, expected exactly $expected: $(jq -c . b-stats.json)"
log "the python3 image mounted from the registry equals its original rootfs (every path, every byte)"
"$OCIX" manifest "$TEST_TMP/src:python3" flat.ocix
"$OCIX" inspect --json flat.ocix >flat.json
/usr/bin/python3 "$INTEGRATION_LIB/compare_tree.py" flat.json "$TEST_TMP/mntB" || fail "the mounted python3 tree differs"
cat "$TEST_TMP/figures.txt"
echo "lazy_registry_test: PASS"
