#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>

#include "caduceus/fhir/search_values.hpp"
#include "caduceus/resources/full_text.hpp"
#include "caduceus/resources/search_query.hpp"

namespace caduceus::resources {
namespace {

using fhir::ErrorKind;
namespace sv = fhir::search;

constexpr std::size_t kMaxSortKeys = 16;

fhir::Error bad(const std::string& param, std::string message) {
  return fhir::Error::make(ErrorKind::kInvalid, "invalid", "Search parameter '" + param + "': " + message, param);
}

// Valid, but not served yet (501).
fhir::Error unsupported(const std::string& param, std::string message) {
  return fhir::Error::make(ErrorKind::kNotSupported, "not-supported", "Search parameter '" + param + "': " + message,
                           param);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    auto pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

std::optional<Modifier> modifier_from(std::string_view m) {
  static constexpr std::pair<std::string_view, Modifier> kModifiers[] = {{"missing", Modifier::kMissing},
                                                                         {"exact", Modifier::kExact},
                                                                         {"contains", Modifier::kContains},
                                                                         {"text", Modifier::kText},
                                                                         {"not", Modifier::kNot},
                                                                         {"above", Modifier::kAbove},
                                                                         {"below", Modifier::kBelow},
                                                                         {"in", Modifier::kIn},
                                                                         {"not-in", Modifier::kNotIn},
                                                                         {"of-type", Modifier::kOfType},
                                                                         {"identifier", Modifier::kIdentifier}};
  for (const auto& [text, mod] : kModifiers)
    if (m == text) return mod;
  return std::nullopt;
}

// Whether modifier m can be used on a parameter of type t (search.html#modifiers). Modifiers that need
// terminology (:in, :not-in, token :above/:below) are refused as not supported yet.
fhir::Result<void> check_modifier(const std::string& name, Modifier m, SearchParamType t) {
  auto no = [&](std::string why) { return std::unexpected(bad(name, std::move(why))); };
  switch (m) {
    case Modifier::kNone:
    case Modifier::kMissing: return {};
    case Modifier::kExact:
    case Modifier::kContains:
      if (t == SearchParamType::kString) return {};
      if (m == Modifier::kContains && t == SearchParamType::kUri) return {};
      return no(std::string(":") + std::string(to_string(m)) + " applies to string parameters only");
    case Modifier::kText:
      if (t == SearchParamType::kToken || t == SearchParamType::kString) return {};
      return no(":text applies to token parameters only");
    case Modifier::kNot:
      if (t == SearchParamType::kToken) return {};
      return no(":not applies to token parameters only");
    case Modifier::kAbove:
    case Modifier::kBelow:
      if (t == SearchParamType::kUri) return {};
      if (t == SearchParamType::kToken)
        return std::unexpected(unsupported(name, "token :above and :below need terminology, not supported yet"));
      return no(":above and :below apply to uri parameters only");
    case Modifier::kIn:
    case Modifier::kNotIn:
      if (t == SearchParamType::kToken)
        return std::unexpected(
            unsupported(name, ":in and :not-in need terminology (value set expansion), not supported yet"));
      return no(":in and :not-in apply to token parameters only");
    case Modifier::kOfType:
      if (t == SearchParamType::kToken) return {};
      return no(":of-type applies to token parameters only");
    case Modifier::kIdentifier:
    case Modifier::kType:
      if (t == SearchParamType::kReference) return {};
      return no("a type or :identifier modifier applies to reference parameters only");
  }
  return {};
}

// Checks one value (an OR alternative) against the parameter's type and modifier.
fhir::Result<void> check_value(const std::string& name, const SearchParameter& p, Modifier m, std::string_view value) {
  auto wrap = [&](const fhir::Error& e) { return std::unexpected(bad(name, e.issues[0].diagnostics)); };
  if (m == Modifier::kMissing) {
    if (value == "true" || value == "false") return {};
    return std::unexpected(bad(name, ":missing takes true or false, not '" + std::string(value) + "'"));
  }
  if (value.empty()) return std::unexpected(bad(name, "an empty value matches nothing"));
  if (is_full_text(p)) {
    if (auto expr = fts5_match_expression(value); !expr) return wrap(expr.error());
    return {};
  }
  if (m == Modifier::kIdentifier) {
    if (auto t = sv::parse_token(value); !t) return wrap(t.error());
    return {};
  }
  switch (p.type) {
    case SearchParamType::kNumber:
      if (auto n = sv::parse_number(value); !n) return wrap(n.error());
      return {};
    case SearchParamType::kDate:
      if (auto d = sv::parse_date(value); !d) return wrap(d.error());
      return {};
    case SearchParamType::kQuantity:
      if (auto q = sv::parse_quantity(value); !q) return wrap(q.error());
      return {};
    case SearchParamType::kToken:
      if (m == Modifier::kText) return {};
      if (m == Modifier::kOfType) {
        // search.html#token: [system]|[code]|[value], the system and code of Identifier.type; all three present.
        auto parts = sv::split_unescaped(value, '|');
        if (parts.size() != 3 || parts[0].empty() || parts[1].empty() || parts[2].empty())
          return std::unexpected(bad(name,
                                     ":of-type takes system|code|value (the identifier type's system and "
                                     "code, and the identifier's value), all three present"));
        for (std::string_view part : parts)
          if (auto u = sv::unescape(part); !u) return wrap(u.error());
        return {};
      }
      if (auto t = sv::parse_token(value); !t) return wrap(t.error());
      return {};
    case SearchParamType::kReference:
      if (auto r = sv::parse_reference(value); !r) return wrap(r.error());
      return {};
    case SearchParamType::kComposite: {
      auto parts = sv::split_unescaped(value, '$');
      if (parts.size() != p.components.size())
        return std::unexpected(bad(name, "a composite value has " + std::to_string(p.components.size()) +
                                             " parts separated by '$', not " + std::to_string(parts.size())));
      for (std::size_t i = 0; i < parts.size(); ++i) {
        const SearchParameter* component = p.components[i].parameter;
        if (component == nullptr) continue;
        if (auto ok = check_value(name, *component, Modifier::kNone, parts[i]); !ok) return ok;
      }
      return {};
    }
    case SearchParamType::kSpecial:
      if (p.code == "near") return std::unexpected(unsupported(name, "near is not supported yet"));
      return {};
    case SearchParamType::kString:
    case SearchParamType::kUri: return {};
  }
  return {};
}

struct Parser {
  const SearchParameterRegistry& registry;
  const Definitions& definitions;
  const SearchLimits& limits;
  SearchQuery& query;
  // A search over several types: an _include may start from any of them without :iterate.
  const std::vector<std::string>* source_types = nullptr;

  // `code[:modifier][.chain]` on `type` with its values. Returns nullptr (and no error) for an unknown parameter
  // when not strict.
  fhir::Result<std::shared_ptr<const Criterion>> criterion(std::string_view type, std::string_view spec,
                                                           const std::string& full_name, const std::string& raw_value,
                                                           std::size_t depth) {
    std::string_view head = spec;
    std::string_view rest;
    if (auto dot = spec.find('.'); dot != std::string_view::npos) {
      head = spec.substr(0, dot);
      rest = spec.substr(dot + 1);
    }
    std::string_view code = head, mod_text;
    if (auto colon = head.find(':'); colon != std::string_view::npos) {
      code = head.substr(0, colon);
      mod_text = head.substr(colon + 1);
    }
    const SearchParameter* p = registry.find(type, code);
    if (p == nullptr) {
      if (depth == 0 && !limits.strict) return std::shared_ptr<const Criterion>{};
      return std::unexpected(
          bad(full_name, "'" + std::string(code) + "' is not a search parameter of " + std::string(type)));
    }
    auto c = std::make_shared<Criterion>();
    c->name = full_name;
    c->parameter = p;
    if (!mod_text.empty()) {
      if (auto m = modifier_from(mod_text)) {
        c->modifier = *m;
      } else if (definitions.is_resource_type(mod_text)) {
        c->modifier = Modifier::kType;
        c->target_type = std::string(mod_text);
        if (!p->target.empty() && std::find(p->target.begin(), p->target.end(), c->target_type) == p->target.end())
          return std::unexpected(
              bad(full_name, "'" + c->target_type + "' is not a type that '" + p->code + "' can refer to"));
      } else {
        return std::unexpected(bad(full_name, "'" + std::string(mod_text) + "' is not a modifier"));
      }
      if (auto ok = check_modifier(full_name, c->modifier, p->type); !ok) return std::unexpected(ok.error());
      if (is_full_text(*p))
        return std::unexpected(bad(full_name, p->code + " takes no modifier (its value is free text)"));
    }
    if (!rest.empty()) {
      if (p->type != SearchParamType::kReference)
        return std::unexpected(bad(full_name, "cannot chain through '" + p->code + "', which is not a reference"));
      if (depth + 1 >= limits.max_chain)
        return std::unexpected(
            bad(full_name, "a chain may have " + std::to_string(limits.max_chain) + " hops at most"));
      if (c->modifier != Modifier::kNone && c->modifier != Modifier::kType)
        return std::unexpected(bad(full_name, "a chained parameter takes no modifier but a type"));
      if (c->target_type.empty() && p->target.size() != 1) {
        // Several targets, but the expression for this type may allow one only (`subject.where(resolve() is
        // Patient)` for Observation.patient): then that one.
        std::string_view expression = p->expression_for(type);
        if (auto at = expression.find("resolve() is ");
            at != std::string_view::npos && expression.find("resolve() is ", at + 1) == std::string_view::npos) {
          std::string_view rest_expr = expression.substr(at + 13);
          std::size_t n = 0;
          while (n < rest_expr.size() && std::isalnum(static_cast<unsigned char>(rest_expr[n]))) ++n;
          std::string only(rest_expr.substr(0, n));
          if (definitions.is_resource_type(only)) c->target_type = only;
        }
      }
      if (c->target_type.empty()) {
        if (p->target.size() != 1)
          return std::unexpected(bad(full_name, "'" + p->code + "' can refer to several types: name one, as in " +
                                                    p->code + ":Patient." + std::string(rest)));
        c->target_type = p->target.front();
      }
      auto next = criterion(c->target_type, rest, full_name, raw_value, depth + 1);
      if (!next) return std::unexpected(next.error());
      c->chained = *next;
      return std::shared_ptr<const Criterion>(c);
    }
    auto values = sv::split_or(raw_value);
    if (!values) return std::unexpected(bad(full_name, values.error().issues[0].diagnostics));
    for (const std::string& v : *values) {
      // The value parsers unescape `\|` and `\$` themselves: check the raw alternative.
      if (auto ok = check_value(full_name, *p, c->modifier, v); !ok) return std::unexpected(ok.error());
    }
    c->values = std::move(*values);
    return std::shared_ptr<const Criterion>(c);
  }

  fhir::Result<std::shared_ptr<const HasCriterion>> has(std::string_view target_type, std::string_view spec,
                                                        const std::string& full_name, const std::string& value,
                                                        std::size_t depth) {
    // spec: Type:refparam:rest, where rest is `_has:...` again or a parameter of Type.
    auto parts = split(spec, ':');
    if (parts.size() < 3)
      return std::unexpected(bad(full_name, "_has takes the form _has:Type:reference-parameter:parameter=value"));
    if (depth >= limits.max_chain)
      return std::unexpected(bad(full_name, "_has may nest " + std::to_string(limits.max_chain) + " levels at most"));
    std::string type(parts[0]);
    if (!definitions.is_resource_type(type))
      return std::unexpected(bad(full_name, "'" + type + "' is not a resource type"));
    const SearchParameter* ref = registry.find(type, parts[1]);
    if (ref == nullptr || ref->type != SearchParamType::kReference)
      return std::unexpected(bad(full_name, "'" + std::string(parts[1]) + "' is not a reference parameter of " + type));
    if (!ref->target.empty() &&
        std::find(ref->target.begin(), ref->target.end(), std::string(target_type)) == ref->target.end())
      return std::unexpected(bad(full_name, type + "." + ref->code + " cannot refer to " + std::string(target_type)));
    auto h = std::make_shared<HasCriterion>();
    h->type = type;
    h->reference_param = ref;
    std::string_view rest = spec.substr(parts[0].size() + 1 + parts[1].size() + 1);
    if (rest.starts_with("_has:")) {
      auto nested = has(type, rest.substr(5), full_name, value, depth + 1);
      if (!nested) return std::unexpected(nested.error());
      h->nested = *nested;
    } else {
      SearchLimits strict = limits;
      strict.strict = true;
      Parser inner{registry, definitions, strict, query};
      auto c = inner.criterion(type, rest, full_name, value, 1);
      if (!c) return std::unexpected(c.error());
      h->criterion = *c;
    }
    return std::shared_ptr<const HasCriterion>(h);
  }

  fhir::Result<void> include(const std::string& name, const std::string& value, bool reverse, bool iterate) {
    Include inc;
    inc.reverse = reverse;
    inc.iterate = iterate;
    if (value == "*") {  // every reference, from (or, reversed, to) resources of any type
      inc.wildcard = true;
      query.includes.push_back(inc);
      return {};
    }
    auto parts = split(value, ':');
    if (parts.size() < 2 || parts.size() > 3)
      return std::unexpected(bad(name, "takes Type:parameter or Type:parameter:TargetType, not '" + value + "'"));
    inc.source_type = std::string(parts[0]);
    if (!definitions.is_resource_type(inc.source_type))
      return std::unexpected(bad(name, "'" + inc.source_type + "' is not a resource type"));
    // Without _type every type is searched: an _include may start from any.
    bool own_type = source_types == nullptr ? inc.source_type == query.type
                    : source_types->empty()
                        ? true
                        : std::find(source_types->begin(), source_types->end(), inc.source_type) != source_types->end();
    if (!reverse && !iterate && !own_type)
      return std::unexpected(
          bad(name, "includes from " + inc.source_type + " need :iterate when searching " + query.type));
    if (parts[1] == "*") {
      inc.wildcard = true;
    } else {
      inc.parameter = registry.find(inc.source_type, parts[1]);
      if (inc.parameter == nullptr || inc.parameter->type != SearchParamType::kReference)
        return std::unexpected(
            bad(name, "'" + std::string(parts[1]) + "' is not a reference parameter of " + inc.source_type));
    }
    if (parts.size() == 3) {
      inc.target_type = std::string(parts[2]);
      if (!definitions.is_resource_type(inc.target_type))
        return std::unexpected(bad(name, "'" + inc.target_type + "' is not a resource type"));
      if (inc.parameter != nullptr && !inc.parameter->target.empty() &&
          std::find(inc.parameter->target.begin(), inc.parameter->target.end(), inc.target_type) ==
              inc.parameter->target.end())
        return std::unexpected(
            bad(name, inc.source_type + "." + inc.parameter->code + " cannot refer to " + inc.target_type));
    }
    query.includes.push_back(std::move(inc));
    return {};
  }

  fhir::Result<void> one(const std::string& name, const std::string& value) {
    if (name == "_count") {
      std::size_t n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || ptr != value.data() + value.size())
        return std::unexpected(bad(name, "'" + value + "' is not a non-negative integer"));
      if (n > limits.max_count)
        return std::unexpected(
            bad(name, std::to_string(n) + " is over this server's maximum of " + std::to_string(limits.max_count)));
      query.count = n;
      return {};
    }
    if (name == "_sort") {
      for (std::string_view key : split(value, ',')) {
        SortKey k;
        if (key.starts_with('-')) {
          k.descending = true;
          key.remove_prefix(1);
        }
        k.code = std::string(key);
        k.parameter = registry.find(query.type, key);
        if (k.parameter == nullptr)
          return std::unexpected(bad(name, "'" + k.code + "' is not a search parameter of " + query.type));
        if (k.parameter->type == SearchParamType::kComposite || k.parameter->type == SearchParamType::kSpecial)
          return std::unexpected(bad(name, "cannot sort on '" + k.code + "'"));
        // _text, _content, _query, ...: no expression, so no indexed value to sort by.
        if (k.parameter->expression_for(query.type).empty())
          return std::unexpected(bad(name, "cannot sort on '" + k.code + "': it has no value to sort by"));
        query.sort.push_back(std::move(k));
        // Each key adds a correlated subquery, and keyset paging binds its values once per later key.
        if (query.sort.size() > kMaxSortKeys)
          return std::unexpected(bad(name, "at most " + std::to_string(kMaxSortKeys) + " sort keys"));
      }
      return {};
    }
    if (name == "_include" || name == "_include:iterate" || name == "_include:recurse")
      return include(name, value, false, name != "_include");
    if (name == "_revinclude" || name == "_revinclude:iterate" || name == "_revinclude:recurse")
      return include(name, value, true, name != "_revinclude");
    if (name == "_total") {
      if (value == "none")
        query.total = Total::kNone;
      else if (value == "estimate")
        query.total = Total::kEstimate;
      else if (value == "accurate")
        query.total = Total::kAccurate;
      else
        return std::unexpected(bad(name, "takes none, estimate or accurate"));
      return {};
    }
    if (name == "_summary") {
      if (value == "true")
        query.summary = Summary::kTrue;
      else if (value == "text")
        query.summary = Summary::kText;
      else if (value == "data")
        query.summary = Summary::kData;
      else if (value == "count")
        query.summary = Summary::kCount;
      else if (value == "false")
        query.summary = Summary::kFalse;
      else
        return std::unexpected(bad(name, "takes true, text, data, count or false"));
      return {};
    }
    if (name == "_elements") {
      for (std::string_view e : split(value, ',')) {
        if (definitions.element(query.type, e) == nullptr)
          return std::unexpected(bad(name, "'" + std::string(e) + "' is not an element of " + query.type));
        query.elements.emplace_back(e);
      }
      return {};
    }
    if (name == "_cursor") {
      query.cursor = value;
      return {};
    }
    if (name == "_format" || name == "_pretty") return {};  // the response's shape, handled by the REST layer
    if (name.starts_with("_has:")) {
      auto h = has(query.type, std::string_view(name).substr(5), name, value, 0);
      if (!h) return std::unexpected(h.error());
      query.has.push_back(**h);
      return {};
    }
    auto c = criterion(query.type, name, name, value, 0);
    if (!c) return std::unexpected(c.error());
    if (*c == nullptr) {
      query.ignored.push_back(name);
      return {};
    }
    query.criteria.push_back(**c);
    return {};
  }
};

// What a criterion means independently of the type it was parsed for: its code, parameter type, modifier and
// chain, so that a search over several types can check that a parameter means the same on each.
std::string signature(const Criterion& c) {
  std::string s = c.parameter->code + ":" + std::string(to_string(c.parameter->type)) + ":" +
                  std::string(to_string(c.modifier)) + ":" + c.target_type;
  if (c.chained) s += "." + signature(*c.chained);
  return s;
}

std::string signature(const HasCriterion& h) {
  std::string s = h.type + ":" + h.reference_param->code + ":";
  if (h.nested) return s + "_has:" + signature(*h.nested);
  return s + (h.criterion ? signature(*h.criterion) : std::string());
}

}  // namespace

std::string_view to_string(Modifier m) noexcept {
  switch (m) {
    case Modifier::kNone: return "";
    case Modifier::kMissing: return "missing";
    case Modifier::kExact: return "exact";
    case Modifier::kContains: return "contains";
    case Modifier::kText: return "text";
    case Modifier::kNot: return "not";
    case Modifier::kAbove: return "above";
    case Modifier::kBelow: return "below";
    case Modifier::kIn: return "in";
    case Modifier::kNotIn: return "not-in";
    case Modifier::kOfType: return "of-type";
    case Modifier::kIdentifier: return "identifier";
    case Modifier::kType: return "type";
  }
  return "";
}

fhir::Result<SearchQuery> parse_search(std::string_view type,
                                       const std::vector<std::pair<std::string, std::string>>& params,
                                       const SearchParameterRegistry& registry, const Definitions& definitions,
                                       const SearchLimits& limits) {
  SearchQuery query;
  query.type = std::string(type);
  query.count = limits.default_count;
  Parser parser{registry, definitions, limits, query};
  for (const auto& [name, value] : params)
    if (auto ok = parser.one(name, value); !ok) return std::unexpected(ok.error());
  return query;
}

}  // namespace caduceus::resources

