// Evaluation of a compiled FHIRPath expression against a JSON resource.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <regex>
#include <string>

#include "ast.hpp"
#include "values.hpp"

namespace caduceus::resources::fhirpath {

namespace {

using fhir::json::Value;
using Kind = Item::Kind;
using R = fhir::Result<Collection>;

constexpr std::size_t kMaxItems = 100000;  // repeat()/descendants() stop growing beyond this
constexpr int kMaxEvalDepth = 400;
constexpr std::size_t kMaxRegexSubject = 10000;

struct Env {
  const Value* root = nullptr;
  const TypeDefinition* root_type = nullptr;
  const EvalContext* ctx = nullptr;
  const std::string* text = nullptr;
  const Item* this_item = nullptr;
  std::int64_t index = 0;
  const Collection* total = nullptr;
  int depth = 0;
};

std::unexpected<fhir::Error> runtime(const Env& env, std::size_t pos, std::string message) {
  return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                    "FHIRPath evaluation error at offset " + std::to_string(pos) + ": " + message, *env.text);
}

const TypeDefinition* resource_type_of(const Value* v, const EvalContext& ctx) {
  if (ctx.definitions == nullptr || v == nullptr || !v->is_object()) return nullptr;
  const Value* rt = v->find("resourceType");
  if (rt == nullptr || !rt->is_string()) return nullptr;
  return ctx.definitions->type(rt->text());
}

// The `_name` sibling of property `name` in `obj`, found without allocating.
const Value* sibling(const Value& obj, std::string_view name) {
  char buf[128];
  if (name.size() + 1 > sizeof buf) return nullptr;
  buf[0] = '_';
  std::memcpy(buf + 1, name.data(), name.size());
  return obj.find(std::string_view(buf, name.size() + 1));
}

// Adds the items of property value `v` (an array or a single value) with type `type`; `ext` is the `_x` sibling.
void add_values(const Value* v, const TypeDefinition* type, const Value* ext, const EvalContext& ctx, Collection& out) {
  const bool resource_like = type != nullptr && type->kind == TypeKind::kResource;
  auto one = [&](const Value* node, const Value* e) {
    if (node != nullptr && node->is_null()) node = nullptr;
    if (e != nullptr && e->is_null()) e = nullptr;
    if (node == nullptr && e == nullptr) return;
    const TypeDefinition* t = type;
    if (resource_like) {
      if (const TypeDefinition* actual = resource_type_of(node, ctx)) t = actual;
    }
    out.push_back(Item::of_node(node, t, e));
  };
  if (v != nullptr && v->is_array()) {
    const auto& items = v->items();
    out.reserve(out.size() + items.size());
    const bool ext_array = ext != nullptr && ext->is_array();
    for (std::size_t i = 0; i < items.size(); ++i) {
      one(&items[i], ext_array && i < ext->items().size() ? &ext->items()[i] : nullptr);
    }
    return;
  }
  if (v == nullptr && ext != nullptr && ext->is_array()) {
    for (const Value& e : ext->items()) one(nullptr, &e);
    return;
  }
  one(v, ext);
}

bool wants_sibling(const TypeDefinition* type) {
  return type == nullptr || type->kind == TypeKind::kPrimitive;
}

// The children of `item` named `name` (FHIRPath names: `value` for `valueQuantity`).
void navigate(const Item& item, std::string_view name, const EvalContext& ctx, Collection& out) {
  if (item.kind != Kind::kNode) return;
  const Value* obj = item.node;
  const TypeDefinition* t = item.type;
  if (obj == nullptr || !obj->is_object()) {
    // A primitive: `value` is the value itself (as the spec's primitive types define it); its id and extensions
    // live in the `_x` sibling.
    if (obj != nullptr && name == "value") {
      out.push_back(item);
      return;
    }
    obj = item.extension;
    if (obj == nullptr || !obj->is_object()) return;
    t = ctx.definitions != nullptr ? ctx.definitions->type("Element") : nullptr;
  }
  if (t == nullptr) {
    const Value* v = obj->find(name);
    add_values(v, nullptr, sibling(*obj, name), ctx, out);
    return;
  }
  const Value* v = obj->find(name);
  if (v != nullptr) {
    const ElementMatch* m = t->find(name);
    if (m == nullptr || !m->element->choice) {
      const TypeDefinition* type = m != nullptr ? m->type : nullptr;
      add_values(v, type, wants_sibling(type) ? sibling(*obj, name) : nullptr, ctx, out);
      return;
    }
  }
  // A choice element (value -> valueQuantity), or a primitive present only as `_name`.
  bool found = false;
  for (const auto& [key, value] : obj->members()) {
    if (key.size() > name.size() && key.compare(0, name.size(), name) == 0 &&
        std::isupper(static_cast<unsigned char>(key[name.size()]))) {
      const ElementMatch* m = t->find(key);
      if (m != nullptr && m->element->choice && m->element->stem() == name) {
        add_values(&value, m->type, wants_sibling(m->type) ? sibling(*obj, key) : nullptr, ctx, out);
        found = true;
      }
    }
  }
  if (!found && v == nullptr) {
    if (const Value* ext = sibling(*obj, name)) {
      const ElementMatch* m = t->find(name);
      add_values(nullptr, m != nullptr ? m->type : nullptr, ext, ctx, out);
    }
  }
}

void children_of(const Item& item, const EvalContext& ctx, Collection& out) {
  if (item.kind != Kind::kNode) return;
  const Value* obj = item.node;
  const TypeDefinition* t = item.type;
  if (obj == nullptr || !obj->is_object()) {
    obj = item.extension;
    if (obj == nullptr || !obj->is_object()) return;
    t = ctx.definitions != nullptr ? ctx.definitions->type("Element") : nullptr;
  }
  for (const auto& [key, value] : obj->members()) {
    if (key == "resourceType") continue;
    if (!key.empty() && key[0] == '_') {
      if (obj->find(std::string_view(key).substr(1)) != nullptr) continue;  // added with its value
      const ElementMatch* m = t != nullptr ? t->find(std::string_view(key).substr(1)) : nullptr;
      add_values(nullptr, m != nullptr ? m->type : nullptr, &value, ctx, out);
      continue;
    }
    const ElementMatch* m = t != nullptr ? t->find(key) : nullptr;
    const TypeDefinition* type = m != nullptr ? m->type : nullptr;
    add_values(&value, type, wants_sibling(type) ? sibling(*obj, key) : nullptr, ctx, out);
  }
}

bool matches_type(const Item& item, std::string_view ns, std::string_view name, const EvalContext& ctx) {
  if (item.kind != Kind::kNode) {
    if (ns == "FHIR") return false;
    std::string_view n = item.type_name();
    n.remove_prefix(7);  // "System."
    return n == name;
  }
  if (ns == "System") return false;
  const TypeDefinition* t = item.type;
  if (t == nullptr) t = resource_type_of(item.node, ctx);
  if (t != nullptr && ctx.definitions != nullptr) {
    const TypeDefinition* wanted = nullptr;
    if (!ns.empty() && ns != "FHIR") {
      // A backbone element's type, named by its path: `is Patient.contact`.
      std::string path;
      path.reserve(ns.size() + 1 + name.size());
      path.append(ns).append(1, '.').append(name);
      wanted = ctx.definitions->type(path);
    } else {
      wanted = ctx.definitions->type(name);
    }
    return wanted != nullptr && t->derives_from(*wanted);
  }
  // No model: resource types by their resourceType only.
  return !item.type_name().empty() && item.type_name() == name;
}

bool matches_type(const Item& item, const TypeSpec& spec, const EvalContext& ctx) {
  return matches_type(item, spec.ns, spec.name, ctx);
}

// FHIRPath's singleton evaluation of a collection as a Boolean: empty -> nullopt.
fhir::Result<std::optional<bool>> to_bool(const Collection& c, const Env& env, std::size_t pos) {
  if (c.empty()) return std::optional<bool>();
  if (c.size() > 1) return runtime(env, pos, "expected a single Boolean, got " + std::to_string(c.size()) + " items");
  const auto s = system_value(c[0]);
  if (s && s->kind == Kind::kBoolean) return std::optional<bool>(s->boolean);
  return std::optional<bool>(true);
}

// The single item's System value; nullopt for an empty collection; an error for several items.
fhir::Result<std::optional<Sys>> single_value(const Collection& c, const Env& env, std::size_t pos) {
  if (c.empty()) return std::optional<Sys>();
  if (c.size() > 1) return runtime(env, pos, "expected a single item, got " + std::to_string(c.size()));
  return system_value(c[0]);
}

fhir::Result<std::optional<std::string_view>> single_string(const Collection& c, const Env& env, std::size_t pos) {
  auto v = single_value(c, env, pos);
  if (!v) return std::unexpected(v.error());
  if (!*v) return std::optional<std::string_view>();
  if ((*v)->kind == Kind::kBoolean || (*v)->kind == Kind::kInteger || (*v)->kind == Kind::kQuantity) {
    return runtime(env, pos, "expected a String");
  }
  return std::optional<std::string_view>((*v)->text);
}

fhir::Result<std::optional<std::int64_t>> single_integer(const Collection& c, const Env& env, std::size_t pos) {
  auto v = single_value(c, env, pos);
  if (!v) return std::unexpected(v.error());
  if (!*v) return std::optional<std::int64_t>();
  if ((*v)->kind != Kind::kInteger) return runtime(env, pos, "expected an Integer");
  return std::optional<std::int64_t>((*v)->integer);
}

bool contains_item(const Collection& c, const Item& item) {
  for (const Item& x : c) {
    if (equal(x, item).value_or(false)) return true;
  }
  return false;
}

Collection distinct(Collection c) {
  Collection out;
  out.reserve(c.size());
  for (Item& x : c) {
    if (!contains_item(out, x)) out.push_back(std::move(x));
  }
  return out;
}

std::string to_text(const Sys& s) {
  switch (s.kind) {
    case Kind::kBoolean: return s.boolean ? "true" : "false";
    case Kind::kInteger: return std::to_string(s.integer);
    case Kind::kQuantity: return std::string(s.text) + " '" + std::string(s.unit) + "'";
    default: return std::string(s.text);
  }
}

std::string two(int v) {
  std::string s = std::to_string(v);
  return s.size() < 2 ? "0" + s : s;
}

std::string format_date(const DateParts& p, bool time_only) {
  std::string out;
  if (!time_only) {
    char y[8];
    std::snprintf(y, sizeof y, "%04d", p.v[0]);
    out = y;
    if (p.precision >= 2) out += "-" + two(p.v[1]);
    if (p.precision >= 3) out += "-" + two(p.v[2]);
    if (p.precision >= 4) out += "T";
  }
  if (p.precision >= 4) out += two(p.v[3]);
  if (p.precision >= 5) out += ":" + two(p.v[4]);
  if (p.precision >= 6) {
    out += ":" + two(p.v[5]);
    if (p.v[6] != 0) {
      char ms[8];
      std::snprintf(ms, sizeof ms, ".%03d", p.v[6]);
      out += ms;
    }
  }
  if (!time_only && p.has_tz && p.precision >= 4) {
    if (p.tz_minutes == 0) {
      out += "Z";
    } else {
      const int m = std::abs(p.tz_minutes);
      out += (p.tz_minutes < 0 ? "-" : "+") + two(m / 60) + ":" + two(m % 60);
    }
  }
  return out;
}

int days_in_month(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return kDays[(m - 1) % 12];
}

// date/dateTime/time + quantity (calendar durations and their UCUM forms).
std::optional<std::string> add_duration(const Sys& date, const Sys& q, int sign) {
  const bool time_only = date.kind == Kind::kTime;
  auto parts = parse_date(date.text, time_only);
  if (!parts) return std::nullopt;
  DateParts p = *parts;
  const double amount = to_double(q.text) * sign;
  const std::string_view u = q.unit;
  const auto n = static_cast<long>(std::trunc(amount));
  auto is = [&](std::string_view a, std::string_view b, std::string_view c) { return u == a || u == b || u == c; };
  if (is("year", "years", "a") && !time_only) {
    p.v[0] += static_cast<int>(n);
  } else if (is("month", "months", "mo") && !time_only) {
    long total = p.v[0] * 12L + (p.v[1] - 1) + n;
    p.v[0] = static_cast<int>(total / 12);
    p.v[1] = static_cast<int>(total % 12) + 1;
  } else {
    long long ms = 0;
    if (is("week", "weeks", "wk"))
      ms = n * 7LL * 86400000;
    else if (is("day", "days", "d"))
      ms = n * 86400000LL;
    else if (is("hour", "hours", "h"))
      ms = n * 3600000LL;
    else if (is("minute", "minutes", "min"))
      ms = n * 60000LL;
    else if (is("second", "seconds", "s"))
      ms = static_cast<long long>(amount * 1000);
    else if (is("millisecond", "milliseconds", "ms"))
      ms = static_cast<long long>(amount);
    else
      return std::nullopt;
    if (time_only) {
      long long t = ((p.v[3] * 60LL + p.v[4]) * 60 + p.v[5]) * 1000 + p.v[6] + ms;
      t %= 86400000LL;
      if (t < 0) t += 86400000LL;
      p.v[6] = static_cast<int>(t % 1000);
      p.v[5] = static_cast<int>(t / 1000 % 60);
      p.v[4] = static_cast<int>(t / 60000 % 60);
      p.v[3] = static_cast<int>(t / 3600000);
      return format_date(p, true);
    }
    // Days since the epoch in ms, then back.
    long days = 0;
    {
      long y = p.v[0];
      unsigned m = static_cast<unsigned>(p.v[1]);
      unsigned d = static_cast<unsigned>(p.v[2]);
      y -= m <= 2;
      const long era = (y >= 0 ? y : y - 399) / 400;
      const unsigned yoe = static_cast<unsigned>(y - era * 400);
      const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
      days = era * 146097 + static_cast<long>(yoe * 365 + yoe / 4 - yoe / 100 + doy) - 719468;
    }
    long long t = ((days * 24LL + p.v[3]) * 60 + p.v[4]) * 60000LL + p.v[5] * 1000LL + p.v[6] + ms;
    long long dd = t / 86400000LL;
    long long rem = t % 86400000LL;
    if (rem < 0) {
      rem += 86400000LL;
      --dd;
    }
    {
      long z = static_cast<long>(dd) + 719468;
      const long era = (z >= 0 ? z : z - 146096) / 146097;
      const unsigned doe = static_cast<unsigned>(z - era * 146097);
      const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
      const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
      const unsigned mp = (5 * doy + 2) / 153;
      p.v[2] = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
      p.v[1] = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
      p.v[0] = static_cast<int>(static_cast<long>(yoe) + era * 400 + (p.v[1] <= 2));
    }
    p.v[3] = static_cast<int>(rem / 3600000);
    p.v[4] = static_cast<int>(rem / 60000 % 60);
    p.v[5] = static_cast<int>(rem / 1000 % 60);
    p.v[6] = static_cast<int>(rem % 1000);
  }
  p.v[2] = std::min(p.v[2], days_in_month(p.v[0], p.v[1]));
  return format_date(p, false);
}

// Strings are UTF-8; positions and lengths in FHIRPath count characters (code points).
std::int64_t characters(std::string_view s) {
  std::int64_t count = 0;
  for (char c : s) count += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
  return count;
}

// The byte offset of character `index` (the size when past the end).
std::size_t byte_offset(std::string_view s, std::int64_t index) {
  std::size_t i = 0;
  for (std::int64_t n = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == index) return i;
      ++n;
    }
  }
  return s.size();
}

