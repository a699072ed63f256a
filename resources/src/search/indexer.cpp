#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "caduceus/fhir/datetime.hpp"
#include "caduceus/fhir/search_text.hpp"
#include "caduceus/fhir/search_values.hpp"
#include "caduceus/resources/full_text.hpp"
#include "caduceus/resources/search_index.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;
using fhirpath::Item;

const json::Value* child(const json::Value* node, std::string_view name) {
  return node == nullptr ? nullptr : node->find(name);
}

// A string child, or "".
std::string text_of(const json::Value* node, std::string_view name) {
  const json::Value* v = child(node, name);
  return v != nullptr && v->is_string() ? v->text() : std::string();
}

// Calls f for the string child `name`, or each string of an array child.
template <class F>
void each_string(const json::Value* node, std::string_view name, F&& f) {
  const json::Value* v = child(node, name);
  if (v == nullptr) return;
  if (v->is_string()) return f(v->text());
  if (v->is_array())
    for (const auto& item : v->items())
      if (item.is_string()) f(item.text());
}

// The same range in double precision, for the JSON numbers that search values' exact decimals do not cover
// (exponents beyond +-60, such as 1.000000000000000000E-245 in the official Observation-decimal example):
// the value plus or minus half a unit of its last significant digit. False if `literal` is not a JSON number or
// is out of the double range.
bool wide_number_range(const std::string& literal, double& low, double& high) {
  std::size_t i = 0;
  if (i < literal.size() && literal[i] == '-') ++i;
  auto digits = [&] {
    std::size_t start = i;
    while (i < literal.size() && literal[i] >= '0' && literal[i] <= '9') ++i;
    return i - start;
  };
  if (digits() == 0) return false;
  long fraction = 0;
  if (i < literal.size() && literal[i] == '.') {
    ++i;
    fraction = static_cast<long>(digits());
    if (fraction == 0) return false;
  }
  long exponent = 0;
  if (i < literal.size() && (literal[i] == 'e' || literal[i] == 'E')) {
    ++i;
    bool negative = i < literal.size() && literal[i] == '-';
    if (i < literal.size() && (literal[i] == '-' || literal[i] == '+')) ++i;
    std::size_t start = i;
    std::size_t n = digits();
    if (n == 0 || n > 5) return false;
    exponent = std::strtol(literal.c_str() + start, nullptr, 10) * (negative ? -1 : 1);
  }
  if (i != literal.size()) return false;
  const double value = std::strtod(literal.c_str(), nullptr);
  const double half = 0.5 * std::pow(10.0, static_cast<double>(exponent - fraction));
  if (!std::isfinite(value) || !std::isfinite(half)) return false;
  low = value - half;
  high = value + half;
  return true;
}

// A number's literal as the [low, high) its precision stands for.
bool number_range(const std::string& literal, double& low, double& high) {
  auto n = fhir::search::parse_number(literal);
  if (!n) return wide_number_range(literal, low, high);
  low = n->low.to_double();
  high = n->high.to_double();
  return true;
}

struct Emitter {
  const std::string& param;
  SearchParamType type;
  IndexValues& out;

  void string_value(const std::string& s) {
    if (s.empty()) return;
    out.strings.push_back({param, fhir::search::normalize_for_search(s), s});
  }

  void token(std::optional<std::string> system, std::string code, const std::string& text) {
    if (code.empty() && text.empty()) return;
    out.tokens.push_back({param, std::move(system), std::move(code),
                          text.empty() ? std::string() : fhir::search::normalize_for_search(text)});
  }

  void coding(const json::Value* c) {
    std::string system = text_of(c, "system");
    token(system.empty() ? std::nullopt : std::optional<std::string>(std::move(system)), text_of(c, "code"),
          text_of(c, "display"));
  }

  void date(std::string_view text, bool low_only, bool high_only, DateIndex& row) {
    auto range = fhir::datetime_range(text);
    if (!range) return;
    if (!high_only) row.low_ms = range->first;
    if (!low_only) row.high_ms = range->second;
  }

  void reference(const json::Value* ref) {
    ReferenceIndex row{param, {}, {}, {}, {}, {}, {}};
    const json::Value* ident = child(ref, "identifier");
    row.identifier_system = text_of(ident, "system");
    row.identifier_value = text_of(ident, "value");
    std::string target = text_of(ref, "reference");
    if (!target.empty() && target.front() != '#') {
      if (auto parsed = fhir::search::split_reference(target)) {
        row.type = parsed->type.value_or(text_of(ref, "type"));
        row.id = parsed->id;
        row.version = parsed->version.value_or("");
        row.url = parsed->url.value_or("");
      }
    } else if (!target.empty()) {
      row.id = target;  // a contained resource
    }
    if (row.id.empty() && row.identifier_value.empty()) return;
    out.references.push_back(std::move(row));
  }

