#include "ocix/core/cbor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "ocix/core/limits.h"
#include "ocix/core/manifest.h"
#include "ocix/core/utf8.h"

namespace ocix::core::cbor {

namespace {

// libcbor returns NULL only when malloc fails; there is no sane way on.
cbor_item_t* Checked(cbor_item_t* item) {
  if (item == nullptr) {
    std::fputs("ocix: out of memory building CBOR\n", stderr);
    std::abort();
  }
  return item;
}

}  // namespace

Item Uint(uint64_t v) {
  if (v <= 0xFF) return Item(Checked(cbor_build_uint8(static_cast<uint8_t>(v))));
  if (v <= 0xFFFF) return Item(Checked(cbor_build_uint16(static_cast<uint16_t>(v))));
  if (v <= 0xFFFFFFFF) return Item(Checked(cbor_build_uint32(static_cast<uint32_t>(v))));
  return Item(Checked(cbor_build_uint64(v)));
}

Item Int(int64_t v) {
  if (v >= 0) return Uint(static_cast<uint64_t>(v));
  // CBOR major type 1 stores -1 - v.
  uint64_t n = static_cast<uint64_t>(-(v + 1));
  if (n <= 0xFF) return Item(Checked(cbor_build_negint8(static_cast<uint8_t>(n))));
  if (n <= 0xFFFF) return Item(Checked(cbor_build_negint16(static_cast<uint16_t>(n))));
  if (n <= 0xFFFFFFFF) return Item(Checked(cbor_build_negint32(static_cast<uint32_t>(n))));
  return Item(Checked(cbor_build_negint64(n)));
}

Item Text(std::string_view s) { return Item(Checked(cbor_build_stringn(s.data(), s.size()))); }

Item Bytes(std::span<const uint8_t> b) { return Item(Checked(cbor_build_bytestring(b.data(), b.size()))); }

Item Bool(bool v) { return Item(Checked(cbor_build_bool(v))); }

Item Tag(uint64_t tag, Item inner) {
  // cbor_build_tag takes its own reference to inner; ours is dropped by Item.
  return Item(Checked(cbor_build_tag(tag, inner.get())));
}

Item Array(std::vector<Item> items) {
  Item arr(Checked(cbor_new_definite_array(items.size())));
  for (Item& it : items) {
    if (!cbor_array_push(arr.get(), it.get())) Checked(nullptr);
  }
  return arr;
}

Item Map(std::vector<std::pair<std::string, Item>> entries) {
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return CanonicalLess(a.first, b.first); });
  Item map(Checked(cbor_new_definite_map(entries.size())));
  for (auto& [key, value] : entries) {
    Item k = Text(key);
    if (!cbor_map_add(map.get(), cbor_pair{k.get(), value.get()})) Checked(nullptr);
  }
  return map;
}

std::string Serialize(const cbor_item_t* item) {
  unsigned char* buf = nullptr;
  size_t cap = 0;
  size_t len = cbor_serialize_alloc(item, &buf, &cap);
  std::unique_ptr<unsigned char, decltype(&std::free)> owned(buf, &std::free);
  if (len == 0) Checked(nullptr);
  return std::string(reinterpret_cast<const char*>(buf), len);
}

namespace {

class Validator {
 public:
  explicit Validator(std::span<const uint8_t> d) : d_(d) {}

  Status Run() {
    OCIX_RETURN_IF_ERROR(Item(0));
    if (pos_ != d_.size()) return Err("trailing bytes after the data item");
    return Status::Ok();
  }

 private:
  Status Err(std::string_view what) const {
    return Corruption("CBOR at offset " + std::to_string(pos_) + ": " + std::string(what));
  }

  // Reads one head; sets major and value. Rejects indefinite lengths,
  // reserved additional-info values and non-shortest encodings.
  Status Head(int& major, uint64_t& value) {
    if (pos_ >= d_.size()) return Err("truncated");
    const uint8_t ib = d_[pos_++];
    major = ib >> 5;
    const uint8_t ai = ib & 0x1F;
    if (ai < 24) {
      value = ai;
      return Status::Ok();
    }
    if (ai == 31) return Err("indefinite length");
    if (ai > 27) return Err("reserved additional information");
    const size_t n = size_t{1} << (ai - 24);
    if (d_.size() - pos_ < n) return Err("truncated");
    value = 0;
    for (size_t i = 0; i < n; ++i) value = value << 8 | d_[pos_++];
    static constexpr uint64_t kMin[] = {24, 0x100, 0x10000, 0x100000000};
    if (major != 7 && value < kMin[ai - 24]) return Err("integer or length not in its shortest form");
    return Status::Ok();
  }