Collection one(Item item) {
  Collection c;
  c.push_back(std::move(item));
  return c;
}
Collection boolean(bool b) {
  return one(Item::of_bool(b));
}

std::optional<std::int64_t> parse_integer(std::string_view s) {
  std::int64_t v = 0;
  std::string_view t = s;
  if (!t.empty() && t[0] == '+') t.remove_prefix(1);
  const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  if (r.ec != std::errc() || r.ptr != t.data() + t.size() || t.empty()) return std::nullopt;
  return v;
}

bool is_decimal_text(std::string_view s) {
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  const std::size_t start = i;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == start) return false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    const std::size_t frac = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == frac) return false;
  }
  return i == s.size();
}

// Conversions: the converted item, or nullopt when the value does not convert.
std::optional<Item> convert(const Sys& s, Fn target) {
  switch (target) {
    case Fn::kToBoolean:
      if (s.kind == Kind::kBoolean) return Item::of_bool(s.boolean);
      if (s.kind == Kind::kInteger && (s.integer == 0 || s.integer == 1)) return Item::of_bool(s.integer == 1);
      if (s.kind == Kind::kDecimal) {
        const double d = to_double(s.text);
        if (d == 0.0 || d == 1.0) return Item::of_bool(d == 1.0);
      }
      if (s.kind == Kind::kString) {
        std::string l;
        for (char c : s.text) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (l == "true" || l == "t" || l == "yes" || l == "y" || l == "1" || l == "1.0") return Item::of_bool(true);
        if (l == "false" || l == "f" || l == "no" || l == "n" || l == "0" || l == "0.0") return Item::of_bool(false);
      }
      return std::nullopt;
    case Fn::kToInteger:
      if (s.kind == Kind::kInteger) return Item::of_integer(s.integer);
      if (s.kind == Kind::kBoolean) return Item::of_integer(s.boolean ? 1 : 0);
      if (s.kind == Kind::kString) {
        if (auto v = parse_integer(s.text)) return Item::of_integer(*v);
      }
      return std::nullopt;
    case Fn::kToDecimal:
      if (s.kind == Kind::kInteger) return Item::of_text(Kind::kDecimal, std::to_string(s.integer));
      if (s.kind == Kind::kDecimal) return Item::of_text(Kind::kDecimal, std::string(s.text));
      if (s.kind == Kind::kBoolean) return Item::of_text(Kind::kDecimal, s.boolean ? "1.0" : "0.0");
      if (s.kind == Kind::kString && is_decimal_text(s.text)) return Item::of_text(Kind::kDecimal, std::string(s.text));
      return std::nullopt;
    case Fn::kToString: return Item::of_text(Kind::kString, to_text(s));
    case Fn::kToDate:
      if (s.kind == Kind::kDate) return Item::of_text(Kind::kDate, std::string(s.text));
      if (s.kind == Kind::kDateTime || s.kind == Kind::kString) {
        auto p = parse_date(s.text, false);
        if (!p) return std::nullopt;
        p->precision = std::min(p->precision, 3);
        p->has_tz = false;
        return Item::of_text(Kind::kDate, format_date(*p, false));
      }
      return std::nullopt;
    case Fn::kToDateTime:
      if (s.kind == Kind::kDate || s.kind == Kind::kDateTime || s.kind == Kind::kString) {
        if (!parse_date(s.text, false)) return std::nullopt;
        return Item::of_text(Kind::kDateTime, std::string(s.text));
      }
      return std::nullopt;
    case Fn::kToTime:
      if (s.kind == Kind::kTime || s.kind == Kind::kString) {
        auto p = parse_date(s.text, true);
        if (!p || p->precision < 4 || p->has_tz) return std::nullopt;
        return Item::of_text(Kind::kTime, std::string(s.text));
      }
      return std::nullopt;
    case Fn::kToQuantity:
      if (s.kind == Kind::kQuantity) return Item::of_text(Kind::kQuantity, std::string(s.text), std::string(s.unit));
      if (s.kind == Kind::kInteger) return Item::of_text(Kind::kQuantity, std::to_string(s.integer), "1");
      if (s.kind == Kind::kDecimal) return Item::of_text(Kind::kQuantity, std::string(s.text), "1");
      if (s.kind == Kind::kString) {
        std::string_view t = s.text;
        const auto space = t.find(' ');
        const std::string_view number = t.substr(0, space);
        if (!is_decimal_text(number)) return std::nullopt;
        std::string unit = "1";
        if (space != std::string_view::npos) {
          std::string_view rest = t.substr(space + 1);
          if (rest.size() >= 2 && rest.front() == '\'' && rest.back() == '\'') {
            unit = std::string(rest.substr(1, rest.size() - 2));
          } else {
            unit = std::string(rest);
          }
        }
        return Item::of_text(Kind::kQuantity, std::string(number), std::move(unit));
      }
      return std::nullopt;
    default: return std::nullopt;
  }
}

