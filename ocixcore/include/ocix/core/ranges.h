// Planning range reads of one blob: ranges that overlap or touch are merged
// into runs so each run costs one HTTP request.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ocix/core/status.h"

namespace ocix::core {

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct CoalescedRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  std::vector<size_t> members;  // indices into the input, ascending by offset
};

// Sorts by offset and merges ranges separated by at most max_gap bytes
// (0: only overlapping or adjacent ones). Empty ranges belong to no run.
// Runs come out in ascending offset order. InvalidArgument if a range ends
// past 2^64.
Result<std::vector<CoalescedRange>> CoalesceRanges(std::span<const ByteRange> ranges, uint64_t max_gap = 0);

}  // namespace ocix::core
