#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/string_map.hpp"

namespace caduceus::resources {

enum class SearchParamType : std::uint8_t {
  kNumber,
  kDate,
  kString,
  kToken,
  kReference,
  kComposite,
  kQuantity,
  kUri,
  kSpecial,
};

// "number", "date", ... as FHIR writes them; nullopt for anything else.
std::optional<SearchParamType> search_param_type_from_name(std::string_view name) noexcept;
std::string_view to_string(SearchParamType type) noexcept;

struct SearchParameter;

// One component of a composite parameter. `expression` is relative to the result of the composite's expression.
struct SearchParameterComponent {
  std::string definition;                      // canonical url of the component's SearchParameter
  std::string expression;                      // FHIRPath, e.g. "value.as(Quantity)"
  const SearchParameter* parameter = nullptr;  // the definition, resolved at load
};

// One SearchParameter, as in conformance/r4/search-parameters.json (see conformance/tools/gen_search_params.py).
struct SearchParameter {
  std::string url;  // empty for the synthetic _has, _list, _type
  std::string code;
  std::string name;
  std::vector<std::string> base;  // "Observation", ...; "Resource" or "DomainResource" for the common ones
  SearchParamType type = SearchParamType::kToken;
  std::string expression;  // the full FHIRPath expression as published; empty if there is none (_text, _has)
  // Per base type, the part of `expression` that applies to it (same order as `base`; a base whose expression
  // is empty has none).
  std::vector<std::pair<std::string, std::string>> expressions;
  std::string xpath_usage;              // "normal", "phonetic", "nearby", "distance", "other"; may be empty
  std::vector<std::string> target;      // reference targets, sorted
  std::vector<std::string> modifier;    // as declared (rarely set in R4)
  std::vector<std::string> comparator;  // as declared: "eq", "ne", "gt", ...
  std::vector<std::string> chain;
  std::optional<bool> multiple_or;
  std::optional<bool> multiple_and;
  std::vector<SearchParameterComponent> components;  // composites only
  bool synthetic = false;                            // not a SearchParameter of the package (_has, _list, _type)
  // Per base type, the other parameters of that type whose expression is one of the `|` terms of this one's (same
  // type, usage and components; R4 package parameters only, never a reference: Observation combo-code has code
  // and component-code). Every index row of theirs is one of this parameter's too, so the writer leaves out this
  // parameter's rows that one of them holds (leave_out_shared_rows) and a search reads theirs with its own.
  std::vector<std::pair<std::string, std::vector<std::string>>> subsets;
  // The types for which every `|` term of its expression is one of its subsets' (Observation combo-code is `code |
  // component.code`): all its rows there are theirs too, and leave_out_shared_rows leaves out every one.
  std::vector<std::string> all_rows_shared;

  // The codes of `subsets` for `resource_type`; empty if none.
  std::span<const std::string> subsets_for(std::string_view resource_type) const noexcept;

  // Whether it applies to every resource type (base Resource or DomainResource).
  bool common() const noexcept;
  // The expression that applies to a resource of type `resource_type`: the per-base part for that type, or for
  // a common parameter the Resource / DomainResource part ("Resource.id"). Empty if none.
  std::string_view expression_for(std::string_view resource_type) const noexcept;
};

// The top-level `|` terms of a FHIRPath expression (outside parentheses, brackets and quotes), trimmed of spaces.
std::vector<std::string_view> union_terms(std::string_view expression);

// The R4 SearchParameters, loaded once from conformance/r4/search-parameters.json (and the compartments from
// conformance/r4/compartments.json). Immutable after load, so safe to share between threads. Custom parameters
// (SearchParameter resources created at run time) come in a new registry made by extend().
//
// The registry does not know the list of resource types: it answers for any name, and a type that no parameter
// names gets just the common parameters. Check the type against Definitions first. Every type derives from
// DomainResource except Binary, Bundle and Parameters (fixed in R4), which get only the Resource parameters.
class SearchParameterRegistry {
 public:
  // Parses the search-parameters JSON (and, if not empty, the compartments JSON). On malformed text, an unknown
  // type, a (base, code) defined twice or a composite component naming no known parameter returns
  // ErrorKind::kInternal.
  static fhir::Result<std::shared_ptr<const SearchParameterRegistry>> load(std::string_view json,
                                                                           std::string_view compartments_json = {});

  // A new registry: the parameters of `base` and then `custom` (copied; their composite components are resolved
  // again, in the new registry). `base` is left as it is, and pointers into it stay valid. Errors: kInvalid when a
  // custom parameter clashes with another ((base, code) or url defined twice, a code that hides a common one) or
  // names an undefined component.
  static fhir::Result<std::shared_ptr<const SearchParameterRegistry>> extend(const SearchParameterRegistry& base,
                                                                             std::span<const SearchParameter> custom);

  // The parameter `code` of `resource_type` ("Observation", "patient"), the common ones ("_id") included; nullptr
  // if none.
  const SearchParameter* find(std::string_view resource_type, std::string_view code) const noexcept;
  // Every parameter of `resource_type`, the common ones included, sorted by code.
  std::span<const SearchParameter* const> for_type(std::string_view resource_type) const noexcept;
  // The parameter with that canonical url, or nullptr.
  const SearchParameter* by_url(std::string_view url) const noexcept;
  // Every parameter, in file order (sorted by url, the synthetic ones last).
  const std::deque<SearchParameter>& all() const noexcept { return parameters_; }
  // The types that some non-common parameter names as base, sorted.
  const std::vector<std::string>& types() const noexcept { return types_; }
  const std::string& fhir_version() const noexcept { return fhir_version_; }

  // The codes of the parameters of `resource_type` that put a resource in compartment `compartment`
  // ("Patient", "Observation" -> ["subject", "performer"]); empty if that type is not in the compartment.
  std::span<const std::string> compartment_params(std::string_view compartment,
                                                  std::string_view resource_type) const noexcept;
  // The resource types in compartment `compartment`, sorted; empty if there is no such compartment.
  std::span<const std::string> compartment_types(std::string_view compartment) const noexcept;

  SearchParameterRegistry(const SearchParameterRegistry&) = delete;
  SearchParameterRegistry& operator=(const SearchParameterRegistry&) = delete;

 private:
  SearchParameterRegistry() = default;
  // Builds the lookup tables from parameters_ (on a registry whose tables are still empty); the reason on a clash.
  std::expected<void, std::string> link();
  // Fills SearchParameter::subsets (after link(), on the package's parameters).
  void find_subsets();

  struct TypeEntry {
    std::unordered_map<std::string_view, const SearchParameter*> by_code;  // own parameters only
    std::vector<const SearchParameter*> all;                               // own + common, sorted by code
  };
  template <class V>
  using StringMap = fhir::StringMap<V>;  // (found by string_view)
  struct Compartment {
    std::vector<std::string> types;  // sorted
    StringMap<std::vector<std::string>> params;
  };

  std::string fhir_version_;
  std::deque<SearchParameter> parameters_;  // a deque: addresses stay put while loading
  std::unordered_map<std::string_view, const SearchParameter*> by_url_;
  std::unordered_map<std::string_view, TypeEntry> by_type_;
  TypeEntry resource_;                                   // base Resource
  TypeEntry domain_resource_;                            // base DomainResource
  std::vector<const SearchParameter*> common_resource_;  // Resource ones, sorted by code (Binary, Bundle, ...)
  std::vector<const SearchParameter*> common_domain_;    // Resource + DomainResource ones, sorted by code
  std::vector<std::string> types_;
  StringMap<Compartment> compartments_;
};

}  // namespace caduceus::resources