namespace caduceus::resources {

fhir::Result<SearchQuery> parse_multi_type_search(const std::vector<std::string>& types,
                                                  const std::vector<std::pair<std::string, std::string>>& params,
                                                  const SearchParameterRegistry& registry,
                                                  const Definitions& definitions, const SearchLimits& limits) {
  // Without _type the parameters are those of every resource: the registry answers for "Resource" with the
  // common ones only.
  static const std::vector<std::string> kAnyType{"Resource"};
  const std::vector<std::string>& parse_as = types.empty() ? kAnyType : types;
  std::optional<SearchQuery> first;
  for (const std::string& type : parse_as) {
    SearchQuery query;
    query.type = type;
    query.count = limits.default_count;
    Parser parser{registry, definitions, limits, query, &types};
    for (const auto& [name, value] : params) {
      if (auto ok = parser.one(name, value); !ok) {
        if (types.empty() && ok.error().kind == ErrorKind::kInvalid && !ok.error().issues.empty() &&
            ok.error().issues[0].diagnostics.find("is not a search parameter of Resource") != std::string::npos)
          return std::unexpected(bad(name,
                                     "a search without _type takes only the parameters common to all resources "
                                     "(_id, _lastUpdated, _tag, _profile, _security, ...): name the types "
                                     "with _type"));
        return std::unexpected(ok.error());
      }
    }
    if (types.empty()) {
      // Lenient handling ignores unknown parameters, but a parameter of some types is not unknown: without _type
      // it would be ignored and match everything, so it is refused.
      for (const std::string& name : query.ignored) {
        std::string_view code = std::string_view(name).substr(0, name.find_first_of(":."));
        for (const SearchParameter& p : registry.all())
          if (p.code == code)
            return std::unexpected(bad(name,
                                       "a search without _type takes only the parameters common to all "
                                       "resources (_id, _lastUpdated, _tag, _profile, _security, ...): name "
                                       "the types with _type"));
      }
    }
    if (!first) {
      first = std::move(query);
      continue;
    }
    // The same meaning on every type: compare with the first type's parse, parameter by parameter.
    auto differs = [&](const std::string& name) {
      return std::unexpected(bad(name, "is not a search parameter of the same kind on every type of _type (" +
                                           parse_as.front() + " and " + type + " differ)"));
    };
    if (query.ignored != first->ignored) {
      for (const auto& n : query.ignored)
        if (std::find(first->ignored.begin(), first->ignored.end(), n) == first->ignored.end()) return differs(n);
      for (const auto& n : first->ignored)
        if (std::find(query.ignored.begin(), query.ignored.end(), n) == query.ignored.end()) return differs(n);
    }
    for (std::size_t i = 0; i < std::max(query.criteria.size(), first->criteria.size()); ++i) {
      if (i >= query.criteria.size()) return differs(first->criteria[i].name);
      if (i >= first->criteria.size() || signature(query.criteria[i]) != signature(first->criteria[i]))
        return differs(query.criteria[i].name);
    }
    for (std::size_t i = 0; i < std::max(query.has.size(), first->has.size()); ++i)
      if (i >= query.has.size() || i >= first->has.size() || signature(query.has[i]) != signature(first->has[i]))
        return differs("_has");
  }
  first->type.clear();
  first->types = types;
  return std::move(*first);
}

fhir::Result<SearchQuery> parse_system_search(const std::vector<std::pair<std::string, std::string>>& params,
                                              const SearchParameterRegistry& registry, const Definitions& definitions,
                                              const SearchLimits& limits) {
  std::vector<std::string> types;
  std::vector<std::pair<std::string, std::string>> rest;
  for (const auto& [name, value] : params) {
    if (name != "_type") {
      rest.emplace_back(name, value);
      continue;
    }
    for (std::size_t start = 0; start <= value.size();) {
      std::size_t comma = std::min(value.find(',', start), value.size());
      std::string t = value.substr(start, comma - start);
      start = comma + 1;
      if (!definitions.is_resource_type(t))
        return fhir::fail(ErrorKind::kInvalid, "invalid", "_type: '" + t + "' is not a resource type", "_type");
      if (std::find(types.begin(), types.end(), t) == types.end()) types.push_back(std::move(t));
    }
  }
  return parse_multi_type_search(types, rest, registry, definitions, limits);
}

}  // namespace caduceus::resources
