#pragma once

// The access policy: what each role may see beyond its token's scopes, as data (a JSON file given with --policy;
// built-in defaults: the hospital's rules). And the access filter of a token: the scopes, the patient context, the
// granular scopes' queries and the role's rules made into one resources::AccessFilter that the store applies inside
// every query.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/resources/access_filter.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/server/auth/scopes.hpp"

namespace caduceus::server::auth {

// One role's rules.
struct RolePolicy {
  std::vector<std::string> types;  // when not empty: the only resource types the role works with
  struct Deny {
    std::string type;   // a resource type
    std::string query;  // a search on it ("_security=...|R,...|V"): its matches are hidden from the role
  };
  std::vector<Deny> deny;
  bool own_record = false;  // only the Patient compartment of the user's own Patient (fhirUser "Patient/ID")
};

// The policy file:
//   {"roles": {"nurse": {"deny": [{"type": "MedicationRequest", "query": "_security=..."}]},
//              "technician": {"types": ["Observation", ...]}, "patient": {"compartment": "fhirUser"},
//              "physician": {}, "admin": {}}}
// A role that the policy does not name sees nothing.
class AccessPolicy {
 public:
  // The built-in policy (default_json()).
  AccessPolicy();
  // Errors: kInvalid naming the element (an unknown role, a member that is not what it should be).
  static fhir::Result<AccessPolicy> parse(std::string_view json);
  // Reads and parses a policy file. Errors: kUnavailable when it cannot be read, else parse's.
  static fhir::Result<AccessPolicy> load(const std::filesystem::path& file);
  // The hospital's rules: nurses do not see MedicationRequests labelled R or V (v3-Confidentiality),
  // technicians work with Observation, DiagnosticReport, ServiceRequest and Specimen, patients see their own
  // record, physicians and admins everything (their scopes allowing).
  static std::string_view default_json() noexcept;

  // The rules of a role, or nullptr when the policy does not name it.
  const RolePolicy* role(std::string_view name) const;

 private:
  struct Empty {};
  explicit AccessPolicy(Empty) {}
  std::map<std::string, RolePolicy, std::less<>> roles_;
};

// Who a token speaks for (its claims, per the shared claim contract).
struct TokenContext {
  std::string patient;    // `patient` claim: the Patient id of the launch context (patient/ scopes)
  std::string fhir_user;  // `fhirUser`: "Practitioner/ID" or "Patient/ID"
  std::string role;       // `role`: physician, nurse, technician, admin, patient (empty for a system token)
};

// The resources a token may see for `permission` (one of kCreate, kRead, kUpdate, kDelete, kSearch), or nullptr
// when its scopes differ by type alone (no patient/ scope, no query, no role: the authorizer's 403 per type is
// then all there is to it). Scopes that do not
// give `permission` count for nothing; a patient/ scope without a patient claim, or a granular scope whose query
// does not parse against `registry`, lets nothing be seen.
std::shared_ptr<const resources::AccessFilter> access_filter(
    const std::vector<ResourceScope>& scopes, const TokenContext& token, std::uint8_t permission,
    const AccessPolicy& policy, std::shared_ptr<const resources::SearchParameterRegistry> registry,
    const resources::Definitions& definitions);

}  // namespace caduceus::server::auth
