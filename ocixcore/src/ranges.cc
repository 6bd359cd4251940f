#include "ocix/core/ranges.h"

#include <algorithm>
#include <limits>
#include <numeric>

namespace ocix::core {

Result<std::vector<CoalescedRange>> CoalesceRanges(std::span<const ByteRange> ranges, uint64_t max_gap) {
  std::vector<size_t> order;
  order.reserve(ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i) {
    const ByteRange& r = ranges[i];
    if (r.length > std::numeric_limits<uint64_t>::max() - r.offset)
      return InvalidArgument("range at offset " + std::to_string(r.offset) + " ends past 2^64");
    if (r.length > 0) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a].offset < ranges[b].offset; });
  std::vector<CoalescedRange> runs;
  uint64_t run_end = 0;  // one past the current run's last byte
  for (size_t i : order) {
    const ByteRange& r = ranges[i];
    uint64_t end = r.offset + r.length;
    // r.offset >= runs.back().offset (sorted); merge when the gap is small.
    if (!runs.empty() && (r.offset <= run_end || r.offset - run_end <= max_gap)) {
      run_end = std::max(run_end, end);
      runs.back().length = run_end - runs.back().offset;
      runs.back().members.push_back(i);
      continue;
    }
    runs.push_back({r.offset, r.length, {i}});
    run_end = end;
  }
  return runs;
}

}  // namespace ocix::core
