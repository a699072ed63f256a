#include "caduceus/resources/search_parameters.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <string>
#include <utility>

#include "rapidjson_util.hpp"

// Internal data embedded in the binary and read once at start, like the model (definitions.cpp): rapidjson reads
// it straight from the embedded bytes.

namespace caduceus::resources {

namespace {

constexpr std::array<std::pair<std::string_view, SearchParamType>, 9> kTypeNames{{
    {"number", SearchParamType::kNumber},
    {"date", SearchParamType::kDate},
    {"string", SearchParamType::kString},
    {"token", SearchParamType::kToken},
    {"reference", SearchParamType::kReference},
    {"composite", SearchParamType::kComposite},
    {"quantity", SearchParamType::kQuantity},
    {"uri", SearchParamType::kUri},
    {"special", SearchParamType::kSpecial},
}};

constexpr std::string_view kResource = "Resource";
constexpr std::string_view kDomainResource = "DomainResource";

// The R4 resource types that derive from Resource directly, not from DomainResource.
bool derives_from_domain_resource(std::string_view type) noexcept {
  return type != "Binary" && type != "Bundle" && type != "Parameters";
}

std::unexpected<fhir::Error> load_error(std::string diagnostics) {
  return fhir::fail(fhir::ErrorKind::kInternal, "exception", "R4 search parameters: " + std::move(diagnostics));
}

using detail::as_view;
using detail::member;

// Reads an optional string member; false if present but not a string.
bool read_string(const rapidjson::Value& object, const char* name, std::string& out) {
  const rapidjson::Value* v = member(object, name);
  if (v == nullptr) return true;
  if (!v->IsString()) return false;
  out = as_view(*v);
  return true;
}

// Reads an optional array of strings; false if present but not one.
bool read_strings(const rapidjson::Value& object, const char* name, std::vector<std::string>& out) {
  const rapidjson::Value* v = member(object, name);
  if (v == nullptr) return true;
  if (!v->IsArray()) return false;
  out.reserve(v->Size());
  for (const rapidjson::Value& s : v->GetArray()) {
    if (!s.IsString()) return false;
    out.emplace_back(as_view(s));
  }
  return true;
}

bool read_bool(const rapidjson::Value& object, const char* name, std::optional<bool>& out) {
  const rapidjson::Value* v = member(object, name);
  if (v == nullptr) return true;
  if (!v->IsBool()) return false;
  out = v->GetBool();
  return true;
}

bool by_code(const SearchParameter* a, const SearchParameter* b) {
  return a->code < b->code;
}

}  // namespace

std::optional<SearchParamType> search_param_type_from_name(std::string_view name) noexcept {
  for (const auto& [n, t] : kTypeNames) {
    if (n == name) return t;
  }
  return std::nullopt;
}

std::string_view to_string(SearchParamType type) noexcept {
  for (const auto& [n, t] : kTypeNames) {
    if (t == type) return n;
  }
  return "?";
}

bool SearchParameter::common() const noexcept {
  return std::ranges::any_of(base, [](const std::string& b) { return b == kResource || b == kDomainResource; });
}

std::string_view SearchParameter::expression_for(std::string_view resource_type) const noexcept {
  std::string_view fallback;
  for (const auto& [b, e] : expressions) {
    if (b == resource_type) return e;
    if (b == kResource || (b == kDomainResource && derives_from_domain_resource(resource_type))) fallback = e;
  }
  return fallback;
}

fhir::Result<std::shared_ptr<const SearchParameterRegistry>> SearchParameterRegistry::load(
    std::string_view json, std::string_view compartments_json) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError()) {
    return load_error(std::string("not valid JSON (") + rapidjson::GetParseError_En(doc.GetParseError()) +
                      " at offset " + std::to_string(doc.GetErrorOffset()) + ")");
  }
  if (!doc.IsObject()) return load_error("not a JSON object");
  const rapidjson::Value* params = member(doc, "parameters");
  if (params == nullptr || !params->IsArray()) return load_error("no parameters");

  std::shared_ptr<SearchParameterRegistry> reg(new SearchParameterRegistry());
  if (const rapidjson::Value* version = member(doc, "fhirVersion"); version != nullptr && version->IsString()) {
    reg->fhir_version_ = as_view(*version);
  }

  for (const rapidjson::Value& p : params->GetArray()) {
    if (!p.IsObject()) return load_error("a parameter that is not an object");
    SearchParameter& sp = reg->parameters_.emplace_back();
    const rapidjson::Value* code = member(p, "code");
    const rapidjson::Value* type = member(p, "type");
    if (code == nullptr || !code->IsString() || type == nullptr || !type->IsString()) {
      return load_error("a parameter without code or type");
    }
    sp.code = as_view(*code);
    const auto t = search_param_type_from_name(as_view(*type));
    if (!t) return load_error("parameter " + sp.code + " has unknown type " + std::string(as_view(*type)));
    sp.type = *t;
    if (!read_string(p, "url", sp.url) || !read_string(p, "name", sp.name) ||
        !read_string(p, "expression", sp.expression) || !read_string(p, "xpathUsage", sp.xpath_usage) ||
        !read_strings(p, "base", sp.base) || !read_strings(p, "target", sp.target) ||
        !read_strings(p, "modifier", sp.modifier) || !read_strings(p, "comparator", sp.comparator) ||
        !read_strings(p, "chain", sp.chain) || !read_bool(p, "multipleOr", sp.multiple_or) ||
        !read_bool(p, "multipleAnd", sp.multiple_and)) {
      return load_error("parameter " + sp.url + " (" + sp.code + ") has a member of the wrong JSON type");
    }
    if (sp.base.empty()) return load_error("parameter " + sp.url + " (" + sp.code + ") has no base");
    if (const rapidjson::Value* synthetic = member(p, "synthetic"); synthetic != nullptr && synthetic->IsBool()) {
      sp.synthetic = synthetic->GetBool();
    }
    if (const rapidjson::Value* expressions = member(p, "expressions")) {
      if (!expressions->IsObject()) return load_error("parameter " + sp.url + ": expressions is not an object");
      // In `base` order, so that the output does not depend on the JSON member order.
      for (const std::string& b : sp.base) {
        const auto it = expressions->FindMember(rapidjson::StringRef(b.data(), b.size()));
        if (it != expressions->MemberEnd() && it->value.IsString()) sp.expressions.emplace_back(b, as_view(it->value));
      }
      if (sp.expressions.size() != expressions->MemberCount()) {
        return load_error("parameter " + sp.url + ": expressions for a type that is not a base, or not a string");
      }
    } else if (!sp.expression.empty()) {
      for (const std::string& b : sp.base) sp.expressions.emplace_back(b, sp.expression);
    }
    if (const rapidjson::Value* components = member(p, "component")) {
      if (!components->IsArray()) return load_error("parameter " + sp.url + ": component is not an array");
      for (const rapidjson::Value& c : components->GetArray()) {
        SearchParameterComponent& component = sp.components.emplace_back();
        if (!c.IsObject() || !read_string(c, "definition", component.definition) ||
            !read_string(c, "expression", component.expression) || component.definition.empty()) {
          return load_error("parameter " + sp.url + " has a malformed component");
        }
      }
    }
    if (sp.type == SearchParamType::kComposite && sp.components.empty()) {
      return load_error("composite parameter " + sp.url + " has no components");
    }
  }

  if (auto linked = reg->link(); !linked) return load_error(std::move(linked.error()));
  reg->find_subsets();

  if (!compartments_json.empty()) {
    rapidjson::Document cdoc;
    cdoc.Parse(compartments_json.data(), compartments_json.size());
    if (cdoc.HasParseError() || !cdoc.IsObject()) return load_error("the compartments are not a JSON object");
    for (const auto& c : cdoc.GetObject()) {
      if (!c.value.IsObject()) return load_error("compartment " + std::string(as_view(c.name)) + " is not an object");
      Compartment& compartment = reg->compartments_[std::string(as_view(c.name))];
      for (const auto& r : c.value.GetObject()) {
        std::string type(as_view(r.name));
        std::vector<std::string> codes;
        if (!r.value.IsArray()) return load_error("compartment member " + type + " is not an array");
        for (const rapidjson::Value& code : r.value.GetArray()) {
          if (!code.IsString()) return load_error("compartment member " + type + " has a code that is no string");
          codes.emplace_back(as_view(code));
        }
        compartment.types.push_back(type);
        compartment.params.emplace(std::move(type), std::move(codes));
      }
      std::ranges::sort(compartment.types);
    }
  }
  return std::shared_ptr<const SearchParameterRegistry>(std::move(reg));
}

