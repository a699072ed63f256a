#pragma once

#include <string>
#include <string_view>

#include "caduceus/fhir/error.hpp"

namespace caduceus::adapters::hl7v2 {

// The time zone of an interface: what a v2 time without an offset (TS/DTM "20240101123000") is read in. UTC, a
// fixed offset, or an IANA zone (from the system's tz database, daylight saving time included). Cheap to copy.
class TimeZone {
 public:
  TimeZone() = default;  // UTC

  // "UTC", "Z", "+hh:mm", "-hhmm", "+hh", or an IANA name ("Europe/Paris"). Errors: kInvalid.
  static fhir::Result<TimeZone> parse(std::string_view spec);

  // The offset from UTC, in minutes east, in force at this local (wall clock) time. Times that do not exist (a
  // spring-forward gap) take the offset before the gap; ambiguous ones (fall back) the earlier (daylight) offset.
  int offset_minutes(int year, unsigned month, unsigned day, int hour, int minute, int second) const;

  const std::string& name() const noexcept { return name_; }

 private:
  const void* zone_ = nullptr;  // a date::time_zone from the tz database; nullptr for a fixed offset
  int fixed_minutes_ = 0;
  std::string name_ = "UTC";
};

}  // namespace caduceus::adapters::hl7v2