  Status Item(size_t depth) {
    if (depth > kMaxCborDepth) return Err("nested too deeply");
    int major = 0;
    uint64_t v = 0;
    const uint8_t additional_info = pos_ < d_.size() ? d_[pos_] & 0x1F : 0;
    OCIX_RETURN_IF_ERROR(Head(major, v));
    const uint64_t left = d_.size() - pos_;
    switch (major) {
      case 0:
      case 1: return Status::Ok();
      case 2:
      case 3: {
        if (v > left) return Err("string longer than the input");
        if (major == 3) {
          std::string_view s(reinterpret_cast<const char*>(d_.data() + pos_), v);
          if (!IsValidUtf8(s)) return Err("text string is not valid UTF-8");
        }
        pos_ += v;
        return Status::Ok();
      }
      case 4:
        if (v > left) return Err("array longer than the input");
        for (uint64_t i = 0; i < v; ++i) OCIX_RETURN_IF_ERROR(Item(depth + 1));
        return Status::Ok();
      case 5: {
        if (v > left / 2) return Err("map longer than the input");
        std::span<const uint8_t> prev;
        for (uint64_t i = 0; i < v; ++i) {
          const size_t start = pos_;
          OCIX_RETURN_IF_ERROR(Item(depth + 1));
          std::span<const uint8_t> key = d_.subspan(start, pos_ - start);
          if (i > 0) {
            if (key.size() == prev.size() && std::equal(key.begin(), key.end(), prev.begin()))
              return Err("duplicate map key");
            const bool ordered = prev.size() != key.size()
                                     ? prev.size() < key.size()
                                     : std::lexicographical_compare(prev.begin(), prev.end(), key.begin(), key.end());
            if (!ordered) return Err("map keys not in canonical order");
          }
          prev = key;
          OCIX_RETURN_IF_ERROR(Item(depth + 1));
        }
        return Status::Ok();
      }
      case 6: return Item(depth + 1);
      default:  // 7: only false and true appear in manifests
        if (additional_info >= 24) return Err("floating point or extended simple value");
        if (v != 20 && v != 21) return Err("simple value other than true/false");
        return Status::Ok();
    }
  }

  std::span<const uint8_t> d_;
  size_t pos_ = 0;
};

}  // namespace

Status ValidateCanonical(std::span<const uint8_t> data) { return Validator(data).Run(); }

Result<Item> Load(std::span<const uint8_t> data) {
  OCIX_RETURN_IF_ERROR(ValidateCanonical(data));
  cbor_load_result res{};
  Item item(cbor_load(data.data(), data.size(), &res));
  if (!item || res.error.code != CBOR_ERR_NONE)
    return Corruption("CBOR decode failed at offset " + std::to_string(res.error.position));
  return item;
}

namespace {
Status TypeError(std::string_view what, std::string_view want) {
  return Corruption(std::string(what) + ": expected " + std::string(want));
}
}  // namespace

Result<uint64_t> GetUint(const cbor_item_t* item, std::string_view what) {
  if (!cbor_isa_uint(item)) return TypeError(what, "an unsigned integer");
  return cbor_get_int(item);
}

Result<int64_t> GetInt(const cbor_item_t* item, std::string_view what) {
  if (cbor_isa_uint(item)) {
    uint64_t v = cbor_get_int(item);
    if (v > static_cast<uint64_t>(INT64_MAX)) return TypeError(what, "an integer within 64-bit range");
    return static_cast<int64_t>(v);
  }
  if (cbor_isa_negint(item)) {
    uint64_t n = cbor_get_int(item);
    if (n > static_cast<uint64_t>(INT64_MAX)) return TypeError(what, "an integer within 64-bit range");
    return -1 - static_cast<int64_t>(n);
  }
  return TypeError(what, "an integer");
}

Result<std::string> GetText(const cbor_item_t* item, std::string_view what) {
  if (!cbor_isa_string(item) || !cbor_string_is_definite(item)) return TypeError(what, "a text string");
  return std::string(reinterpret_cast<const char*>(cbor_string_handle(item)), cbor_string_length(item));
}

Result<std::string> GetBytes(const cbor_item_t* item, std::string_view what) {
  if (!cbor_isa_bytestring(item) || !cbor_bytestring_is_definite(item)) return TypeError(what, "a byte string");
  return std::string(reinterpret_cast<const char*>(cbor_bytestring_handle(item)), cbor_bytestring_length(item));
}

Result<bool> GetBool(const cbor_item_t* item, std::string_view what) {
  // cbor_is_bool asserts on floats, so check the kind of item first.
  if (!cbor_isa_float_ctrl(item) || cbor_float_get_width(item) != CBOR_FLOAT_0 || !cbor_is_bool(item))
    return TypeError(what, "a boolean");
  return cbor_get_bool(item);
}

Result<std::span<cbor_item_t*>> GetArray(const cbor_item_t* item, std::string_view what) {
  if (!cbor_isa_array(item) || !cbor_array_is_definite(item)) return TypeError(what, "an array");
  return std::span<cbor_item_t*>(cbor_array_handle(item), cbor_array_size(item));
}

Result<std::span<cbor_pair>> GetMap(const cbor_item_t* item, std::string_view what) {
  if (!cbor_isa_map(item) || !cbor_map_is_definite(item)) return TypeError(what, "a map");
  return std::span<cbor_pair>(cbor_map_handle(item), cbor_map_size(item));
}

Result<std::string_view> KeyText(const cbor_pair& pair) {
  if (!cbor_isa_string(pair.key)) return Corruption("map key is not a text string");
  return std::string_view(reinterpret_cast<const char*>(cbor_string_handle(pair.key)), cbor_string_length(pair.key));
}

}  // namespace ocix::core::cbor
