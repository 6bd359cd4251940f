#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "ocix/core/ranges.h"

namespace ocix::core {
namespace {

TEST(RegistryRanges, MergesOverlappingAndAdjacentKeepsOrderOfMembers) {
  std::vector<ByteRange> in = {{100, 10}, {0, 10}, {10, 5}, {105, 20}, {50, 1}, {3, 2}};
  auto runs = CoalesceRanges(in);
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 3u);
  EXPECT_EQ((*runs)[0].offset, 0u);
  EXPECT_EQ((*runs)[0].length, 15u);  // [0,10) + [10,15) adjacent, [3,5) inside
  EXPECT_EQ((*runs)[0].members, (std::vector<size_t>{1, 5, 2}));
  EXPECT_EQ((*runs)[1].offset, 50u);
  EXPECT_EQ((*runs)[1].length, 1u);
  EXPECT_EQ((*runs)[1].members, (std::vector<size_t>{4}));
  EXPECT_EQ((*runs)[2].offset, 100u);
  EXPECT_EQ((*runs)[2].length, 25u);  // [100,110) overlaps [105,125)
  EXPECT_EQ((*runs)[2].members, (std::vector<size_t>{0, 3}));
}

TEST(RegistryRanges, GapThreshold) {
  std::vector<ByteRange> in = {{0, 10}, {15, 5}, {40, 1}};
  auto strict = CoalesceRanges(in, 0);
  ASSERT_TRUE(strict.ok());
  EXPECT_EQ(strict->size(), 3u);
  auto loose = CoalesceRanges(in, 5);
  ASSERT_TRUE(loose.ok());
  ASSERT_EQ(loose->size(), 2u);
  EXPECT_EQ((*loose)[0].offset, 0u);
  EXPECT_EQ((*loose)[0].length, 20u);
  auto all = CoalesceRanges(in, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].length, 41u);
}

TEST(RegistryRanges, ContainedRangeDoesNotShrinkRun) {
  std::vector<ByteRange> in = {{0, 100}, {10, 5}, {100, 1}};
  auto runs = CoalesceRanges(in);
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].length, 101u);
}

TEST(RegistryRanges, EmptyInputsAndZeroLengths) {
  auto none = CoalesceRanges({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  std::vector<ByteRange> zero = {{5, 0}, {7, 0}};
  auto z = CoalesceRanges(zero);
  ASSERT_TRUE(z.ok());
  EXPECT_TRUE(z->empty());
}

TEST(RegistryRanges, RejectsOverflow) {
  std::vector<ByteRange> in = {{std::numeric_limits<uint64_t>::max() - 1, 5}};
  auto r = CoalesceRanges(in);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  // Exactly reaching 2^64 - 1 is fine.
  std::vector<ByteRange> edge = {{std::numeric_limits<uint64_t>::max() - 5, 5}};
  EXPECT_TRUE(CoalesceRanges(edge).ok());
}

}  // namespace
}  // namespace ocix::core
