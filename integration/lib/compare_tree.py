#!/usr/bin/env python3
"""Compare `ocix inspect --json` output with a tree unpacked by `umoci unpack`.

Usage: compare_tree.py MANIFEST_JSON ROOTFS_DIR

Every path must exist on both sides with the same type, permission bits,
owner, mtime (sec + nsec), size, BLAKE3, symlink target, device numbers and
xattrs; hardlink groups (paths sharing an inode) must match the manifest's
file + hardlink entries, with the canonically first name as the primary.
Prints `compare: N paths OK`, or up to 50 mismatches and exits 1.
"""

import json
import os
import stat
import subprocess
import sys

MAX_SHOWN = 50
B3_BATCH = 256  # paths per b3sum process: few processes, short command lines

# xattrs that say something about the host, not the image. umoci (as root)
# neither adds nor drops any others: user.*, trusted.* and security.capability
# all round-trip through repack/unpack unchanged.
IGNORED_XATTRS = {"security.selinux"}

TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",  # tar cannot carry these; always a mismatch
}


def canon_key(path):
    """Canonical manifest order: shorter path first, then bytewise."""
    b = os.fsencode(path)
    return (len(b), b)


def walk(root):
    """Yield (manifest path, lstat) for everything under root, root included."""
    yield "/", os.lstat(root)
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in it:
                sub = f"{rel}/{e.name}" if rel else e.name
                st = e.stat(follow_symlinks=False)
                yield "/" + sub, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(sub)


def b3sums(files):
    """BLAKE3 of each path, with one b3sum process per batch of paths."""
    out = {}
    for i in range(0, len(files), B3_BATCH):
        batch = files[i:i + B3_BATCH]
        res = subprocess.run(["b3sum", "--no-names", "--", *batch],
                             check=True, stdout=subprocess.PIPE)
        sums = res.stdout.decode().split()
        if len(sums) != len(batch):
            raise RuntimeError("b3sum returned a different number of lines")
        out.update(zip(batch, sums))
    return out


