#include "search_sql.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <type_traits>

#include "caduceus/fhir/search_text.hpp"
#include "caduceus/fhir/search_values.hpp"
#include "caduceus/resources/access_filter.hpp"
#include "caduceus/resources/full_text.hpp"

namespace caduceus::resources {
namespace {

namespace sv = fhir::search;
using fhir::ErrorKind;

fhir::Error not_supported(const Criterion& c, const std::string& what) {
  return fhir::Error::make(ErrorKind::kNotSupported, "not-supported",
                           "Search parameter '" + c.name + "': " + what + " is not supported yet", c.name);
}

// LIKE pattern escaping (with ESCAPE '\').
std::string like_escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    if (ch == '%' || ch == '_' || ch == '\\') out.push_back('\\');
    out.push_back(ch);
  }
  return out;
}

const char* table_of(SearchParamType t) {
  switch (t) {
    case SearchParamType::kString: return "idx_string";
    case SearchParamType::kToken: return "idx_token";
    case SearchParamType::kReference: return "idx_reference";
    case SearchParamType::kDate: return "idx_date";
    case SearchParamType::kNumber: return "idx_number";
    case SearchParamType::kQuantity: return "idx_quantity";
    case SearchParamType::kUri: return "idx_uri";
    default: return nullptr;
  }
}

using Types = std::vector<std::string>;

// _id and _lastUpdated: no index rows are written for them (they would repeat the resource row); a search reads
// the resource row's id and last_updated instead.
bool on_resource_row(const SearchParameter& p) noexcept {
  return (p.code == "_id" && p.type == SearchParamType::kToken) ||
         (p.code == "_lastUpdated" && p.type == SearchParamType::kDate);
}

bool on_resource_row(const Criterion& c) noexcept {
  return !c.chained && c.parameter != nullptr && on_resource_row(*c.parameter);
}

// " AND <alias>.param = ?" for parameter `p` on rows of `types` (empty: any type); when p has subsets
// (SearchParameter::subsets: rows the writer left out of p's because another parameter holds them), p's rows and
// theirs: " AND <alias>.param IN (?, ...)", or per type " AND (<alias>.param = ? OR (<alias>.type = ? AND
// <alias>.param IN (...)) ...)" when the types differ in them.
std::string param_is(const std::string& alias, const SearchParameter& p, const Types& types,
                     std::vector<SqlQuery::Bind>& binds) {
  const std::string col = alias + ".param";
  auto list = [&](std::span<const std::string> codes, bool with_p) {
    std::string s = col + " IN (";
    if (with_p) {
      s += "?";
      binds.emplace_back(p.code);
    }
    for (std::size_t i = 0; i < codes.size(); ++i) {
      s += (i || with_p) ? ", ?" : "?";
      binds.emplace_back(codes[i]);
    }
    return s + ")";
  };
  std::vector<std::pair<std::string, std::span<const std::string>>> by_type;
  if (types.empty()) {
    for (const auto& [type, codes] : p.subsets) by_type.emplace_back(type, codes);
  } else {
    for (const std::string& type : types)
      if (auto codes = p.subsets_for(type); !codes.empty()) by_type.emplace_back(type, codes);
  }
  if (by_type.empty()) {
    binds.emplace_back(p.code);
    return " AND " + col + " = ?";
  }
  bool same = !types.empty() && by_type.size() == types.size() && std::ranges::all_of(by_type, [&](const auto& t) {
    return std::ranges::equal(t.second, by_type[0].second);
  });
  if (same) return " AND " + list(by_type[0].second, true);
  std::string s = " AND (" + col + " = ?";
  binds.emplace_back(p.code);
  for (const auto& [type, codes] : by_type) {
    s += " OR (" + alias + ".type = ? AND ";
    binds.emplace_back(type);
    s += list(codes, false) + ")";
  }
  return s + ")";
}

// One value of :of-type (search.html#token: the system and code of Identifier.type, and Identifier.value).
struct OfTypeValue {
  std::string type_system, type_code, value;
};

fhir::Result<OfTypeValue> of_type_value(const Criterion& c, const std::string& text) {
  auto parts = sv::split_unescaped(text, '|');
  if (parts.size() != 3)
    return fhir::fail(ErrorKind::kInvalid, "invalid",
                      "Search parameter '" + c.name + "': :of-type takes system|code|value", c.name);
  auto system = sv::unescape(parts[0]), code = sv::unescape(parts[1]), id = sv::unescape(parts[2]);
  if (!system || !code || !id)
    return fhir::fail(ErrorKind::kInvalid, "invalid", "Search parameter '" + c.name + "': a bad escape", c.name);
  return OfTypeValue{std::move(*system), std::move(*code), std::move(*id)};
}

struct Builder {
  SqlQuery& q;

  void bind(SqlQuery::Bind b) { q.binds.push_back(std::move(b)); }

  // " AND column = ?" for one type, " AND column IN (?, ...)" for several, nothing for any type.
  std::string type_in(const std::string& column, const Types& types) {
    if (types.empty()) return {};
    for (const auto& t : types) bind(t);
    if (types.size() == 1) return " AND " + column + " = ?";
    std::string s = " AND " + column + " IN (";
    for (std::size_t i = 0; i < types.size(); ++i) s += i ? ",?" : "?";
    return s + ")";
  }

  // A range comparison of a stored [lo, hi) against the search range [slo, shi) (search.html#prefix).
  void range(sv::Prefix p, const char* lo, const char* hi, SqlQuery::Bind slo, SqlQuery::Bind shi, std::string& out) {
    auto contained = [&] {
      std::string s = std::string("(") + lo + " >= ? AND " + hi + " <= ?)";
      bind(slo);
      bind(shi);
      return s;
    };
    switch (p) {
      case sv::Prefix::kEq: out += contained(); break;
      case sv::Prefix::kNe: out += "NOT " + contained(); break;
      case sv::Prefix::kGt:
      case sv::Prefix::kSa:
        out += std::string("(") + (p == sv::Prefix::kSa ? lo : hi) + (p == sv::Prefix::kSa ? " >= ?)" : " > ?)");
        bind(shi);
        break;
      case sv::Prefix::kLt:
      case sv::Prefix::kEb:
        out += std::string("(") + (p == sv::Prefix::kEb ? hi : lo) + (p == sv::Prefix::kEb ? " <= ?)" : " < ?)");
        bind(slo);
        break;
      case sv::Prefix::kGe: {
        out += std::string("(") + hi + " > ? OR ";
        bind(shi);
        out += contained() + ")";
        break;
      }
      case sv::Prefix::kLe: {
        out += std::string("(") + lo + " < ? OR ";
        bind(slo);
        out += contained() + ")";
        break;
      }
      case sv::Prefix::kAp:
        out += std::string("(") + lo + " < ? AND " + hi + " > ?)";
        bind(shi);
        bind(slo);
        break;
    }
  }