  void canonical(const std::string& url) {
    if (url.empty()) return;
    if (type == SearchParamType::kUri) {
      out.uris.push_back({param, url});
      return;
    }
    ReferenceIndex row{param, {}, url, {}, url, {}, {}};
    if (auto bar = url.find('|'); bar != std::string::npos) {
      row.url = url.substr(0, bar);
      row.id = row.url;
      row.version = url.substr(bar + 1);
    }
    out.references.push_back(std::move(row));
  }

  void quantity(const json::Value* q) {
    const json::Value* value = child(q, "value");
    if (value == nullptr || !value->is_number()) return;
    QuantityIndex row;
    row.param = param;
    row.value = value->text();
    if (!number_range(row.value, row.low, row.high)) return;
    row.system = text_of(q, "system");
    row.code = text_of(q, "code");
    row.unit = text_of(q, "unit");
    if (row.code.empty()) row.code = text_of(q, "currency");  // Money
    out.quantities.push_back(std::move(row));
  }

  void number(const std::string& literal) {
    NumberIndex row;
    row.param = param;
    row.value = literal;
    if (number_range(literal, row.low, row.high)) out.numbers.push_back(std::move(row));
  }

  // One item of the expression's result, by its FHIR type.
  void item(const Item& it) {
    if (it.kind == Item::Kind::kBoolean) {
      if (type == SearchParamType::kToken) token(std::nullopt, it.boolean ? "true" : "false", {});
      return;
    }
    if (it.kind == Item::Kind::kString || it.kind == Item::Kind::kDate || it.kind == Item::Kind::kDateTime) {
      primitive(it.text, it.kind == Item::Kind::kString ? "string" : "dateTime");
      return;
    }
    if (it.kind == Item::Kind::kInteger) return primitive(std::to_string(it.integer), "integer");
    if (it.kind == Item::Kind::kDecimal) return primitive(it.text, "decimal");
    if (it.kind != Item::Kind::kNode || it.node == nullptr) return;
    const json::Value* n = it.node;
    std::string_view t = it.type_name();
    if (n->is_string() || n->is_number() || n->is_bool()) {
      std::string literal = n->is_bool() ? (n->as_bool() ? "true" : "false") : n->text();
      return primitive(literal, t);
    }
    switch (type) {
      case SearchParamType::kString:
        if (t == "HumanName") {
          string_value(text_of(n, "family"));
          each_string(n, "given", [&](const std::string& s) { string_value(s); });
          each_string(n, "prefix", [&](const std::string& s) { string_value(s); });
          each_string(n, "suffix", [&](const std::string& s) { string_value(s); });
          string_value(text_of(n, "text"));
        } else if (t == "Address") {
          each_string(n, "line", [&](const std::string& s) { string_value(s); });
          for (std::string_view f : {"city", "district", "state", "postalCode", "country", "text"})
            string_value(text_of(n, f));
        }
        break;
      case SearchParamType::kToken:
        if (t == "Coding") {
          coding(n);
        } else if (t == "CodeableConcept") {
          if (const json::Value* codings = child(n, "coding"); codings != nullptr && codings->is_array())
            for (const auto& c : codings->items()) coding(&c);
          if (std::string text = text_of(n, "text"); !text.empty()) token(std::nullopt, {}, text);
        } else if (t == "Identifier") {
          std::string system = text_of(n, "system");
          const json::Value* id_type = child(n, "type");
          std::string value = text_of(n, "value");
          token(system.empty() ? std::nullopt : std::optional<std::string>(system), value, text_of(id_type, "text"));
          if (const json::Value* codings = child(id_type, "coding");
              !value.empty() && codings != nullptr && codings->is_array())
            for (const auto& c : codings->items())
              if (std::string code = text_of(&c, "code"); !code.empty())
                out.identifier_types.push_back({param, text_of(&c, "system"), std::move(code), value});
        } else if (t == "ContactPoint") {
          token(std::nullopt, text_of(n, "value"), {});
        }
        break;
      case SearchParamType::kReference:
        if (t == "Reference") reference(n);
        break;
      case SearchParamType::kDate:
        if (t == "Period") {
          DateIndex row{param};
          if (std::string s = text_of(n, "start"); !s.empty()) date(s, true, false, row);
          if (std::string e = text_of(n, "end"); !e.empty()) date(e, false, true, row);
          out.dates.push_back(row);
        } else if (t == "Timing") {
          each_string(n, "event", [&](const std::string& s) { primitive(s, "dateTime"); });
        }
        break;
      case SearchParamType::kQuantity:
      case SearchParamType::kNumber:
        if (t == "Quantity" || t == "Age" || t == "Duration" || t == "Count" || t == "Distance" ||
            t == "SimpleQuantity" || t == "Money" || t == "MoneyQuantity") {
          if (type == SearchParamType::kQuantity)
            quantity(n);
          else if (const json::Value* v = child(n, "value"); v != nullptr && v->is_number())
            number(v->text());
        }
        break;
      default: break;
    }
  }