def zeros_outside(path, regions, size):
    """True if the file reads as zeros everywhere outside the data regions."""
    holes, pos = [], 0
    for off, length in sorted(regions):
        if off > pos:
            holes.append((pos, off))
        pos = max(pos, off + length)
    if pos < size:
        holes.append((pos, size))
    with open(path, "rb") as f:
        for start, end in holes:
            f.seek(start)
            left = end - start
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk or chunk.count(0) != len(chunk):
                    return False
                left -= len(chunk)
    return True


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    manifest_file, root = sys.argv[1], sys.argv[2]
    with open(manifest_file, encoding="utf-8") as f:
        manifest = json.load(f)

    errors = []

    def err(path, msg):
        errors.append(f"{path}: {msg}")

    if manifest.get("version") != 1:
        err("<manifest>", f"version is {manifest.get('version')!r}, want 1")
    if manifest.get("layer") is not False:
        err("<manifest>", f"layer is {manifest.get('layer')!r}, want false")

    entries = manifest.get("entries", [])
    paths = [e.get("path") for e in entries]
    keys = [canon_key(p) for p in paths]
    if keys != sorted(keys):
        bad = next(i for i in range(1, len(keys)) if keys[i] < keys[i - 1])
        err(paths[bad], f"out of canonical order (after {paths[bad - 1]})")
    if len(set(paths)) != len(paths):
        err("<manifest>", "duplicate paths")
    man = {e["path"]: e for e in entries}

    tree = {}
    for path, st in walk(root):
        tree[path] = st
    if "/" not in man:
        del tree["/"]  # a flattened manifest may omit the root

    def fs(path):
        return os.path.join(root, path.lstrip("/")) if path != "/" else root

    for p in sorted(set(man) - set(tree), key=canon_key):
        err(p, f"in manifest ({man[p].get('type')}) but not in the unpacked tree")
    for p in sorted(set(tree) - set(man), key=canon_key):
        err(p, f"in the unpacked tree ({TYPES.get(stat.S_IFMT(tree[p].st_mode))}) "
               "but not in the manifest")

    # Hardlink groups on disk: non-directories sharing an inode.
    inodes = {}
    for p, st in tree.items():
        if not stat.S_ISDIR(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(p)
    tree_groups = {frozenset(g) for g in inodes.values() if len(g) > 1}

    # Hardlink groups in the manifest: the file entry plus its hardlinks.
    man_groups = {}
    for p, e in man.items():
        if e.get("type") != "hardlink":
            continue
        link = e.get("link")
        target = man.get(link)
        if target is None:
            err(p, f"hardlink to {link!r}, which is not in the manifest")
        elif target.get("type") != "file":
            err(p, f"hardlink to {link!r}, which is a {target.get('type')}, not a file")
        elif canon_key(link) > canon_key(p):
            err(p, f"hardlink to {link!r}, but {p!r} sorts first and should be the primary")
        man_groups.setdefault(link, {link}).add(p)
        for key in ("mode", "uid", "gid", "mtime", "size", "b3", "data", "target", "rdev"):
            if key in e:
                err(p, f"hardlink entry has {key!r}")
    man_group_set = {frozenset(g) for g in man_groups.values()}
    for g in sorted(tree_groups - man_group_set, key=lambda g: min(map(canon_key, g))):
        err(min(g, key=canon_key),
            "hardlinked on disk as " + ", ".join(sorted(g, key=canon_key))
            + " but the manifest does not group exactly these names")
    for g in sorted(man_group_set - tree_groups, key=lambda g: min(map(canon_key, g))):
        err(min(g, key=canon_key),
            "manifest hardlink group " + ", ".join(sorted(g, key=canon_key))
            + " is not one inode on disk")

    # Content hashes: one per inode, computed in batches.
    files = sorted({fs(p) for p, e in man.items()
                    if e.get("type") == "file" and p in tree
                    and stat.S_ISREG(tree[p].st_mode)})
    sums = b3sums(files)

    checked = 0
    for p in sorted(set(man) & set(tree), key=canon_key):
        e, st = man[p], tree[p]
        checked += 1
        want = e.get("type")
        have = TYPES.get(stat.S_IFMT(st.st_mode), "unknown")
        if want == "hardlink":
            if have != "file":
                err(p, f"manifest says hardlink, tree has a {have}")
            continue  # attributes belong to the primary, checked there
        if want in ("whiteout",) or e.get("opaque"):
            err(p, f"{want}/opaque entry in a flattened manifest")
            continue
        if want != have:
            err(p, f"type: manifest {want}, tree {have}")
            continue

        # Linux has no lchmod: a symlink's permission bits are always 0777 on
        # disk whatever the tar said, so they cannot be compared.
        if want != "symlink" and e.get("mode") != stat.S_IMODE(st.st_mode):
            err(p, f"mode: manifest {oct(e['mode']) if 'mode' in e else None}, "
                   f"tree {oct(stat.S_IMODE(st.st_mode))}")
        for key, val in (("uid", st.st_uid), ("gid", st.st_gid)):
            if e.get(key) != val:
                err(p, f"{key}: manifest {e.get(key)}, tree {val}")

        # umoci restores every mtime, symlinks (lutimes) and directories
        # included: it re-applies a directory's time after unpacking into it
        # or deleting from it. Nanoseconds survive whenever the tar had them
        # (PAX); divmod keeps nsec in [0, 1e9) for pre-1970 times, as a
        # timespec does. The one thing umoci cannot reproduce is a parent dir
        # that no layer has an entry for: it makes it 0755 root with the
        # current time and leaves the grandparent's mtime changed, so images
        # compared here must have an entry for every directory.
        sec, nsec = divmod(st.st_mtime_ns, 1_000_000_000)
        mt = e.get("mtime")
        if not isinstance(mt, dict) or mt.get("sec") != sec or mt.get("nsec", 0) != nsec:
            err(p, f"mtime: manifest {mt}, tree {{'sec': {sec}, 'nsec': {nsec}}}")

        if want == "file":
            if e.get("size") != st.st_size:
                err(p, f"size: manifest {e.get('size')}, tree {st.st_size}")
            if e.get("b3") != sums.get(fs(p)):
                err(p, f"b3: manifest {e.get('b3')}, tree {sums.get(fs(p))}")
            if "data" in e:
                # umoci writes sparse files out densely, so only the claim
                # "everything outside these regions is zero" can be checked.
                regions = e["data"]
                ok = all(isinstance(r, list) and len(r) == 2 for r in regions)
                ok = ok and all(0 <= o and 0 <= n and o + n <= st.st_size
                                for o, n in regions)
                ok = ok and all(a[0] + a[1] <= b[0] for a, b in zip(regions, regions[1:]))
                if not ok:
                    err(p, f"data regions malformed or out of range: {regions}")
                elif not zeros_outside(fs(p), regions, st.st_size):
                    err(p, f"non-zero bytes outside data regions {regions}")
        elif "size" in e or "b3" in e or "data" in e:
            err(p, "size/b3/data on a non-file entry")

        if want == "symlink":
            target = os.fsdecode(os.readlink(fs(p)))
            if e.get("target") != target:
                err(p, f"target: manifest {e.get('target')!r}, tree {target!r}")
        elif "target" in e:
            err(p, "target on a non-symlink entry")

        if want in ("char", "block"):
            rdev = [os.major(st.st_rdev), os.minor(st.st_rdev)]
            if e.get("rdev") != rdev:
                err(p, f"rdev: manifest {e.get('rdev')}, tree {rdev}")
        elif "rdev" in e:
            err(p, "rdev on a non-device entry")

        xattrs = {}
        for name in os.listxattr(fs(p), follow_symlinks=False):
            if name not in IGNORED_XATTRS:
                xattrs[name] = os.getxattr(fs(p), name, follow_symlinks=False).hex()
        mx = {k: v.lower() for k, v in (e.get("xattrs") or {}).items()
              if k not in IGNORED_XATTRS}
        if mx != xattrs:
            err(p, f"xattrs: manifest {mx}, tree {xattrs}")

    if errors:
        for line in errors[:MAX_SHOWN]:
            print(line)
        if len(errors) > MAX_SHOWN:
            print(f"... and {len(errors) - MAX_SHOWN} more")
        print(f"compare: {len(errors)} mismatches ({checked} paths on both sides, "
              f"{len(man)} in manifest, {len(tree)} in tree)")
        return 1
    print(f"compare: {checked} paths OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
