#!/usr/bin/env bash
# Builds the three-layer OCI test image used by manifest_umoci_test.sh.
# Usage: build_test_image.sh OUT_LAYOUT TAG        (as root: mknod, chown)
#
# Layer 1 is written by umoci itself (new + unpack + populate + repack), so it
# has umoci's quirks: Go archive/tar output (no padding to a 10 KiB record),
# mtimes rounded to the nearest second, a "." entry for the root, hardlinks
# pointing at the first name in lexical walk order.
# Layer 2 is a hand-made GNU tar (PAX, sparse, xattrs) added verbatim with
# `umoci raw add-layer`; it carries the whiteouts, the opaque dir, the
# replacements, nanosecond mtimes and a real sparse file. Layer 3 is a tiny
# python tarfile archive without the end-of-archive zero blocks.
#
# Facts the tests rely on (keep in sync with manifest_umoci_test.sh):
#   /sparse       8 MiB, data regions [0,4096) and [5 MiB, 5 MiB+4096)
#   deleted       /etc/gone /olddir /c3/one /h4 and everything under /olddir
#   /opq          contains only /opq/new after layer 2
#   /xattr-cleared  dir re-specified in layer 2 (0711, no xattrs)
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 OUT_LAYOUT TAG" >&2
  exit 2
fi
out=$1
tag=$2

work="$(mktemp -d "${TMPDIR:-/tmp}/ocix-testimg.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT

# Fixed times so the image (and so every manifest) is reproducible.
T1=1600000000                # default for layer 1
T2=1650000000.987654321      # default for layer 2 (nanoseconds survive: PAX)

# ---------------------------------------------------------------- layer 1
[[ -f $out/index.json ]] || umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci unpack --image "$out:$tag" "$work/bundle" >/dev/null
r="$work/bundle/rootfs"

mkdir -p "$r"/{bin,etc,dev,run,tmp,srv/shared,home/user,owner,sym,emptydir} \
  "$r"/{aa,zz1,c3,x4,r5,olddir/sub/deeper,opq/s,dir2file/x,utf8,times,xattr-dir,xattr-cleared}

# Plain files, owners and special permission bits.
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\n' >"$r/etc/group"
printf 'old motd\n' >"$r/etc/motd"        # replaced in layer 2
printf 'doomed\n' >"$r/etc/gone"          # whited out in layer 2
printf 'keep\n' >"$r/etc/keep"
: >"$r/empty"
printf '#!/bin/sh\necho suid\n' >"$r/bin/suid" && chmod 4755 "$r/bin/suid"
printf '#!/bin/sh\necho sgid\n' >"$r/bin/sgid" && chmod 2755 "$r/bin/sgid"
printf '#!/bin/sh\necho both\n' >"$r/bin/suid-sgid"
chown 0:1000 "$r/bin/suid-sgid" && chmod 6750 "$r/bin/suid-sgid"
chmod 1777 "$r/tmp"
chown 1000:1000 "$r/srv/shared" && chmod 2775 "$r/srv/shared"
chown 1000:1000 "$r/home/user" && chmod 0750 "$r/home/user"
printf 'export PS1=$\n' >"$r/home/user/.profile"
printf 'secret\n' >"$r/home/user/private" && chmod 0600 "$r/home/user/private"
chown 1000:1000 "$r/home/user/.profile" "$r/home/user/private"
printf 'nobody\n' >"$r/owner/nobody" && chown 65534:65534 "$r/owner/nobody"
printf 'mixed\n' >"$r/owner/mixed" && chown 1000:2000 "$r/owner/mixed" && chmod 0604 "$r/owner/mixed"
printf 'all\n' >"$r/owner/all-perms" && chmod 0777 "$r/owner/all-perms"
printf 'none\n' >"$r/owner/no-perms" && chmod 0000 "$r/owner/no-perms"

# Device nodes and a fifo. 240:65536 has a minor that needs more than 8 bits.
mknod -m 0666 "$r/dev/null" c 1 3
mknod -m 0660 "$r/dev/loop0" b 7 0 && chown 0:6 "$r/dev/loop0"
mknod -m 0600 "$r/dev/big" c 240 65536
mkfifo -m 0620 "$r/run/ctl.fifo"

# Symlinks: relative, absolute, dangling, to a dir, >100 byte target (PAX
# linkpath), owned by a user (lchown), and one that layer 2 turns into a dir.
ln -s ../etc/passwd "$r/sym/rel"
ln -s /etc/passwd "$r/sym/abs"
ln -s /nonexistent/target "$r/sym/dangling"
ln -s ../etc "$r/sym/dir"
ln -s "/$(printf 'long-target-%03d/' {1..9})end" "$r/sym/long"
ln -s ../etc/keep "$r/sym/owned" && chown -h 1000:1000 "$r/sym/owned"
ln -s etc "$r/link2dir"
printf 'was a file\n' >"$r/file2dir"                  # becomes a dir
printf 'child\n' >"$r/dir2file/x/child"              # dir becomes a file

