// Fuzzes containerd's filter syntax (Filter::Parse / Match). The input is
// split on '\n' into filter strings (a quoted literal cannot hold a newline,
// so nothing is lost). Invariants checked besides "no crash":
//  - the list parses iff every string parses alone, and matches iff one of
//    them matches (OR);
//  - Canonical() parses back to a filter with the same canonical form and
//    the same answers.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ocix/snapshotter/filter.h"

namespace {

using ocix::snapshotter::Filter;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "filter invariant broken: %s\n", what);
  std::abort();
}

std::string Join(std::span<const std::string> path, size_t from) {
  std::string out;
  for (size_t i = from; i < path.size(); ++i) {
    if (i > from) out += '.';
    out += path[i];
  }
  return out;
}

// Adaptors in the shape of containerd's adaptSnapshot, plus one that answers
// every path with the path itself (so ~= runs against fuzzer-chosen text).
std::vector<Filter::Adaptor> Adaptors() {
  static const std::map<std::string, std::string> kLabels = {
      {"containerd.io/gc.root", "2024-01-01T00:00:00Z"},
      {"containerd.io/snapshot.ref", "sha256:0123456789abcdef"},
      {"l", "1"},
      {"", "empty key"},
  };
  auto snapshot = [](std::string kind, std::string name, std::string parent, bool labels) -> Filter::Adaptor {
    return [=](std::span<const std::string> path) -> std::optional<std::string> {
      if (path.empty()) return std::nullopt;
      if (path[0] == "kind") return kind;
      if (path[0] == "name") return name;
      if (path[0] == "parent") return parent;
      if (path[0] == "labels" && labels) {
        auto it = kLabels.find(Join(path, 1));
        if (it != kLabels.end()) return it->second;
      }
      return std::nullopt;
    };
  };
  return {
      snapshot("committed", "sha256:abc", "", true),
      snapshot("active", "default/1/ocix-p", "sha256:abc", false),
      [](std::span<const std::string> path) -> std::optional<std::string> { return Join(path, 0); },
      [](std::span<const std::string>) -> std::optional<std::string> { return std::nullopt; },
  };
}

std::vector<bool> Answers(const Filter& f, const std::vector<Filter::Adaptor>& adaptors) {
  std::vector<bool> out;
  for (const auto& a : adaptors) out.push_back(f.Match(a));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> filters;
  if (!input.empty()) {
    size_t start = 0;
    while (true) {
      size_t nl = input.find('\n', start);
      filters.emplace_back(input.substr(start, nl - start));
      if (nl == std::string_view::npos) break;
      start = nl + 1;
    }
  }
  if (filters.size() > 16) return 0;  // the OR invariant parses each again

  static const std::vector<Filter::Adaptor> adaptors = Adaptors();
  auto f = Filter::Parse(filters);
  std::vector<bool> any(adaptors.size(), false);
  bool all_ok = true;
  for (const auto& one : filters) {
    auto g = Filter::Parse(std::span<const std::string>(&one, 1));
    if (!g.ok()) {
      if (g.status().code() != ocix::core::Code::kInvalidArgument) Fail("parse error is not InvalidArgument");
      all_ok = false;
      continue;
    }
    auto answers = Answers(*g, adaptors);
    for (size_t i = 0; i < any.size(); ++i) any[i] = any[i] || answers[i];
  }
  if (f.ok() != all_ok) Fail("list parses differently from its strings");
  if (!f.ok()) {
    if (f.status().code() != ocix::core::Code::kInvalidArgument) Fail("parse error is not InvalidArgument");
    return 0;
  }
  auto answers = Answers(*f, adaptors);
  if (filters.empty()) any.assign(adaptors.size(), true);
  if (answers != any) Fail("list does not match as the OR of its strings");

  std::vector<std::string> canonical = f->Canonical();
  if (canonical.size() != filters.size()) Fail("canonical form has a different number of strings");
  auto again = Filter::Parse(canonical);
  if (!again.ok()) {
    std::fprintf(stderr, "%s\n", again.status().ToString().c_str());
    Fail("canonical form does not parse");
  }
  if (again->Canonical() != canonical) Fail("canonical form is not a fixed point");
  if (Answers(*again, adaptors) != answers) Fail("canonical form matches differently");
  return 0;
}
