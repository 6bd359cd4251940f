#include "ocix/core/rfc3339.h"

#include <cstdio>

namespace ocix::core {

namespace {

// Howard Hinnant's days_from_civil / civil_from_days: proleptic Gregorian
// calendar without the C library, so results never depend on TZ.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

bool Digits(std::string_view s, size_t pos, size_t n, int64_t& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  return true;
}

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

}  // namespace

// Years 0000-9999 span these instants.
static constexpr int64_t kMinSec = -62167219200;  // 0000-01-01T00:00:00Z
static constexpr int64_t kMaxSec = 253402300799;  // 9999-12-31T23:59:59Z

Result<std::string> FormatRfc3339(Timestamp t) {
  if (t.sec < kMinSec || t.sec > kMaxSec || t.nsec >= 1'000'000'000)
    return InvalidArgument("time " + std::to_string(t.sec) + " is outside RFC 3339 years 0000-9999");
  int64_t days = t.sec / 86400;
  int64_t rem = t.sec % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  int64_t y;
  unsigned mo, d;
  CivilFromDays(days, y, mo, d);
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lld", static_cast<long long>(y), mo, d,
                        static_cast<long long>(rem / 3600), static_cast<long long>(rem / 60 % 60),
                        static_cast<long long>(rem % 60));
  std::string out(buf, static_cast<size_t>(n));
  if (t.nsec != 0) {
    std::snprintf(buf, sizeof buf, ".%09u", t.nsec);
    std::string frac(buf);
    while (frac.back() == '0') frac.pop_back();
    out += frac;
  }
  out += 'Z';
  return out;
}

Result<Timestamp> ParseRfc3339(std::string_view s) {
  auto bad = [&] { return Corruption("bad RFC 3339 time \"" + std::string(s.substr(0, 64)) + "\""); };
  int64_t y, mo, d, h, mi, se;
  if (!Digits(s, 0, 4, y) || s.size() < 20 || s[4] != '-' || !Digits(s, 5, 2, mo) || s[7] != '-' ||
      !Digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't') || !Digits(s, 11, 2, h) || s[13] != ':' ||
      !Digits(s, 14, 2, mi) || s[16] != ':' || !Digits(s, 17, 2, se))
    return bad();
  static constexpr int kMonthDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > kMonthDays[mo - 1] + (mo == 2 && IsLeap(y)) || h > 23 || mi > 59 || se > 59)
    return bad();
  size_t pos = 19;
  uint32_t nsec = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    size_t nd = pos - start;
    if (nd == 0 || nd > 9) return bad();
    int64_t frac;
    Digits(s, start, nd, frac);
    for (size_t i = nd; i < 9; ++i) frac *= 10;
    nsec = static_cast<uint32_t>(frac);
  }
  int64_t offset = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int64_t oh, om;
    if (!Digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !Digits(s, pos + 4, 2, om) ||
        oh > 23 || om > 59)
      return bad();
    offset = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return bad();
  }
  if (pos != s.size()) return bad();
  Timestamp t;
  t.sec =
      DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + h * 3600 + mi * 60 + se - offset;
  t.nsec = nsec;
  return t;
}

}  // namespace ocix::core
