#!/usr/bin/env bash
# Builds a tiny OCI image around busybox-static whose runtime config runs
# /bin/sh. Used by scripts/demo.sh.
# Usage: busybox_image.sh OUT_LAYOUT TAG     (as root: umoci unpack/repack)
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 OUT_LAYOUT TAG" >&2
  exit 2
fi
out=$1
tag=$2

busybox=${BUSYBOX:-/bin/busybox}
# A dynamic busybox would need the host's libc inside the image.
ldd_out="$(ldd "$busybox" 2>&1 || :)"   # ldd exits 1 for static binaries
if [[ ! -x $busybox || $ldd_out != *"not a dynamic executable"* ]]; then
  echo "busybox_image: $busybox is not a static busybox (apt-get install busybox-static)" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/ocix-busybox.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT

[[ -f $out/index.json ]] || umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci unpack --image "$out:$tag" "$work/bundle" >/dev/null
r="$work/bundle/rootfs"

mkdir -p "$r/bin" "$r/etc" "$r/root" "$r/tmp"
chmod 0700 "$r/root"
chmod 1777 "$r/tmp"
install -m 0755 "$busybox" "$r/bin/busybox"
for applet in sh ls cat echo; do
  ln -s busybox "$r/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"

# Fixed times, so the layer only changes when busybox does.
find "$r" -exec touch -h -d @1700000000 {} +

umoci repack --image "$out:$tag" "$work/bundle"
umoci config --image "$out:$tag" --config.cmd /bin/sh \
  --config.env PATH=/bin --config.workingdir /
