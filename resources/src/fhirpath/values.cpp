#include "values.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

namespace caduceus::resources::fhirpath {

namespace {

using Kind = Item::Kind;

bool is_integer_type(fhir::Primitive p) {
  return p == fhir::Primitive::kInteger || p == fhir::Primitive::kUnsignedInt || p == fhir::Primitive::kPositiveInt;
}

int read_int(std::string_view s, std::size_t i, std::size_t n, bool& ok) {
  int v = 0;
  if (i + n > s.size()) {
    ok = false;
    return 0;
  }
  for (std::size_t k = 0; k < n; ++k) {
    const char c = s[i + k];
    if (c < '0' || c > '9') {
      ok = false;
      return 0;
    }
    v = v * 10 + (c - '0');
  }
  return v;
}

// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
long days_from_civil(long y, unsigned m, unsigned d) {
  y -= m <= 2;
  const long era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<long>(doe) - 719468;
}

void civil_from_days(long z, int& y, int& m, int& d) {
  z += 719468;
  const long era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const long yy = static_cast<long>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  y = static_cast<int>(yy + (m <= 2));
}

// Shifts a dateTime with a time zone to UTC (only meaningful from hour precision on).
void to_utc(DateParts& p) {
  if (!p.has_tz || p.precision < 4 || p.tz_minutes == 0) return;
  long minutes = days_from_civil(p.v[0], static_cast<unsigned>(p.v[1]), static_cast<unsigned>(p.v[2])) * 1440L +
                 p.v[3] * 60L + p.v[4] - p.tz_minutes;
  long days = minutes / 1440;
  long rem = minutes % 1440;
  if (rem < 0) {
    rem += 1440;
    --days;
  }
  civil_from_days(days, p.v[0], p.v[1], p.v[2]);
  p.v[3] = static_cast<int>(rem / 60);
  p.v[4] = static_cast<int>(rem % 60);
  p.tz_minutes = 0;
}

std::optional<int> compare_dates(DateParts a, DateParts b, int first) {
  if (a.has_tz && b.has_tz) {
    to_utc(a);
    to_utc(b);
  }
  const int common = std::min(a.precision, b.precision);
  for (int level = first; level < common; ++level) {
    if (a.v[level] != b.v[level]) return a.v[level] < b.v[level] ? -1 : 1;
    if (level == 5 && a.v[6] != b.v[6]) return a.v[6] < b.v[6] ? -1 : 1;  // ms are part of seconds
  }
  if (a.precision != b.precision) return std::nullopt;
  return 0;
}

bool is_date_kind(Kind k) {
  return k == Kind::kDate || k == Kind::kDateTime;
}
bool is_number_kind(Kind k) {
  return k == Kind::kInteger || k == Kind::kDecimal;
}

double number_of(const Sys& s) {
  return s.kind == Kind::kInteger ? static_cast<double>(s.integer) : to_double(s.text);
}

// Decimal places of a decimal's text (0 for an integer).
int scale_of(const Sys& s) {
  if (s.kind != Kind::kDecimal) return 0;
  const auto dot = s.text.find('.');
  return dot == std::string_view::npos ? 0 : static_cast<int>(s.text.size() - dot - 1);
}

std::string normalize_ws_lower(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// Calendar duration keywords and their UCUM forms, for quantity equality.
std::string_view canonical_unit(std::string_view u) {
  if (u == "year" || u == "years") return "a";
  if (u == "month" || u == "months") return "mo";
  if (u == "week" || u == "weeks") return "wk";
  if (u == "day" || u == "days") return "d";
  if (u == "hour" || u == "hours") return "h";
  if (u == "minute" || u == "minutes") return "min";
  if (u == "second" || u == "seconds") return "s";
  if (u == "millisecond" || u == "milliseconds") return "ms";
  return u;
}

// Equality of two JSON trees as FHIRPath's reference engine sees it: members in any order, numbers equal when
// they agree to 8 decimal places (so 1.0 = 1, and 1E-22 = 1E-245).
bool deep_equal(const fhir::json::Value& a, const fhir::json::Value& b) {
  using VK = fhir::json::Value::Kind;
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case VK::kNull: return true;
    case VK::kBool: return a.as_bool() == b.as_bool();
    case VK::kString: return a.text() == b.text();
    case VK::kNumber: {
      if (a.text() == b.text()) return true;
      const double x = std::round(to_double(a.text()) / 1e-8);
      const double y = std::round(to_double(b.text()) / 1e-8);
      return x == y;
    }
    case VK::kArray: {
      if (a.items().size() != b.items().size()) return false;
      for (std::size_t i = 0; i < a.items().size(); ++i) {
        if (!deep_equal(a.items()[i], b.items()[i])) return false;
      }
      return true;
    }
    case VK::kObject: {
      if (a.members().size() != b.members().size()) return false;
      for (const auto& [key, value] : a.members()) {
        const fhir::json::Value* other = b.find(key);
        if (other == nullptr || !deep_equal(value, *other)) return false;
      }
      return true;
    }
  }
  return false;
}

}  // namespace

std::string_view Item::type_name() const noexcept {
  switch (kind) {
    case Kind::kNode:
      if (type != nullptr) return type->name;
      if (node != nullptr && node->is_object()) {
        if (const auto* rt = node->find("resourceType"); rt != nullptr && rt->is_string()) return rt->text();
      }
      return {};
    case Kind::kBoolean: return "System.Boolean";
    case Kind::kString: return "System.String";
    case Kind::kInteger: return "System.Integer";
    case Kind::kDecimal: return "System.Decimal";
    case Kind::kDate: return "System.Date";
    case Kind::kDateTime: return "System.DateTime";
    case Kind::kTime: return "System.Time";
    case Kind::kQuantity: return "System.Quantity";
  }
  return {};
}

double to_double(std::string_view text) noexcept {
  double d = 0;
  std::from_chars(text.data(), text.data() + text.size(), d);
  return d;
}

std::string format_decimal(double d) {
  if (std::isnan(d) || std::isinf(d)) return "0";
  if (d == std::floor(d) && std::fabs(d) < 1e15) {
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed, 0);
    return std::string(buf, r.ptr) + ".0";
  }
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
  if (r.ec != std::errc()) r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

std::optional<DateParts> parse_date(std::string_view s, bool time_only) noexcept {
  DateParts p;
  bool ok = true;
  std::size_t i = 0;
  int level = 0;
  if (!time_only) {
    p.v[0] = read_int(s, 0, 4, ok);
    if (!ok) return std::nullopt;
    i = 4;
    level = 1;
    if (i < s.size() && s[i] == '-') {
      p.v[1] = read_int(s, i + 1, 2, ok);
      i += 3;
      level = 2;
      if (ok && i < s.size() && s[i] == '-') {
        p.v[2] = read_int(s, i + 1, 2, ok);
        i += 3;
        level = 3;
      }
    }
    if (!ok) return std::nullopt;
    if (i < s.size() && s[i] == 'T') ++i;
  } else {
    level = 3;
    if (!s.empty() && s[0] == 'T') ++i;
  }
  if (i < s.size() && level == 3 && std::isdigit(static_cast<unsigned char>(s[i]))) {
    p.v[3] = read_int(s, i, 2, ok);
    i += 2;
    level = 4;
    if (ok && i < s.size() && s[i] == ':') {
      p.v[4] = read_int(s, i + 1, 2, ok);
      i += 3;
      level = 5;
      if (ok && i < s.size() && s[i] == ':') {
        p.v[5] = read_int(s, i + 1, 2, ok);
        i += 3;
        level = 6;
        if (ok && i < s.size() && s[i] == '.') {
          ++i;
          int ms = 0;
          int digits = 0;
          while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
            if (digits < 3) ms = ms * 10 + (s[i] - '0');
            ++digits;
            ++i;
          }
          for (; digits < 3; ++digits) ms *= 10;
          p.v[6] = ms;
        }
      }
    }
    if (!ok) return std::nullopt;
  }
  if (i < s.size()) {
    if (s[i] == 'Z') {
      p.has_tz = true;
      ++i;
    } else if (s[i] == '+' || s[i] == '-') {
      const int sign = s[i] == '-' ? -1 : 1;
      const int h = read_int(s, i + 1, 2, ok);
      const int m = read_int(s, i + 4, 2, ok);
      if (!ok) return std::nullopt;
      p.has_tz = true;
      p.tz_minutes = sign * (h * 60 + m);
      i += 6;
    }
  }
  if (i != s.size()) return std::nullopt;
  p.precision = level;
  return p;
}