std::vector<std::string_view> union_terms(std::string_view e) {
  std::vector<std::string_view> terms;
  int depth = 0;
  bool quoted = false;
  std::size_t start = 0;
  auto trimmed = [](std::string_view t) {
    while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
    return t;
  };
  for (std::size_t i = 0; i < e.size(); ++i) {
    char ch = e[i];
    if (ch == '\\' && quoted) {
      ++i;
    } else if (ch == '\'') {
      quoted = !quoted;
    } else if (!quoted && (ch == '(' || ch == '[')) {
      ++depth;
    } else if (!quoted && (ch == ')' || ch == ']')) {
      --depth;
    } else if (!quoted && depth == 0 && ch == '|') {
      terms.push_back(trimmed(e.substr(start, i - start)));
      start = i + 1;
    }
  }
  terms.push_back(trimmed(e.substr(start)));
  return terms;
}

void SearchParameterRegistry::find_subsets() {
  auto same_shape = [](const SearchParameter& a, const SearchParameter& b) {
    if (a.type != b.type || a.xpath_usage != b.xpath_usage || a.components.size() != b.components.size()) return false;
    for (std::size_t i = 0; i < a.components.size(); ++i) {
      const SearchParameterComponent &x = a.components[i], &y = b.components[i];
      if (x.expression != y.expression || x.parameter == nullptr || y.parameter == nullptr ||
          x.parameter->type != y.parameter->type || x.parameter->xpath_usage != y.parameter->xpath_usage)
        return false;
    }
    return true;
  };
  // Q is a subset of P when each `|` term of Q's expression is one of P's, and P has more.
  std::vector<std::pair<std::string_view, std::pair<const SearchParameter*, std::vector<std::string>>>> found;
  for (const auto& [type, entry] : by_type_) {
    for (const auto& [code, p] : entry.by_code) {
      if (p->synthetic || p->type == SearchParamType::kReference || p->type == SearchParamType::kSpecial) continue;
      std::vector<std::string_view> terms = union_terms(p->expression_for(type));
      if (terms.size() < 2) continue;
      std::vector<std::string> codes;
      for (const auto& [other_code, q] : entry.by_code) {
        if (q == p || q->synthetic || !same_shape(*p, *q) || q->expression_for(type).empty()) continue;
        std::vector<std::string_view> q_terms = union_terms(q->expression_for(type));
        if (q_terms.size() < terms.size() && std::ranges::all_of(q_terms, [&](std::string_view t) {
              return std::ranges::find(terms, t) != terms.end();
            }))
          codes.emplace_back(other_code);
      }
      if (!codes.empty()) found.push_back({type, {p, std::move(codes)}});
    }
  }
  // A subset that has subsets of its own is left out: its rows are not all in its table, and a search would have
  // to follow it further.
  for (auto& [type, entry] : found) {
    auto& [p, codes] = entry;
    std::erase_if(codes, [&, t = type](const std::string& c) {
      return std::ranges::any_of(found, [&](const auto& f) { return f.first == t && f.second.first->code == c; });
    });
    if (codes.empty()) continue;
    std::ranges::sort(codes);
    // Every term of p's expression among its subsets' terms: all of p's rows are theirs.
    std::vector<std::string_view> subset_terms;
    for (const std::string& c : codes)
      std::ranges::copy(union_terms(by_type_.at(type).by_code.at(c)->expression_for(type)),
                        std::back_inserter(subset_terms));
    auto* mutable_p = const_cast<SearchParameter*>(p);
    if (std::ranges::all_of(union_terms(p->expression_for(type)), [&](std::string_view term) {
          return std::ranges::find(subset_terms, term) != subset_terms.end();
        }))
      mutable_p->all_rows_shared.emplace_back(type);
    mutable_p->subsets.emplace_back(std::string(type), std::move(codes));
  }
}

