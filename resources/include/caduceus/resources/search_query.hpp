#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/search_parameters.hpp"

namespace caduceus::resources {

// A search request, parsed and checked against the search parameters of its type: what the query builder turns
// into SQL. Every value has been checked for its parameter's type, so a bad value is answered here (400, naming
// the parameter), never by a wrong result later.

enum class Modifier {
  kNone,
  kMissing,
  kExact,
  kContains,
  kText,
  kNot,
  kAbove,
  kBelow,
  kIn,
  kNotIn,
  kOfType,
  kIdentifier,
  kType,  // `subject:Patient`: the reference's target type
};

// One occurrence of a parameter: its values are ORed; several occurrences of parameters are ANDed.
struct Criterion {
  std::string name;  // as written, for messages ("subject:Patient.name")
  const SearchParameter* parameter = nullptr;
  Modifier modifier = Modifier::kNone;
  std::string target_type;  // kType, and the type a chain goes through
  // A chain (`subject:Patient.name=x`): the criterion on the referenced resource; `values` are then its values.
  std::shared_ptr<const Criterion> chained;
  std::vector<std::string> values;  // ORed, unescaped of `\,` (the other escapes are the value parsers')
};

// `_has:Observation:patient:code=1234`: resources referenced, through `reference_param` of `type`, by a resource
// that matches `criterion` (itself possibly another _has).
struct HasCriterion {
  std::string type;
  const SearchParameter* reference_param = nullptr;
  std::shared_ptr<const Criterion> criterion;
  std::shared_ptr<const HasCriterion> nested;
};

struct SortKey {
  const SearchParameter* parameter = nullptr;  // nullptr for _id and _lastUpdated handled by the store itself
  std::string code;
  bool descending = false;
};

struct Include {
  bool reverse = false;                        // _revinclude
  bool iterate = false;                        // :iterate
  bool wildcard = false;                       // `*`
  std::string source_type;                     // empty for `*` alone: any type
  const SearchParameter* parameter = nullptr;  // the reference parameter (nullptr with the wildcard)
  std::string target_type;                     // optional third part
};

// A compartment search (`GET [base]/Patient/123/Observation`, search.html#compartments): only the resources that
// one of the compartment's parameters for their type (CompartmentDefinition) refers to the focal resource with.
struct CompartmentFilter {
  std::string type;  // the compartment: "Patient"
  std::string id;    // the focal resource: "123"
  // Per resource type searched, the reference parameters that put it in the compartment ("Observation" ->
  // ["subject", "performer"]).
  std::vector<std::pair<std::string, std::vector<std::string>>> params;
};

struct AccessFilter;  // caduceus/resources/access_filter.hpp

enum class Total { kNone, kEstimate, kAccurate };
enum class Summary { kFalse, kTrue, kText, kData, kCount };

struct SearchQuery {
  std::string type;  // empty for a search over several types (system search, `Patient/123/*`): see `types`
  // When `type` is empty: the types searched (`_type=Patient,Observation`); empty as well: every type.
  std::vector<std::string> types;
  std::optional<CompartmentFilter> compartment;
  std::vector<Criterion> criteria;
  std::vector<HasCriterion> has;
  std::size_t count = 0;
  std::vector<SortKey> sort;
  std::vector<Include> includes;
  std::optional<Total> total;
  Summary summary = Summary::kFalse;
  std::vector<std::string> elements;
  std::optional<std::string> cursor;
  std::vector<std::string> ignored;  // unknown parameters, left out of the self link
  // When set: only the resources it lets the requester see are matched, included, chained through or counted.
  std::shared_ptr<const AccessFilter> access;
};

struct SearchLimits {
  std::size_t default_count = 50;
  std::size_t max_count = 1000;
  std::size_t max_chain = 4;  // hops in a chain, levels of _has
  bool strict = false;        // Prefer: handling=strict: unknown parameters are errors
};

// Parses the parameters of a search on `type` (already percent-decoded, in order). Errors: kInvalid with one
// issue whose expression names the parameter (an unknown parameter only when strict; a modifier that does not
// fit the parameter's type; a value that is not of the type; a chain through a parameter that is not a
// reference; an _include of an unknown parameter; _count over the maximum; ...).
fhir::Result<SearchQuery> parse_search(std::string_view type,
                                       const std::vector<std::pair<std::string, std::string>>& params,
                                       const SearchParameterRegistry& registry, const Definitions& definitions,
                                       const SearchLimits& limits = {});

// Parses the parameters of a search over several types (search.html#searchall): `types` as given by _type (which
// the caller takes out of `params`), or empty for every type, when only the parameters common to all resources
// may be used. Any other parameter must be one of every listed type, of the same parameter type (and, for a
// chain, through the same target type); an _include may start from any of the types. The result has `type`
// empty and `types` set. Errors as parse_search, naming the parameter.
fhir::Result<SearchQuery> parse_multi_type_search(const std::vector<std::string>& types,
                                                  const std::vector<std::pair<std::string, std::string>>& params,
                                                  const SearchParameterRegistry& registry,
                                                  const Definitions& definitions, const SearchLimits& limits = {});

// A system search (`GET [base]?_type=A,B&...`): takes `_type` (comma-separated, may repeat; each a resource type,
// else kInvalid naming `_type`) out of `params` and parses the rest with parse_multi_type_search.
fhir::Result<SearchQuery> parse_system_search(const std::vector<std::pair<std::string, std::string>>& params,
                                              const SearchParameterRegistry& registry, const Definitions& definitions,
                                              const SearchLimits& limits = {});

std::string_view to_string(Modifier m) noexcept;

}  // namespace caduceus::resources