  // The condition on one index row (alias x) for one value.
  fhir::Result<std::string> value_condition(const Criterion& c, const std::string& value) {
    const SearchParameter& p = *c.parameter;
    std::string s;
    switch (p.type) {
      case SearchParamType::kString: {
        if (c.modifier == Modifier::kExact) {
          bind(value);
          return std::string("x.exact = ?");
        }
        std::string norm = sv::normalize_for_search(value);
        if (c.modifier != Modifier::kContains && !norm.empty() && static_cast<unsigned char>(norm.back()) < 0xFF) {
          // Starts with: the range [norm, norm with its last byte raised) seeks the value index (a LIKE would not:
          // it folds case, and the column has the binary collation). Both sides are normalized already.
          std::string upper = norm;
          upper.back() = static_cast<char>(static_cast<unsigned char>(upper.back()) + 1);
          bind(norm);
          bind(upper);
          return std::string("(x.normalized >= ? AND x.normalized < ?)");
        }
        bind(c.modifier == Modifier::kContains ? "%" + like_escape(norm) + "%" : like_escape(norm) + "%");
        return std::string("x.normalized LIKE ? ESCAPE '\\'");
      }
      case SearchParamType::kToken: {
        if (c.modifier == Modifier::kText) {
          bind(like_escape(sv::normalize_for_search(value)) + "%");
          return std::string("x.text LIKE ? ESCAPE '\\'");
        }
        if (c.modifier == Modifier::kOfType) {  // a row of idx_identifier_type (a probe: see of_type())
          auto v = of_type_value(c, value);
          if (!v) return std::unexpected(v.error());
          bind(v->value);
          bind(v->type_code);
          bind(v->type_system);
          return std::string("x.value = ? AND x.type_code = ? AND x.type_system = ?");
        }
        auto t = sv::parse_token(value);
        if (!t) return std::unexpected(t.error());
        std::string cond;
        if (t->code) {
          cond = "x.code = ?";
          bind(*t->code);
        }
        if (t->system) {
          if (!cond.empty()) cond += " AND ";
          if (t->system->empty()) {
            cond += "x.system = ''";
          } else {
            cond += "x.system = ?";
            bind(*t->system);
          }
        }
        return cond;
      }
      case SearchParamType::kReference: {
        if (c.modifier == Modifier::kIdentifier) {
          auto t = sv::parse_token(value);
          if (!t) return std::unexpected(t.error());
          std::string cond = "x.identifier_value = ?";
          bind(t->code.value_or(""));
          if (t->system && !t->system->empty()) {
            cond += " AND x.identifier_system = ?";
            bind(*t->system);
          }
          return cond;
        }
        auto r = sv::parse_reference(value);
        if (!r) return std::unexpected(r.error());
        std::string cond;
        if (r->url && !r->type) {
          bind(*r->url);
          cond = "x.url = ?";
        } else {
          bind(r->id);
          cond = "x.target_id = ?";
          std::string type = r->type.value_or(c.modifier == Modifier::kType ? c.target_type : std::string());
          if (!type.empty()) {
            cond += " AND x.target_type = ?";
            bind(type);
          } else if (!p.target.empty() && p.target.size() <= 4) {
            // A bare id names a resource of one of the parameter's target types (search.html#reference); saying
            // which lets the value index (tenant, target_id, target_type, type, param) be used to its end, one
            // seek per type, instead of walking every reference to that id.
            cond += " AND x.target_type IN (";
            for (std::size_t i = 0; i < p.target.size(); ++i) {
              cond += i ? ",?" : "?";
              bind(p.target[i]);
            }
            cond += ")";
          }
        }
        return cond;
      }
      case SearchParamType::kDate: {
        auto d = sv::parse_date(value);
        if (!d) return std::unexpected(d.error());
        range(d->prefix, "x.low", "x.high", d->low_ms, d->high_ms, s);
        return s;
      }
      case SearchParamType::kNumber:
      case SearchParamType::kQuantity: {
        sv::NumberValue n;
        std::optional<std::string> system, code;
        if (p.type == SearchParamType::kNumber) {
          auto parsed = sv::parse_number(value);
          if (!parsed) return std::unexpected(parsed.error());
          n = *parsed;
        } else {
          auto parsed = sv::parse_quantity(value);
          if (!parsed) return std::unexpected(parsed.error());
          n = parsed->number;
          system = parsed->system;
          code = parsed->code;
        }
        // The stored value is the middle of its range; the search value's precision gives [low, high).
        const char* mid = "((x.low + x.high) / 2)";
        double lo = n.low.to_double(), hi = n.high.to_double(), v = n.value.to_double();
        switch (n.prefix) {
          case sv::Prefix::kEq:
            s = std::string("(") + mid + " >= ? AND " + mid + " < ?)";
            bind(lo);
            bind(hi);
            break;
          case sv::Prefix::kNe:
            s = std::string("NOT (") + mid + " >= ? AND " + mid + " < ?)";
            bind(lo);
            bind(hi);
            break;
          case sv::Prefix::kGt:
          case sv::Prefix::kSa:
            s = std::string(mid) + " > ?";
            bind(v);
            break;
          case sv::Prefix::kLt:
          case sv::Prefix::kEb:
            s = std::string(mid) + " < ?";
            bind(v);
            break;
          case sv::Prefix::kGe:
            s = std::string(mid) + " >= ?";
            bind(v);
            break;
          case sv::Prefix::kLe:
            s = std::string(mid) + " <= ?";
            bind(v);
            break;
          case sv::Prefix::kAp: {  // within 10 % of the value
            double margin = std::abs(v) * 0.1;
            s = std::string("(") + mid + " >= ? AND " + mid + " <= ?)";
            bind(v - margin);
            bind(v + margin);
            break;
          }
        }
        if (code) {
          s += system ? " AND x.system = ? AND x.code = ?" : " AND (x.code = ? OR x.unit = ?)";
          if (system) bind(*system);
          bind(*code);
          if (!system) bind(*code);
        }
        return s;
      }
      case SearchParamType::kUri: {
        if (c.modifier == Modifier::kBelow) {
          bind(like_escape(value) + "%");
          return std::string("x.uri LIKE ? ESCAPE '\\'");
        }
        if (c.modifier == Modifier::kAbove) {
          bind(value);
          return std::string("? LIKE (replace(replace(x.uri, '%', '\\%'), '_', '\\_') || '%') ESCAPE '\\'");
        }
        if (c.modifier == Modifier::kContains) {
          bind("%" + like_escape(value) + "%");
          return std::string("x.uri LIKE ? ESCAPE '\\'");
        }
        bind(value);
        return std::string("x.uri = ?");
      }
      default: return std::unexpected(not_supported(c, "this parameter type"));
    }
  }

  // Appends " AND <condition>" for one criterion on the resource aliased `r`, of type `type` (a chain recurses
  // into the referenced type with a fresh alias). Each condition is `r.rid IN (SELECT x.rid FROM idx_... x WHERE
  // tenant, type, param and value match)`, so that SQLite can start from the value index of the most selective
  // criterion instead of scanning every resource of the type.
  // One criterion on the resources aliased `r`. Either it drives (`r.rid IN (SELECT x.rid ... by value)`: SQLite
  // builds the list of matches once from the value index) or, with `probe`, it checks each row that another
  // criterion found (`EXISTS (SELECT 1 ... WHERE x.rid = r.rid ...)`: a lookup on the table's clustered key
  // (rid, param, ...)). Several IN lists would each be built in full (all 180,000 Observations of a common code
  // to keep 20 of one patient); one driver and probes cost what the driver selects.
  fhir::Result<void> criterion(const Criterion& c, const Types& types, std::string& where, const std::string& r,
                               bool probe = false) {
    auto open = [&](const char* table, bool negate) {
      // A probe's rid already fixes tenant and type: `+` keeps SQLite from reaching for the value index (whose
      // first columns are tenant and type, text compared at every level) instead of the clustered key, whose
      // first column is the rid.
      if (probe)
        where += std::string(" AND ") + (negate ? "NOT " : "") + "EXISTS (SELECT 1 FROM " + table +
                 " x WHERE x.rid = " + r + ".rid AND +x.tenant = ?";
      else
        where += " AND " + r + ".rid " + (negate ? "NOT IN" : "IN") + " (SELECT x.rid FROM " + table +
                 " x WHERE x.tenant = ?";
      bind(tenant);
      where += type_in(probe ? "+x.type" : "x.type", types);
      where += param_is("x", *c.parameter, types, q.binds);
    };
    if (c.chained) {
      std::string r2 = next_alias();
      open("idx_reference", false);
      where += " AND x.target_type = ? AND x.target_id IN (SELECT " + r2 + ".id FROM resource " + r2 + " WHERE " + r2 +
               ".tenant = ? AND " + r2 + ".type = ? AND " + r2 + ".deleted = 0";
      bind(c.target_type);
      bind(tenant);
      bind(c.target_type);
      if (auto ok = visible(r2, Types{c.target_type}, where); !ok) return ok;  // no chain through hidden ones
      if (auto ok = criterion(*c.chained, Types{c.target_type}, where, r2); !ok) return ok;
      where += "))";
      return {};
    }
    if (on_resource_row(*c.parameter)) return resource_row(c, where, r);
    if (c.parameter->type == SearchParamType::kComposite) return composite(c, types, where, r, probe);
    if (is_full_text(*c.parameter)) return full_text(c, where, r);  // (always a list: MATCH per row is no lookup)
    // _query (and any other parameter without an expression): no index rows to search.
    if (c.parameter->expression.empty()) return std::unexpected(not_supported(c, "a parameter without an index"));
    if (c.modifier == Modifier::kOfType && !probe) return of_type(c, types, where, r);
    const char* table = c.modifier == Modifier::kOfType ? "idx_identifier_type" : table_of(c.parameter->type);
    if (table == nullptr) return std::unexpected(not_supported(c, "a special parameter"));
    if (c.modifier == Modifier::kMissing) {
      open(table, !c.values.empty() && c.values.front() == "true");
      where += ")";
      return {};
    }
    open(table, c.modifier == Modifier::kNot);
    where += " AND (";
    for (std::size_t i = 0; i < c.values.size(); ++i) {
      auto cond = value_condition(c, c.values[i]);
      if (!cond) return std::unexpected(cond.error());
      where += (i ? " OR (" : "(") + *cond + ")";
    }
    where += "))";
    return {};
  }

