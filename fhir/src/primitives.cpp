#include "caduceus/fhir/primitives.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <utility>

// Hand-written checks of the R4 primitive types (http://hl7.org/fhir/R4/datatypes.html#primitive): they run on every
// element of every write, so no std::regex. Each check follows the regex the specification gives, plus the value
// space rules the regex cannot say (a real calendar date, integer ranges).

namespace caduceus::fhir {

namespace {

constexpr std::array<std::pair<std::string_view, Primitive>, 20> kNames{{
    {"boolean", Primitive::kBoolean},
    {"integer", Primitive::kInteger},
    {"string", Primitive::kString},
    {"decimal", Primitive::kDecimal},
    {"uri", Primitive::kUri},
    {"url", Primitive::kUrl},
    {"canonical", Primitive::kCanonical},
    {"base64Binary", Primitive::kBase64Binary},
    {"instant", Primitive::kInstant},
    {"date", Primitive::kDate},
    {"dateTime", Primitive::kDateTime},
    {"time", Primitive::kTime},
    {"code", Primitive::kCode},
    {"oid", Primitive::kOid},
    {"id", Primitive::kId},
    {"markdown", Primitive::kMarkdown},
    {"unsignedInt", Primitive::kUnsignedInt},
    {"positiveInt", Primitive::kPositiveInt},
    {"uuid", Primitive::kUuid},
    {"xhtml", Primitive::kXhtml},
}};

constexpr std::size_t kMaxStringBytes = 1024 * 1024;  // string.maxLength in the R4 definitions is 1048576
constexpr std::size_t kQuoteLimit = 80;               // longer values are cut in diagnostics

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}
constexpr bool is_lower_hex(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f');
}
// \s of the specification's (Java) regexes.
constexpr bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// 'text' as it should appear in a diagnostic: quoted, and cut when long.
std::string quote(std::string_view text) {
  std::string out = "'";
  if (text.size() > kQuoteLimit) {
    out.append(text.substr(0, kQuoteLimit));
    out += "...";
  } else {
    out.append(text);
  }
  out += '\'';
  return out;
}

std::string invalid(std::string_view text, std::string_view type, std::string_view why) {
  std::string out = quote(text);
  out += " is not a valid ";
  out += type;
  if (!why.empty()) {
    out += " (";
    out += why;
    out += ')';
  }
  return out;
}

std::string_view json_kind_name(const json::Value& v) noexcept {
  switch (v.kind()) {
    case json::Value::Kind::kNull: return "null";
    case json::Value::Kind::kBool: return "a boolean";
    case json::Value::Kind::kNumber: return "a number";
    case json::Value::Kind::kString: return "a string";
    case json::Value::Kind::kArray: return "an array";
    case json::Value::Kind::kObject: return "an object";
  }
  return "unknown";
}

std::string wrong_json_type(Primitive p, const json::Value& v, std::string_view expected) {
  std::string out = "a value of type ";
  out += primitive_name(p);
  out += " must be a JSON ";
  out += expected;
  out += ", not ";
  out += json_kind_name(v);
  if (v.is_string() || v.is_number()) {
    out += ' ';
    out += quote(v.text());
  }
  return out;
}

// Reads exactly n digits at s[pos...]; returns -1 when they are not all there.
int read_digits(std::string_view s, std::size_t pos, std::size_t n) noexcept {
  if (pos + n > s.size()) return -1;
  int value = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (!is_digit(s[i])) return -1;
    value = value * 10 + (s[i] - '0');
  }
  return value;
}

