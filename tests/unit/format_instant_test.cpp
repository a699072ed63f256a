// fhir::format_instant writes an instant (milliseconds since 1970) as FHIR's instant text, in UTC.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "caduceus/fhir/datetime.hpp"

namespace caduceus::fhir {
namespace {

// The same text made by the calendar of <chrono> and snprintf, as format_instant did before it wrote its digits
// one by one.
std::string by_snprintf(std::int64_t epoch_ms) {
  using namespace std::chrono;
  sys_time<milliseconds> tp{milliseconds(epoch_ms)};
  auto dp = floor<days>(tp);
  year_month_day ymd{dp};
  hh_mm_ss<milliseconds> hms{tp - dp};
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02ld.%03ldZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                static_cast<long>(hms.seconds().count()), static_cast<long>(hms.subseconds().count()));
  return buf;
}

TEST(FormatInstant, WritesKnownInstants) {
  EXPECT_EQ(format_instant(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_instant(1795771921007), "2026-11-27T09:32:01.007Z");
  EXPECT_EQ(format_instant(951782400000), "2000-02-29T00:00:00.000Z");     // a leap day
  EXPECT_EQ(format_instant(-1), "1969-12-31T23:59:59.999Z");               // before 1970
  EXPECT_EQ(format_instant(-62135596800000), "0001-01-01T00:00:00.000Z");  // the first year FHIR allows
  EXPECT_EQ(format_instant(253402300799999), "9999-12-31T23:59:59.999Z");  // and its last instant
}

TEST(FormatInstant, WritesWhatTheCalendarAndSnprintfWrite) {
  std::mt19937_64 random(20261127);
  std::uniform_int_distribution<std::int64_t> any(-62167219200000, 253402300799999);  // years 0000 to 9999
  for (int i = 0; i < 100000; ++i) {
    const std::int64_t ms = any(random);
    ASSERT_EQ(format_instant(ms), by_snprintf(ms)) << ms;
  }
  EXPECT_EQ(format_instant(253402300800000), by_snprintf(253402300800000));  // year 10000: as it comes
}

}  // namespace
}  // namespace caduceus::fhir