Fn conversion_of(Fn converts_to) {
  switch (converts_to) {
    case Fn::kConvertsToBoolean: return Fn::kToBoolean;
    case Fn::kConvertsToInteger: return Fn::kToInteger;
    case Fn::kConvertsToDecimal: return Fn::kToDecimal;
    case Fn::kConvertsToString: return Fn::kToString;
    case Fn::kConvertsToDate: return Fn::kToDate;
    case Fn::kConvertsToDateTime: return Fn::kToDateTime;
    case Fn::kConvertsToTime: return Fn::kToTime;
    case Fn::kConvertsToQuantity: return Fn::kToQuantity;
    default: return converts_to;
  }
}

std::string now_text(bool date_only, bool time_only) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  if (date_only) {
    std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  } else if (time_only) {
    std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  } else {
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  }
  return buf;
}

class Evaluator {
 public:
  R eval(const Node& n, const Collection& input, Env& env) {
    if (++env.depth > kMaxEvalDepth) return runtime(env, n.pos, "evaluation nested too deeply");
    R r = eval_inner(n, input, env);
    --env.depth;
    return r;
  }

 private:
  R eval_inner(const Node& n, const Collection& input, Env& env) {
    switch (n.op) {
      case Op::kLiteral: return one(n.literal);
      case Op::kEmpty: return Collection{};
      case Op::kThis: return env.this_item != nullptr ? one(*env.this_item) : input;
      case Op::kIndex: return one(Item::of_integer(env.index));
      case Op::kTotal: return env.total != nullptr ? *env.total : Collection{};
      case Op::kExternal: return external(n, env);
      case Op::kIdentifier: {
        Collection out;
        for (const Item& item : input) {
          if (n.upper && item.kind == Kind::kNode && matches_type(item, {}, n.name, *env.ctx)) {
            out.push_back(item);
          } else {
            navigate(item, n.name, *env.ctx, out);
          }
        }
        return out;
      }
      case Op::kMember: {
        auto focus = eval(*n.children[0], input, env);
        if (!focus) return focus;
        Collection out;
        out.reserve(focus->size());
        for (const Item& item : *focus) navigate(item, n.name, *env.ctx, out);
        return out;
      }
      case Op::kIndexer: {
        auto focus = eval(*n.children[0], input, env);
        if (!focus) return focus;
        auto index = eval(*n.children[1], input, env);
        if (!index) return index;
        auto i = single_integer(*index, env, n.children[1]->pos);
        if (!i) return std::unexpected(i.error());
        if (!*i || **i < 0 || static_cast<std::size_t>(**i) >= focus->size()) return Collection{};
        return one(std::move((*focus)[static_cast<std::size_t>(**i)]));
      }
      case Op::kUnary: {
        auto operand = eval(*n.children[0], input, env);
        if (!operand) return operand;
        auto v = single_value(*operand, env, n.pos);
        if (!v) return std::unexpected(v.error());
        if (!*v) return Collection{};
        const Sys& s = **v;
        if (s.kind == Kind::kInteger) return one(Item::of_integer(-s.integer));
        if (s.kind == Kind::kDecimal || s.kind == Kind::kQuantity) {
          std::string t =
              !s.text.empty() && s.text[0] == '-' ? std::string(s.text.substr(1)) : "-" + std::string(s.text);
          return one(Item::of_text(s.kind, std::move(t), std::string(s.unit)));
        }
        return runtime(env, n.pos, "unary minus needs a number or a quantity");
      }
      case Op::kIs: {
        auto focus = eval(*n.children[0], input, env);
        if (!focus) return focus;
        if (focus->empty()) return Collection{};
        if (focus->size() > 1) return runtime(env, n.pos, "'is' needs a single item");
        return boolean(matches_type((*focus)[0], n.type, *env.ctx));
      }
      case Op::kAs: {
        auto focus = eval(*n.children[0], input, env);
        if (!focus) return focus;
        return of_type(std::move(*focus), n.type, env);
      }
      case Op::kBinary: return binary(n, input, env);
      case Op::kFunction: return function(n, input, env);
    }
    return runtime(env, n.pos, "unknown node");
  }

