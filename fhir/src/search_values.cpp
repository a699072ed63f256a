#include "caduceus/fhir/search_values.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <system_error>

#include "caduceus/fhir/datetime.hpp"

namespace caduceus::fhir::search {
namespace {

Error invalid(std::string message) {
  return Error::make(ErrorKind::kInvalid, "invalid", std::move(message));
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

int digit_count(__int128 v) {
  if (v < 0) v = -v;
  int n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

__int128 pow10(int n) {
  __int128 p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

// Without trailing zeros in the digits (the same value, the exponent raised).
Decimal normalized(Decimal d) {
  if (d.digits == 0) return Decimal{0, 0};
  while (d.digits % 10 == 0) {
    d.digits /= 10;
    ++d.exponent;
  }
  return d;
}

int compare(const Decimal& x, const Decimal& y) {
  Decimal a = normalized(x), b = normalized(y);
  int sa = a.digits < 0 ? -1 : (a.digits > 0 ? 1 : 0);
  int sb = b.digits < 0 ? -1 : (b.digits > 0 ? 1 : 0);
  if (sa != sb) return sa < sb ? -1 : 1;
  if (sa == 0) return 0;
  // Same sign: compare magnitudes by order first, then digits aligned to the smaller exponent.
  int ma = digit_count(a.digits) + a.exponent, mb = digit_count(b.digits) + b.exponent;
  int magnitude = ma == mb ? 0 : (ma < mb ? -1 : 1);
  if (magnitude == 0) {
    int e = std::min(a.exponent, b.exponent);
    __int128 da = a.digits * pow10(a.exponent - e), db = b.digits * pow10(b.exponent - e);
    magnitude = da == db ? 0 : (da < db ? -1 : 1);
    return magnitude;  // aligned values carry their sign
  }
  return sa > 0 ? magnitude : -magnitude;
}

constexpr int kMaxDigits = 30;
constexpr int kMaxExponent = 60;

}  // namespace

std::string_view to_string(Prefix p) noexcept {
  switch (p) {
    case Prefix::kEq: return "eq";
    case Prefix::kNe: return "ne";
    case Prefix::kGt: return "gt";
    case Prefix::kLt: return "lt";
    case Prefix::kGe: return "ge";
    case Prefix::kLe: return "le";
    case Prefix::kSa: return "sa";
    case Prefix::kEb: return "eb";
    case Prefix::kAp: return "ap";
  }
  return "eq";
}

std::pair<Prefix, std::string_view> take_prefix(std::string_view value) noexcept {
  static constexpr std::pair<std::string_view, Prefix> kPrefixes[] = {
      {"eq", Prefix::kEq}, {"ne", Prefix::kNe}, {"gt", Prefix::kGt}, {"lt", Prefix::kLt}, {"ge", Prefix::kGe},
      {"le", Prefix::kLe}, {"sa", Prefix::kSa}, {"eb", Prefix::kEb}, {"ap", Prefix::kAp}};
  if (value.size() >= 2) {
    for (const auto& [text, prefix] : kPrefixes)
      if (value.starts_with(text)) return {prefix, value.substr(2)};
  }
  return {Prefix::kEq, value};
}

Result<std::string> unescape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '\\') {
      out.push_back(value[i]);
      continue;
    }
    if (i + 1 == value.size()) return std::unexpected(invalid("a search value ends with a lone '\\'"));
    char next = value[++i];
    if (next != ',' && next != '$' && next != '|' && next != '\\')
      return std::unexpected(
          invalid(std::string("'\\") + next + "' is not an escape of search (use \\, \\$ \\| \\\\)"));
    out.push_back(next);
  }
  return out;
}

std::vector<std::string_view> split_unescaped(std::string_view value, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\\') {
      ++i;  // the escaped character never separates
    } else if (value[i] == separator) {
      parts.push_back(value.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(value.substr(start));
  return parts;
}

Result<std::vector<std::string>> split_or(std::string_view value) {
  std::vector<std::string> out;
  for (std::string_view part : split_unescaped(value, ',')) {
    auto u = unescape(part);
    if (!u) return std::unexpected(u.error());
    out.push_back(std::move(*u));
  }
  return out;
}

std::optional<Decimal> Decimal::parse(std::string_view s) {
  Decimal d;
  std::size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) negative = s[i++] == '-';
  int digits = 0, fraction = 0;
  bool any = false;
  auto take_digit = [&](char c) {
    if (d.digits == 0 && c == '0') return;  // leading zeros carry no precision in the mantissa
    if (digits >= kMaxDigits) return;
    d.digits = d.digits * 10 + (c - '0');
    ++digits;
  };
  while (i < s.size() && is_digit(s[i])) {
    any = true;
    if (digits >= kMaxDigits) return std::nullopt;
    take_digit(s[i++]);
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    bool frac_any = false;
    while (i < s.size() && is_digit(s[i])) {
      frac_any = true;
      if (digits >= kMaxDigits) return std::nullopt;
      // Zeros after the point count for precision even when the mantissa is still 0 ("0.00").
      d.digits = d.digits * 10 + (s[i++] - '0');
      if (d.digits != 0) ++digits;
      ++fraction;
    }
    if (!frac_any) return std::nullopt;
    any = true;
  }
  if (!any) return std::nullopt;
  int exp = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    bool eneg = false;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) eneg = s[i++] == '-';
    if (i == s.size()) return std::nullopt;
    while (i < s.size() && is_digit(s[i])) {
      exp = exp * 10 + (s[i++] - '0');
      if (exp > kMaxExponent) return std::nullopt;
    }
    if (eneg) exp = -exp;
  }
  if (i != s.size()) return std::nullopt;
  d.exponent = exp - fraction;
  if (negative) d.digits = -d.digits;
  return d;
}