std::span<const std::string> SearchParameter::subsets_for(std::string_view resource_type) const noexcept {
  for (const auto& [type, codes] : subsets)
    if (type == resource_type) return codes;
  return {};
}

std::expected<void, std::string> SearchParameterRegistry::link() {
  by_url_.reserve(parameters_.size() * 2);
  for (SearchParameter& sp : parameters_) {
    if (!sp.url.empty() && !by_url_.emplace(sp.url, &sp).second) return std::unexpected(sp.url + " twice");
  }
  // Composite components point to their definitions; the tables per type.
  for (SearchParameter& sp : parameters_) {
    for (SearchParameterComponent& c : sp.components) {
      const auto it = by_url_.find(c.definition);
      if (it == by_url_.end()) return std::unexpected(sp.url + ": component " + c.definition + " is not defined");
      c.parameter = it->second;
    }
    for (const std::string& b : sp.base) {
      TypeEntry& entry = b == kResource ? resource_ : b == kDomainResource ? domain_resource_ : by_type_[b];
      if (!entry.by_code.emplace(sp.code, &sp).second)
        return std::unexpected("parameter " + sp.code + " of " + b + " defined twice");
      entry.all.push_back(&sp);
    }
  }

  common_resource_ = resource_.all;
  std::ranges::sort(common_resource_, by_code);
  common_domain_ = common_resource_;
  common_domain_.insert(common_domain_.end(), domain_resource_.all.begin(), domain_resource_.all.end());
  std::ranges::sort(common_domain_, by_code);
  types_.reserve(by_type_.size());
  for (auto& [type, entry] : by_type_) {
    types_.emplace_back(type);
    const auto& common = derives_from_domain_resource(type) ? common_domain_ : common_resource_;
    for (const SearchParameter* c : common) {
      if (entry.by_code.contains(c->code))
        return std::unexpected("parameter " + c->code + " of " + std::string(type) + " hides a common parameter");
    }
    entry.all.insert(entry.all.end(), common.begin(), common.end());
    std::ranges::sort(entry.all, by_code);
  }
  std::ranges::sort(types_);
  return {};
}

