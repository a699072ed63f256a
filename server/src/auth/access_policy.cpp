#include "caduceus/server/auth/access_policy.hpp"

#include <fstream>
#include <sstream>

#include "../url.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/server/auth/users.hpp"

namespace caduceus::server::auth {

using fhir::ErrorKind;
namespace json = fhir::json;

namespace {

constexpr std::string_view kDefaultPolicy = R"({
  "roles": {
    "admin": {},
    "physician": {},
    "nurse": {
      "deny": [
        {
          "type": "MedicationRequest",
          "query": "_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R,http://terminology.hl7.org/CodeSystem/v3-Confidentiality|V"
        }
      ]
    },
    "technician": {"types": ["Observation", "DiagnosticReport", "ServiceRequest", "Specimen"]},
    "patient": {"compartment": "fhirUser"}
  }
}
)";

std::unexpected<fhir::Error> bad(const std::string& what, const std::string& where) {
  return fhir::fail(ErrorKind::kInvalid, "invalid", "access policy: " + what, where);
}

// The criteria of a search on `type` ("a=1&b=2"); nullopt when it does not parse.
std::optional<std::vector<resources::Criterion>> criteria_of(const std::string& type, const std::string& query,
                                                             const resources::SearchParameterRegistry& registry,
                                                             const resources::Definitions& definitions) {
  auto params = parse_query(query);
  if (!params) return std::nullopt;
  resources::SearchLimits limits;
  limits.strict = true;  // an unknown parameter must not widen what is seen
  auto q = resources::parse_search(type, *params, registry, definitions, limits);
  if (!q || !q->has.empty() || !q->includes.empty() || q->compartment || !q->sort.empty()) return std::nullopt;
  return std::move(q->criteria);
}

}  // namespace

std::string_view AccessPolicy::default_json() noexcept {
  return kDefaultPolicy;
}

AccessPolicy::AccessPolicy() {
  auto p = parse(kDefaultPolicy);
  if (p) roles_ = std::move(p->roles_);
}

fhir::Result<AccessPolicy> AccessPolicy::parse(std::string_view text) {
  auto doc = json::parse(text);
  if (!doc) return bad("not JSON: " + doc.error().issues.front().diagnostics, "");
  if (!doc->is_object()) return bad("the policy is a JSON object", "");
  const json::Value* roles = doc->find("roles");
  if (roles == nullptr || !roles->is_object()) return bad("'roles' must be an object of roles", "roles");
  AccessPolicy out{Empty{}};
  for (const auto& [name, rules] : roles->members()) {
    const std::string at = "roles." + name;
    if (!parse_role(name))
      return bad("'" + name + "' is not a role (physician, nurse, technician, admin, patient)", at);
    if (!rules.is_object()) return bad("a role's rules are an object", at);
    RolePolicy role;
    for (const auto& [key, value] : rules.members()) {
      if (key == "types") {
        if (!value.is_array() || value.items().empty())
          return bad("'types' is a non-empty array of types", at + ".types");
        for (const json::Value& t : value.items()) {
          if (!t.is_string()) return bad("'types' lists resource types as strings", at + ".types");
          role.types.push_back(t.text());
        }
      } else if (key == "deny") {
        if (!value.is_array()) return bad("'deny' is an array of {type, query}", at + ".deny");
        for (const json::Value& d : value.items()) {
          const json::Value* type = d.is_object() ? d.find("type") : nullptr;
          const json::Value* query = d.is_object() ? d.find("query") : nullptr;
          if (type == nullptr || !type->is_string() || query == nullptr || !query->is_string() || query->text().empty())
            return bad("each 'deny' item is {\"type\": TYPE, \"query\": SEARCH}", at + ".deny");
          role.deny.push_back({type->text(), query->text()});
        }
      } else if (key == "compartment") {
        if (!value.is_string() || value.text() != "fhirUser")
          return bad("'compartment' takes \"fhirUser\" (the user's own Patient compartment)", at + ".compartment");
        role.own_record = true;
      } else {
        return bad("unknown member '" + key + "' (types, deny, compartment)", at + "." + key);
      }
    }
    out.roles_.emplace(name, std::move(role));
  }
  return out;
}

fhir::Result<AccessPolicy> AccessPolicy::load(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot read the access policy " + file.string());
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str());
}

const RolePolicy* AccessPolicy::role(std::string_view name) const {
  auto it = roles_.find(name);
  return it == roles_.end() ? nullptr : &it->second;
}

std::shared_ptr<const resources::AccessFilter> access_filter(
    const std::vector<ResourceScope>& scopes, const TokenContext& token, std::uint8_t permission,
    const AccessPolicy& policy, std::shared_ptr<const resources::SearchParameterRegistry> registry,
    const resources::Definitions& definitions) {
  // Scopes that differ by type alone need no filter: the authorizer refuses (403) every type a request reaches
  // that they do not give. (Decided before anything is built: the common case of a system/ or user/ token.)
  bool restricted = !token.role.empty();
  for (const ResourceScope& s : scopes)
    if ((s.permissions & permission) != 0 && (s.context == "patient" || !s.query.empty())) restricted = true;
  if (!restricted) return nullptr;
  auto filter = std::make_shared<resources::AccessFilter>();
  for (const ResourceScope& s : scopes) {
    if ((s.permissions & permission) == 0) continue;
    resources::AccessClause clause;
    clause.type = s.type;
    if (s.context == "patient") {
      if (token.patient.empty()) continue;  // no patient in context: nothing through this scope
      clause.patient = token.patient;
    }
    if (!s.query.empty()) {
      auto criteria = registry ? criteria_of(s.type, s.query, *registry, definitions) : std::nullopt;
      if (!criteria) continue;  // a query that does not parse lets nothing through
      clause.criteria = std::move(*criteria);
    }
    filter->allow.push_back(std::move(clause));
  }
  if (!token.role.empty()) {
    const RolePolicy* role = policy.role(token.role);
    if (role == nullptr) return resources::deny_all_access();
    filter->types = role->types;
    for (const RolePolicy::Deny& d : role->deny) {
      auto criteria = registry ? criteria_of(d.type, d.query, *registry, definitions) : std::nullopt;
      if (!criteria) return resources::deny_all_access();  // a rule that cannot be applied hides everything
      filter->deny.push_back({d.type, {}, std::move(*criteria)});
    }
    if (role->own_record) {
      if (!token.fhir_user.starts_with("Patient/") || token.fhir_user.size() <= 8) return resources::deny_all_access();
      filter->patient = token.fhir_user.substr(8);
    }
  }
  if (registry) {
    for (const std::string& type : registry->compartment_types("Patient")) {
      std::vector<std::string> params;
      for (const std::string& code : registry->compartment_params("Patient", type)) {
        const resources::SearchParameter* p = registry->find(type, code);
        if (p != nullptr && p->type == resources::SearchParamType::kReference) params.push_back(code);
      }
      filter->compartment.emplace(type, std::move(params));
    }
  }
  filter->keep = std::move(registry);
  return filter;
}

}  // namespace caduceus::server::auth