  // `as` on several items keeps those of the type (as R4 search parameters such as
  // `useContext.value as Quantity` need), like ofType().
  Collection of_type(Collection c, const TypeSpec& spec, const Env& env) {
    Collection out;
    for (Item& item : c) {
      if (matches_type(item, spec, *env.ctx)) out.push_back(std::move(item));
    }
    return out;
  }

  R external(const Node& n, Env& env) {
    const std::string& name = n.name;
    if (name == "resource" || name == "context" || name == "rootResource") {
      return one(Item::of_node(env.root, env.root_type));
    }
    if (name == "ucum") return one(Item::of_text(Kind::kString, "http://unitsofmeasure.org"));
    if (name == "sct") return one(Item::of_text(Kind::kString, "http://snomed.info/sct"));
    if (name == "loinc") return one(Item::of_text(Kind::kString, "http://loinc.org"));
    if (name.starts_with("vs-"))
      return one(Item::of_text(Kind::kString, "http://hl7.org/fhir/ValueSet/" + name.substr(3)));
    if (name.starts_with("ext-")) {
      return one(Item::of_text(Kind::kString, "http://hl7.org/fhir/StructureDefinition/" + name.substr(4)));
    }
    return runtime(env, n.pos, "unknown external constant %" + name);
  }

  R binary(const Node& n, const Collection& input, Env& env) {
    auto lhs = eval(*n.children[0], input, env);
    if (!lhs) return lhs;
    // Short-circuit the Boolean operators where the left side decides.
    if (n.bin == BinOp::kAnd || n.bin == BinOp::kOr || n.bin == BinOp::kImplies || n.bin == BinOp::kXor) {
      auto a = to_bool(*lhs, env, n.children[0]->pos);
      if (!a) return std::unexpected(a.error());
      if (n.bin == BinOp::kAnd && *a == false) return boolean(false);
      if (n.bin == BinOp::kOr && *a == true) return boolean(true);
      if (n.bin == BinOp::kImplies && *a == false) return boolean(true);
      auto rhs = eval(*n.children[1], input, env);
      if (!rhs) return rhs;
      auto b = to_bool(*rhs, env, n.children[1]->pos);
      if (!b) return std::unexpected(b.error());
      switch (n.bin) {
        case BinOp::kAnd:
          if (*b == false) return boolean(false);
          if (*a && *b) return boolean(true);
          return Collection{};
        case BinOp::kOr:
          if (*b == true) return boolean(true);
          if (*a && *b) return boolean(false);
          return Collection{};
        case BinOp::kXor:
          if (*a && *b) return boolean(**a != **b);
          return Collection{};
        default:  // implies; a is true or empty
          if (*b == true) return boolean(true);
          if (*a && *b) return boolean(false);
          return Collection{};
      }
    }
    auto rhs = eval(*n.children[1], input, env);
    if (!rhs) return rhs;
    Collection& a = *lhs;
    Collection& b = *rhs;
    switch (n.bin) {
      case BinOp::kUnion: {
        for (Item& x : b) a.push_back(std::move(x));
        return distinct(std::move(a));
      }
      case BinOp::kEq:
      case BinOp::kNe: {
        if (a.empty() || b.empty()) return Collection{};
        std::optional<bool> result = true;
        if (a.size() != b.size()) {
          result = false;
        } else {
          for (std::size_t i = 0; i < a.size() && result == true; ++i) result = equal(a[i], b[i]);
        }
        if (!result) return Collection{};
        return boolean(n.bin == BinOp::kEq ? *result : !*result);
      }
      case BinOp::kEquiv:
      case BinOp::kNotEquiv: {
        bool result = a.size() == b.size();
        if (result) {
          // Order does not matter for equivalence.
          for (const Item& x : a) {
            bool found = false;
            for (const Item& y : b) found = found || equivalent(x, y);
            if (!found) {
              result = false;
              break;
            }
          }
        }
        return boolean(n.bin == BinOp::kEquiv ? result : !result);
      }
      case BinOp::kLt:
      case BinOp::kGt:
      case BinOp::kLe:
      case BinOp::kGe: {
        if (a.empty() || b.empty()) return Collection{};
        if (a.size() > 1 || b.size() > 1) return runtime(env, n.pos, "comparison needs single items");
        bool ok = true;
        const auto c = compare(a[0], b[0], ok);
        if (!ok) {
          return runtime(env, n.pos,
                         "cannot compare " + std::string(a[0].type_name()) + " with " + std::string(b[0].type_name()));
        }
        if (!c) return Collection{};
        switch (n.bin) {
          case BinOp::kLt: return boolean(*c < 0);
          case BinOp::kGt: return boolean(*c > 0);
          case BinOp::kLe: return boolean(*c <= 0);
          default: return boolean(*c >= 0);
        }
      }
      case BinOp::kIn:
      case BinOp::kContains: {
        const Collection& element = n.bin == BinOp::kIn ? a : b;
        const Collection& container = n.bin == BinOp::kIn ? b : a;
        if (element.empty()) return Collection{};
        if (element.size() > 1) return runtime(env, n.pos, "membership needs a single item");
        return boolean(contains_item(container, element[0]));
      }
      case BinOp::kConcat: {
        auto x = single_string(a, env, n.pos);
        if (!x) return std::unexpected(x.error());
        auto y = single_string(b, env, n.pos);
        if (!y) return std::unexpected(y.error());
        return one(Item::of_text(Kind::kString, std::string(x->value_or("")) + std::string(y->value_or(""))));
      }
      default: return arithmetic(n, a, b, env);
    }
  }

