#include "ocix/core/listing.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace ocix::core {

namespace {

std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '\\' || c == '=' || c == '#') {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\%03o", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string Octal(uint32_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode);
  return buf;
}

std::string Time(const Timestamp& t) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%lld.%09u", static_cast<long long>(t.sec), t.nsec);
  return buf;
}

std::string HexOf(std::string_view s) { return HexEncode({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }

}  // namespace

std::string FormatListing(const Manifest& m) {
  std::string out = "#ocix version=" + std::to_string(m.version) + " entries=" + std::to_string(m.entries.size()) +
                    (m.layer ? " layer" : "") + "\n";
  for (const Entry& e : m.entries) {
    out += Escape(e.path);
    out += " type=";
    out += FileTypeName(e.type);
    if (e.type == FileType::kHardlink) {
      out += " link=" + Escape(e.target) + "\n";
      continue;
    }
    if (e.type == FileType::kWhiteout) {
      out += "\n";
      continue;
    }
    out += " mode=" + Octal(e.mode) + " uid=" + std::to_string(e.uid) + " gid=" + std::to_string(e.gid);
    if (!e.user.empty()) out += " uname=" + Escape(e.user);
    if (!e.group.empty()) out += " gname=" + Escape(e.group);
    out += " time=" + Time(e.mtime);
    switch (e.type) {
      case FileType::kRegular:
        out += " size=" + std::to_string(e.size) + " b3=" + e.digest.Hex();
        if (e.data) {
          out += " data=";
          for (size_t i = 0; i < e.data->size(); ++i) {
            if (i) out += ',';
            out += std::to_string((*e.data)[i].offset) + "+" + std::to_string((*e.data)[i].length);
          }
          if (e.data->empty()) out += "none";
        }
        if (e.chunks)
          out += " chunks=" + std::to_string(e.chunks->digests.size()) + "x" + std::to_string(e.chunks->chunk_size);
        break;
      case FileType::kSymlink: out += " link=" + Escape(e.target); break;
      case FileType::kCharDevice:
      case FileType::kBlockDevice:
        out += " device=" + std::to_string(e.rdev_major) + "," + std::to_string(e.rdev_minor);
        break;
      case FileType::kDirectory:
        if (e.opaque) out += " opaque";
        break;
      default: break;
    }
    for (const Xattr& x : e.xattrs) out += " xattr." + Escape(x.name) + "=" + HexOf(x.value);
    out += "\n";
  }
  return out;
}

std::string FormatJson(const Manifest& m) {
  using nlohmann::json;
  json entries = json::array();
  for (const Entry& e : m.entries) {
    json j = {{"path", e.path}, {"type", FileTypeName(e.type)}};
    if (e.type == FileType::kHardlink) {
      j["link"] = e.target;
    } else if (e.type != FileType::kWhiteout) {
      j["mode"] = e.mode;
      j["uid"] = e.uid;
      j["gid"] = e.gid;
      if (!e.user.empty()) j["user"] = e.user;
      if (!e.group.empty()) j["group"] = e.group;
      j["mtime"] = {{"sec", e.mtime.sec}, {"nsec", e.mtime.nsec}};
      if (e.type == FileType::kRegular) {
        j["size"] = e.size;
        j["b3"] = e.digest.Hex();
        if (e.data) {
          json d = json::array();
          for (const Extent& x : *e.data) d.push_back({x.offset, x.length});
          j["data"] = d;
        }
        if (e.chunks) {
          json ds = json::array();
          for (const Digest& dg : e.chunks->digests) ds.push_back(dg.Hex());
          j["chunks"] = {{"size", e.chunks->chunk_size}, {"b3", ds}};
        }
      }
      if (e.type == FileType::kSymlink) j["target"] = e.target;
      if (e.type == FileType::kCharDevice || e.type == FileType::kBlockDevice) j["rdev"] = {e.rdev_major, e.rdev_minor};
      if (e.opaque) j["opaque"] = true;
      if (!e.xattrs.empty()) {
        json xs = json::object();
        for (const Xattr& x : e.xattrs) xs[x.name] = HexOf(x.value);
        j["xattrs"] = xs;
      }
    }
    entries.push_back(std::move(j));
  }
  json top = {{"version", m.version}, {"layer", m.layer}, {"entries", std::move(entries)}};
  return top.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace ocix::core