constexpr bool is_leap_year(int year) noexcept {
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int days_in_month(int year, int month) noexcept {
  static constexpr std::array<int, 12> kDays{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && is_leap_year(year) ? 29 : kDays[static_cast<std::size_t>(month - 1)];
}

std::string out_of_range(std::string_view what, int value) {
  std::string out = "no ";
  out += what;
  out += ' ';
  if (value < 10) out += '0';
  out += std::to_string(value);
  return out;
}

// The date part shared by date, dateTime and instant: YYYY, YYYY-MM or YYYY-MM-DD, starting at s[0]. Sets `pos`
// after what it read and `parts` to 1, 2 or 3. Returns an explanation when invalid.
std::optional<std::string> parse_date_part(std::string_view s, std::size_t& pos, int& parts) {
  const int year = read_digits(s, 0, 4);
  if (year < 0) return "the year must have four digits";
  if (year == 0) return "year 0000";
  pos = 4;
  parts = 1;
  if (pos == s.size() || s[pos] != '-') return std::nullopt;
  const int month = read_digits(s, pos + 1, 2);
  if (month < 0 || (pos + 3 < s.size() && is_digit(s[pos + 3]))) return "the month must have two digits";
  if (month < 1 || month > 12) return out_of_range("month", month);
  pos += 3;
  parts = 2;
  if (pos == s.size() || s[pos] != '-') return std::nullopt;
  const int day = read_digits(s, pos + 1, 2);
  if (day < 0 || (pos + 3 < s.size() && is_digit(s[pos + 3]))) return "the day must have two digits";
  if (day < 1 || day > days_in_month(year, month)) {
    return out_of_range("day", day) + " in " + std::string(s.substr(0, 7));
  }
  pos += 3;
  parts = 3;
  return std::nullopt;
}

// hh:mm:ss(.f+)? starting at s[pos]; sets pos after it.
std::optional<std::string> parse_time_part(std::string_view s, std::size_t& pos) {
  const int hour = read_digits(s, pos, 2);
  if (hour < 0 || pos + 2 >= s.size() || s[pos + 2] != ':') return "the time must be hh:mm:ss";
  if (hour > 23) return out_of_range("hour", hour);
  const int minute = read_digits(s, pos + 3, 2);
  if (minute < 0 || pos + 5 >= s.size() || s[pos + 5] != ':') return "the time must be hh:mm:ss";
  if (minute > 59) return out_of_range("minute", minute);
  const int second = read_digits(s, pos + 6, 2);
  if (second < 0) return "the time must be hh:mm:ss";
  if (second > 60) return out_of_range("second", second);  // 60: a leap second, which the R4 regex allows
  pos += 8;
  if (pos < s.size() && s[pos] == '.') {
    std::size_t end = pos + 1;
    while (end < s.size() && is_digit(s[end])) ++end;
    if (end == pos + 1) return "a decimal point must be followed by digits";
    pos = end;
  }
  return std::nullopt;
}

// Z, or +hh:mm / -hh:mm from -14:00 to +14:00, at s[pos] up to the end.
std::optional<std::string_view> parse_zone(std::string_view s, std::size_t pos) {
  if (pos == s.size()) return "a time zone is required when a time is given";
  if (s[pos] == 'Z') return pos + 1 == s.size() ? std::nullopt : std::optional<std::string_view>("trailing text");
  if (s[pos] != '+' && s[pos] != '-') return "the time zone must be Z or +hh:mm / -hh:mm";
  const int hour = read_digits(s, pos + 1, 2);
  const int minute = read_digits(s, pos + 4, 2);
  if (hour < 0 || minute < 0 || s[pos + 3] != ':' || pos + 6 != s.size()) {
    return "the time zone must be Z or +hh:mm / -hh:mm";
  }
  if (minute > 59 || hour > 14 || (hour == 14 && minute != 0)) return "time zone offset out of range";
  return std::nullopt;
}

std::optional<std::string> check_date(std::string_view s) {
  std::size_t pos = 0;
  int parts = 0;
  if (auto why = parse_date_part(s, pos, parts)) return invalid(s, "date", *why);
  if (pos != s.size()) return invalid(s, "date", "expected YYYY, YYYY-MM or YYYY-MM-DD");
  return std::nullopt;
}

std::optional<std::string> check_date_time(std::string_view s, bool instant) {
  const std::string_view type = instant ? "instant" : "dateTime";
  std::size_t pos = 0;
  int parts = 0;
  if (auto why = parse_date_part(s, pos, parts)) return invalid(s, type, *why);
  if (pos == s.size()) {
    if (instant) return invalid(s, type, "an instant needs date, time and time zone");
    return std::nullopt;
  }
  if (parts != 3 || s[pos] != 'T') {
    return invalid(s, type,
                   instant ? "expected YYYY-MM-DDThh:mm:ss[.f]Z or +hh:mm"
                           : "expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.f]+zz:zz");
  }
  ++pos;
  if (auto why = parse_time_part(s, pos)) return invalid(s, type, *why);
  if (auto why = parse_zone(s, pos)) return invalid(s, type, *why);
  return std::nullopt;
}

std::optional<std::string> check_time(std::string_view s) {
  std::size_t pos = 0;
  if (auto why = parse_time_part(s, pos)) return invalid(s, "time", *why);
  if (pos != s.size()) return invalid(s, "time", "expected hh:mm:ss[.f] without a time zone");
  return std::nullopt;
}

// -?(0|[1-9][0-9]*) in [min, max]; the text is a JSON number literal.
std::optional<std::string> check_integer(Primitive p, std::string_view s, std::int64_t min, std::int64_t max) {
  std::size_t pos = 0;
  const bool negative = !s.empty() && s[0] == '-';
  if (negative) pos = 1;
  if (pos == s.size()) return invalid(s, primitive_name(p), "not a number");
  if (s[pos] == '0' && pos + 1 < s.size() && is_digit(s[pos + 1])) {
    return invalid(s, primitive_name(p), "leading zero");
  }
  std::int64_t value = 0;
  for (std::size_t i = pos; i < s.size(); ++i) {
    if (!is_digit(s[i])) return invalid(s, primitive_name(p), "an integer has no fraction or exponent");
    if (value <= (std::int64_t{1} << 40)) value = value * 10 + (s[i] - '0');  // beyond that it is out of range
  }
  if (negative) value = -value;
  if (value < min || value > max) {
    std::string why = "out of range ";
    why += std::to_string(min);
    why += "..";
    why += std::to_string(max);
    return invalid(s, primitive_name(p), why);
  }
  return std::nullopt;
}

// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
std::optional<std::string> check_decimal(std::string_view s) {
  std::size_t pos = 0;
  if (pos < s.size() && s[pos] == '-') ++pos;
  if (pos == s.size() || !is_digit(s[pos])) return invalid(s, "decimal", "not a number");
  if (s[pos] == '0' && pos + 1 < s.size() && is_digit(s[pos + 1])) return invalid(s, "decimal", "leading zero");
  while (pos < s.size() && is_digit(s[pos])) ++pos;
  if (pos < s.size() && s[pos] == '.') {
    const std::size_t start = ++pos;
    while (pos < s.size() && is_digit(s[pos])) ++pos;
    if (pos == start) return invalid(s, "decimal", "a decimal point must be followed by digits");
  }
  if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
    ++pos;
    if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) ++pos;
    const std::size_t start = pos;
    while (pos < s.size() && is_digit(s[pos])) ++pos;
    if (pos == start) return invalid(s, "decimal", "an exponent needs digits");
  }
  if (pos != s.size()) return invalid(s, "decimal", "not a number");
  return std::nullopt;
}