  R arithmetic(const Node& n, const Collection& a, const Collection& b, const Env& env) {
    auto va = single_value(a, env, n.pos);
    if (!va) return std::unexpected(va.error());
    auto vb = single_value(b, env, n.pos);
    if (!vb) return std::unexpected(vb.error());
    if (!*va || !*vb) return Collection{};
    const Sys& x = **va;
    const Sys& y = **vb;
    const bool xn = x.kind == Kind::kInteger || x.kind == Kind::kDecimal;
    const bool yn = y.kind == Kind::kInteger || y.kind == Kind::kDecimal;
    if (n.bin == BinOp::kAdd && x.kind == Kind::kString && y.kind == Kind::kString) {
      return one(Item::of_text(Kind::kString, std::string(x.text) + std::string(y.text)));
    }
    if ((n.bin == BinOp::kAdd || n.bin == BinOp::kSub) &&
        (x.kind == Kind::kDate || x.kind == Kind::kDateTime || x.kind == Kind::kTime) && y.kind == Kind::kQuantity) {
      auto r = add_duration(x, y, n.bin == BinOp::kAdd ? 1 : -1);
      if (!r) return runtime(env, n.pos, "cannot add a quantity of unit '" + std::string(y.unit) + "' to a date");
      return one(Item::of_text(x.kind, std::move(*r)));
    }
    if (x.kind == Kind::kQuantity && y.kind == Kind::kQuantity && (n.bin == BinOp::kAdd || n.bin == BinOp::kSub)) {
      if (x.unit != y.unit) return Collection{};
      const double r =
          n.bin == BinOp::kAdd ? to_double(x.text) + to_double(y.text) : to_double(x.text) - to_double(y.text);
      return one(Item::of_text(Kind::kQuantity, format_decimal(r), std::string(x.unit)));
    }
    if (x.kind == Kind::kQuantity && yn && (n.bin == BinOp::kMul || n.bin == BinOp::kDiv)) {
      const double f = y.kind == Kind::kInteger ? static_cast<double>(y.integer) : to_double(y.text);
      if (n.bin == BinOp::kDiv && f == 0) return Collection{};
      const double r = n.bin == BinOp::kMul ? to_double(x.text) * f : to_double(x.text) / f;
      return one(Item::of_text(Kind::kQuantity, format_decimal(r), std::string(x.unit)));
    }
    if (!xn || !yn) return runtime(env, n.pos, "arithmetic needs numbers");
    if (x.kind == Kind::kInteger && y.kind == Kind::kInteger && n.bin != BinOp::kDiv) {
      std::int64_t r = 0;
      switch (n.bin) {
        case BinOp::kAdd:
          if (__builtin_add_overflow(x.integer, y.integer, &r)) return Collection{};
          break;
        case BinOp::kSub:
          if (__builtin_sub_overflow(x.integer, y.integer, &r)) return Collection{};
          break;
        case BinOp::kMul:
          if (__builtin_mul_overflow(x.integer, y.integer, &r)) return Collection{};
          break;
        case BinOp::kIntDiv:
          if (y.integer == 0 || (x.integer == INT64_MIN && y.integer == -1)) return Collection{};
          r = x.integer / y.integer;
          break;
        case BinOp::kMod:
          if (y.integer == 0 || (x.integer == INT64_MIN && y.integer == -1)) return Collection{};
          r = x.integer % y.integer;
          break;
        default: break;
      }
      return one(Item::of_integer(r));
    }
    const double p = x.kind == Kind::kInteger ? static_cast<double>(x.integer) : to_double(x.text);
    const double q = y.kind == Kind::kInteger ? static_cast<double>(y.integer) : to_double(y.text);
    double r = 0;
    switch (n.bin) {
      case BinOp::kAdd: r = p + q; break;
      case BinOp::kSub: r = p - q; break;
      case BinOp::kMul: r = p * q; break;
      case BinOp::kDiv:
        if (q == 0) return Collection{};
        r = p / q;
        break;
      case BinOp::kIntDiv:
        if (q == 0) return Collection{};
        return one(Item::of_integer(static_cast<std::int64_t>(std::trunc(p / q))));
      case BinOp::kMod:
        if (q == 0) return Collection{};
        r = std::fmod(p, q);
        break;
      default: break;
    }
    // Decimals are computed in binary floating point but written with the precision of their operands
    // (0.1 + 0.2 = 0.3, 1.5 * 1.5 = 2.25), a quotient with at most 8 decimal places.
    const int sx = scale_of_text(x);
    const int sy = scale_of_text(y);
    int scale = std::max(sx, sy);
    if (n.bin == BinOp::kMul) scale = std::min(sx + sy, 15);
    if (n.bin == BinOp::kDiv) scale = 8;
    return one(Item::of_text(Kind::kDecimal, fixed(r, scale, n.bin == BinOp::kDiv)));
  }

  static int scale_of_text(const Sys& s) {
    if (s.kind != Kind::kDecimal) return 0;
    const auto dot = s.text.find('.');
    return dot == std::string_view::npos ? 0 : static_cast<int>(s.text.size() - dot - 1);
  }

  static std::string fixed(double r, int scale, bool trim) {
    if (std::isnan(r) || std::isinf(r) || std::fabs(r) >= 1e15 || scale <= 0) return format_decimal(r);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", scale, r);
    std::string out = buf;
    if (trim) {
      while (out.size() > 1 && out.back() == '0' && out[out.size() - 2] != '.') out.pop_back();
    }
    if (out.starts_with('-') && out.find_first_not_of("0.", 1) == std::string::npos) {  // no "-0.0"
      out.erase(0, 1);
    }
    return out;
  }

  // Evaluates `arg` once per item of `focus` with that item as $this and input.
  template <class F>
  fhir::Result<void> each(const Node& arg, const Collection& focus, Env& env, F&& f) {
    const Item* saved_this = env.this_item;
    const std::int64_t saved_index = env.index;
    Collection single(1);
    for (std::size_t i = 0; i < focus.size(); ++i) {
      single[0] = focus[i];
      env.this_item = &focus[i];
      env.index = static_cast<std::int64_t>(i);
      auto r = eval(arg, single, env);
      if (!r) {
        env.this_item = saved_this;
        env.index = saved_index;
        return std::unexpected(r.error());
      }
      if (auto g = f(i, std::move(*r)); !g) {
        env.this_item = saved_this;
        env.index = saved_index;
        return g;
      }
    }
    env.this_item = saved_this;
    env.index = saved_index;
    return {};
  }

  R arg(const Node& n, std::size_t i, const Collection& input, Env& env) { return eval(*n.children[i], input, env); }