  // identifier:of-type=system|code|value when it drives. idx_identifier_type has no index but by rid (SQLite: its key
  // rid, param, type_system, type_code, value; PostgreSQL: rid alone), so that a write costs no page of a value index
  // keyed at random: the candidates come from the identifier's own token rows instead (Identifier.value is the
  // token's code: idx_token_value by tenant, type, param, code), and each is checked by one seek on that rid. The
  // idx_identifier_type row pairs a type coding with the value of the same identifier, so the type of one identifier
  // and the value of another match nothing; the token rows only narrow the candidates. Every row of idx_identifier_type
  // has its token row (the indexer writes both from the same identifier, a value being required for either), under the
  // parameter or under one of its subsets (param_is); idx_identifier_type keeps all of the parameter's own rows, so the
  // check names the parameter alone. A resource's rows all have its tenant, live or set aside: y.tenant = x.tenant.
  fhir::Result<void> of_type(const Criterion& c, const Types& types, std::string& where, const std::string& r) {
    std::vector<OfTypeValue> values;
    for (const std::string& text : c.values) {
      auto v = of_type_value(c, text);
      if (!v) return std::unexpected(v.error());
      values.push_back(std::move(*v));
    }
    if (values.empty())
      return fhir::fail(ErrorKind::kInvalid, "invalid", "Search parameter '" + c.name + "': no value", c.name);
    where += " AND " + r + ".rid IN (SELECT x.rid FROM idx_token x WHERE x.tenant = ?";
    bind(tenant);
    where += type_in("x.type", types);
    where += param_is("x", *c.parameter, types, q.binds);
    where += values.size() == 1 ? " AND x.code = ?" : " AND x.code IN (";
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (values.size() > 1) where += i ? ",?" : "?";
      bind(values[i].value);
    }
    if (values.size() > 1) where += ")";
    where += " AND EXISTS (SELECT 1 FROM idx_identifier_type y WHERE y.rid = x.rid AND y.param = ?";
    bind(c.parameter->code);
    where += " AND y.tenant = x.tenant AND (";
    for (std::size_t i = 0; i < values.size(); ++i) {
      where += i ? " OR " : "";
      where += "(y.type_system = ? AND y.type_code = ? AND y.value = ?)";
      bind(values[i].type_system);
      bind(values[i].type_code);
      bind(values[i].value);
    }
    where += ")))";
    return {};
  }

  // _id or _lastUpdated on the resource aliased `r`, from its own row: the answers that the index rows once written
  // for them would give (_id: one token row, system '', code the id, no text; _lastUpdated: one date row
  // [last_updated, last_updated + 1)), as a condition on r.id or r.last_updated alone, so that the resource's
  // (tenant, type, id) or (tenant, type, last_updated) index can find the rows when it drives.
  fhir::Result<void> resource_row(const Criterion& c, std::string& where, const std::string& r) {
    if (c.modifier == Modifier::kMissing) {  // every resource has an id and a last_updated
      if (c.values.empty() || c.values.front() == "true") where += " AND 1 = 0";
      return {};
    }
    std::string cond = c.parameter->code == "_id" ? "" : "(";
    if (c.parameter->code == "_id") {
      bool all = false;  // a value that every resource matches (`|`-less system: `|` alone is refused)
      std::vector<std::string> ids;
      for (const std::string& value : c.values) {
        if (c.modifier == Modifier::kText) {
          // The row's text is empty: only a value that normalizes to nothing (a pattern of '%') matched it.
          all = all || sv::normalize_for_search(value).empty();
          continue;
        }
        if (c.modifier == Modifier::kOfType) {  // no identifier-type rows: nothing matches, a bad value is still 400
          if (auto v = of_type_value(c, value); !v) return std::unexpected(v.error());
          continue;
        }
        auto t = sv::parse_token(value);
        if (!t) return std::unexpected(t.error());
        if (t->system && !t->system->empty()) continue;  // an id has no system
        if (t->code)
          ids.push_back(*t->code);
        else
          all = true;  // `|` with no code: no system, any code
      }
      if (all) {
        cond = "1 = 1";
      } else if (ids.empty()) {
        cond = "1 = 0";
      } else {
        cond = r + (ids.size() == 1 ? ".id = ?" : ".id IN (");
        for (std::size_t i = 0; i < ids.size(); ++i) {
          if (ids.size() > 1) cond += i ? ",?" : "?";
          bind(std::move(ids[i]));
        }
        if (ids.size() > 1) cond += ")";
      }
    } else {
      // A point [t, t + 1) against the search range [lo, hi), in whole milliseconds: t + 1 <= hi is t < hi, and
      // t + 1 > lo is t >= lo (see range()).
      const std::string t = r + ".last_updated";
      for (std::size_t i = 0; i < c.values.size(); ++i) {
        auto d = sv::parse_date(c.values[i]);
        if (!d) return std::unexpected(d.error());
        auto at_least = [&](std::int64_t v) {
          bind(v);
          return t + " >= ?";
        };
        auto below = [&](std::int64_t v) {
          bind(v);
          return t + " < ?";
        };
        // (Each bind in the order of the text: the operands of + are not evaluated in a set order.)
        auto within = [&] {
          std::string s = at_least(d->low_ms) + " AND ";
          return s + below(d->high_ms);
        };
        std::string one;
        switch (d->prefix) {
          case sv::Prefix::kEq:
          case sv::Prefix::kAp: one = within(); break;
          case sv::Prefix::kNe: one = "NOT (" + within() + ")"; break;
          case sv::Prefix::kGt:
          case sv::Prefix::kSa: one = at_least(d->high_ms); break;
          case sv::Prefix::kLt:
          case sv::Prefix::kEb: one = below(d->low_ms); break;
          case sv::Prefix::kGe: one = at_least(d->low_ms); break;
          case sv::Prefix::kLe: one = below(d->high_ms); break;
        }
        cond += (i ? ") OR (" : "(") + one;
      }
      cond += "))";
    }
    where += std::string(" AND ") + (c.modifier == Modifier::kNot ? "NOT " : "") + "(" + cond + ")";
    return {};
  }

  // _text (the narrative column) or _content (the whole row): one FTS5 MATCH, the values ORed. The row of a
  // resource is its rid; the resource's tenant and type are checked on `r` itself.
  fhir::Result<void> full_text(const Criterion& c, std::string& where, const std::string& r) {
    if (c.modifier != Modifier::kNone)
      return fhir::fail(ErrorKind::kInvalid, "invalid", "Search parameter '" + c.name + "' takes no modifier", c.name);
    std::string match;
    for (std::size_t i = 0; i < c.values.size(); ++i) {
      auto expr = fts5_match_expression(c.values[i]);
      if (!expr)
        return fhir::fail(ErrorKind::kInvalid, "invalid",
                          "Search parameter '" + c.name + "': " + expr.error().issues[0].diagnostics, c.name);
      match += (i ? " OR (" : "(") + *expr + ")";
    }
    where += " AND " + r + ".rid IN (SELECT rowid FROM idx_text WHERE " +
             (c.parameter->code == "_text" ? "narrative" : "idx_text") + " MATCH ?)";
    bind(match);
    return {};
  }

  // A composite (`code-value-quantity=http://loinc.org|8480-6$gt100`): some item of the resource whose components
  // all match, each component checked like a parameter of its own type on the rows of that item.
  fhir::Result<void> composite(const Criterion& c, const Types& types, std::string& where, const std::string& r,
                               bool probe) {
    if (c.modifier != Modifier::kNone && c.modifier != Modifier::kMissing)
      return std::unexpected(not_supported(c, "a modifier on a composite parameter"));
    bool missing = c.modifier == Modifier::kMissing;
    bool negate = missing && c.values.front() == "true";
    if (probe)
      where += std::string(" AND ") + (negate ? "NOT " : "") +
               "EXISTS (SELECT 1 FROM idx_composite c WHERE c.rid = " + r + ".rid AND +c.tenant = ?";
    else
      where +=
          " AND " + r + ".rid " + (negate ? "NOT IN" : "IN") + " (SELECT c.rid FROM idx_composite c WHERE c.tenant = ?";
    bind(tenant);
    where += type_in(probe ? "+c.type" : "c.type", types);
    where += param_is("c", *c.parameter, types, q.binds) + " AND c.component = 0";
    if (missing) {
      where += ")";
      return {};
    }
    where += " AND (";
    for (std::size_t i = 0; i < c.values.size(); ++i) {
      auto parts = sv::split_unescaped(c.values[i], '$');
      if (parts.size() != c.parameter->components.size())
        return fhir::fail(ErrorKind::kInvalid, "invalid", "Search parameter '" + c.name + "': wrong number of parts",
                          c.name);
      where += i ? " OR (" : "(";
      for (std::size_t k = 0; k < parts.size(); ++k) {
        const SearchParameter* component = c.parameter->components[k].parameter;
        if (component == nullptr) return std::unexpected(not_supported(c, "this composite"));
        Criterion part;
        part.name = c.name;
        part.parameter = component;
        where += (k ? " AND " : "") + std::string("EXISTS (SELECT 1 FROM idx_composite x WHERE x.rid = c.rid AND ") +
                 "x.param = c.param AND x.item = c.item AND x.component = " + std::to_string(k) + " AND (";
        auto cond = value_condition(part, std::string(parts[k]));
        if (!cond) return std::unexpected(cond.error());
        where += *cond + "))";
      }
      where += ")";
    }
    where += "))";
    return {};
  }

  // Appends " AND <r> is referenced by a matching resource" for `_has` on the resource aliased `r` of `type`.
  fhir::Result<void> has(const HasCriterion& h, const Types& types, std::string& where, const std::string& r) {
    std::string r2 = next_alias();
    // The referring resources come from the inner criterion's list, and their reference rows by the clustered
    // key (rid, param): the unary `+` keeps SQLite from walking idx_reference_target by tenant alone (the target
    // ids are what is looked for, so that index has nothing to start from).
    where += " AND " + r + ".id IN (SELECT x.target_id FROM idx_reference x JOIN resource " + r2 + " ON " + r2 +
             ".rid = x.rid WHERE +x.tenant = ? AND x.type = ? AND x.param = ?";
    bind(tenant);
    bind(h.type);
    bind(h.reference_param->code);
    // Over several types the id alone is ambiguous: the reference's type must be the resource's own.
    where += types.size() == 1 ? type_in("x.target_type", types) : " AND x.target_type = " + r + ".type";
    where += " AND " + r2 + ".deleted = 0";
    if (auto ok = visible(r2, Types{h.type}, where); !ok) return ok;  // only visible resources refer
    if (h.nested) {
      if (auto ok = has(*h.nested, Types{h.type}, where, r2); !ok) return ok;
    } else if (h.criterion) {
      if (auto ok = criterion(*h.criterion, Types{h.type}, where, r2); !ok) return ok;
    }
    where += ")";
    return {};
  }

  // " AND r.rid IN (the resources that a compartment parameter of their type makes members)".
  void compartment(const CompartmentFilter& f, std::string& where) {
    where +=
        " AND r.rid IN (SELECT x.rid FROM idx_reference x WHERE x.tenant = ? AND x.target_id = ? AND "
        "x.target_type = ? AND (";
    bind(tenant);
    bind(f.id);
    bind(f.type);
    bool first = true;
    for (const auto& [type, params] : f.params) {
      if (params.empty()) continue;
      where += first ? "(x.type = ? AND x.param IN (" : " OR (x.type = ? AND x.param IN (";
      first = false;
      bind(type);
      for (std::size_t i = 0; i < params.size(); ++i) {
        where += i ? ",?" : "?";
        bind(params[i]);
      }
      where += "))";
    }
    if (first) where += "0";  // no type of the search is in the compartment: nothing is
    where += "))";
  }

  // " AND r.rid IN (the resources of `type` whose `patient` is the one of `patient` and that have a code of
  // `token`)", from idx_patient_token: one seek for what would be every resource of the patient, each checked
  // for the code. Only for the criteria patient_token_pair() chose.
  fhir::Result<void> patient_token(const Criterion& patient, const Criterion& token, const std::string& type,
                                   std::string& where) {
    where += " AND r.rid IN (SELECT x.rid FROM idx_patient_token x WHERE ";
    if (auto ok = patient_token_rows(patient, token, type, where); !ok) return ok;
    where += ")";
    return {};
  }

  // The conditions on the rows `x` of idx_patient_token that patient_token() selects by.
  fhir::Result<void> patient_token_rows(const Criterion& patient, const Criterion& token, const std::string& type,
                                        std::string& where) {
    auto r = sv::parse_reference(patient.values.front());
    if (!r) return std::unexpected(r.error());
    where += "x.tenant = ? AND x.target_id = ?";
    bind(tenant);
    bind(r->id);
    const Types targets = r->type                               ? Types{*r->type}
                          : patient.modifier == Modifier::kType ? Types{patient.target_type}
                                                                : Types(patient.parameter->target);
    where += type_in("x.target_type", targets) + " AND x.type = ?";
    bind(type);
    where += param_is("x", *token.parameter, Types{type}, q.binds) + " AND (";
    for (std::size_t i = 0; i < token.values.size(); ++i) {
      auto cond = value_condition(token, token.values[i]);
      if (!cond) return std::unexpected(cond.error());
      where += (i ? " OR (" : "(") + *cond + ")";
    }
    where += ")";
    return {};
  }

  std::string next_alias() { return "r" + std::to_string(++aliases); }

  // " AND <the resource aliased `r` is visible under the access filter>" (nothing without a filter). `types`: the
  // types `r` may have (empty: any), to leave out the clauses that cannot apply.
  fhir::Result<void> visible(const std::string& r, const Types& types, std::string& where) {
    if (access == nullptr) return {};
    const AccessFilter& f = *access;
    auto applies = [&](const AccessClause& c) {
      return c.type == "*" || types.empty() || std::find(types.begin(), types.end(), c.type) != types.end();
    };
    if (!f.types.empty()) {
      where += " AND " + r + ".type IN (";
      for (std::size_t i = 0; i < f.types.size(); ++i) {
        where += i ? ",?" : "?";
        bind(f.types[i]);
      }
      where += ")";
    }
    if (!f.patient.empty()) in_compartment(r, f.patient, "*", types, where);
    // One clause: " AND (1 = 1 AND <type> AND <compartment> AND <criteria>)".
    auto clause = [&](const AccessClause& c) -> fhir::Result<void> {
      where += "(1 = 1";
      if (c.type != "*") {
        where += " AND " + r + ".type = ?";
        bind(c.type);
      }
      if (!c.patient.empty()) in_compartment(r, c.patient, c.type, types, where);
      for (const Criterion& crit : c.criteria)
        if (auto ok = criterion(crit, Types{c.type}, where, r, true); !ok) return ok;
      where += ")";
      return {};
    };
    where += " AND (";
    bool any = false;
    for (const AccessClause& c : f.allow) {
      if (!applies(c)) continue;
      if (any) where += " OR ";
      any = true;
      if (auto ok = clause(c); !ok) return ok;
    }
    if (!any) where += "1 = 0";
    where += ")";
    for (const AccessClause& c : f.deny) {
      if (!applies(c)) continue;
      where += " AND NOT ";
      if (auto ok = clause(c); !ok) return ok;
    }
    return {};
  }

  // " AND <r is in the Patient compartment of `patient`>": the Patient itself, or a resource that one of its
  // type's compartment parameters (the access filter's CompartmentDefinition) makes a member. `type` ("*": any)
  // and `types` narrow the member types listed.
  void in_compartment(const std::string& r, const std::string& patient, const std::string& type, const Types& types,
                      std::string& where) {
    std::vector<std::pair<std::string, const std::vector<std::string>*>> members;
    for (const auto& [t, params] : access->compartment) {
      if (type != "*" && t != type) continue;
      if (type == "*" && !types.empty() && std::find(types.begin(), types.end(), t) == types.end()) continue;
      if (!params.empty()) members.emplace_back(t, &params);
    }
    where += " AND ((" + r + ".type = ? AND " + r + ".id = ?)";
    bind(std::string("Patient"));
    bind(patient);
    if (!members.empty()) {
      where += " OR EXISTS (SELECT 1 FROM idx_reference x WHERE x.rid = " + r +
               ".rid AND +x.tenant = ? AND x.target_type = ? AND x.target_id = ? AND (";
      bind(tenant);
      bind(std::string("Patient"));
      bind(patient);
      for (std::size_t m = 0; m < members.size(); ++m) {
        where += m ? " OR (x.type = ? AND x.param IN (" : "(x.type = ? AND x.param IN (";
        bind(members[m].first);
        const auto& params = *members[m].second;
        for (std::size_t i = 0; i < params.size(); ++i) {
          where += i ? ",?" : "?";
          bind(params[i]);
        }
        where += "))";
      }
      where += "))";
    }
    where += ")";
  }

  std::int64_t tenant = 0;
  int aliases = 0;
  const AccessFilter* access = nullptr;
};

}  // namespace