# Hardlinks. umoci archives the first name in lexical walk order as the
# regular file and later names as links to it.
#  /hl1 <- /zz1/longer-name: first in tar is also canonically first.
printf 'pair one\n' >"$r/hl1" && ln "$r/hl1" "$r/zz1/longer-name"
#  /aa/longer-name <- /hl2: first in tar ("aa/...") sorts second canonically.
printf 'pair two\n' >"$r/aa/longer-name" && ln "$r/aa/longer-name" "$r/hl2"
#  /c3/one <- /c3/two, /t3: layer 2 deletes the tar primary /c3/one.
printf 'group three\n' >"$r/c3/one" && ln "$r/c3/one" "$r/c3/two" && ln "$r/c3/one" "$r/t3"
#  /h4 <- /x4/aaa, /x4/bbb: layer 2 deletes /h4, so /x4/aaa becomes primary.
printf 'group four\n' >"$r/h4" && ln "$r/h4" "$r/x4/aaa" && ln "$r/h4" "$r/x4/bbb"
#  /r5/a <- /r5/b: layer 2 replaces /r5/b with a new file, splitting the pair.
printf 'group five\n' >"$r/r5/a" && ln "$r/r5/a" "$r/r5/b"
#  /olddir/sub/hl <- /keep-outside: layer 2 deletes /olddir; the other name stays.
printf 'outlives\n' >"$r/keep-outside" && ln "$r/keep-outside" "$r/olddir/sub/hl"
#  hardlinked file with xattrs and setuid: attributes belong to the inode.
printf 'linked suid\n' >"$r/bin/linked" && chmod 4711 "$r/bin/linked" && ln "$r/bin/linked" "$r/bin/linked2"

printf 'o\n' >"$r/olddir/sub/deeper/f"
printf 'o1\n' >"$r/opq/o1"
printf 'o2\n' >"$r/opq/s/o2"

# UTF-8 name longer than 100 bytes (135 bytes + .txt): needs a PAX path.
printf 'utf8\n' >"$r/utf8/$(printf '日本語のファイル名%.0s' 1 2 3 4 5).txt"

# Content: >1 MiB of incompressible, reproducible bytes.
python3 -c 'import random,sys; sys.stdout.buffer.write(random.Random(1).randbytes(3*512*1024+7))' >"$r/big"

# xattrs (user.* only: the test must not depend on LSM or trusted.* support),
# including a binary value and one on a directory and on a hardlinked inode.
printf 'x\n' >"$r/xattr-file"
python3 - "$r" <<'PY'
import os, sys
r = sys.argv[1]
os.setxattr(f"{r}/xattr-file", "user.foo", b"bar")
os.setxattr(f"{r}/xattr-file", "user.binary", b"\x00\xff\x01\n")
os.setxattr(f"{r}/xattr-dir", "user.dir", b"on a directory")
os.setxattr(f"{r}/bin/linked", "user.linked", b"1")
os.setxattr(f"{r}/xattr-cleared", "user.old", b"gone after layer 2")
PY

find "$r" -exec touch -h -d "@$T1" {} +
# Special times. umoci's Go archive/tar rounds every mtime to the nearest
# second (.75 goes up); the manifest must use what the tar says.
printf 'r\n' >"$r/times/rounds-up" && touch -h -d @1700000000.75 "$r/times/rounds-up"
printf 'p\n' >"$r/times/pre-epoch" && touch -h -d @-86400 "$r/times/pre-epoch"
printf 'f\n' >"$r/times/y2100" && touch -h -d @4102444800 "$r/times/y2100"
touch -h -d @1234567890 "$r/sym/rel" "$r/hl1" "$r/etc"
touch -h -d "@$T1" "$r/times" "$r"

umoci repack --image "$out:$tag" "$work/bundle"
rm -rf -- "$work/bundle"

# ---------------------------------------------------------------- layer 2
s="$work/l2"
mkdir -p "$s"/{etc,opq,link2dir,file2dir,zz,c3,r5,nsdir,xattr-cleared}
: >"$s/etc/.wh.gone"                              # whiteout a file
: >"$s/.wh.olddir"                                # whiteout a whole dir
: >"$s/c3/.wh.one"                                # whiteout a hardlink primary
: >"$s/.wh.h4"                                    # ... and another one
: >"$s/opq/.wh..wh..opq"                          # opaque: hide layer-1 children
printf 'new in opaque dir\n' >"$s/opq/new"
printf 'new motd, longer than before\n' >"$s/etc/motd"   # replace a file
chown 1000:1000 "$s/etc/motd" && chmod 0600 "$s/etc/motd"
printf 'inner\n' >"$s/link2dir/inner"             # dir replaces a symlink
printf 'inner\n' >"$s/file2dir/inner"             # dir replaces a file
printf 'now a file\n' >"$s/dir2file" && chmod 0640 "$s/dir2file"   # file replaces a dir
printf 'replaced\n' >"$s/r5/b"                    # breaks the /r5 hardlink pair
printf 'pair zz\n' >"$s/zz/longer-name" && ln "$s/zz/longer-name" "$s/a"
ln -s etc/motd "$s/newsym"
printf 'ns\n' >"$s/nsdir/f"
chmod 0750 "$s/opq"
chmod 0711 "$s/xattr-cleared"                     # dir over dir: xattrs replaced too
python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.opq", b"layer2")' "$s/opq"

