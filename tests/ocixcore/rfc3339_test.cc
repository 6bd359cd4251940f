#include "ocix/core/rfc3339.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ocix/core/manifest.h"
#include "ocix/core/status.h"

namespace ocix::core {
namespace {

// Instants below come from Python's calendar.timegm, not from the code under test.
constexpr int64_t k20210304T050607 = 1614834367;
constexpr int64_t k20210101 = 1609459200;
constexpr int64_t k20000229T12 = 951825600;
constexpr int64_t k19000301 = -2203891200;
constexpr int64_t k19690720T201740 = -14182940;
constexpr int64_t k2038Overflow = 2147483648;   // 2038-01-19T03:14:08Z
constexpr int64_t kYear0000 = -62167219200;     // 0000-01-01T00:00:00Z
constexpr int64_t kYear9999End = 253402300799;  // 9999-12-31T23:59:59Z

std::string Fmt(int64_t sec, uint32_t nsec = 0) {
  auto r = FormatRfc3339({sec, nsec});
  EXPECT_TRUE(r.ok()) << sec << "." << nsec << ": " << r.status().ToString();
  return r.ok() ? *r : "<error>";
}

std::optional<Timestamp> Parse(std::string_view s) {
  auto r = ParseRfc3339(s);
  if (!r.ok()) return std::nullopt;
  return *r;
}

TEST(Rfc3339FormatTest, WholeSecondsHaveNoFraction) {
  EXPECT_EQ(Fmt(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(Fmt(1), "1970-01-01T00:00:01Z");
  EXPECT_EQ(Fmt(k20210304T050607), "2021-03-04T05:06:07Z");
  EXPECT_EQ(Fmt(k20210101), "2021-01-01T00:00:00Z");
  EXPECT_EQ(Fmt(k2038Overflow), "2038-01-19T03:14:08Z");
}

TEST(Rfc3339FormatTest, FractionTrailingZerosTrimmed) {
  EXPECT_EQ(Fmt(k20210304T050607, 500'000'000), "2021-03-04T05:06:07.5Z");
  EXPECT_EQ(Fmt(0, 1), "1970-01-01T00:00:00.000000001Z");
  EXPECT_EQ(Fmt(0, 10), "1970-01-01T00:00:00.00000001Z");
  EXPECT_EQ(Fmt(0, 100), "1970-01-01T00:00:00.0000001Z");
  EXPECT_EQ(Fmt(0, 120'000'000), "1970-01-01T00:00:00.12Z");
  EXPECT_EQ(Fmt(0, 123'456'789), "1970-01-01T00:00:00.123456789Z");
  EXPECT_EQ(Fmt(0, 999'999'999), "1970-01-01T00:00:00.999999999Z");
  EXPECT_EQ(Fmt(0, 1'000), "1970-01-01T00:00:00.000001Z");
}

TEST(Rfc3339FormatTest, NegativeTimesBefore1970) {
  EXPECT_EQ(Fmt(-1), "1969-12-31T23:59:59Z");
  EXPECT_EQ(Fmt(-1, 500'000'000), "1969-12-31T23:59:59.5Z");  // -0.5 s
  EXPECT_EQ(Fmt(-86400), "1969-12-31T00:00:00Z");
  EXPECT_EQ(Fmt(-86401), "1969-12-30T23:59:59Z");
  EXPECT_EQ(Fmt(k19690720T201740), "1969-07-20T20:17:40Z");
  EXPECT_EQ(Fmt(k19000301), "1900-03-01T00:00:00Z");
  EXPECT_EQ(Fmt(k19000301 - 1), "1900-02-28T23:59:59Z");  // 1900 is not a leap year
}

TEST(Rfc3339FormatTest, LeapDays) {
  EXPECT_EQ(Fmt(k20000229T12), "2000-02-29T12:00:00Z");
  EXPECT_EQ(Fmt(k20000229T12 + 12 * 3600), "2000-03-01T00:00:00Z");
}

TEST(Rfc3339FormatTest, YearBounds) {
  EXPECT_EQ(Fmt(kYear0000), "0000-01-01T00:00:00Z");
  EXPECT_EQ(Fmt(kYear9999End), "9999-12-31T23:59:59Z");
  EXPECT_EQ(Fmt(kYear9999End, 999'999'999), "9999-12-31T23:59:59.999999999Z");
  EXPECT_EQ(Fmt(-62135596800), "0001-01-01T00:00:00Z");
}

TEST(Rfc3339FormatTest, OutOfRangeFails) {
  for (Timestamp t :
       {Timestamp{kYear0000 - 1, 0}, Timestamp{kYear9999End + 1, 0}, Timestamp{std::numeric_limits<int64_t>::min(), 0},
        Timestamp{std::numeric_limits<int64_t>::max(), 0}, Timestamp{0, 1'000'000'000}, Timestamp{0, 0xFFFFFFFFu}}) {
    auto r = FormatRfc3339(t);
    EXPECT_FALSE(r.ok()) << t.sec << "." << t.nsec << " -> " << (r.ok() ? *r : "");
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    }
  }
}

TEST(Rfc3339ParseTest, UtcWithZ) {
  auto t = Parse("1970-01-01T00:00:00Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{0, 0}));
  t = Parse("2021-03-04T05:06:07Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{k20210304T050607, 0}));
  t = Parse("2021-03-04t05:06:07z");  // RFC 3339 allows lower case
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{k20210304T050607, 0}));
  t = Parse("1969-12-31T23:59:59Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{-1, 0}));
  t = Parse("0000-01-01T00:00:00Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{kYear0000, 0}));
  t = Parse("9999-12-31T23:59:59.999999999Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{kYear9999End, 999'999'999}));
}

TEST(Rfc3339ParseTest, Offsets) {
  auto t = Parse("2021-01-01T09:00:00+09:00");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{k20210101, 0}));
  t = Parse("2020-12-31T18:30:00-05:30");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{k20210101, 0}));
  t = Parse("2021-01-01T00:00:00+00:00");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{k20210101, 0}));
  t = Parse("2021-01-01T00:00:00-00:00");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{k20210101, 0}));
  t = Parse("2021-01-01T05:45:00.25+05:45");  // Nepal
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{k20210101, 250'000'000}));
  t = Parse("2021-01-01T23:59:00+23:59");
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, (Timestamp{k20210101, 0}));
}