namespace {

// The WHERE clause (" WHERE ...") of a search, its binds appended to q.binds.
// How likely a criterion is to select few resources, without statistics (lower: fewer); -1 when it cannot drive
// (:not and :missing select by absence). A reference by id, an identifier or _id: a handful; a uri or full text:
// few; a code, a composite or a string: a share of the type; a range of dates or numbers: often many; a chain:
// a list built through another type.
int drive_rank(const Criterion& c) {
  if (c.modifier == Modifier::kNot || c.modifier == Modifier::kMissing) return -1;
  if (c.chained) return 5;
  if (is_full_text(*c.parameter)) return 1;
  switch (c.parameter->type) {
    case SearchParamType::kReference: return c.modifier == Modifier::kIdentifier ? 1 : 0;
    case SearchParamType::kToken:
      return c.parameter->code == "_id" || c.parameter->code == "identifier" || c.modifier == Modifier::kOfType ? 0 : 2;
    case SearchParamType::kUri: return 1;
    case SearchParamType::kComposite: return 2;
    case SearchParamType::kString: return c.modifier == Modifier::kContains ? 4 : 2;
    case SearchParamType::kDate:
    case SearchParamType::kNumber:
    case SearchParamType::kQuantity: return 3;
    default: return 4;
  }
}

// The criteria idx_patient_token answers together, if the search has them: `patient` by one resource id (bare, or
// Patient/ or Group/ typed; no version, no URL) and a token parameter of the type by codes (no modifier; each
// value with a code). Both are then one driver; the other criteria probe its matches.
std::optional<std::pair<std::size_t, std::size_t>> patient_token_pair(const SearchQuery& query) {
  if (query.type.empty() || query.compartment) return std::nullopt;
  std::optional<std::size_t> patient, token;
  for (std::size_t i = 0; i < query.criteria.size(); ++i) {
    const Criterion& c = query.criteria[i];
    if (c.chained || c.values.empty()) continue;
    const SearchParameter& p = *c.parameter;
    if (!patient && p.code == "patient" && p.type == SearchParamType::kReference && c.values.size() == 1 &&
        (c.modifier == Modifier::kNone || c.modifier == Modifier::kType)) {
      auto r = sv::parse_reference(c.values.front());
      if (r && !r->url && !r->version && !r->id.empty()) patient = i;
      continue;
    }
    if (!token && p.type == SearchParamType::kToken && c.modifier == Modifier::kNone && !p.expression.empty() &&
        patient_token_param(p.code) && std::all_of(c.values.begin(), c.values.end(), [](const std::string& v) {
          auto t = sv::parse_token(v);
          return t && t->code && !t->code->empty();
        }))
      token = i;
  }
  if (!patient || !token) return std::nullopt;
  return std::pair{*patient, *token};
}

fhir::Result<std::string> search_where(TenantId tenant, const SearchQuery& query, SqlQuery& q) {
  Builder b{q};
  b.tenant = tenant;
  b.access = query.access.get();
  // With a criterion that selects by value, the rows come from its index (`r.rid IN (...)`): the unary `+` keeps
  // SQLite from scanning the resources of the type through the (tenant, type) index instead.
  // A compartment selects by value too (the references to its focal resource).
  // One criterion drives (the likeliest to select few: see drive_rank), the others probe its matches; or a patient
  // and a code drive together.
  std::optional<std::size_t> driver;
  const auto pair = patient_token_pair(query);
  if (!pair && !query.compartment) {
    int best = std::numeric_limits<int>::max();
    for (std::size_t i = 0; i < query.criteria.size(); ++i)
      if (int rank = drive_rank(query.criteria[i]); rank >= 0 && rank < best) {
        best = rank;
        driver = i;
      }
  }
  // (Unless the driver is _id or _lastUpdated: then the rows come from the resource's own index, which needs the
  // tenant and type as they are.)
  bool selective = query.compartment.has_value() ||
                   std::any_of(query.criteria.begin(), query.criteria.end(), [](const Criterion& c) {
                     return c.modifier != Modifier::kNot && c.modifier != Modifier::kMissing;
                   });
  if (driver && on_resource_row(query.criteria[*driver])) selective = false;
  const Types types = query.type.empty() ? query.types : Types{query.type};
  std::string plus = selective ? "+" : "";
  std::string where = " WHERE " + plus + "r.tenant = ?";
  q.binds.push_back(static_cast<std::int64_t>(tenant));
  where += b.type_in(plus + "r.type", types) + " AND r.deleted = 0";
  if (query.compartment) b.compartment(*query.compartment, where);
  if (auto ok = b.visible("r", types, where); !ok) return std::unexpected(ok.error());
  if (pair)
    if (auto ok = b.patient_token(query.criteria[pair->first], query.criteria[pair->second], query.type, where); !ok)
      return std::unexpected(ok.error());
  const bool probes = driver.has_value() || query.compartment.has_value() || pair.has_value();
  for (std::size_t i = 0; i < query.criteria.size(); ++i) {
    if (pair && (i == pair->first || i == pair->second)) continue;
    if (auto ok = b.criterion(query.criteria[i], types, where, "r", probes && driver != i); !ok)
      return std::unexpected(ok.error());
  }
  for (const HasCriterion& h : query.has)
    if (auto ok = b.has(h, types, where, "r"); !ok) return std::unexpected(ok.error());
  return where;
}

// What a sort key's value is, as SQLite returns it (and a cursor carries it).
enum class KeyKind { kText, kInteger, kReal };

KeyKind key_kind(const SortKey& k) {
  if (k.code == "_id") return KeyKind::kText;
  if (k.code == "_lastUpdated") return KeyKind::kInteger;
  switch (k.parameter->type) {
    case SearchParamType::kDate: return KeyKind::kInteger;
    case SearchParamType::kNumber:
    case SearchParamType::kQuantity: return KeyKind::kReal;
    default: return KeyKind::kText;
  }
}

// The value of sort key `k` for the resource aliased r: one correlated aggregate over the resource's index rows,
// which walks the table's clustered key (rid, param, ...). A resource with several values sorts by its lowest
// ascending and by its highest descending (search.html#sort); one with no value gets NULL, which sorts last in
// both directions (NULLS LAST), so that the resources that have the value come first either way.
//   date, number, quantity: the stored range, its low end ascending and its high end descending (a quantity's
//     unit is not converted: values of different units compare as numbers);
//   string: the normalized form (case and accents folded, as a string search matches);
//   token: the code, then the system (`code \x01 system`: \x01 sorts below every character a FHIR string may
//     hold); a CodeableConcept with text alone has no code and counts as no value;
//   reference: the reference as written (the absolute URL, else Type/id, else the id); an identifier alone
//     counts as no value;
//   uri: the uri.
// _id and _lastUpdated come from the resource row itself, which always has them.
fhir::Result<std::string> sort_key_sql(const SortKey& k, const std::string& alias, std::vector<SqlQuery::Bind>& binds) {
  if (k.code == "_id") return std::string("r.id");
  if (k.code == "_lastUpdated") return std::string("r.last_updated");
  const SearchParameter& p = *k.parameter;
  const char* table = table_of(p.type);
  if (table == nullptr || p.type == SearchParamType::kComposite)
    return fhir::fail(ErrorKind::kInvalid, "invalid", "cannot sort on '" + k.code + "'", "_sort");
  // Each key has an alias of its own (s0, s1, ...), so that a query plan names them apart.
  auto col = [&](const char* name) { return alias + "." + name; };
  const char* agg = k.descending ? "MAX" : "MIN";
  std::string value, extra;
  switch (p.type) {
    case SearchParamType::kString: value = col("normalized"); break;
    case SearchParamType::kToken:
      value = col("code") + " || char(1) || " + col("system");
      extra = " AND " + col("code") + " <> ''";
      break;
    case SearchParamType::kReference:
      value = "CASE WHEN " + col("url") + " <> '' THEN " + col("url") + " WHEN " + col("target_type") + " <> '' THEN " +
              col("target_type") + " || '/' || " + col("target_id") + " ELSE " + col("target_id") + " END";
      extra = " AND (" + col("url") + " <> '' OR " + col("target_id") + " <> '')";
      break;
    case SearchParamType::kDate:
    case SearchParamType::kNumber:
    case SearchParamType::kQuantity: value = col(k.descending ? "high" : "low"); break;
    default: value = col("uri"); break;
  }
  std::string param = param_is(alias, p, {}, binds);
  return std::string("(SELECT ") + agg + "(" + value + ") FROM " + table + " " + alias + " WHERE " + col("rid") +
         " = r.rid" + param + extra + ")";
}

}  // namespace

