#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::server::auth {

// What a SMART scope permits on a resource type, as SMART v2 letters (scopes-and-launch-context.html):
// c create; r read (read, vread, instance history); u update (update, patch); d delete; s search (search, type and
// system history). A v1 `.read` is r+s, `.write` c+u+d, `.*` all five.
enum Permission : std::uint8_t {
  kCreate = 1,
  kRead = 2,
  kUpdate = 4,
  kDelete = 8,
  kSearch = 16,
  kAll = 31,
};

// One resource scope: `system/Observation.rs`, `user/*.read`, `patient/Patient.cruds`.
struct ResourceScope {
  std::string context;  // "system", "user" or "patient"
  std::string type;     // a resource type, or "*"
  std::uint8_t permissions = 0;
  std::string text;   // as written
  std::string query;  // a granular SMART v2 scope's search ("category=laboratory"), after the '?'; else empty
};

// Parses one resource scope. SMART v1 (`.read`, `.write`, `.*`) and v2 (`.cruds` letters in that order, at least
// one), v2 with a query (`patient/Observation.rs?category=laboratory`: the resource must also match that search;
// the query is checked against the search parameters when a token is used). Errors: kInvalid for anything else
// (a query on a v1 scope or on `*`). Not a resource scope (openid, launch, offline_access...): kInvalid.
fhir::Result<ResourceScope> parse_resource_scope(std::string_view scope);

// Splits a space-separated scope string (empty items dropped).
std::vector<std::string> split_scopes(std::string_view scopes);

// Whether `granted` (an allowed scope of a client) covers every permission of `requested` (both resource scopes):
// same context, same type or `*` in the grant, and a superset of the permissions.
bool covers(const ResourceScope& granted, const ResourceScope& requested);

// The grant of an access token: the resource scopes that it carries.
class Grant {
 public:
  Grant() = default;
  explicit Grant(std::vector<ResourceScope> scopes) : scopes_(std::move(scopes)) {}

  // Whether the grant allows all of `permissions` on `type` through its scopes of any context (system/, user/,
  // patient/). That is the interaction's permission only: which resources of the type may be seen (the patient's
  // compartment, a granular scope's query, the user's role) is the access filter's (access_policy.hpp).
  bool allows(std::string_view type, std::uint8_t permissions) const noexcept;
  // Whether it allows them on every type (a `system/*` scope).
  bool allows_all_types(std::uint8_t permissions) const noexcept { return allows("*", permissions); }
  const std::vector<ResourceScope>& scopes() const noexcept { return scopes_; }

 private:
  std::vector<ResourceScope> scopes_;
};

// The letters of a permission set, "cruds" order ("rs").
std::string permission_letters(std::uint8_t permissions);

}  // namespace caduceus::server::auth