// string and markdown: [ \r\n\t\S]+, at most 1 MiB. Control characters other than tab, CR and LF are refused
// too: XML cannot carry them, and every FHIR resource must survive the XML form. Only whitespace is allowed
// (non-whitespace content is a SHOULD in datatypes.html).
std::optional<std::string> check_string(Primitive p, std::string_view s) {
  if (s.size() > kMaxStringBytes) return invalid(s, primitive_name(p), "longer than 1 MiB");
  for (const char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      return invalid(s, primitive_name(p), "contains a control character");
    }
  }
  return std::nullopt;
}

// uri, url, canonical: \S*.
std::optional<std::string> check_uri(Primitive p, std::string_view s) {
  if (s.size() > kMaxStringBytes) return invalid(s, primitive_name(p), "longer than 1 MiB");
  for (const char c : s) {
    if (is_space(c) || static_cast<unsigned char>(c) < 0x20)
      return invalid(s, primitive_name(p), "contains whitespace");
  }
  return std::nullopt;
}

// [^\s]+(\s[^\s]+)*
std::optional<std::string> check_code(std::string_view s) {
  if (is_space(s.front()) || is_space(s.back())) return invalid(s, "code", "leading or trailing whitespace");
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (is_space(s[i]) && is_space(s[i - 1])) return invalid(s, "code", "more than one whitespace in a row");
  }
  for (const char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 && !is_space(c)) return invalid(s, "code", "contains a control character");
  }
  return std::nullopt;
}

// [A-Za-z0-9\-\.]{1,64}
std::optional<std::string> check_id(std::string_view s) {
  if (s.size() > 64) return invalid(s, "id", "longer than 64 characters");
  for (const char c : s) {
    const bool ok = is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '.';
    if (!ok) return invalid(s, "id", "only A-Z, a-z, 0-9, '-' and '.' are allowed");
  }
  return std::nullopt;
}

// urn:oid:[0-2](\.(0|[1-9][0-9]*))+
std::optional<std::string> check_oid(std::string_view s) {
  constexpr std::string_view kPrefix = "urn:oid:";
  if (!s.starts_with(kPrefix)) return invalid(s, "oid", "must start with urn:oid:");
  std::string_view rest = s.substr(kPrefix.size());
  if (rest.size() < 3 || rest[0] < '0' || rest[0] > '2' || rest[1] != '.') {
    return invalid(s, "oid", "must be urn:oid: followed by 0, 1 or 2 and at least one more arc");
  }
  std::size_t pos = 1;
  while (pos < rest.size()) {
    if (rest[pos] != '.') return invalid(s, "oid", "arcs are separated by '.'");
    const std::size_t start = ++pos;
    while (pos < rest.size() && is_digit(rest[pos])) ++pos;
    if (pos == start) return invalid(s, "oid", "empty arc");
    if (rest[start] == '0' && pos - start > 1) return invalid(s, "oid", "an arc has no leading zero");
  }
  return std::nullopt;
}

// urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
std::optional<std::string> check_uuid(std::string_view s) {
  constexpr std::string_view kPrefix = "urn:uuid:";
  if (!s.starts_with(kPrefix)) return invalid(s, "uuid", "must start with urn:uuid:");
  const std::string_view rest = s.substr(kPrefix.size());
  if (rest.size() != 36) return invalid(s, "uuid", "expected 8-4-4-4-12 lower-case hex digits");
  for (std::size_t i = 0; i < rest.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? rest[i] != '-' : !is_lower_hex(rest[i])) {
      return invalid(s, "uuid", "expected 8-4-4-4-12 lower-case hex digits");
    }
  }
  return std::nullopt;
}

// Base64 (RFC 4648 alphabet, padded to a multiple of 4); whitespace anywhere is allowed.
std::optional<std::string> check_base64(std::string_view s) {
  std::size_t count = 0;
  std::size_t padding = 0;
  for (const char c : s) {
    if (is_space(c)) continue;
    const bool alphabet = is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' || c == '/';
    if (c == '=') {
      ++padding;
    } else if (!alphabet) {
      return invalid(s, "base64Binary", "character outside the base64 alphabet");
    } else if (padding > 0) {
      return invalid(s, "base64Binary", "'=' only at the end");
    }
    ++count;
  }
  if (count == 0) return invalid(s, "base64Binary", "no content");
  if (count % 4 != 0) return invalid(s, "base64Binary", "length is not a multiple of 4");
  if (padding > 2) return invalid(s, "base64Binary", "too much padding");
  return std::nullopt;
}

// Basic: an XHTML div element. Full checking (allowed elements and attributes) is the validator's job.
std::optional<std::string> check_xhtml(std::string_view s) {
  std::size_t pos = 0;
  while (pos < s.size() && is_space(s[pos])) ++pos;
  const std::string_view rest = s.substr(pos);
  if (!rest.starts_with("<div") || rest.size() < 5 || !(rest[4] == '>' || rest[4] == '/' || is_space(rest[4]))) {
    return invalid(s, "xhtml", "must be a <div> element");
  }
  std::size_t end = rest.size();
  while (end > 0 && is_space(rest[end - 1])) --end;
  if (end == 0 || rest[end - 1] != '>') return invalid(s, "xhtml", "must end with the closing of the <div>");
  return std::nullopt;
}

}  // namespace

std::optional<Primitive> primitive_from_name(std::string_view name) noexcept {
  for (const auto& [n, p] : kNames) {
    if (n == name) return p;
  }
  return std::nullopt;
}

std::string_view primitive_name(Primitive p) noexcept {
  for (const auto& [n, q] : kNames) {
    if (q == p) return n;
  }
  return "unknown";
}

std::optional<std::string> check_primitive(Primitive p, const json::Value& value) {
  switch (p) {
    case Primitive::kBoolean:
      if (!value.is_bool()) return wrong_json_type(p, value, "boolean (true or false)");
      return std::nullopt;
    case Primitive::kInteger:
    case Primitive::kUnsignedInt:
    case Primitive::kPositiveInt:
    case Primitive::kDecimal:
      if (!value.is_number()) return wrong_json_type(p, value, "number");
      break;
    default:
      if (!value.is_string()) return wrong_json_type(p, value, "string");
      if (value.text().empty()) {
        std::string out = "a value of type ";
        out += primitive_name(p);
        out += " must not be an empty string";
        return out;
      }
      break;
  }

  const std::string_view s = value.text();
  constexpr std::int64_t kInt32Max = 2147483647;
  switch (p) {
    case Primitive::kInteger: return check_integer(p, s, -kInt32Max - 1, kInt32Max);
    case Primitive::kUnsignedInt: return check_integer(p, s, 0, kInt32Max);
    case Primitive::kPositiveInt: return check_integer(p, s, 1, kInt32Max);
    case Primitive::kDecimal: return check_decimal(s);
    case Primitive::kString:
    case Primitive::kMarkdown: return check_string(p, s);
    case Primitive::kUri:
    case Primitive::kUrl:
    case Primitive::kCanonical: return check_uri(p, s);
    case Primitive::kBase64Binary: return check_base64(s);
    case Primitive::kInstant: return check_date_time(s, true);
    case Primitive::kDate: return check_date(s);
    case Primitive::kDateTime: return check_date_time(s, false);
    case Primitive::kTime: return check_time(s);
    case Primitive::kCode: return check_code(s);
    case Primitive::kOid: return check_oid(s);
    case Primitive::kId: return check_id(s);
    case Primitive::kUuid: return check_uuid(s);
    case Primitive::kXhtml: return check_xhtml(s);
    case Primitive::kBoolean: break;
  }
  return std::nullopt;
}

}  // namespace caduceus::fhir
