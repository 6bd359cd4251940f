// Canonical CBOR (RFC 7049 §3.9) over libcbor.
//
// Writing: build items with these helpers; integers get their shortest head
// and Map() sorts keys canonically, so Serialize() output is canonical.
// Reading: Load() first checks the raw bytes are one well-formed canonical
// item of the kinds manifests use (ints, strings, arrays, maps, tags,
// booleans), nested at most kMaxCborDepth deep, then hands them to libcbor.
#pragma once

#include <cbor.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ocix/core/status.h"

namespace ocix::core::cbor {

struct ItemUnref {
  void operator()(cbor_item_t* item) const { cbor_decref(&item); }
};
// One counted reference to a libcbor item.
using Item = std::unique_ptr<cbor_item_t, ItemUnref>;

Item Uint(uint64_t v);
Item Int(int64_t v);
Item Text(std::string_view s);
Item Bytes(std::span<const uint8_t> b);
Item Bool(bool v);
Item Tag(uint64_t tag, Item inner);
Item Array(std::vector<Item> items);
// Keys are text strings; sorted here (length first, then bytewise).
// REQUIRES: no duplicate keys.
Item Map(std::vector<std::pair<std::string, Item>> entries);

std::string Serialize(const cbor_item_t* item);

// Checks the canonical, well-formed, bounded shape described above.
Status ValidateCanonical(std::span<const uint8_t> data);
// ValidateCanonical, then libcbor's decoder.
Result<Item> Load(std::span<const uint8_t> data);

// Read helpers: a borrowed view of a map's pairs, and typed accessors that
// fail with Corruption naming `what`.
Result<uint64_t> GetUint(const cbor_item_t* item, std::string_view what);
Result<int64_t> GetInt(const cbor_item_t* item, std::string_view what);
Result<std::string> GetText(const cbor_item_t* item, std::string_view what);
Result<std::string> GetBytes(const cbor_item_t* item, std::string_view what);
Result<bool> GetBool(const cbor_item_t* item, std::string_view what);
Result<std::span<cbor_item_t*>> GetArray(const cbor_item_t* item, std::string_view what);
Result<std::span<cbor_pair>> GetMap(const cbor_item_t* item, std::string_view what);
// The key of a map pair as text (canonical maps here have text keys only).
Result<std::string_view> KeyText(const cbor_pair& pair);

}  // namespace ocix::core::cbor