  R function(const Node& n, const Collection& input, Env& env) {
    R focus_r = n.children[0] ? eval(*n.children[0], input, env) : R(input);
    if (!focus_r) return focus_r;
    Collection focus = std::move(*focus_r);
    const std::size_t pos = n.pos;
    switch (n.fn) {
      case Fn::kEmpty: return boolean(focus.empty());
      case Fn::kExists:
        if (n.children.size() > 1) {
          auto w = where(n, focus, env);
          if (!w) return w;
          return boolean(!w->empty());
        }
        return boolean(!focus.empty());
      case Fn::kAll: {
        bool all = true;
        auto r = each(*n.children[1], focus, env, [&](std::size_t, Collection c) -> fhir::Result<void> {
          if (!is_true(c)) all = false;
          return {};
        });
        if (!r) return std::unexpected(r.error());
        return boolean(all);
      }
      case Fn::kAllTrue:
      case Fn::kAnyTrue:
      case Fn::kAllFalse:
      case Fn::kAnyFalse: {
        const bool want = n.fn == Fn::kAllTrue || n.fn == Fn::kAnyTrue;
        const bool all = n.fn == Fn::kAllTrue || n.fn == Fn::kAllFalse;
        bool any_match = false;
        bool all_match = true;
        for (const Item& item : focus) {
          const auto s = system_value(item);
          if (!s || s->kind != Kind::kBoolean) return runtime(env, pos, n.name + " needs Booleans");
          if (s->boolean == want)
            any_match = true;
          else
            all_match = false;
        }
        return boolean(all ? all_match : any_match);
      }
      case Fn::kSubsetOf:
      case Fn::kSupersetOf: {
        auto other = arg(n, 1, input, env);
        if (!other) return other;
        const Collection& sub = n.fn == Fn::kSubsetOf ? focus : *other;
        const Collection& super = n.fn == Fn::kSubsetOf ? *other : focus;
        for (const Item& x : sub) {
          if (!contains_item(super, x)) return boolean(false);
        }
        return boolean(true);
      }
      case Fn::kCount: return one(Item::of_integer(static_cast<std::int64_t>(focus.size())));
      case Fn::kDistinct: return distinct(std::move(focus));
      case Fn::kIsDistinct: {
        const std::size_t size = focus.size();
        return boolean(distinct(std::move(focus)).size() == size);
      }
      case Fn::kWhere: return where(n, focus, env);
      case Fn::kSelect: {
        Collection out;
        auto r = each(*n.children[1], focus, env, [&](std::size_t, Collection c) -> fhir::Result<void> {
          for (Item& x : c) out.push_back(std::move(x));
          return {};
        });
        if (!r) return std::unexpected(r.error());
        return out;
      }
      case Fn::kRepeat: {
        Collection out;
        Collection queue = std::move(focus);
        while (!queue.empty() && out.size() < kMaxItems) {
          Collection next;
          auto r = each(*n.children[1], queue, env, [&](std::size_t, Collection c) -> fhir::Result<void> {
            for (Item& x : c) {
              if (!contains_item(out, x)) {
                out.push_back(x);
                next.push_back(std::move(x));
              }
            }
            return {};
          });
          if (!r) return std::unexpected(r.error());
          queue = std::move(next);
        }
        return out;
      }
      case Fn::kOfType:
      case Fn::kAs: return of_type(std::move(focus), n.type, env);
      case Fn::kIs:
        if (focus.empty()) return Collection{};
        if (focus.size() > 1) return runtime(env, pos, "is() needs a single item");
        return boolean(matches_type(focus[0], n.type, *env.ctx));
      case Fn::kFirst:
        if (focus.empty()) return Collection{};
        focus.resize(1);
        return focus;
      case Fn::kLast:
        if (focus.empty()) return Collection{};
        return one(std::move(focus.back()));
      case Fn::kTail:
        if (!focus.empty()) focus.erase(focus.begin());
        return focus;
      case Fn::kSkip:
      case Fn::kTake: {
        auto a = arg(n, 1, input, env);
        if (!a) return a;
        auto k = single_integer(*a, env, n.children[1]->pos);
        if (!k) return std::unexpected(k.error());
        if (!*k) return Collection{};
        const std::size_t count = static_cast<std::size_t>(std::max<std::int64_t>(0, **k));
        if (n.fn == Fn::kSkip) {
          if (count >= focus.size()) return Collection{};
          focus.erase(focus.begin(), focus.begin() + static_cast<std::ptrdiff_t>(count));
        } else if (count < focus.size()) {
          focus.resize(count);
        }
        return focus;
      }
      case Fn::kSingle:
        if (focus.size() > 1) return runtime(env, pos, "single() on " + std::to_string(focus.size()) + " items");
        return focus;
      case Fn::kIntersect:
      case Fn::kExclude: {
        auto other = arg(n, 1, input, env);
        if (!other) return other;
        Collection out;
        for (Item& x : focus) {
          const bool in = contains_item(*other, x);
          if (n.fn == Fn::kIntersect ? (in && !contains_item(out, x)) : !in) out.push_back(std::move(x));
        }
        return out;
      }
      case Fn::kUnion:
      case Fn::kCombine: {
        auto other = arg(n, 1, input, env);
        if (!other) return other;
        for (Item& x : *other) focus.push_back(std::move(x));
        return n.fn == Fn::kUnion ? distinct(std::move(focus)) : std::move(focus);
      }
      case Fn::kIif: {
        if (focus.size() > 1) return runtime(env, pos, "iif() on several items");
        const Item* saved = env.this_item;
        if (n.children[0] && focus.size() == 1) env.this_item = &focus[0];
        const Collection& ctx_input = n.children[0] ? focus : input;
        auto c = arg(n, 1, ctx_input, env);
        R result = Collection{};
        if (!c) {
          result = c;
        } else if (is_true(*c)) {
          result = arg(n, 2, ctx_input, env);
        } else if (n.children.size() > 3) {
          result = arg(n, 3, ctx_input, env);
        }
        env.this_item = saved;
        return result;
      }
      case Fn::kToBoolean:
      case Fn::kToInteger:
      case Fn::kToDecimal:
      case Fn::kToString:
      case Fn::kToDate:
      case Fn::kToDateTime:
      case Fn::kToTime:
      case Fn::kToQuantity: {
        auto v = single_value(focus, env, pos);
        if (!v) return std::unexpected(v.error());
        if (!*v) return Collection{};
        auto c = convert(**v, n.fn);
        if (!c) return Collection{};
        return one(std::move(*c));
      }
      case Fn::kConvertsToBoolean:
      case Fn::kConvertsToInteger:
      case Fn::kConvertsToDecimal:
      case Fn::kConvertsToString:
      case Fn::kConvertsToDate:
      case Fn::kConvertsToDateTime:
      case Fn::kConvertsToTime:
      case Fn::kConvertsToQuantity: {
        auto v = single_value(focus, env, pos);
        if (!v) return std::unexpected(v.error());
        if (!*v) return Collection{};
        return boolean(convert(**v, conversion_of(n.fn)).has_value());
      }
      case Fn::kNot: {
        auto b = to_bool(focus, env, pos);
        if (!b) return std::unexpected(b.error());
        if (!*b) return Collection{};
        return boolean(!**b);
      }
      case Fn::kChildren: {
        Collection out;
        for (const Item& item : focus) children_of(item, *env.ctx, out);
        return out;
      }
      case Fn::kDescendants: {
        Collection out;
        Collection level = std::move(focus);
        while (!level.empty() && out.size() < kMaxItems) {
          Collection next;
          for (const Item& item : level) children_of(item, *env.ctx, next);
          out.insert(out.end(), next.begin(), next.end());
          level = std::move(next);
        }
        return out;
      }
      case Fn::kTrace: return focus;
      case Fn::kNow: return one(Item::of_text(Kind::kDateTime, now_text(false, false)));
      case Fn::kToday: return one(Item::of_text(Kind::kDate, now_text(true, false)));
      case Fn::kTimeOfDay: return one(Item::of_text(Kind::kTime, now_text(false, true)));
      case Fn::kExtension:
      case Fn::kHasExtension: {
        auto a = arg(n, 1, input, env);
        if (!a) return a;
        auto url = single_string(*a, env, n.children[1]->pos);
        if (!url) return std::unexpected(url.error());
        Collection out;
        if (*url) {
          Collection extensions;
          for (const Item& item : focus) navigate(item, "extension", *env.ctx, extensions);
          for (Item& e : extensions) {
            if (e.node == nullptr || !e.node->is_object()) continue;
            const Value* u = e.node->find("url");
            if (u != nullptr && u->is_string() && u->text() == **url) out.push_back(std::move(e));
          }
        }
        if (n.fn == Fn::kHasExtension) return boolean(!out.empty());
        return out;
      }
      case Fn::kResolve: return resolve(focus, env);
      case Fn::kHasValue:
        return boolean(focus.size() == 1 && focus[0].kind == Kind::kNode && focus[0].node != nullptr &&
                       !focus[0].node->is_object() && !focus[0].node->is_array());
      case Fn::kGetValue:
        // The System value of a single FHIR primitive, else empty.
        if (focus.size() == 1 && focus[0].kind == Kind::kNode && focus[0].node != nullptr &&
            !focus[0].node->is_object() && !focus[0].node->is_array()) {
          if (const auto v = system_value(focus[0])) {
            Item item = Item::of_text(v->kind, std::string(v->text), std::string(v->unit));
            item.boolean = v->boolean;
            item.integer = v->integer;
            return one(std::move(item));
          }
        }
        return Collection{};
      case Fn::kMemberOf:
      case Fn::kConformsTo:
        return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported",
                          "FHIRPath function " + n.name + "() needs terminology or profiles, not available here",
                          *env.text);
      case Fn::kHtmlChecks: return boolean(true);
      case Fn::kAggregate: {
        Collection total;
        if (n.children.size() > 2) {
          auto init = arg(n, 2, input, env);
          if (!init) return init;
          total = std::move(*init);
        }
        const Collection* saved = env.total;
        for (std::size_t i = 0; i < focus.size(); ++i) {
          env.total = &total;
          Collection just(focus.begin() + static_cast<std::ptrdiff_t>(i),
                          focus.begin() + static_cast<std::ptrdiff_t>(i) + 1);
          const Item* saved_this = env.this_item;
          env.this_item = &focus[i];
          env.index = static_cast<std::int64_t>(i);
          auto r = eval(*n.children[1], just, env);
          env.this_item = saved_this;
          if (!r) {
            env.total = saved;
            return r;
          }
          total = std::move(*r);
        }
        env.total = saved;
        return total;
      }
      default: return strings_and_math(n, focus, input, env);
    }
  }

  R where(const Node& n, const Collection& focus, Env& env) {
    Collection out;
    auto r = each(*n.children[1], focus, env, [&](std::size_t i, Collection c) -> fhir::Result<void> {
      auto b = to_bool(c, env, n.children[1]->pos);
      if (!b) return std::unexpected(b.error());
      if (*b == true) out.push_back(focus[i]);
      return {};
    });
    if (!r) return std::unexpected(r.error());
    return out;
  }

  R resolve(const Collection& focus, Env& env) {
    Collection out;
    const EvalContext& ctx = *env.ctx;
    for (const Item& item : focus) {
      std::string_view ref;
      if (item.kind == Kind::kNode && item.node != nullptr) {
        if (item.node->is_object()) {
          const Value* r = item.node->find("reference");
          if (r != nullptr && r->is_string()) ref = r->text();
        } else if (item.node->is_string()) {
          ref = item.node->text();
        }
      } else if (item.kind == Kind::kString) {
        ref = item.text;
      }
      if (ref.empty()) continue;
      if (ref[0] == '#') {
        const Value* contained = env.root != nullptr ? env.root->find("contained") : nullptr;
        if (contained != nullptr && contained->is_array()) {
          for (const Value& c : contained->items()) {
            const Value* id = c.is_object() ? c.find("id") : nullptr;
            if (id != nullptr && id->is_string() && id->text() == ref.substr(1)) {
              out.push_back(Item::of_node(&c, resource_type_of(&c, ctx)));
              break;
            }
          }
        }
        continue;
      }
      if (ctx.resolver) {
        if (const Value* target = ctx.resolver(ref)) {
          out.push_back(Item::of_node(target, resource_type_of(target, ctx)));
          continue;
        }
      }
      if (ctx.definitions == nullptr) continue;
      // [base/]Type/id[/_history/vid]: the type names the target.
      std::string_view path = ref;
      if (const auto h = path.find("/_history/"); h != std::string_view::npos) path = path.substr(0, h);
      const auto slash = path.rfind('/');
      if (slash == std::string_view::npos || slash == 0) continue;
      std::string_view head = path.substr(0, slash);
      const auto prev = head.rfind('/');
      const std::string_view type = prev == std::string_view::npos ? head : head.substr(prev + 1);
      if (!ctx.definitions->is_resource_type(type)) continue;
      out.push_back(Item::of_node(nullptr, ctx.definitions->type(type)));
    }
    return out;
  }

  R strings_and_math(const Node& n, Collection& focus, const Collection& input, Env& env) {
    const std::size_t pos = n.pos;
    // The arguments, each a single value or empty.
    std::vector<Collection> args;
    for (std::size_t i = 1; i < n.children.size(); ++i) {
      auto a = arg(n, i, input, env);
      if (!a) return a;
      args.push_back(std::move(*a));
    }
    auto str_arg = [&](std::size_t i) { return single_string(args[i], env, n.children[i + 1]->pos); };
    auto int_arg = [&](std::size_t i) { return single_integer(args[i], env, n.children[i + 1]->pos); };

    switch (n.fn) {
      case Fn::kAbs:
      case Fn::kCeiling:
      case Fn::kExp:
      case Fn::kFloor:
      case Fn::kLn:
      case Fn::kLog:
      case Fn::kPower:
      case Fn::kRound:
      case Fn::kSqrt:
      case Fn::kTruncate: return math(n, focus, args, env);
      default: break;
    }

    if (n.fn == Fn::kJoin) {
      std::string sep;
      if (!args.empty()) {
        auto s = str_arg(0);
        if (!s) return std::unexpected(s.error());
        sep = std::string(s->value_or(""));
      }
      std::string out;
      for (std::size_t i = 0; i < focus.size(); ++i) {
        const auto s = system_value(focus[i]);
        if (!s) return runtime(env, pos, "join() needs strings");
        if (i > 0) out += sep;
        out += to_text(*s);
      }
      return one(Item::of_text(Kind::kString, std::move(out)));
    }

    auto input_string = single_string(focus, env, pos);
    if (!input_string) return std::unexpected(input_string.error());
    if (!*input_string) return Collection{};
    const std::string_view s = **input_string;

    switch (n.fn) {
      case Fn::kIndexOf: {
        auto sub = str_arg(0);
        if (!sub) return std::unexpected(sub.error());
        if (!*sub) return Collection{};
        const auto i = s.find(**sub);
        return one(Item::of_integer(i == std::string_view::npos ? -1 : characters(s.substr(0, i))));
      }
      case Fn::kSubstring: {
        auto start = int_arg(0);
        if (!start) return std::unexpected(start.error());
        if (!*start || **start < 0 || **start >= characters(s)) return Collection{};
        const std::size_t from = byte_offset(s, **start);
        std::size_t to = s.size();
        if (args.size() > 1) {
          auto l = int_arg(1);
          if (!l) return std::unexpected(l.error());
          if (*l) to = from + byte_offset(s.substr(from), std::max<std::int64_t>(0, **l));
        }
        return one(Item::of_text(Kind::kString, std::string(s.substr(from, to - from))));
      }
      case Fn::kStartsWith:
      case Fn::kEndsWith:
      case Fn::kContains: {
        auto sub = str_arg(0);
        if (!sub) return std::unexpected(sub.error());
        if (!*sub) return Collection{};
        if (n.fn == Fn::kStartsWith) return boolean(s.starts_with(**sub));
        if (n.fn == Fn::kEndsWith) return boolean(s.ends_with(**sub));
        return boolean(s.find(**sub) != std::string_view::npos);
      }
      case Fn::kUpper:
      case Fn::kLower: {
        std::string out(s);
        for (char& c : out) {
          c = static_cast<char>(n.fn == Fn::kUpper ? std::toupper(static_cast<unsigned char>(c))
                                                   : std::tolower(static_cast<unsigned char>(c)));
        }
        return one(Item::of_text(Kind::kString, std::move(out)));
      }
      case Fn::kReplace: {
        auto pattern = str_arg(0);
        if (!pattern) return std::unexpected(pattern.error());
        auto substitution = str_arg(1);
        if (!substitution) return std::unexpected(substitution.error());
        if (!*pattern || !*substitution) return Collection{};
        const std::string_view p = **pattern;
        const std::string_view r = **substitution;
        std::string out;
        if (p.empty()) {
          // Between every character, as the spec says.
          out += r;
          for (char c : s) {
            out += c;
            out += r;
          }
        } else {
          std::size_t i = 0;
          for (;;) {
            const auto j = s.find(p, i);
            if (j == std::string_view::npos) break;
            out += s.substr(i, j - i);
            out += r;
            i = j + p.size();
          }
          out += s.substr(i);
        }
        return one(Item::of_text(Kind::kString, std::move(out)));
      }
      case Fn::kMatches:
      case Fn::kReplaceMatches: {
        auto pattern = str_arg(0);
        if (!pattern) return std::unexpected(pattern.error());
        if (!*pattern) return Collection{};
        if (s.size() > kMaxRegexSubject) {
          // libstdc++'s matcher recurses per character: long subjects could exhaust the stack.
          return runtime(env, pos, "string too long for a regular expression (" + std::to_string(s.size()) + " bytes)");
        }
        std::regex re;
        try {
          re = std::regex(std::string(**pattern), std::regex::ECMAScript);
        } catch (const std::regex_error&) {
          return runtime(env, n.children[1]->pos, "invalid regular expression");
        }
        const std::string subject(s);
        if (n.fn == Fn::kMatches) return boolean(std::regex_search(subject, re));
        auto substitution = str_arg(1);
        if (!substitution) return std::unexpected(substitution.error());
        if (!*substitution) return Collection{};
        return one(Item::of_text(Kind::kString, std::regex_replace(subject, re, std::string(**substitution))));
      }
      case Fn::kLength: return one(Item::of_integer(characters(s)));
      case Fn::kToChars: {
        Collection out;
        for (std::size_t i = 0; i < s.size();) {
          // Whole UTF-8 sequences.
          std::size_t len = 1;
          const auto c = static_cast<unsigned char>(s[i]);
          if (c >= 0xF0)
            len = 4;
          else if (c >= 0xE0)
            len = 3;
          else if (c >= 0xC0)
            len = 2;
          out.push_back(Item::of_text(Kind::kString, std::string(s.substr(i, len))));
          i += len;
        }
        return out;
      }
      case Fn::kTrim: {
        std::size_t b = 0;
        std::size_t e = s.size();
        while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
        while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
        return one(Item::of_text(Kind::kString, std::string(s.substr(b, e - b))));
      }
      case Fn::kSplit: {
        auto sep = str_arg(0);
        if (!sep) return std::unexpected(sep.error());
        if (!*sep) return Collection{};
        Collection out;
        const std::string_view d = **sep;
        if (d.empty()) {
          out.push_back(Item::of_text(Kind::kString, std::string(s)));
          return out;
        }
        std::size_t i = 0;
        for (;;) {
          const auto j = s.find(d, i);
          out.push_back(
              Item::of_text(Kind::kString, std::string(s.substr(i, j == std::string_view::npos ? j : j - i))));
          if (j == std::string_view::npos) break;
          i = j + d.size();
        }
        return out;
      }
      default: return runtime(env, pos, "function " + n.name + "() is not implemented");
    }
  }

  R math(const Node& n, const Collection& focus, std::vector<Collection>& args, Env& env) {
    auto v = single_value(focus, env, n.pos);
    if (!v) return std::unexpected(v.error());
    if (!*v) return Collection{};
    const Sys& s = **v;
    if (s.kind == Kind::kQuantity && n.fn == Fn::kAbs) {
      std::string t(s.text);
      if (!t.empty() && t[0] == '-') t.erase(0, 1);
      return one(Item::of_text(Kind::kQuantity, std::move(t), std::string(s.unit)));
    }
    if (s.kind != Kind::kInteger && s.kind != Kind::kDecimal) return runtime(env, n.pos, n.name + "() needs a number");
    const bool integer = s.kind == Kind::kInteger;
    const double x = integer ? static_cast<double>(s.integer) : to_double(s.text);
    auto number_arg = [&](std::size_t i) -> fhir::Result<std::optional<double>> {
      auto a = single_value(args[i], env, n.children[i + 1]->pos);
      if (!a) return std::unexpected(a.error());
      if (!*a) return std::optional<double>();
      if ((*a)->kind == Kind::kInteger) return std::optional<double>(static_cast<double>((*a)->integer));
      if ((*a)->kind == Kind::kDecimal) return std::optional<double>(to_double((*a)->text));
      return runtime(env, n.children[i + 1]->pos, "expected a number");
    };
    auto decimal = [](double d) -> Collection {
      if (std::isnan(d) || std::isinf(d)) return Collection{};
      return one(Item::of_text(Kind::kDecimal, format_decimal(d)));
    };
    switch (n.fn) {
      case Fn::kAbs:
        if (integer) return s.integer == INT64_MIN ? Collection{} : one(Item::of_integer(std::llabs(s.integer)));
        return decimal(std::fabs(x));
      case Fn::kCeiling: return one(Item::of_integer(static_cast<std::int64_t>(std::ceil(x))));
      case Fn::kFloor: return one(Item::of_integer(static_cast<std::int64_t>(std::floor(x))));
      case Fn::kTruncate: return one(Item::of_integer(static_cast<std::int64_t>(std::trunc(x))));
      case Fn::kExp: return decimal(std::exp(x));
      case Fn::kLn: return decimal(std::log(x));
      case Fn::kSqrt: return decimal(std::sqrt(x));
      case Fn::kLog: {
        auto b = number_arg(0);
        if (!b) return std::unexpected(b.error());
        if (!*b) return Collection{};
        return decimal(std::log(x) / std::log(**b));
      }
      case Fn::kPower: {
        auto e = number_arg(0);
        if (!e) return std::unexpected(e.error());
        if (!*e) return Collection{};
        const double r = std::pow(x, **e);
        const bool arg_integer = args[0].size() == 1 && system_value(args[0][0])->kind == Kind::kInteger;
        if (integer && arg_integer && std::fabs(r) < 9e18 && !std::isnan(r)) {
          return one(Item::of_integer(static_cast<std::int64_t>(r)));
        }
        return decimal(r);
      }
      case Fn::kRound: {
        double places = 0;
        if (!args.empty()) {
          auto p = number_arg(0);
          if (!p) return std::unexpected(p.error());
          if (*p) places = **p;
        }
        if (places < 0) return runtime(env, n.pos, "round() needs a precision >= 0");
        const double f = std::pow(10.0, places);
        const double r = std::round(x * f) / f;
        if (places == 0) return one(Item::of_text(Kind::kDecimal, format_decimal(r)));
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(places), r);
        return one(Item::of_text(Kind::kDecimal, buf));
      }
      default: return runtime(env, n.pos, n.name + "() is not implemented");
    }
  }
};

}  // namespace

