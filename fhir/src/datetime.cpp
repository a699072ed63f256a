#include "caduceus/fhir/datetime.hpp"

#include <array>
#include <charconv>
#include <chrono>
#include <cstdio>

namespace caduceus::fhir {
namespace {

using namespace std::chrono;

std::int64_t days_from_civil(int y, unsigned m, unsigned d) {
  return sys_days(year_month_day(year(y), month(m), day(d))).time_since_epoch().count();
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

constexpr std::array<const char*, 7> kWeekdays = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

}  // namespace

std::string format_instant(std::int64_t epoch_ms) {
  sys_time<milliseconds> tp{milliseconds(epoch_ms)};
  auto dp = floor<days>(tp);
  year_month_day ymd{dp};
  hh_mm_ss<milliseconds> hms{tp - dp};
  const int y = static_cast<int>(ymd.year());
  if (y < 0 || y > 9999) {  // (not an instant FHIR can hold: written as it comes)
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02ld.%03ldZ", y, static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<long>(hms.hours().count()),
                  static_cast<long>(hms.minutes().count()), static_cast<long>(hms.seconds().count()),
                  static_cast<long>(hms.subseconds().count()));
    return buf;
  }
  // Digit by digit: two of these per version written (meta.lastUpdated, and the body made with it), where
  // snprintf cost 3,600 instructions each.
  std::string out(24, '\0');
  auto put = [&](std::size_t at, unsigned value, std::size_t width) {
    for (std::size_t i = width; i-- > 0; value /= 10) out[at + i] = static_cast<char>('0' + value % 10);
  };
  put(0, static_cast<unsigned>(y), 4);
  out[4] = '-';
  put(5, static_cast<unsigned>(ymd.month()), 2);
  out[7] = '-';
  put(8, static_cast<unsigned>(ymd.day()), 2);
  out[10] = 'T';
  put(11, static_cast<unsigned>(hms.hours().count()), 2);
  out[13] = ':';
  put(14, static_cast<unsigned>(hms.minutes().count()), 2);
  out[16] = ':';
  put(17, static_cast<unsigned>(hms.seconds().count()), 2);
  out[19] = '.';
  put(20, static_cast<unsigned>(hms.subseconds().count()), 3);
  out[23] = 'Z';
  return out;
}

std::optional<std::pair<std::int64_t, std::int64_t>> datetime_range(std::string_view s) {
  int y = 0, mo = 1, d = 1, h = 0, mi = 0, sec = 0;
  if (!digits(s, 0, 4, y)) return std::nullopt;
  if (s.size() == 4) {
    return std::pair{days_from_civil(y, 1, 1) * 86400000, days_from_civil(y + 1, 1, 1) * 86400000};
  }
  if (s[4] != '-' || !digits(s, 5, 2, mo) || mo < 1 || mo > 12) return std::nullopt;
  if (s.size() == 7) {
    int ny = mo == 12 ? y + 1 : y, nm = mo == 12 ? 1 : mo + 1;
    return std::pair{days_from_civil(y, mo, 1) * 86400000, days_from_civil(ny, nm, 1) * 86400000};
  }
  if (s[7] != '-' || !digits(s, 8, 2, d)) return std::nullopt;
  if (!year_month_day(year(y), month(mo), day(d)).ok()) return std::nullopt;
  std::int64_t day_ms = days_from_civil(y, mo, d) * 86400000;
  if (s.size() == 10) return std::pair{day_ms, day_ms + 86400000};
  if (s[10] != 'T' || !digits(s, 11, 2, h) || s.size() < 16 || s[13] != ':' || !digits(s, 14, 2, mi))
    return std::nullopt;
  std::size_t pos = 16;
  std::int64_t precision_ms = 60000;
  std::int64_t frac_ms = 0;
  if (pos < s.size() && s[pos] == ':') {
    if (!digits(s, pos + 1, 2, sec)) return std::nullopt;
    pos += 3;
    precision_ms = 1000;
    if (pos < s.size() && s[pos] == '.') {
      std::size_t start = ++pos;
      while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
      std::size_t n = pos - start;
      if (n == 0) return std::nullopt;
      int scale = 100;
      for (std::size_t i = start; i < pos && i < start + 3; ++i, scale /= 10) frac_ms += (s[i] - '0') * scale;
      precision_ms = n >= 3 ? 1 : (n == 2 ? 10 : 100);
    }
  }
  if (h > 23 || mi > 59 || sec > 60) return std::nullopt;
  std::int64_t offset_ms = 0;
  if (pos < s.size()) {
    if (s[pos] == 'Z') {
      ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
      int oh = 0, om = 0;
      if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(s, pos + 4, 2, om))
        return std::nullopt;
      if (oh > 14 || om > 59) return std::nullopt;
      offset_ms = (oh * 60 + om) * 60000LL * (s[pos] == '+' ? 1 : -1);
      pos += 6;
    } else {
      return std::nullopt;
    }
  }
  if (pos != s.size()) return std::nullopt;
  std::int64_t low = day_ms + (h * 3600 + mi * 60 + sec) * 1000LL + frac_ms - offset_ms;
  return std::pair{low, low + precision_ms};
}

std::string format_http_date(std::int64_t epoch_ms) {
  sys_seconds tp{seconds(epoch_ms / 1000)};
  auto dp = floor<days>(tp);
  year_month_day ymd{dp};
  hh_mm_ss<seconds> hms{tp - dp};
  auto wd = dp.time_since_epoch().count() % 7;
  if (wd < 0) wd += 7;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02ld:%02ld:%02ld GMT", kWeekdays[wd],
                static_cast<unsigned>(ymd.day()), kMonths[static_cast<unsigned>(ymd.month()) - 1],
                static_cast<int>(ymd.year()), static_cast<long>(hms.hours().count()),
                static_cast<long>(hms.minutes().count()), static_cast<long>(hms.seconds().count()));
  return buf;
}

std::optional<std::int64_t> parse_http_date(std::string_view s) {
  // "Sun, 06 Nov 1994 08:49:37 GMT"
  if (s.size() != 29 || s[3] != ',' || s.substr(26) != "GMT") return std::nullopt;
  int d = 0, y = 0, h = 0, mi = 0, sec = 0;
  if (!digits(s, 5, 2, d) || !digits(s, 12, 4, y) || !digits(s, 17, 2, h) || !digits(s, 20, 2, mi) ||
      !digits(s, 23, 2, sec))
    return std::nullopt;
  int mo = 0;
  for (int i = 0; i < 12; ++i)
    if (s.substr(8, 3) == kMonths[i]) mo = i + 1;
  if (mo == 0 || !year_month_day(year(y), month(mo), day(d)).ok() || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  return (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000LL;
}

}  // namespace caduceus::fhir