  // A primitive value (from the JSON or computed), by the parameter's type.
  void primitive(const std::string& literal, std::string_view fhir_type) {
    switch (type) {
      case SearchParamType::kString: return string_value(literal);
      case SearchParamType::kToken: return token(std::nullopt, literal, {});
      case SearchParamType::kUri: return canonical(literal);
      case SearchParamType::kReference:
        if (fhir_type == "canonical" || fhir_type == "uri" || fhir_type == "url") return canonical(literal);
        return;
      case SearchParamType::kDate: {
        DateIndex row{param};
        date(literal, false, false, row);
        if (row.low_ms != std::numeric_limits<std::int64_t>::min()) out.dates.push_back(row);
        return;
      }
      case SearchParamType::kNumber: return number(literal);
      default: return;
    }
  }
};

}  // namespace

namespace {
template <class T>
void move_rows(std::vector<T>& to, std::vector<T>& from) {
  to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
  from.clear();
}
}  // namespace

namespace {

bool ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The index just past the bracket that closes the one at `i` ('(' or '['), skipping quoted strings; npos if none.
std::size_t past_group(std::string_view s, std::size_t i) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\'' || c == '`') {
      std::size_t end = s.find(c, i + 1);
      while (end != std::string_view::npos && s[end - 1] == '\\') end = s.find(c, end + 1);
      if (end == std::string_view::npos) return end;
      i = end;
    } else if (c == '(' || c == '[') {
      ++depth;
    } else if (c == ')' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

// Whether the steps after `Type.element` give nothing when the element is absent: paths, indexers, `as`/`is`,
// and functions that only filter or pick from their input. Anything else (exists(), empty(), count(), not(),
// iif(), combine(), operators such as and, or, =, &) may give a value from nothing.
bool nothing_from_nothing(std::string_view rest) {
  static constexpr std::string_view kFilters[] = {"where", "ofType",    "resolve", "first",    "last", "as",
                                                  "is",    "extension", "single",  "distinct", "tail"};
  static constexpr std::string_view kOperators[] = {"and", "or", "xor", "implies", "div", "mod", "in", "contains"};
  std::size_t i = 0;
  while (i < rest.size()) {
    char c = rest[i];
    if (c == '.' || std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '[') {
      i = past_group(rest, i);
      if (i == std::string_view::npos) return false;
    } else if (ident_char(c)) {
      std::size_t start = i;
      while (i < rest.size() && ident_char(rest[i])) ++i;
      std::string_view word = rest.substr(start, i - start);
      if (i < rest.size() && rest[i] == '(') {
        if (std::ranges::find(kFilters, word) == std::end(kFilters)) return false;
        i = past_group(rest, i);
        if (i == std::string_view::npos) return false;
      } else if (std::ranges::find(kOperators, word) != std::end(kOperators)) {
        return false;
      }
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

std::vector<std::string> expression_roots(std::string_view expression) {
  std::vector<std::string> roots;
  for (std::string_view term : union_terms(expression)) {
    term = trim(term);
    while (!term.empty() && term.front() == '(' && past_group(term, 0) == term.size())
      term = trim(term.substr(1, term.size() - 2));
    // `Type.element` first: a type name (capitalised), then an element (not a function).
    std::size_t i = 0;
    while (i < term.size() && ident_char(term[i])) ++i;
    if (i == 0 || !std::isupper(static_cast<unsigned char>(term[0])) || i >= term.size() || term[i] != '.') return {};
    std::size_t element = ++i;
    while (i < term.size() && ident_char(term[i])) ++i;
    if (i == element || (i < term.size() && term[i] == '(')) return {};
    if (!nothing_from_nothing(term.substr(i))) return {};
    roots.emplace_back(term.substr(element, i - element));
  }
  return roots;
}

ResourceMembers::ResourceMembers(const fhir::json::Value& resource) {
  names_.reserve(resource.members().size());
  for (const auto& [key, value] : resource.members()) {
    std::string_view k = key;
    if (!k.empty() && k.front() == '_') k.remove_prefix(1);  // a primitive's id and extensions
    if (!k.empty()) names_.push_back(k);
  }
  std::sort(names_.begin(), names_.end());
}

bool ResourceMembers::has_any_root(const std::vector<std::string>& roots) const {
  for (const std::string& r : roots) {
    // The element itself, or one of its choice types (value[x]: valueQuantity, ...): names that begin with the root
    // come together, from the first one not before it.
    for (auto it = std::lower_bound(names_.begin(), names_.end(), std::string_view(r));
         it != names_.end() && it->starts_with(r); ++it)
      if (it->size() == r.size() || std::isupper(static_cast<unsigned char>((*it)[r.size()]))) return true;
  }
  return false;
}

bool has_any_root(const fhir::json::Value& resource, const std::vector<std::string>& roots) {
  return ResourceMembers(resource).has_any_root(roots);
}

void append_index(IndexValues& to, IndexValues&& from) {
  move_rows(to.strings, from.strings);
  move_rows(to.tokens, from.tokens);
  move_rows(to.references, from.references);
  move_rows(to.dates, from.dates);
  move_rows(to.numbers, from.numbers);
  move_rows(to.quantities, from.quantities);
  move_rows(to.uris, from.uris);
  move_rows(to.composites, from.composites);
  move_rows(to.identifier_types, from.identifier_types);
  if (to.narrative.empty() && to.content.empty()) {
    to.narrative = std::move(from.narrative);
    to.content = std::move(from.content);
  }
}

void leave_out_resource_row_values(IndexValues& v) {
  std::erase_if(v.tokens, [](const TokenIndex& t) { return t.param == "_id"; });
  std::erase_if(v.dates, [](const DateIndex& d) { return d.param == "_lastUpdated"; });
}

void filter_index(IndexValues& v, const std::function<bool(const std::string&)>& keep) {
  auto drop = [&](const auto& row) { return !keep(row.param); };
  std::erase_if(v.strings, drop);
  std::erase_if(v.tokens, drop);
  std::erase_if(v.references, drop);
  std::erase_if(v.dates, drop);
  std::erase_if(v.numbers, drop);
  std::erase_if(v.quantities, drop);
  std::erase_if(v.uris, drop);
  std::erase_if(v.composites, drop);
  std::erase_if(v.identifier_types, drop);
  // The full text belongs to no parameter's rows (it is _text and _content, rewritten whole or not at all).
  v.narrative.clear();
  v.content.clear();
}

fhir::Result<std::shared_ptr<const SearchIndexer>> SearchIndexer::create(
    const Definitions& definitions, const SearchParameterRegistry& registry,
    const std::function<bool(const SearchParameter&)>& only, Rows rows) {
  std::shared_ptr<SearchIndexer> indexer(new SearchIndexer(definitions));
  indexer->full_text_ = !only;  // a partial indexer (custom parameters) leaves _text and _content to the whole one
  for (const std::string& type : definitions.resource_types()) {
    auto& list = indexer->by_type_[type];
    for (const SearchParameter* p : registry.for_type(type)) {
      if (p->type == SearchParamType::kSpecial) continue;
      if (only && !only(*p)) continue;
      if (rows == Rows::kWritten && (std::ranges::find(p->all_rows_shared, type) != p->all_rows_shared.end() ||
                                     p->code == "_id" || p->code == "_lastUpdated"))
        continue;  // (leave_out_shared_rows, leave_out_resource_row_values would leave out every row it gives)
      std::string_view expression = p->expression_for(type);
      if (expression.empty()) continue;
      auto compiled = fhirpath::FhirPath::compile(expression);
      if (!compiled)
        return fhir::fail(fhir::ErrorKind::kInternal, "exception",
                          "search parameter " + type + "." + p->code + ": " + compiled.error().issues[0].diagnostics);
      Compiled entry{p, std::move(*compiled), {}, expression_roots(expression)};
      bool usable = true;
      for (const SearchParameterComponent& component : p->components) {
        auto c = fhirpath::FhirPath::compile(component.expression);
        if (!c || component.parameter == nullptr) {
          usable = false;  // a component we cannot evaluate: the composite is not indexed
          break;
        }
        entry.components.push_back(std::move(*c));
      }
      if (p->type == SearchParamType::kComposite && (!usable || entry.components.empty())) continue;
      list.push_back(std::move(entry));
    }
  }
  return std::shared_ptr<const SearchIndexer>(std::move(indexer));
}

IndexValues SearchIndexer::extract(const json::Value& resource, std::vector<std::string>* failures) const {
  IndexValues out;
  const json::Value* rt = resource.find("resourceType");
  if (rt == nullptr || !rt->is_string()) return out;
  auto it = by_type_.find(rt->text());
  if (it == by_type_.end()) return out;
  fhirpath::EvalContext ctx;
  ctx.definitions = &definitions_;
  // The resource as every expression's focus, its type looked up once (not once per parameter).
  const Item root = Item::of_node(&resource, definitions_.type(rt->text()));
  const ResourceMembers members(resource);
  for (const Compiled& c : it->second) {
    if (!c.roots.empty() && !members.has_any_root(c.roots)) continue;  // (it would give nothing)
    auto result = c.path.evaluate(root, resource, ctx);
    if (!result) {
      if (failures) failures->push_back(c.parameter->code + ": " + result.error().issues[0].diagnostics);
      continue;
    }
    if (c.parameter->type == SearchParamType::kComposite) {
      composite(c, root, ctx, *result, out);
      continue;
    }
    Emitter emit{c.parameter->code, c.parameter->type, out};
    for (const Item& item : *result) emit.item(item);
  }
  if (full_text_) extract_full_text(resource, definitions_, out.narrative, out.content);
  return out;
}

void SearchIndexer::composite(const Compiled& c, const fhirpath::Item& resource, const fhirpath::EvalContext& ctx,
                              const fhirpath::Collection& items, IndexValues& out) const {
  std::vector<fhirpath::Collection> values(c.components.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    // The values of every component first, the last ones first (a value[x] is absent more often than a code): an
    // item with a component without value matches nothing, and makes no rows.
    bool complete = true;
    for (std::size_t k = c.components.size(); complete && k-- > 0;) {
      auto found = c.components[k].evaluate(items[i], resource, ctx);
      complete = found && !found->empty();
      if (complete) values[k] = std::move(*found);
    }
    if (!complete) continue;
    // Every component of this item, as the rows its own parameter type would give.
    std::vector<CompositeIndex> rows;
    for (std::size_t k = 0; k < c.components.size(); ++k) {
      const SearchParameter& component = *c.parameter->components[k].parameter;
      IndexValues v;
      Emitter emit{component.code, component.type, v};
      for (const Item& item : values[k]) emit.item(item);
      auto base = [&] {
        CompositeIndex row;
        row.param = c.parameter->code;
        row.item = static_cast<std::int64_t>(i);
        row.component = static_cast<std::int64_t>(k);
        return row;
      };
      std::size_t before = rows.size();
      // (The component's rows are this item's alone: their strings move into the composite's.)
      for (auto& t : v.tokens) {
        auto row = base();
        row.system = std::move(t.system).value_or("");
        row.code = std::move(t.code);
        row.text = std::move(t.text);
        rows.push_back(std::move(row));
      }
      for (auto& s : v.strings) {
        auto row = base();
        row.normalized = std::move(s.normalized);
        row.exact = std::move(s.exact);
        rows.push_back(std::move(row));
      }
      for (const auto& d : v.dates) {
        auto row = base();
        row.low = static_cast<double>(d.low_ms);
        row.high = static_cast<double>(d.high_ms);
        rows.push_back(std::move(row));
      }
      for (auto& n : v.numbers) {
        auto row = base();
        row.low = n.low;
        row.high = n.high;
        row.value = std::move(n.value);
        rows.push_back(std::move(row));
      }
      for (auto& q : v.quantities) {
        auto row = base();
        row.low = q.low;
        row.high = q.high;
        row.value = std::move(q.value);
        row.system = std::move(q.system);
        row.code = std::move(q.code);
        row.unit = std::move(q.unit);
        rows.push_back(std::move(row));
      }
      for (auto& r : v.references) {
        auto row = base();
        row.target_type = std::move(r.type);
        row.target_id = std::move(r.id);
        row.url = std::move(r.url);
        rows.push_back(std::move(row));
      }
      for (auto& u : v.uris) {
        auto row = base();
        row.uri = std::move(u.uri);
        rows.push_back(std::move(row));
      }
      if (rows.size() == before) {
        complete = false;  // a component with no value: this item can match nothing
        break;
      }
    }
    if (complete)
      out.composites.insert(out.composites.end(), std::make_move_iterator(rows.begin()),
                            std::make_move_iterator(rows.end()));
  }
}

}  // namespace caduceus::resources