# A real sparse file: 8 MiB with 4 KiB of data at 0 and at 5 MiB. tar only
# writes a sparse entry when the file on disk has holes, so create the holes.
truncate -s 8M "$s/sparse"
python3 - "$s/sparse" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, b"A" * 4096, 0)
os.pwrite(fd, b"B" * 4096, 5 * 1024 * 1024)
os.close(fd)
PY

find "$s" -exec touch -h -d "@$T2" {} +
touch -h -d @1650000000.000000001 "$s/nsdir"
touch -h -d @1650000001.5 "$s/newsym"

# Archive order is explicit: zz/longer-name must precede its hardlink "a"
# (first in tar, second canonically); the opaque marker comes after the new
# file in the same dir (it still only hides lower layers: OCI layer.md); the
# etc/, c3/, r5/ dir entries are left out on purpose so those dirs keep their
# layer-1 metadata.
list=(
  zz/ zz/longer-name a
  .wh.h4 .wh.olddir
  c3/.wh.one
  dir2file
  etc/.wh.gone etc/motd
  file2dir/ file2dir/inner
  link2dir/ link2dir/inner
  newsym
  nsdir/ nsdir/f
  opq/ opq/new opq/.wh..wh..opq
  r5/b
  sparse
  xattr-cleared/
)
# delete=atime,ctime and a PID-free exthdr name keep the archive reproducible.
(cd "$s" && tar --create --file="$work/layer2.tar" --format=posix --sparse \
  --xattrs --numeric-owner --no-recursion \
  --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
  -- "${list[@]}")

# GNU tar names the ustar header of a PAX 1.0 sparse member
# "GNUSparseFile.<pid>/..." (readers use GNU.sparse.name instead); pin it so
# the layer is byte-for-byte reproducible, and check the entry is sparse.
python3 - "$work/layer2.tar" <<'PY'
import re, sys, tarfile
path = sys.argv[1]
buf = bytearray(open(path, "rb").read())
for m in re.finditer(rb"GNUSparseFile\.[0-9]+/", bytes(buf)):
    hdr = m.start() - m.start() % 512
    if m.start() - hdr >= 100:          # only the name field, never data
        continue
    name = bytes(buf[hdr:hdr + 100]).rstrip(b"\0")
    name = re.sub(rb"GNUSparseFile\.[0-9]+/", b"GNUSparseFile.0/", name)
    buf[hdr:hdr + 100] = name.ljust(100, b"\0")
    buf[hdr + 148:hdr + 156] = b" " * 8
    buf[hdr + 148:hdr + 156] = b"%06o\0 " % sum(buf[hdr:hdr + 512])
open(path, "wb").write(buf)
with tarfile.open(path) as t:
    m = t.getmember("sparse")
    want = [(0, 4096), (5 * 1024 * 1024, 4096)]
    got = [r for r in (m.sparse or []) if r[1]]
    if got != want:
        sys.exit(f"build_test_image: /sparse is not stored sparse as expected: {m.sparse}")
PY

umoci raw add-layer --image "$out:$tag" --history.created_by="ocix build_test_image layer 2" \
  "$work/layer2.tar"

# ---------------------------------------------------------------- layer 3
# umoci 0.4.7 ends its tars with the two zero blocks after all, so a layer
# that stops right after its last member (legal: readers must accept EOF
# there) is made here with python's tarfile and cut short.
python3 - "$work/layer3.tar" <<'PY'
import io, sys, tarfile
path = sys.argv[1]
with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
    d = tarfile.TarInfo("layer3")
    d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1660000000
    t.addfile(d)
    data = b"no end-of-archive blocks follow\n"
    f = tarfile.TarInfo("layer3/no-eof")
    f.size, f.mode, f.mtime = len(data), 0o644, 1660000000
    t.addfile(f, io.BytesIO(data))
with tarfile.open(path) as t:
    last = t.getmembers()[-1]
end = last.offset_data + (last.size + 511) // 512 * 512
with open(path, "r+b") as f:
    f.truncate(end)
PY
umoci raw add-layer --image "$out:$tag" --history.created_by="ocix build_test_image layer 3" \
  "$work/layer3.tar"
