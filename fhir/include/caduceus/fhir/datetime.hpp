#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace caduceus::fhir {

// An instant as FHIR writes it, UTC with milliseconds: "2026-11-25T15:26:24.123Z".
std::string format_instant(std::int64_t epoch_ms);

// The [low, high) range of milliseconds that a FHIR date, dateTime or instant covers, given its precision
// ("2020" covers the whole year; "2020-03-04T10:00:00+02:00" one second). A value without a time zone is read
// as UTC. nullopt when the text is not a valid date/dateTime/instant.
std::optional<std::pair<std::int64_t, std::int64_t>> datetime_range(std::string_view text);

// HTTP dates (RFC 9110 IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT").
std::string format_http_date(std::int64_t epoch_ms);
std::optional<std::int64_t> parse_http_date(std::string_view text);

}  // namespace caduceus::fhir
