// containerd's filter syntax (github.com/containerd/containerd/filters), as
// containerd sends it in ListSnapshotsRequest.filters:
//
//   filters   := filter ("," filter)*          every selector must match (AND)
//   selector  := fieldpath [op value]          no op: the field is present
//   fieldpath := field ("." field)*            field: identifier or quoted
//   op        := "==" | "!=" | "~="            ~= is a regular expression match
//   value     := quoted | unquoted run up to "," or whitespace
//
// Quoted strings use Go's syntax ("..." with escapes; /.../ or |...| only for
// the value of ~=). A list of filter strings matches when any one of them
// matches (OR); an empty list, or an empty string in it, matches everything.
//
// Matching follows containerd: "==" needs the field present; "!=" and "~="
// compare an absent field as "". A "~=" pattern is an ECMAScript std::regex,
// not RE2; one that does not compile (or is too large, see filter.cc) never
// matches, as containerd treats an invalid regular expression.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ocix/core/status.h"

namespace ocix::snapshotter {

class Filter {
 public:
  // Looks up a field path (e.g. {"labels", "containerd.io/gc.root"}):
  // the field's value, or nullopt when the object has no such field.
  using Adaptor = std::function<std::optional<std::string>(std::span<const std::string> fieldpath)>;

  // InvalidArgument (with the offending position) for a malformed filter.
  static core::Result<Filter> Parse(std::span<const std::string> filters);

  bool Match(const Adaptor& adaptor) const;

  // The filter as strings Parse accepts and reads back to the same filter:
  // bare fields where possible, every value double-quoted with \xHH for any
  // byte outside printable ASCII. For logs, and checked by the fuzz target.
  std::vector<std::string> Canonical() const;

  struct Selector;

 private:
  // Outer: alternatives (OR); inner: selectors (AND). Empty outer: match all.
  std::vector<std::vector<std::shared_ptr<const Selector>>> any_;
};

}  // namespace ocix::snapshotter