std::optional<Sys> system_value(const Item& item) noexcept {
  Sys s;
  if (item.kind != Kind::kNode) {
    s.kind = item.kind;
    s.boolean = item.boolean;
    s.integer = item.integer;
    s.text = item.text;
    s.unit = item.unit;
    return s;
  }
  const fhir::json::Value* v = item.node;
  if (v == nullptr) return std::nullopt;
  const fhir::Primitive* prim =
      item.type != nullptr && item.type->primitive.has_value() ? &*item.type->primitive : nullptr;
  switch (v->kind()) {
    case fhir::json::Value::Kind::kBool:
      s.kind = Kind::kBoolean;
      s.boolean = v->as_bool();
      return s;
    case fhir::json::Value::Kind::kNumber: {
      const std::string& t = v->text();
      const bool integral = prim ? is_integer_type(*prim) : t.find_first_of(".eE") == std::string::npos;
      if (integral) {
        std::int64_t i = 0;
        if (std::from_chars(t.data(), t.data() + t.size(), i).ec == std::errc()) {
          s.kind = Kind::kInteger;
          s.integer = i;
          return s;
        }
      }
      s.kind = Kind::kDecimal;
      s.text = t;
      return s;
    }
    case fhir::json::Value::Kind::kString:
      s.text = v->text();
      s.kind = Kind::kString;
      if (prim) {
        if (*prim == fhir::Primitive::kDate) s.kind = Kind::kDate;
        if (*prim == fhir::Primitive::kDateTime || *prim == fhir::Primitive::kInstant) s.kind = Kind::kDateTime;
        if (*prim == fhir::Primitive::kTime) s.kind = Kind::kTime;
      }
      return s;
    case fhir::json::Value::Kind::kObject: {
      // A Quantity (or one of its profiles: Age, Duration, ...) is a System Quantity.
      const bool quantity_type = item.type != nullptr && item.type->base != nullptr &&
                                 (item.type->name == "Quantity" || item.type->base->name == "Quantity");
      if (!quantity_type && item.type != nullptr) return std::nullopt;
      const auto* value = v->find("value");
      if (value == nullptr || !value->is_number()) return std::nullopt;
      if (!quantity_type && v->find("code") == nullptr && v->find("unit") == nullptr) return std::nullopt;
      s.kind = Kind::kQuantity;
      s.text = value->text();
      if (const auto* code = v->find("code"); code != nullptr && code->is_string()) {
        s.unit = code->text();
      } else if (const auto* unit = v->find("unit"); unit != nullptr && unit->is_string()) {
        s.unit = unit->text();
      }
      return s;
    }
    default: return std::nullopt;
  }
}