bool is_true(const Collection& c) noexcept {
  if (c.size() != 1) return false;
  const auto s = system_value(c[0]);
  return s && s->kind == Kind::kBoolean && s->boolean;
}

fhir::Result<Collection> FhirPath::evaluate(const fhir::json::Value& resource, const EvalContext& ctx) const {
  return evaluate(Item::of_node(&resource, resource_type_of(&resource, ctx)), resource, ctx);
}

fhir::Result<Collection> FhirPath::evaluate(const Item& focus, const fhir::json::Value& resource,
                                            const EvalContext& ctx) const {
  if (focus.node == &resource) return evaluate(focus, focus, ctx);
  return evaluate(focus, Item::of_node(&resource, resource_type_of(&resource, ctx)), ctx);
}

fhir::Result<Collection> FhirPath::evaluate(const Item& focus, const Item& resource, const EvalContext& ctx) const {
  try {
    Env env;
    env.root = resource.node;
    env.root_type = resource.type;
    env.ctx = &ctx;
    env.text = &text_;
    Collection input;
    input.push_back(focus);
    Evaluator evaluator;
    return evaluator.eval(*root_, input, env);
  } catch (const std::exception& e) {
    return fhir::fail(fhir::ErrorKind::kInternal, "exception", std::string("FHIRPath evaluation: ") + e.what(), text_);
  }
}

}  // namespace caduceus::resources::fhirpath