namespace {

// The count of a search with one plain criterion, from its index rows alone: `SELECT COUNT(*) FROM (SELECT DISTINCT
// x.rid FROM idx_... x WHERE ...)`. Sound because index rows exist only for the current version of resources that
// are not deleted (a delete removes them), and carry the tenant and type; it saves a lookup in `resource` per match
// (180,000 of them for a common code in a million resources). nullopt when the search has more to it.
std::optional<SqlQuery> index_only_count(TenantId tenant, const SearchQuery& query) {
  if (query.criteria.size() != 1 || !query.has.empty() || query.compartment || query.access) return std::nullopt;
  const Criterion& c = query.criteria.front();
  if (drive_rank(c) < 0 || c.chained || is_full_text(*c.parameter) ||
      c.parameter->type == SearchParamType::kComposite || c.parameter->expression.empty())
    return std::nullopt;
  SqlQuery q;
  Builder b{q};
  b.tenant = tenant;
  std::string where;
  const Types types = query.type.empty() ? query.types : Types{query.type};
  if (!b.criterion(c, types, where, "r")) return std::nullopt;
  static constexpr std::string_view kHead = " AND r.rid IN (SELECT x.rid FROM ";
  if (!where.starts_with(kHead) || !where.ends_with(")")) return std::nullopt;
  q.sql = "SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM " +
          where.substr(kHead.size(), where.size() - kHead.size() - 1) + ")";
  return q;
}

}  // namespace

