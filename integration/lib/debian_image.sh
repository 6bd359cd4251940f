#!/usr/bin/env bash
# Wraps a Debian bookworm minbase rootfs (mmdebstrap) as a one-layer OCI image.
# Usage: debian_image.sh OUT_LAYOUT TAG [extra mmdebstrap args...]   (as root)
#
# The mmdebstrap tarball is cached for 7 days in $OCIX_TEST_CACHE (default
# /var/cache/ocix-test; set it empty to disable), keyed by the extra args, as
# building it takes a minute or more and needs the network. Without a cache
# it is simply built each time.
set -euo pipefail

if (($# < 2)); then
  echo "usage: $0 OUT_LAYOUT TAG [extra mmdebstrap args...]" >&2
  exit 2
fi
out=$1
tag=$2
shift 2

cache_dir=${OCIX_TEST_CACHE-/var/cache/ocix-test}
name=minbase-bookworm
if (($#)); then
  # Different package sets must not share a cache entry.
  name+="-$(printf '%s\0' "$@" | sha256sum | cut -c1-12)"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/ocix-debian.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT

tarball=
if [[ -n $cache_dir && -f $cache_dir/$name.tar ]] &&
  [[ -n $(find "$cache_dir/$name.tar" -mtime -7 -print) ]]; then
  tarball="$cache_dir/$name.tar"
  echo "debian_image: using cached $tarball" >&2
else
  echo "debian_image: running mmdebstrap --variant=minbase${*:+ $*} bookworm" >&2
  mmdebstrap --quiet --variant=minbase --format=tar "$@" bookworm "$work/rootfs.tar"
  tarball="$work/rootfs.tar"
  if [[ -n $cache_dir ]]; then
    # Best effort, and atomic (copy then rename) so concurrent runs never
    # see a half-written tarball.
    if mkdir -p "$cache_dir" && cp "$tarball" "$cache_dir/.$name.tar.$$" &&
      mv -f "$cache_dir/.$name.tar.$$" "$cache_dir/$name.tar"; then
      echo "debian_image: cached as $cache_dir/$name.tar" >&2
    else
      rm -f -- "$cache_dir/.$name.tar.$$"
      echo "debian_image: warning: could not write cache in $cache_dir" >&2
    fi
  fi
fi

[[ -f $out/index.json ]] || umoci init --layout "$out"
umoci new --image "$out:$tag"
# The mmdebstrap tar goes in verbatim (umoci gzips it), so the layer is
# GNU tar output, not umoci's own.
umoci raw add-layer --image "$out:$tag" \
  --history.created_by="mmdebstrap --variant=minbase${*:+ $*} bookworm" "$tarball"
