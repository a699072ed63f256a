#include "caduceus/adapters/hl7v2/time_zone.hpp"

#include <date/tz.h>

#include <cctype>
#include <chrono>
#include <exception>
#include <optional>
#include <string>

namespace caduceus::adapters::hl7v2 {
namespace {

// "+hh:mm", "-hhmm", "+hh": minutes east of UTC; nullopt when not such an offset.
std::optional<int> parse_offset(std::string_view s) {
  if (s.size() < 3 || (s[0] != '+' && s[0] != '-')) return std::nullopt;
  std::string digits;
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] == ':' && i == 3) continue;
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
    digits.push_back(s[i]);
  }
  if (digits.size() != 2 && digits.size() != 4) return std::nullopt;
  int hours = std::stoi(digits.substr(0, 2)), minutes = digits.size() == 4 ? std::stoi(digits.substr(2)) : 0;
  if (hours > 14 || minutes > 59) return std::nullopt;
  int total = hours * 60 + minutes;
  return s[0] == '-' ? -total : total;
}

}  // namespace

fhir::Result<TimeZone> TimeZone::parse(std::string_view spec) {
  TimeZone tz;
  if (spec.empty() || spec == "UTC" || spec == "Z" || spec == "Etc/UTC") return tz;
  if (spec[0] == '+' || spec[0] == '-') {
    auto minutes = parse_offset(spec);
    if (!minutes)
      return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                        "'" + std::string(spec) + "' is not a UTC offset (+hh:mm, -hhmm or +hh, at most 14 hours)");
    tz.fixed_minutes_ = *minutes;
    tz.name_ = std::string(spec);
    return tz;
  }
  try {
    tz.zone_ = date::locate_zone(spec);
  } catch (const std::exception&) {
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                      "'" + std::string(spec) +
                          "' is not a time zone of the tz database (e.g. Europe/Paris) "
                          "nor a UTC offset (+hh:mm)");
  }
  tz.name_ = std::string(spec);
  return tz;
}

int TimeZone::offset_minutes(int year, unsigned month, unsigned day, int hour, int minute, int second) const {
  if (zone_ == nullptr) return fixed_minutes_;
  const auto* zone = static_cast<const date::time_zone*>(zone_);
  date::local_seconds local = date::local_days{date::year{year} / date::month{month} / date::day{day}} +
                              std::chrono::hours{hour} + std::chrono::minutes{minute} + std::chrono::seconds{second};
  date::local_info info = zone->get_info(local);
  // unique: first; nonexistent (gap): first is the offset before it; ambiguous: first is the earlier one.
  return static_cast<int>(std::chrono::duration_cast<std::chrono::minutes>(info.first.offset).count());
}

}  // namespace caduceus::adapters::hl7v2
