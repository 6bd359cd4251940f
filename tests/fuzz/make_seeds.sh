#!/usr/bin/env bash
# Regenerates the seed corpora from small hand-made trees. Run once when the
# formats change; the outputs are committed (past crash inputs are kept too).
# Usage: tests/fuzz/make_seeds.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ocix=$(realpath "${1:-build}")/cli/ocix
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# A small tree with every type the manifest describes.
mkdir -p t/dir/sub t/opq
echo hello > t/dir/file
ln t/dir/file t/a
ln -s dir/file t/sym
mkfifo t/fifo
mknod t/chr c 1 3 2>/dev/null || true
truncate -s 1M t/sparse && echo data | dd of=t/sparse bs=1 seek=65536 conv=notrunc status=none
setfattr -n user.k -v v t/dir/file 2>/dev/null || true
chmod 4755 t/dir/file
touch -h -d @1600000000.5 t/sym t/dir t/dir/file t/a
tar_opts=(--format=posix --sparse --xattrs --numeric-owner --sort=name --mtime=@1600000000 -C t)
tar -cf l1.tar "${tar_opts[@]}" .
mkdir w && touch w/.wh.fifo && mkdir w/opq && touch w/opq/.wh..wh..opq w/dir/.wh.sub 2>/dev/null || { mkdir -p w/dir && touch w/dir/.wh.sub; }
tar -cf l2.tar --format=posix --sort=name --mtime=@1600000000 -C w .
head -c -1024 l1.tar > l1-noeof.tar   # as umoci 0.4.7 writes them
gzip -9n < l1.tar > l1.tar.gz
zstd -q -19 < l1.tar > l1.tar.zst
out="$here/corpus/layer_apply"
mkdir -p "$out"
for f in l1.tar l2.tar l1-noeof.tar l1.tar.gz l1.tar.zst; do cp "$f" "$out/seed-$f"; done

# Manifests of both versions, through an OCI layout made with umoci.
umoci init --layout img >/dev/null
umoci new --image img:t >/dev/null
umoci raw add-layer --image img:t l1.tar >/dev/null
umoci raw add-layer --image img:t l2.tar >/dev/null
out="$here/corpus/manifest_decode"
mkdir -p "$out"
"$ocix" manifest img:t "$out/seed-v1.ocix"
"$ocix" manifest --format-version 0 img:t "$out/seed-v0.ocix"

out="$here/corpus/rfc3339_parse"
mkdir -p "$out"
printf '%s' "2021-03-04T05:06:07.123456789Z" > "$out/seed-nano"
printf '%s' "1969-12-31T23:59:59-08:00" > "$out/seed-offset"
printf '%s' "0000-01-01T00:00:00Z" > "$out/seed-min"
printf '%s' "9999-12-31T23:59:59.9+14:00" > "$out/seed-max"
echo "seeds written under $here/corpus"