fhir::Result<SqlQuery> build_search_sql(TenantId tenant, const SearchQuery& query,
                                        std::optional<std::int64_t> after_rid, std::size_t limit, bool count_only) {
  if (!query.sort.empty() && !count_only) {
    if (after_rid)
      return fhir::fail(ErrorKind::kInvalid, "invalid", "a sorted search pages by a sort cursor", "_cursor");
    return build_sorted_search_sql(tenant, query, nullptr, limit);
  }
  if (count_only)
    if (auto direct = index_only_count(tenant, query)) return std::move(*direct);
  SqlQuery q;
  auto where = search_where(tenant, query, q);
  if (!where) return std::unexpected(where.error());
  if (count_only) {
    q.sql = "SELECT COUNT(*) FROM resource r" + *where;
    return q;
  }
  if (after_rid) {
    *where += " AND r.rid > ?";
    q.binds.push_back(*after_rid);
  }
  q.sql = "SELECT r.rid, r.id, r.type FROM resource r" + *where + " ORDER BY r.rid LIMIT ?";
  q.binds.push_back(static_cast<std::int64_t>(limit));
  return q;
}

std::optional<SqlQuery> build_patient_token_rids_sql(TenantId tenant, const SearchQuery& query,
                                                     std::optional<std::int64_t> after_rid, std::size_t limit) {
  if (limit == 0 || !query.sort.empty() || query.access || query.compartment || !query.has.empty() ||
      query.criteria.size() != 2)
    return std::nullopt;
  const auto pair = patient_token_pair(query);
  if (!pair) return std::nullopt;
  SqlQuery q;
  Builder b{q};
  b.tenant = tenant;
  std::string where;
  if (!b.patient_token_rows(query.criteria[pair->first], query.criteria[pair->second], query.type, where))
    return std::nullopt;  // (build_search_sql says what is wrong)
  if (after_rid) {
    where += " AND x.rid > ?";
    q.binds.push_back(*after_rid);
  }
  // DISTINCT: a resource has one row per code and target it matches (two codes of an OR, Patient and Group).
  q.sql = "SELECT DISTINCT x.rid FROM idx_patient_token x WHERE " + where + " ORDER BY x.rid LIMIT ?";
  q.binds.push_back(static_cast<std::int64_t>(limit));
  return q;
}

