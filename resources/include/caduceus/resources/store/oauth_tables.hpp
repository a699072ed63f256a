#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {

// A registered OAuth client (SMART App Launch / Backend Services).
struct ClientRecord {
  std::string client_id;
  std::string name;
  // "public", "confidential-symmetric" (client_secret_basic), "confidential-asymmetric" (private_key_jwt) or
  // "tls-client-auth" (RFC 8705 mutual TLS with a certificate of the CA the server trusts).
  std::string kind;
  std::string secret_hash;  // confidential-symmetric: the secret's salted hash (never the secret)
  std::string jwks;         // confidential-asymmetric: the JWK Set by value (JSON), or empty
  std::string jwks_url;     // confidential-asymmetric: where the JWK Set is, or empty
  std::string tls_subject;  // tls-client-auth: its certificate's subject DN, canonical (server/peer_certificate.hpp)
  std::vector<std::string> redirect_uris;
  std::vector<std::string> scopes;  // the scopes it may be granted
  std::int64_t created_ms = 0;
};

// A grant of the authorization server that lives in the database so that several servers agree: an authorization
// code ("code"), a refresh token ("refresh"), an EHR launch context ("launch") or a sign-in in progress ("signin").
// `key` is a hash of the secret the client or browser holds (never the secret itself); `family` groups an
// authorization code with the refresh tokens issued from it (a reused one revokes them all); `data` is JSON.
struct GrantRecord {
  std::string kind, key, family, data;
  std::int64_t expires_ms = 0;
  bool consumed = false;
};

// The tables of the authorization server: clients, client-assertion `jti`s already used, revoked access tokens.
// Used inside a write transaction (Transaction::oauth_tables()), so that a check and its insert are atomic. Every
// row carries a tenant. Errors: kUnavailable on a database error.
class OAuthTables {
 public:
  virtual ~OAuthTables() = default;
  // Inserts a client; kConflict when the client_id is taken.
  virtual fhir::Result<void> add_client(TenantId tenant, const ClientRecord& client) = 0;
  // Whether there was such a client.
  virtual fhir::Result<bool> remove_client(TenantId tenant, const std::string& client_id) = 0;
  virtual fhir::Result<std::optional<ClientRecord>> client(TenantId tenant, const std::string& client_id) = 0;
  virtual fhir::Result<std::vector<ClientRecord>> clients(TenantId tenant) = 0;
  // Records the `jti` of a client assertion of `client_id`, kept until expires_ms. False when it was seen before
  // (a replay). Rows expired before now_ms are dropped on the way.
  virtual fhir::Result<bool> use_jti(TenantId tenant, const std::string& client_id, const std::string& jti,
                                     std::int64_t expires_ms, std::int64_t now_ms) = 0;
  // Records an access token's `jti` as revoked until expires_ms (its own expiry).
  virtual fhir::Result<void> revoke_token(TenantId tenant, const std::string& jti, std::int64_t expires_ms) = 0;
  // The revoked `jti`s that have not expired at now_ms.
  virtual fhir::Result<std::vector<std::string>> revoked_tokens(TenantId tenant, std::int64_t now_ms) = 0;

  // Inserts a grant, or replaces the one of the same kind and key. Grants expired before now_ms are dropped.
  virtual fhir::Result<void> put_grant(TenantId tenant, const GrantRecord& grant, std::int64_t now_ms) = 0;
  // The grant of that kind and key unless it has expired at now_ms (consumed ones too: see `consumed`).
  virtual fhir::Result<std::optional<GrantRecord>> find_grant(TenantId tenant, const std::string& kind,
                                                              const std::string& key, std::int64_t now_ms) = 0;
  // Marks the grant consumed and returns it as it was (consumed already = a reuse), atomically even across
  // servers; nullopt when there is none or it has expired.
  virtual fhir::Result<std::optional<GrantRecord>> consume_grant(TenantId tenant, const std::string& kind,
                                                                 const std::string& key, std::int64_t now_ms) = 0;
  // Marks every grant of the family consumed (a reused code or refresh token).
  virtual fhir::Result<void> revoke_grant_family(TenantId tenant, const std::string& family) = 0;
};

}  // namespace caduceus::resources
