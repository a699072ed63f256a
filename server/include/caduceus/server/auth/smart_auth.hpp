#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/server/auth/access_policy.hpp"
#include "caduceus/server/auth/keys.hpp"
#include "caduceus/server/auth/scopes.hpp"
#include "caduceus/server/authorizer.hpp"

namespace caduceus::server::auth {

class UserDirectory;

struct SmartOptions {
  int system_token_lifetime_s = 300;  // access tokens of Backend Services (at most 300)
  resources::TenantId tenant = resources::kDefaultTenant;
  // SMART App Launch (the authorization-code flow, smart_launch.hpp): on when `users` is set (it must outlive
  // the SmartAuth).
  UserDirectory* users = nullptr;
  int user_token_lifetime_s = 3600;               // access tokens of users
  int offline_token_lifetime_s = 30 * 24 * 3600;  // refresh tokens of offline_access
  // What each role may see (--policy); nullptr: the built-in defaults (AccessPolicy::default_json()).
  std::shared_ptr<const AccessPolicy> policy;
  // Mutual TLS (--tls-client-ca, RFC 8705): tls-client-auth clients authenticate with their certificate and get
  // certificate-bound tokens; discovery says so.
  bool mutual_tls = false;
  // Clients registered with --jwks-url: how long their fetched JWK Set is used (seconds), and the least time
  // between two fetches for one client (an assertion with an unknown kid fetches again no sooner).
  int jwks_cache_s = 300;
  int jwks_refetch_s = 30;
};

// The SMART on FHIR authorization server and the enforcement of its tokens.
//
// Endpoints (ORIGIN is the FHIR base without its trailing /fhir):
//   GET  /fhir/.well-known/smart-configuration, /.well-known/openid-configuration   discovery
//   GET  /auth/jwks        the public signing keys (JWKS)
//   POST /auth/token       client_credentials: private_key_jwt (Backend Services), client_secret_basic, or
//                          tls_client_auth (RFC 8705; the token is then bound to the client's certificate)
//   POST /auth/introspect  RFC 7662 (the caller authenticates with a Bearer token or client_secret_basic)
//   POST /auth/revoke      RFC 7009 (Bearer of the same client, or its client_secret_basic)
//   GET|POST /auth/authorize, POST /auth/launch, and the token endpoint's authorization_code and refresh_token
//                          grants: SMART App Launch (server/src/auth/smart_launch.hpp), when options.users is set
// As the router's Authorizer, it requires a valid Bearer token on every /fhir request but metadata, and the token's
// scopes (system/, user/, patient/) to cover every interaction the request makes, every entry of a Bundle and every
// type a search reaches (_include, _revinclude, chains, _has, _type, compartments): else 403. Which resources of
// those types it then sees (the patient's compartment, granular queries, the user's role) is the access filter that
// the router puts on every query: a search answers the visible part only, a read of a hidden resource is 403.
// A certificate-bound token (`cnf.x5t#S256`) is valid only on a connection with that client certificate (else 401).
class SmartAuth final : public Authorizer {
 public:
  using RegistrySource = std::function<std::shared_ptr<const resources::SearchParameterRegistry>()>;

  // `registry`: the search parameters in force (nullptr when search is off). Loads the revoked tokens.
  // Errors: kUnavailable from the store.
  static fhir::Result<std::unique_ptr<SmartAuth>> create(resources::Store& store, KeyRing keys,
                                                         const resources::Definitions& definitions,
                                                         RegistrySource registry, SmartOptions options);
  ~SmartAuth() override;

  // The public FHIR base ("http://host:port/fhir"), once known; call before serving.
  void set_base_url(const std::string& fhir_base);

  // Whether `path` is one of the endpoints above (answered by handle_async, not the router).
  static bool serves(std::string_view path) noexcept;
  // Answers a request to one of the endpoints; `done` may run later, on a thread of this object's.
  void handle_async(const Request& request, std::function<void(Response)> done) const;

  std::optional<Response> check(const Request& request, std::string_view path,
                                const std::vector<std::pair<std::string, std::string>>& params) const override;
  // The administration API (/admin/...): an administrator's user token (role admin), or a system token with the
  // scope system/*.* (or system/*.cruds: every interaction on every type, no query); any other valid token: 403.
  std::optional<Response> check_admin(const Request& request) const override;
  // The access filter of the request's token (access_policy.hpp: scopes, patient context, granular queries, the
  // role's rules); nullptr for a token that may see everything. A request without a valid token sees nothing.
  std::shared_ptr<const resources::AccessFilter> access(const Request& request, char permission) const override;

  // rest.security of the CapabilityStatement for a FHIR base: the SMART oauth-uris extension and the service.
  fhir::json::Value rest_security(const std::string& fhir_base) const;

  struct Impl;

 private:
  explicit SmartAuth(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace caduceus::server::auth