fhir::Result<SqlQuery> build_sorted_search_sql(TenantId tenant, const SearchQuery& query, const SortPosition* after,
                                               std::size_t limit) {
  if (query.sort.empty())
    return fhir::fail(ErrorKind::kInternal, "exception", "build_sorted_search_sql without _sort", "_sort");
  if (after != nullptr && after->keys.size() != query.sort.size())
    return fhir::fail(ErrorKind::kInvalid, "invalid", "the _cursor does not fit this _sort", "_cursor");
  // The matches are materialized with their keys (each key computed once per match), then ordered: sorting needs
  // every match's keys anyway, as no index holds them in the sort's order.
  SqlQuery q;
  std::string select = "WITH hits AS MATERIALIZED (SELECT r.rid AS rid, r.id AS id, r.type AS type";
  std::string columns = "rid, id, type";
  std::string order = " ORDER BY ";
  for (std::size_t i = 0; i < query.sort.size(); ++i) {
    auto key = sort_key_sql(query.sort[i], "s" + std::to_string(i), q.binds);
    if (!key) return std::unexpected(key.error());
    std::string name = "k" + std::to_string(i);
    select += ", " + *key + " AS " + name;
    columns += ", " + name;
    order += name + (query.sort[i].descending ? " DESC" : " ASC") + " NULLS LAST, ";
  }
  auto where = search_where(tenant, query, q);
  if (!where) return std::unexpected(where.error());
  q.sql = select + " FROM resource r" + *where + ") SELECT " + columns + " FROM hits";
  if (after != nullptr) {
    // Keyset paging: the rows after `after` in the order (k0, ..., kN-1, rid), with NULLs last. A row is after it
    // when its first keys equal the position's and its next key comes later (a NULL comes after any value;
    // nothing comes after a NULL but another NULL's later keys); the rid settles full ties.
    std::string cond, equal_prefix;
    for (std::size_t i = 0; i <= query.sort.size(); ++i) {
      std::string later;
      if (i == query.sort.size()) {
        later = "rid > ?";
      } else if (after->keys[i]) {
        std::string name = "k" + std::to_string(i);
        later = "(" + name + (query.sort[i].descending ? " < ?" : " > ?") + " OR " + name + " IS NULL)";
      }
      if (!later.empty()) {
        if (!cond.empty()) cond += " OR ";
        cond += "(" + equal_prefix + later + ")";
        // The binds of this term: the equal prefix's values, then this key's.
        for (std::size_t j = 0; j < i; ++j)
          if (after->keys[j]) q.binds.push_back(*after->keys[j]);
        if (i == query.sort.size())
          q.binds.push_back(after->rid);
        else
          q.binds.push_back(*after->keys[i]);
      }
      if (i < query.sort.size()) {
        std::string name = "k" + std::to_string(i);
        equal_prefix += name + (after->keys[i] ? " = ? AND " : " IS NULL AND ");
      }
    }
    q.sql += " WHERE " + cond;
  }
  q.sql += order + "rid LIMIT ?";
  q.binds.push_back(static_cast<std::int64_t>(limit));
  return q;
}

std::string sort_spec(const SearchQuery& query) {
  std::string spec;
  for (const SortKey& k : query.sort) {
    if (!spec.empty()) spec += ",";
    if (k.descending) spec += "-";
    spec += k.code;
  }
  return spec;
}

// A sorted search's cursor, before base64url: `S<len>:<sort spec>`, then for each key `N` (no value),
// `I<integer>;`, `R<shortest round-trip decimal>;` or `T<len>:<bytes>`, then `K<rid>;`, then `C` and 16 hex digits
// of a check sum (FNV-1a, 64 bits) of all that precedes it. The check sum catches altered and truncated cursors;
// it is no signature, and needs none: a position forged on purpose only picks where the caller's own search
// resumes, through bound values.
namespace {

constexpr std::string_view kBase64Url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url_encode(std::string_view in) {
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    std::uint32_t n = (std::uint32_t(std::uint8_t(in[i])) << 16) | (std::uint32_t(std::uint8_t(in[i + 1])) << 8) |
                      std::uint8_t(in[i + 2]);
    for (int shift : {18, 12, 6, 0}) out.push_back(kBase64Url[(n >> shift) & 63]);
  }
  if (std::size_t rest = in.size() - i; rest > 0) {
    std::uint32_t n = std::uint32_t(std::uint8_t(in[i])) << 16;
    if (rest == 2) n |= std::uint32_t(std::uint8_t(in[i + 1])) << 8;
    out.push_back(kBase64Url[(n >> 18) & 63]);
    out.push_back(kBase64Url[(n >> 12) & 63]);
    if (rest == 2) out.push_back(kBase64Url[(n >> 6) & 63]);
  }
  return out;
}

// Strict: the alphabet only, no padding, and the canonical form (unused low bits zero).
std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    auto pos = kBase64Url.find(ch);
    if (pos == std::string_view::npos) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 14695981039346656037ull;
  for (char ch : s) {
    h ^= std::uint8_t(ch);
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex16(std::uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<std::size_t>(i)] = kDigits[v & 15];
  return out;
}

void put_text(std::string& out, std::string_view s) {
  out += std::to_string(s.size());
  out += ':';
  out += s;
}

// Reads the parts of a decoded cursor; every read fails (false) on anything but the exact form.
struct CursorReader {
  std::string_view in;

  bool tag(char t) {
    if (in.empty() || in.front() != t) return false;
    in.remove_prefix(1);
    return true;
  }
  template <class T>
  bool number(T& v, char end) {
    auto [ptr, ec] = std::from_chars(in.data(), in.data() + in.size(), v);
    if (ec != std::errc() || ptr == in.data() || ptr == in.data() + in.size() || *ptr != end) return false;
    in.remove_prefix(static_cast<std::size_t>(ptr - in.data()) + 1);
    return true;
  }
  bool text(std::string& s) {
    if (!in.empty() && in.front() == '+') return false;
    std::size_t n = 0;
    if (!number(n, ':') || n > in.size()) return false;
    s.assign(in.substr(0, n));
    in.remove_prefix(n);
    return true;
  }
};

}  // namespace

std::string encode_sort_cursor(const SearchQuery& query, const SortPosition& position) {
  std::string out = "S";
  put_text(out, sort_spec(query));
  for (std::size_t i = 0; i < position.keys.size(); ++i) {
    const auto& key = position.keys[i];
    if (!key) {
      out += 'N';
      continue;
    }
    KeyKind kind = i < query.sort.size() ? key_kind(query.sort[i]) : KeyKind::kText;
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>) {
            out += 'T';
            put_text(out, v);
          } else if (kind == KeyKind::kReal || std::is_same_v<T, double>) {
            // Shortest form that reads back to the same double.
            char buf[64];
            auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<double>(v));
            out += 'R';
            out.append(buf, ec == std::errc() ? end : buf);
            out += ';';
          } else {
            out += 'I' + std::to_string(v) + ';';
          }
        },
        *key);
  }
  out += 'K' + std::to_string(position.rid) + ';';
  out += 'C' + hex16(fnv1a(out));
  return base64url_encode(out);
}