namespace {

// Writes the decimal digits of |v| so that they end at `end` (an __int128 has at most 39); returns where they start.
char* digits_ending_at(__int128 v, char* end) {
  if (v < 0) v = -v;
  char* at = end;
  do {
    *--at = static_cast<char>('0' + static_cast<int>(v % 10));
    v /= 10;
  } while (v != 0);
  return at;
}

}  // namespace

std::string Decimal::to_string() const {
  char buf[40];
  std::string s(digits_ending_at(digits, buf + sizeof buf), buf + sizeof buf);
  if (exponent > 0) {
    if (s != "0") s.append(static_cast<std::size_t>(exponent), '0');
  } else if (exponent < 0) {
    auto frac = static_cast<std::size_t>(-exponent);
    if (s.size() <= frac) s.insert(s.begin(), frac - s.size() + 1, '0');
    s.insert(s.end() - static_cast<std::ptrdiff_t>(frac), '.');
  }
  if (digits < 0) s.insert(s.begin(), '-');
  return s;
}

double Decimal::to_double() const {
  // Most values (a quantity's 97.5, 7.2e-3) have digits a double holds exactly and an exponent whose power of ten
  // it holds exactly too: then one multiplication or division, rounded once, is the nearest double (Clinger's fast
  // path).
  constexpr __int128 kExact = __int128{1} << 53;
  if (digits > -kExact && digits < kExact && exponent >= -22 && exponent <= 22) {
    static constexpr double kPowers[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                         1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const auto d = static_cast<double>(static_cast<std::int64_t>(digits));
    return exponent >= 0 ? d * kPowers[exponent] : d / kPowers[-exponent];
  }
  // Otherwise "[-]<digits>e<exponent>", read by from_chars (correctly rounded, as strtod is, and locale-free).
  char text[64];
  char* at = digits_ending_at(digits, text + 41);  // (room before for the sign, after for the exponent)
  if (digits < 0) *--at = '-';
  const char* first = at;
  at = text + 41;
  *at++ = 'e';
  at = std::to_chars(at, text + sizeof text, exponent).ptr;
  double out = 0;
  if (std::from_chars(first, at, out).ec == std::errc::result_out_of_range) {
    // Beyond a double (from_chars leaves `out` alone): infinity or zero with the sign, as strtod gives.
    out = exponent > 0 ? std::numeric_limits<double>::infinity() : 0.0;
    if (digits < 0) out = -out;
  }
  return out;
}

bool operator==(const Decimal& a, const Decimal& b) noexcept {
  return compare(a, b) == 0;
}
bool operator<(const Decimal& a, const Decimal& b) noexcept {
  return compare(a, b) < 0;
}

Result<NumberValue> parse_number(std::string_view text) {
  auto [prefix, rest] = take_prefix(text);
  auto d = Decimal::parse(rest);
  if (!d)
    return std::unexpected(invalid(
        "'" + std::string(text) + "' is not a number (a decimal such as 100, 100.00 or 1e2, with an optional prefix)"));
  NumberValue n;
  n.prefix = prefix;
  n.value = *d;
  // Half a unit of the last significant digit either side: value*10 +- 5, one decimal place further.
  n.low = Decimal{d->digits * 10 - 5, d->exponent - 1};
  n.high = Decimal{d->digits * 10 + 5, d->exponent - 1};
  return n;
}

Result<DateValue> parse_date(std::string_view text) {
  auto [prefix, rest] = take_prefix(text);
  auto range = datetime_range(rest);
  if (!range)
    return std::unexpected(
        invalid("'" + std::string(text) +
                "' is not a date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime, with an optional prefix)"));
  return DateValue{prefix, range->first, range->second};
}

Result<QuantityValue> parse_quantity(std::string_view text) {
  auto parts = split_unescaped(text, '|');
  if (parts.size() != 1 && parts.size() != 3)
    return std::unexpected(invalid("'" + std::string(text) + "' is not a quantity (number, or number|system|code)"));
  auto number = parse_number(parts[0]);
  if (!number) return std::unexpected(number.error());
  QuantityValue q;
  q.number = *number;
  if (parts.size() == 3) {
    auto system = unescape(parts[1]);
    auto code = unescape(parts[2]);
    if (!system) return std::unexpected(system.error());
    if (!code) return std::unexpected(code.error());
    if (!system->empty()) q.system = std::move(*system);
    if (!code->empty()) q.code = std::move(*code);
  }
  return q;
}

Result<TokenValue> parse_token(std::string_view text) {
  auto parts = split_unescaped(text, '|');
  if (parts.size() > 2)
    return std::unexpected(invalid("'" + std::string(text) + "' is not a token (code, system|code, |code or system|)"));
  TokenValue t;
  if (parts.size() == 1) {
    auto code = unescape(parts[0]);
    if (!code) return std::unexpected(code.error());
    if (code->empty()) return std::unexpected(invalid("an empty token matches nothing: give a code or system|code"));
    t.code = std::move(*code);
    return t;
  }
  auto system = unescape(parts[0]);
  auto code = unescape(parts[1]);
  if (!system) return std::unexpected(system.error());
  if (!code) return std::unexpected(code.error());
  if (system->empty() && code->empty()) return std::unexpected(invalid("'|' alone is not a token"));
  t.system = std::move(*system);  // "" : the code has no system
  if (!code->empty()) t.code = std::move(*code);
  return t;
}

std::optional<ReferenceValue> split_reference(std::string_view s) {
  if (s.empty()) return std::nullopt;
  ReferenceValue r;
  std::string_view path = s;
  if (s.find("://") != std::string_view::npos || s.starts_with("urn:")) {
    const auto bar = s.find('|');  // canonical url|version
    path = s.substr(0, bar);
    r.url = std::string(path);
    if (bar != std::string_view::npos) r.version = std::string(s.substr(bar + 1));
  }
  // The last segments of a REST URL: Type/id or Type/id/_history/vid. last[k] is the k-th segment from the end.
  const auto n = static_cast<std::size_t>(std::ranges::count(path, '/')) + 1;
  std::array<std::string_view, 4> last{};
  for (std::size_t k = 0, end = path.size(); k < std::min<std::size_t>(n, 4); ++k) {
    const std::size_t slash = end == 0 ? std::string_view::npos : path.rfind('/', end - 1);
    const std::size_t from = slash == std::string_view::npos ? 0 : slash + 1;
    last[k] = path.substr(from, end - from);
    end = slash == std::string_view::npos ? 0 : slash;
  }
  auto is_type = [](std::string_view t) { return !t.empty() && t[0] >= 'A' && t[0] <= 'Z'; };
  if (n >= 4 && last[1] == "_history" && is_type(last[3])) {
    r.type = std::string(last[3]);
    r.id = std::string(last[2]);
    r.version = std::string(last[0]);
  } else if (n >= 2 && is_type(last[1]) && !last[0].empty()) {
    r.type = std::string(last[1]);
    r.id = std::string(last[0]);
  } else if (n == 1) {
    r.id = std::string(last[0]);
  } else if (r.url) {
    r.id = *r.url;  // an absolute URL that is not a FHIR REST URL: matched as a whole
  } else {
    return std::nullopt;
  }
  return r;
}

Result<ReferenceValue> parse_reference(std::string_view text) {
  auto u = unescape(text);
  if (!u) return std::unexpected(u.error());
  if (u->empty()) return std::unexpected(invalid("an empty reference matches nothing"));
  auto r = split_reference(*u);
  if (!r) return std::unexpected(invalid("'" + std::string(text) + "' is not a reference (id, Type/id, or a URL)"));
  return std::move(*r);
}

}  // namespace caduceus::fhir::search