TEST(Rfc3339ParseTest, FractionDigitsOneToNine) {
  const std::pair<const char*, uint32_t> cases[] = {
      {"2021-01-01T00:00:00.1Z", 100'000'000},
      {"2021-01-01T00:00:00.12Z", 120'000'000},
      {"2021-01-01T00:00:00.123Z", 123'000'000},
      {"2021-01-01T00:00:00.1234Z", 123'400'000},
      {"2021-01-01T00:00:00.12345Z", 123'450'000},
      {"2021-01-01T00:00:00.123456Z", 123'456'000},
      {"2021-01-01T00:00:00.1234567Z", 123'456'700},
      {"2021-01-01T00:00:00.12345678Z", 123'456'780},
      {"2021-01-01T00:00:00.123456789Z", 123'456'789},
      {"2021-01-01T00:00:00.000000001Z", 1},
      {"2021-01-01T00:00:00.0Z", 0},
      {"2021-01-01T00:00:00.500Z", 500'000'000},
  };
  for (const auto& [s, nsec] : cases) {
    auto t = Parse(s);
    ASSERT_TRUE(t) << s;
    EXPECT_EQ(*t, (Timestamp{k20210101, nsec})) << s;
  }
}

TEST(Rfc3339ParseTest, RejectsBadInput) {
  for (const char* s : {
           "",
           "2021-01-01",
           "2021-01-01T00:00:00",              // missing zone
           "2021-01-01T00:00:00.5",            // missing zone after fraction
           "2021-01-01 00:00:00Z",             // space instead of T
           "2021-02-30T00:00:00Z",             // Feb 30
           "2021-02-29T00:00:00Z",             // not a leap year
           "1900-02-29T00:00:00Z",             // century, not a leap year
           "2021-04-31T00:00:00Z",             // April has 30 days
           "2021-00-01T00:00:00Z",             // month 0
           "2021-13-01T00:00:00Z",             // month 13
           "2021-01-00T00:00:00Z",             // day 0
           "2021-01-32T00:00:00Z",             // day 32
           "2021-01-01T24:00:00Z",             // hour 24
           "2021-01-01T23:60:00Z",             // minute 60
           "2021-01-01T23:59:60Z",             // leap second
           "2021-01-01T00:00:00.1234567890Z",  // 10 fraction digits
           "2021-01-01T00:00:00.Z",            // no fraction digits
           "2021-01-01T00:00:00,5Z",           // comma
           "2021-01-01T00:00:00+0900",         // offset without colon
           "2021-01-01T00:00:00+09",           // short offset
           "2021-01-01T00:00:00+24:00",        // offset hour 24
           "2021-01-01T00:00:00+09:60",        // offset minute 60
           "2021-01-01T00:00:00+09:00Z",       // trailing junk
           "2021-01-01T00:00:00ZZ",
           "2021-01-01T00:00:00Z ",
           " 2021-01-01T00:00:00Z",
           "2021-1-01T00:00:00Z",
           "21-01-01T00:00:00Z",
           "+2021-01-01T00:00:00Z",
           "2021/01/01T00:00:00Z",
           "2021-01-01T00-00-00Z",
           "2021-01-01T0a:00:00Z",
           "2021-01-01T00:00:00UTC",
       }) {
    auto r = ParseRfc3339(s);
    EXPECT_FALSE(r.ok()) << '"' << s << '"';
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kCorruption) << s;
    }
  }
}