fhir::Result<SortPosition> decode_sort_cursor(const SearchQuery& query, std::string_view cursor) {
  auto bad = [](std::string why) {
    return fhir::fail(ErrorKind::kInvalid, "invalid", "_cursor: " + std::move(why), "_cursor");
  };
  auto raw = base64url_decode(cursor);
  if (!raw || raw->size() < 17) return bad("not a paging cursor of a sorted search");
  std::string_view body = std::string_view(*raw).substr(0, raw->size() - 17);
  std::string_view sum = std::string_view(*raw).substr(raw->size() - 17);
  if (sum.front() != 'C' || sum.substr(1) != hex16(fnv1a(body)))
    return bad("not a paging cursor of a sorted search (damaged or altered)");
  CursorReader r{body};
  std::string spec;
  if (!r.tag('S') || !r.text(spec)) return bad("not a paging cursor of a sorted search");
  if (spec != sort_spec(query))
    return bad("this cursor pages a search with _sort=" + spec + ", not _sort=" + sort_spec(query));
  SortPosition position;
  for (const SortKey& k : query.sort) {
    if (r.tag('N')) {
      if (k.code == "_id" || k.code == "_lastUpdated") return bad("no value for '" + k.code + "'");
      position.keys.emplace_back(std::nullopt);
      continue;
    }
    switch (key_kind(k)) {
      case KeyKind::kText: {
        std::string s;
        if (!r.tag('T') || !r.text(s)) return bad("a value of the wrong kind for '" + k.code + "'");
        position.keys.emplace_back(std::move(s));
        break;
      }
      case KeyKind::kInteger: {
        std::int64_t v = 0;
        if (!r.tag('I') || !r.number(v, ';')) return bad("a value of the wrong kind for '" + k.code + "'");
        position.keys.emplace_back(v);
        break;
      }
      case KeyKind::kReal: {
        double v = 0;
        if (!r.tag('R') || !r.number(v, ';') || !std::isfinite(v))
          return bad("a value of the wrong kind for '" + k.code + "'");
        position.keys.emplace_back(v);
        break;
      }
    }
  }
  if (!r.tag('K') || !r.number(position.rid, ';') || position.rid <= 0 || !r.in.empty())
    return bad("not a paging cursor of a sorted search");
  return position;
}

SqlQuery build_include_sql(TenantId tenant, const Include& include, const std::string& ids_type,
                           const std::vector<std::string>& ids, const AccessFilter* access) {
  SqlQuery q;
  auto placeholders = [&] {
    std::string p;
    for (std::size_t i = 0; i < ids.size(); ++i) p += i ? ",?" : "?";
    return p;
  };
  if (!include.reverse) {
    // What the given resources (of the source type) refer to.
    q.sql =
        "SELECT x.target_type, x.target_id FROM idx_reference x JOIN resource s ON s.rid = x.rid "
        "WHERE s.tenant = ? AND s.type = ? AND s.id IN (" +
        placeholders() + ") AND x.target_type <> ''";
    q.binds.push_back(static_cast<std::int64_t>(tenant));
    q.binds.push_back(ids_type);
  } else {
    // Resources of the source type (any type for `_revinclude=*`) that refer to the given ones.
    q.sql =
        "SELECT s.type, s.id FROM idx_reference x JOIN resource s ON s.rid = x.rid "
        "WHERE x.tenant = ? AND s.deleted = 0 AND x.target_type = ? AND x.target_id IN (" +
        placeholders() + ")";
    q.binds.push_back(static_cast<std::int64_t>(tenant));
    q.binds.push_back(ids_type);
  }
  for (const auto& id : ids) q.binds.push_back(id);
  if (include.reverse && !include.source_type.empty()) {
    q.sql += " AND x.type = ?";
    q.binds.push_back(include.source_type);
  }
  if (!include.wildcard) {
    q.sql += " AND x.param = ?";
    q.binds.push_back(include.parameter->code);
  }
  // _include's third part names the target type; _revinclude's is checked by the caller against `ids_type`.
  if (!include.reverse && !include.target_type.empty()) {
    q.sql += " AND x.target_type = ?";
    q.binds.push_back(include.target_type);
  }
  if (access != nullptr) {
    // Only what the requester may see is included: the referring resource (s) of a _revinclude, the referenced
    // one (t) of an _include. (A filter that does not build hides everything.)
    Builder b{q};
    b.tenant = tenant;
    b.access = access;
    b.aliases = 100;
    std::string where;
    Types types;
    if (include.reverse && !include.source_type.empty()) types.push_back(include.source_type);
    if (!include.reverse && !include.target_type.empty()) types.push_back(include.target_type);
    const std::size_t before = q.binds.size();
    auto ok = b.visible(include.reverse ? "s" : "t", types, where);
    if (!ok) {
      q.binds.resize(before);
      q.sql += " AND 1 = 0";
    } else if (include.reverse) {
      q.sql += where;
    } else {
      // (The binds of `where` come after those already there, as the text does.)
      q.sql +=
          " AND EXISTS (SELECT 1 FROM resource t WHERE t.tenant = x.tenant AND t.type = x.target_type AND "
          "t.id = x.target_id AND t.deleted = 0" +
          where + ")";
    }
  }
  return q;
}

fhir::Result<SqlQuery> build_access_condition(TenantId tenant, const AccessFilter& access, const std::string& type) {
  SqlQuery q;
  Types types;
  if (!type.empty()) types.push_back(type);
  // The live resources by their index rows, then the deleted ones by the rows their deletion set aside.
  std::string where = "v.rid IN (";
  for (int deleted = 0; deleted < 2; ++deleted) {
    Builder b{q};
    b.tenant = deleted ? set_aside_tenant(tenant) : tenant;
    b.access = &access;
    q.binds.push_back(static_cast<std::int64_t>(tenant));
    where += deleted ? " UNION ALL " : "";
    where += "SELECT r.rid FROM resource r WHERE r.tenant = ? AND r.deleted = " + std::to_string(deleted);
    if (!type.empty()) {
      where += " AND r.type = ?";
      q.binds.push_back(type);
    }
    if (auto ok = b.visible("r", types, where); !ok) return std::unexpected(ok.error());
  }
  q.sql = where + ")";
  return q;
}

SqlQuery bounded_match_count_sql(const SqlQuery& count_sql, std::size_t bound) {
  static constexpr std::string_view kHead = "SELECT COUNT(*) FROM resource r";
  SqlQuery q = count_sql;
  if (!count_sql.sql.starts_with(kHead)) {  // a count over the index rows alone: `SELECT COUNT(*) FROM (...)`
    q.sql = count_sql.sql.substr(0, count_sql.sql.size() - 1) + " LIMIT ?)";
    q.binds.push_back(static_cast<std::int64_t>(bound));
    return q;
  }
  q.sql = "SELECT COUNT(*) FROM (SELECT 1 FROM resource r" + count_sql.sql.substr(kHead.size()) + " LIMIT ?)";
  q.binds.push_back(static_cast<std::int64_t>(bound));
  return q;
}

fhir::Result<void> collect_includes(const SearchQuery& query, std::size_t max_included, SearchPage& page,
                                    const IncludeTargets& targets, const IncludeLoad& load) {
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& e : page.entries) seen.emplace(e.type, e.id);
  std::vector<const VersionRecord*> frontier;
  for (const auto& e : page.entries) frontier.push_back(&e);
  std::deque<VersionRecord> added;  // stable addresses while iterating
  for (int round = 0; !frontier.empty() && round < 8; ++round) {
    std::vector<const VersionRecord*> next;
    for (const Include& inc : query.includes) {
      if (round > 0 && !inc.iterate) continue;
      // Group the frontier by type: an _include starts from resources of its source type; a _revinclude from
      // any type it can refer to.
      std::map<std::string, std::vector<std::string>> by_type;
      for (const VersionRecord* v : frontier)
        if (inc.reverse || inc.source_type.empty() || v->type == inc.source_type) by_type[v->type].push_back(v->id);
      for (const auto& [type, ids] : by_type) {
        if (inc.reverse && !inc.target_type.empty() && inc.target_type != type) continue;
        auto found = targets(inc, type, ids);
        if (!found) return std::unexpected(found.error());
        for (const auto& [t, id] : *found) {
          if (!seen.emplace(t, id).second) continue;
          if (added.size() >= max_included) {
            page.include_limit_reached = true;
            break;
          }
          auto rec = load(t, id);
          if (!rec) return std::unexpected(rec.error());
          if (!*rec || (*rec)->deleted) continue;
          added.push_back(std::move(**rec));
          next.push_back(&added.back());
        }
      }
    }
    frontier = std::move(next);
  }
  for (auto& v : added) page.included.push_back(std::move(v));
  return {};
}

}  // namespace caduceus::resources
