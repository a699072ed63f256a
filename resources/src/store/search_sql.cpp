#include "search_sql.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "caduceus/fhir/search_text.hpp"
#include "caduceus/fhir/search_values.hpp"
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

double to_double(const sv::Decimal& d) {
  return std::strtod(d.to_string().c_str(), nullptr);
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

struct Builder {
  SqlQuery& q;

  void bind(SqlQuery::Bind b) { q.binds.push_back(std::move(b)); }

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
        bind(c.modifier == Modifier::kContains ? "%" + like_escape(norm) + "%" : like_escape(norm) + "%");
        return std::string("x.normalized LIKE ? ESCAPE '\\'");
      }
      case SearchParamType::kToken: {
        if (c.modifier == Modifier::kText) {
          bind(like_escape(sv::normalize_for_search(value)) + "%");
          return std::string("x.text LIKE ? ESCAPE '\\'");
        }
        if (c.modifier == Modifier::kOfType) {  // a row of idx_identifier_type
          auto parts = sv::split_unescaped(value, '|');
          if (parts.size() != 3)
            return fhir::fail(ErrorKind::kInvalid, "invalid",
                              "Search parameter '" + c.name + "': :of-type takes system|code|value", c.name);
          auto system = sv::unescape(parts[0]), code = sv::unescape(parts[1]), id = sv::unescape(parts[2]);
          if (!system || !code || !id)
            return fhir::fail(ErrorKind::kInvalid, "invalid", "Search parameter '" + c.name + "': a bad escape",
                              c.name);
          bind(*id);
          bind(*code);
          bind(*system);
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
        double lo = to_double(n.low), hi = to_double(n.high), v = to_double(n.value);
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
  fhir::Result<void> criterion(const Criterion& c, const std::string& type, std::string& where, const std::string& r) {
    auto open = [&](const char* table, bool negate) {
      where += " AND " + r + ".rid " + (negate ? "NOT IN" : "IN") + " (SELECT x.rid FROM " + table +
               " x WHERE x.tenant = ? AND x.type = ? AND x.param = ?";
      bind(tenant);
      bind(type);
      bind(c.parameter->code);
    };
    if (c.chained) {
      std::string r2 = next_alias();
      open("idx_reference", false);
      where += " AND x.target_type = ? AND x.target_id IN (SELECT " + r2 + ".id FROM resource " + r2 + " WHERE " + r2 +
               ".tenant = ? AND " + r2 + ".type = ? AND " + r2 + ".deleted = 0";
      bind(c.target_type);
      bind(tenant);
      bind(c.target_type);
      if (auto ok = criterion(*c.chained, c.target_type, where, r2); !ok) return ok;
      where += "))";
      return {};
    }
    if (c.parameter->type == SearchParamType::kComposite) return composite(c, type, where, r);
    if (is_full_text(*c.parameter)) return full_text(c, where, r);
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
  fhir::Result<void> composite(const Criterion& c, const std::string& type, std::string& where, const std::string& r) {
    if (c.modifier != Modifier::kNone && c.modifier != Modifier::kMissing)
      return std::unexpected(not_supported(c, "a modifier on a composite parameter"));
    bool missing = c.modifier == Modifier::kMissing;
    where +=
        " AND " + r + ".rid " + (missing && c.values.front() == "true" ? "NOT IN" : "IN") +
        " (SELECT c.rid FROM idx_composite c WHERE c.tenant = ? AND c.type = ? AND c.param = ? AND c.component = 0";
    bind(tenant);
    bind(type);
    bind(c.parameter->code);
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
  fhir::Result<void> has(const HasCriterion& h, const std::string& type, std::string& where, const std::string& r) {
    std::string r2 = next_alias();
    where += " AND " + r + ".id IN (SELECT x.target_id FROM idx_reference x JOIN resource " + r2 + " ON " + r2 +
             ".rid = x.rid WHERE x.tenant = ? AND x.type = ? AND x.param = ? AND x.target_type = ? AND " + r2 +
             ".deleted = 0";
    bind(tenant);
    bind(h.type);
    bind(h.reference_param->code);
    bind(type);
    if (h.nested) {
      if (auto ok = has(*h.nested, h.type, where, r2); !ok) return ok;
    } else if (h.criterion) {
      if (auto ok = criterion(*h.criterion, h.type, where, r2); !ok) return ok;
    }
    where += ")";
    return {};
  }

  std::string next_alias() { return "r" + std::to_string(++aliases); }

  std::int64_t tenant = 0;
  int aliases = 0;
};

}  // namespace

fhir::Result<SqlQuery> build_search_sql(TenantId tenant, const SearchQuery& query,
                                        std::optional<std::int64_t> after_rid, std::size_t limit, bool count_only) {
  if (!query.sort.empty())
    return fhir::fail(ErrorKind::kNotSupported, "not-supported", "_sort is not supported yet", "_sort");
  SqlQuery q;
  Builder b{q};
  b.tenant = tenant;
  // With a criterion that selects by value, the rows come from its index (`r.rid IN (...)`): the unary `+` keeps
  // SQLite from scanning the resources of the type through the (tenant, type) index instead.
  bool selective = std::any_of(query.criteria.begin(), query.criteria.end(), [](const Criterion& c) {
    return c.modifier != Modifier::kNot && c.modifier != Modifier::kMissing;
  });
  std::string where = selective ? " WHERE +r.tenant = ? AND +r.type = ? AND r.deleted = 0"
                                : " WHERE r.tenant = ? AND r.type = ? AND r.deleted = 0";
  q.binds.push_back(static_cast<std::int64_t>(tenant));
  q.binds.push_back(query.type);
  for (const Criterion& c : query.criteria)
    if (auto ok = b.criterion(c, query.type, where, "r"); !ok) return std::unexpected(ok.error());
  for (const HasCriterion& h : query.has)
    if (auto ok = b.has(h, query.type, where, "r"); !ok) return std::unexpected(ok.error());
  if (count_only) {
    q.sql = "SELECT COUNT(*) FROM resource r" + where;
    return q;
  }
  if (after_rid) {
    where += " AND r.rid > ?";
    q.binds.push_back(*after_rid);
  }
  q.sql = "SELECT r.rid, r.id FROM resource r" + where + " ORDER BY r.rid LIMIT ?";
  q.binds.push_back(static_cast<std::int64_t>(limit));
  return q;
}

SqlQuery build_include_sql(TenantId tenant, const Include& include, const std::string& ids_type,
                           const std::vector<std::string>& ids) {
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
  return q;
}

}  // namespace caduceus::resources