TEST(Rfc3339ParseTest, LeapDaysAccepted) {
  auto t = Parse("2000-02-29T12:00:00Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->sec, k20000229T12);
  EXPECT_TRUE(Parse("2024-02-29T00:00:00Z"));
  EXPECT_TRUE(Parse("2400-02-29T00:00:00Z"));
  EXPECT_TRUE(Parse("0000-02-29T00:00:00Z"));  // year 0 is a leap year (proleptic Gregorian)
}

TEST(Rfc3339RoundTripTest, FormatThenParse) {
  std::vector<Timestamp> ts = {{0, 0},
                               {1, 1},
                               {-1, 999'999'999},
                               {k20210304T050607, 500'000'000},
                               {k19690720T201740, 123'456'789},
                               {kYear0000, 0},
                               {kYear9999End, 999'999'999},
                               {k20000229T12, 10}};
  // A spread of instants across the whole range, with varied fractions.
  for (int64_t s = kYear0000; s < kYear9999End; s += 86400LL * 365 * 37 + 12345) {
    ts.push_back({s, static_cast<uint32_t>((s % 1'000'000'000 + 1'000'000'000) % 1'000'000'000)});
  }
  for (const Timestamp& t : ts) {
    auto s = FormatRfc3339(t);
    ASSERT_TRUE(s.ok()) << t.sec;
    auto back = ParseRfc3339(*s);
    ASSERT_TRUE(back.ok()) << *s;
    EXPECT_EQ(*back, t) << *s;
  }
}

TEST(Rfc3339RoundTripTest, ParseThenFormat) {
  for (const char* s : {"1970-01-01T00:00:00Z", "2021-03-04T05:06:07.5Z", "1969-12-31T23:59:59.000000001Z",
                        "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2000-02-29T12:00:00.12Z"}) {
    auto t = ParseRfc3339(s);
    ASSERT_TRUE(t.ok()) << s;
    EXPECT_EQ(Fmt(t->sec, t->nsec), s);
  }
  // Non-canonical spellings come back canonical (UTC, trimmed fraction).
  auto t = ParseRfc3339("2021-01-01T09:00:00.500+09:00");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Fmt(t->sec, t->nsec), "2021-01-01T00:00:00.5Z");
}

class ScopedTz {
 public:
  explicit ScopedTz(const char* tz) {
    if (const char* old = std::getenv("TZ")) old_ = old;
    setenv("TZ", tz, 1);
    tzset();
  }
  ~ScopedTz() {
    if (old_) {
      setenv("TZ", old_->c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

 private:
  std::optional<std::string> old_;
};

TEST(Rfc3339Test, IndependentOfProcessTimeZone) {
  const Timestamp t{k20210304T050607, 250'000'000};
  const std::string utc_text = Fmt(t.sec, t.nsec);
  ASSERT_EQ(utc_text, "2021-03-04T05:06:07.25Z");
  // POSIX TZ strings need no tzdata: odd offsets, with and without DST rules.
  for (const char* tz : {"XYZ+05:45", "ABC-13:30DEF,M3.2.0,M11.1.0", "UTC", "Asia/Kathmandu"}) {
    ScopedTz scoped(tz);
    EXPECT_EQ(Fmt(t.sec, t.nsec), utc_text) << tz;
    auto p = ParseRfc3339("2021-03-04T05:06:07.25Z");
    ASSERT_TRUE(p.ok()) << tz;
    EXPECT_EQ(*p, t) << tz;
    auto q = ParseRfc3339("2021-01-01T09:00:00+09:00");
    ASSERT_TRUE(q.ok()) << tz;
    EXPECT_EQ(q->sec, k20210101) << tz;
    EXPECT_EQ(Fmt(-1), "1969-12-31T23:59:59Z") << tz;
  }
}

}  // namespace
}  // namespace ocix::core