std::optional<int> compare(const Item& a, const Item& b, bool& ok) {
  ok = true;
  const auto sa = system_value(a);
  const auto sb = system_value(b);
  if (!sa || !sb) {
    ok = false;
    return std::nullopt;
  }
  Kind ka = sa->kind;
  Kind kb = sb->kind;
  // A string compared with a date: the string is read as a date (FHIR data without type information).
  if (ka == Kind::kString && is_date_kind(kb)) ka = Kind::kDateTime;
  if (kb == Kind::kString && is_date_kind(ka)) kb = Kind::kDateTime;
  if (is_number_kind(ka) && is_number_kind(kb)) {
    if (ka == Kind::kInteger && kb == Kind::kInteger) {
      return sa->integer < sb->integer ? -1 : sa->integer > sb->integer ? 1 : 0;
    }
    const double x = number_of(*sa);
    const double y = number_of(*sb);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (ka == Kind::kString && kb == Kind::kString) {
    const int c = sa->text.compare(sb->text);
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (is_date_kind(ka) && is_date_kind(kb)) {
    const auto da = parse_date(sa->text, false);
    const auto db = parse_date(sb->text, false);
    if (!da || !db) {
      ok = false;
      return std::nullopt;
    }
    return compare_dates(*da, *db, 0);
  }
  if (ka == Kind::kTime && kb == Kind::kTime) {
    const auto da = parse_date(sa->text, true);
    const auto db = parse_date(sb->text, true);
    if (!da || !db) {
      ok = false;
      return std::nullopt;
    }
    return compare_dates(*da, *db, 3);
  }
  if (ka == Kind::kQuantity && kb == Kind::kQuantity) {
    if (canonical_unit(sa->unit) != canonical_unit(sb->unit)) {
      ok = false;
      return std::nullopt;
    }
    const double x = to_double(sa->text);
    const double y = to_double(sb->text);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (ka == Kind::kBoolean && kb == Kind::kBoolean) {
    return static_cast<int>(sa->boolean) - static_cast<int>(sb->boolean);
  }
  ok = false;
  return std::nullopt;
}

std::optional<bool> equal(const Item& a, const Item& b) {
  if (a.kind == Kind::kNode && b.kind == Kind::kNode && a.node != nullptr && b.node != nullptr &&
      (a.node->is_object() || b.node->is_object())) {
    // Two complex elements: equal when their trees are (a Quantity's comparator and extensions count too).
    return a.node == b.node || deep_equal(*a.node, *b.node);
  }
  const auto sa = system_value(a);
  const auto sb = system_value(b);
  if (!sa || !sb) return false;
  if (sa->kind == Kind::kBoolean || sb->kind == Kind::kBoolean) {
    return sa->kind == sb->kind && sa->boolean == sb->boolean;
  }
  bool ok = true;
  const auto c = compare(a, b, ok);
  if (!ok) {
    if (sa->kind == Kind::kQuantity && sb->kind == Kind::kQuantity) return std::nullopt;
    return false;
  }
  if (!c) return std::nullopt;
  return *c == 0;
}

bool equivalent(const Item& a, const Item& b) {
  const auto sa = system_value(a);
  const auto sb = system_value(b);
  if (!sa || !sb) {
    if (a.kind == Kind::kNode && b.kind == Kind::kNode && a.node != nullptr && b.node != nullptr) {
      return deep_equal(*a.node, *b.node);
    }
    return false;
  }
  if (sa->kind == Kind::kString && sb->kind == Kind::kString) {
    return normalize_ws_lower(sa->text) == normalize_ws_lower(sb->text);
  }
  if (is_number_kind(sa->kind) && is_number_kind(sb->kind)) {
    const int scale = std::min(scale_of(*sa), scale_of(*sb));
    const double f = std::pow(10.0, scale);
    return std::round(number_of(*sa) * f) == std::round(number_of(*sb) * f);
  }
  const auto e = equal(a, b);
  return e.value_or(false);
}

}  // namespace caduceus::resources::fhirpath
