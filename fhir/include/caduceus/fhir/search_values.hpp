#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::fhir::search {

// The syntax of FHIR R4 search parameter values (http://hl7.org/fhir/R4/search.html), independent of any
// resource type: what a value of each parameter type means, as plain data the query builder turns into SQL.

// Splits a parameter's value on the commas that separate OR alternatives (`a,b`), keeping escaped ones
// (`\,`), and unescapes `\,` `\$` `\|` `\\` in each part. An escape of any other character is an error.
Result<std::vector<std::string>> split_or(std::string_view value);

// Splits on unescaped `|` (token system|code, quantity number|system|code) or `$` (composite) without
// unescaping: call unescape() on each part afterwards.
std::vector<std::string_view> split_unescaped(std::string_view value, char separator);
Result<std::string> unescape(std::string_view value);

enum class Prefix { kEq, kNe, kGt, kLt, kGe, kLe, kSa, kEb, kAp };
std::string_view to_string(Prefix p) noexcept;

// A prefix at the start of a number, date or quantity value ("ge2020" -> kGe, "2020"). No prefix: kEq.
std::pair<Prefix, std::string_view> take_prefix(std::string_view value) noexcept;

// An exact decimal: digits * 10^exponent (a value written "1.50" is 150 * 10^-2).
struct Decimal {
  __int128 digits = 0;
  int exponent = 0;

  static std::optional<Decimal> parse(std::string_view text);  // FHIR decimal syntax, also 1e3 and 1.5E-2
  std::string to_string() const;
  // The nearest double (correctly rounded: what strtod of to_string() gives, without the string).
  double to_double() const;
  friend bool operator==(const Decimal& a, const Decimal& b) noexcept;
  friend bool operator<(const Decimal& a, const Decimal& b) noexcept;
  friend bool operator<=(const Decimal& a, const Decimal& b) noexcept { return !(b < a); }
};

// A number search value: the prefix, the value as written, and the range of values it stands for given its
// precision: "100" is [99.5, 100.5), "100.00" is [99.995, 100.005), "1e2" is [50, 150) (search.html#number).
struct NumberValue {
  Prefix prefix = Prefix::kEq;
  Decimal value;
  Decimal low, high;  // [low, high)
};
Result<NumberValue> parse_number(std::string_view text);

// A date search value: the prefix and the [low, high) range in ms since the epoch that the value's precision
// covers ("2020" is the whole year; a value without a time zone is read as UTC).
struct DateValue {
  Prefix prefix = Prefix::kEq;
  std::int64_t low_ms = 0, high_ms = 0;
};
Result<DateValue> parse_date(std::string_view text);

// `[prefix]number|system|code`, `[prefix]number||code`, `[prefix]number`.
struct QuantityValue {
  NumberValue number;
  std::optional<std::string> system;  // nullopt: any system; "" never happens (an empty system is "any")
  std::optional<std::string> code;    // unit code (or unit text when no system)
};
Result<QuantityValue> parse_quantity(std::string_view text);

// `code`, `system|code`, `|code` (no system), `system|` (any code of the system).
struct TokenValue {
  std::optional<std::string> system;  // nullopt: any system; "" : the code must have no system
  std::optional<std::string> code;    // nullopt: any code
};
Result<TokenValue> parse_token(std::string_view text);

// `id`, `Type/id`, `Type/id/_history/vid`, an absolute URL (`http://server/fhir/Type/id`), or a canonical
// (`url|version`).
struct ReferenceValue {
  std::optional<std::string> type;
  std::string id;  // the logical id, or the whole URL when it is not a FHIR REST URL
  std::optional<std::string> version;
  std::optional<std::string> url;  // set for absolute URLs
};
// A reference search value (search escapes undone first).
Result<ReferenceValue> parse_reference(std::string_view text);
// A reference as a resource holds it (Reference.reference, no search escapes); nullopt when it is none of the
// forms above.
std::optional<ReferenceValue> split_reference(std::string_view text);

}  // namespace caduceus::fhir::search
