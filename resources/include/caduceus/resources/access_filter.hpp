#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {

// Which resources one request may see, as a condition that the store adds to its queries (searches and what
// they include, chains, _has, history, conditional operations), so that totals and paging count only what is
// visible. Built by the authorizer from an access token's scopes, its claims and the access policy.
//
// One clause: resources of `type` ("*": any type), in the Patient compartment of `patient` when it is set, that
// match every criterion (a granular SMART v2 scope's query, parsed for `type`).
struct AccessClause {
  std::string type;
  std::string patient;
  std::vector<Criterion> criteria;
};

// A resource is visible when it matches some clause of `allow` (none: nothing is visible), none of `deny`, is of
// one of `types` (empty: any type) and, when `patient` is set, is in that patient's compartment.
struct AccessFilter {
  std::vector<AccessClause> allow;
  std::vector<AccessClause> deny;
  std::vector<std::string> types;
  std::string patient;
  // The Patient CompartmentDefinition: per member type, its reference parameters that make a resource a member
  // (a Patient is also in its own compartment, by id).
  std::map<std::string, std::vector<std::string>> compartment;
  // What the criteria point into (the search parameter registry they were parsed with).
  std::shared_ptr<const void> keep;
};

// A filter that lets nothing be seen.
std::shared_ptr<const AccessFilter> deny_all_access();

// The search `_id=id` on type under `access`, at most one result; nullopt when the type has no _id parameter in
// `registry`. (is_visible runs it on a store, the guarded writes inside their transaction.)
std::optional<SearchQuery> visible_id_query(const SearchParameterRegistry& registry, const std::string& type,
                                            const std::string& id, std::shared_ptr<const AccessFilter> access);

// Whether the current, not deleted type/id is visible under `access` (a search `_id=id` with the filter, on
// `registry`'s _id parameter). Errors: the store's.
fhir::Result<bool> is_visible(Store& store, TenantId tenant, const SearchParameterRegistry& registry,
                              const std::string& type, const std::string& id,
                              std::shared_ptr<const AccessFilter> access);

}  // namespace caduceus::resources