fhir::Result<std::shared_ptr<const SearchParameterRegistry>> SearchParameterRegistry::extend(
    const SearchParameterRegistry& base, std::span<const SearchParameter> custom) {
  std::shared_ptr<SearchParameterRegistry> reg(new SearchParameterRegistry());
  reg->fhir_version_ = base.fhir_version_;
  reg->parameters_ = base.parameters_;
  for (const SearchParameter& p : custom) {
    SearchParameter& added = reg->parameters_.emplace_back(p);
    added.subsets.clear();  // (package parameters only: a custom one may be deleted, its rows with it)
    added.all_rows_shared.clear();
    for (SearchParameterComponent& c : added.components) c.parameter = nullptr;
  }
  reg->compartments_ = base.compartments_;
  if (auto linked = reg->link(); !linked)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "search parameters: " + linked.error());
  return std::shared_ptr<const SearchParameterRegistry>(std::move(reg));
}

const SearchParameter* SearchParameterRegistry::find(std::string_view resource_type,
                                                     std::string_view code) const noexcept {
  if (const auto t = by_type_.find(resource_type); t != by_type_.end()) {
    if (const auto it = t->second.by_code.find(code); it != t->second.by_code.end()) return it->second;
  }
  if (const auto it = resource_.by_code.find(code); it != resource_.by_code.end()) return it->second;
  if (derives_from_domain_resource(resource_type)) {
    if (const auto it = domain_resource_.by_code.find(code); it != domain_resource_.by_code.end()) return it->second;
  }
  return nullptr;
}

std::span<const SearchParameter* const> SearchParameterRegistry::for_type(
    std::string_view resource_type) const noexcept {
  if (const auto t = by_type_.find(resource_type); t != by_type_.end()) return t->second.all;
  return derives_from_domain_resource(resource_type) ? common_domain_ : common_resource_;
}

const SearchParameter* SearchParameterRegistry::by_url(std::string_view url) const noexcept {
  const auto it = by_url_.find(url);
  return it == by_url_.end() ? nullptr : it->second;
}

std::span<const std::string> SearchParameterRegistry::compartment_params(
    std::string_view compartment, std::string_view resource_type) const noexcept {
  const auto c = compartments_.find(compartment);
  if (c == compartments_.end()) return {};
  const auto it = c->second.params.find(resource_type);
  return it == c->second.params.end() ? std::span<const std::string>() : std::span<const std::string>(it->second);
}

std::span<const std::string> SearchParameterRegistry::compartment_types(std::string_view compartment) const noexcept {
  const auto c = compartments_.find(compartment);
  return c == compartments_.end() ? std::span<const std::string>() : std::span<const std::string>(c->second.types);
}

}  // namespace caduceus::resources
