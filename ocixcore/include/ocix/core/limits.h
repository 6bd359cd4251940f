// Every limit of the OCIX manifest, in one place. docs/FORMAT.md explains
// each one; decoders enforce them on untrusted input before allocating.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ocix::core {

// "ocix" read as a big-endian 32-bit integer: the tag around every manifest.
inline constexpr uint64_t kOcixTag = 1868786040;
// The seed tool misread "#6.1868786040" (tag 1868786040) as tag 6 around tag
// 1868786040; version 0 keeps that wrapping so its output stays readable.
inline constexpr uint64_t kSeedOuterTag = 6;

inline constexpr uint64_t kFormatVersion0 = 0;
inline constexpr uint64_t kFormatVersion1 = 1;

// A whole manifest: bounds the decoder's memory (libcbor items are ~10x the
// encoded size). 256 MiB is ~2M files at typical sizes.
inline constexpr size_t kMaxManifestBytes = 256u << 20;
// Number of paths. Largest real images have a few hundred thousand.
inline constexpr size_t kMaxEntries = 1u << 22;
// PATH_MAX and NAME_MAX of Linux: a path longer than this cannot be created.
inline constexpr size_t kMaxPathBytes = 4096;
inline constexpr size_t kMaxNameBytes = 255;
// readlink(2) limit (PATH_MAX - 1 without the NUL).
inline constexpr size_t kMaxSymlinkBytes = 4095;
// User and group names (useradd caps at 32; generous but bounded).
inline constexpr size_t kMaxOwnerNameBytes = 256;
// Linux XATTR_NAME_MAX and XATTR_SIZE_MAX; the count bounds per-file work.
inline constexpr size_t kMaxXattrNameBytes = 255;
inline constexpr size_t kMaxXattrValueBytes = 64 * 1024;
inline constexpr size_t kMaxXattrsPerFile = 128;
// off_t is signed 64-bit.
inline constexpr uint64_t kMaxFileSize = (uint64_t{1} << 63) - 1;
// Data regions of one sparse file.
inline constexpr size_t kMaxExtentsPerFile = 1u << 16;
// uid_t/gid_t are 32-bit and (uid_t)-1 means "unchanged" to chown(2).
inline constexpr uint64_t kMaxId = 0xFFFFFFFEu;
// dev_t major/minor as the kernel's 32-bit halves.
inline constexpr uint64_t kMaxDeviceNumber = 0xFFFFFFFFu;
// Chunk sizes: powers of two between 4 KiB and 64 MiB.
inline constexpr uint64_t kMinChunkSize = 4096;
inline constexpr uint64_t kMaxChunkSize = 64u << 20;
// CBOR nesting: the deepest valid manifest item is 6 levels deep; 16 leaves
// room for growth while keeping libcbor's recursive free() shallow.
inline constexpr size_t kMaxCborDepth = 16;

}  // namespace ocix::core
