#pragma once

// Values of items as FHIRPath's System types, and the comparisons between them; private to the engine.

#include <optional>
#include <string>
#include <string_view>

#include "caduceus/resources/fhirpath.hpp"

namespace caduceus::resources::fhirpath {

// A System-typed view of an item: borrowed text, no allocation.
struct Sys {
  Item::Kind kind = Item::Kind::kString;
  bool boolean = false;
  std::int64_t integer = 0;
  std::string_view text;  // string content, decimal/date/time text, quantity value
  std::string_view unit;
};

// nullopt for a complex node (or a primitive without a value).
std::optional<Sys> system_value(const Item& item) noexcept;

// A date, dateTime or time with its precision (1 year ... 6 second; for a time 4 hour ... 6 second).
struct DateParts {
  int v[7] = {0, 1, 1, 0, 0, 0, 0};  // year, month, day, hour, minute, second, millisecond
  int precision = 0;
  bool has_tz = false;
  int tz_minutes = 0;
};
std::optional<DateParts> parse_date(std::string_view text, bool time_only) noexcept;

double to_double(std::string_view text) noexcept;
std::string format_decimal(double d);

// `=`: nullopt when the result is empty (different date precisions).
std::optional<bool> equal(const Item& a, const Item& b);
// `~`.
bool equivalent(const Item& a, const Item& b);
// <0, 0, >0; nullopt when not comparable because of precision; `ok` false when the types cannot be compared.
std::optional<int> compare(const Item& a, const Item& b, bool& ok);

}  // namespace caduceus::resources::fhirpath
