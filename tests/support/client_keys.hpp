// Backend Services clients in tests: key pairs made with OpenSSL, their public halves as JWKs, and client
// assertions (RFC 7523) signed with libjwt; and access tokens minted with the server's own key.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

namespace caduceus::server::auth {
struct SigningKey;
}

namespace caduceus::test {

// base64url without padding (RFC 7515 appendix C).
std::string b64url(const std::string& bytes);
// Its inverse (padding optional).
std::string unb64url(std::string text);

// A client's key pair (ES384 on P-384, or RS384 on 2048-bit RSA); `jwk` is its public half, one JWK.
struct ClientKey {
  std::string alg, kid, private_pem, jwk;
  // The JWK Set holding only this key.
  std::string jwks() const { return R"({"keys":[)" + jwk + "]}"; }
};

ClientKey make_client_key(const std::string& alg, const std::string& kid);

// A JWK Set of these keys, in order.
std::string jwks_of(std::initializer_list<const ClientKey*> keys);

// 16 random base64url characters.
std::string random_jti();

struct AssertionClaims {
  std::string iss, sub, aud, jti;
  std::int64_t exp = 0;
  std::string jku;  // when not empty, goes into the header
};

// A client assertion signed with `key` (its kid in the header).
std::string sign_assertion(const ClientKey& key, const AssertionClaims& claims);

// Who an access token speaks for (the shared token-claim contract): its scopes, and for a user the role,
// fhirUser ("Practitioner/ID", "Patient/ID") and launch patient (empty: none).
struct TokenProfile {
  std::string scope, role, fhir_user, patient;
};

// An access token for `profile` as the server at `fhir_base` ("http://HOST:PORT/fhir") issues them: iss (its
// origin), aud, client_id, scope, iat, exp (now + lifetime), a random jti, and for a role sub ("ROLE-user"), role
// and fhirUser; patient when the profile has one. Signed with `key` (the server's current key, from the KeyRing
// of its data folder). Empty (and a test failure) when it cannot be signed.
std::string mint_access_token(const server::auth::SigningKey& key, const std::string& fhir_base,
                              const std::string& client_id, const TokenProfile& profile, std::int64_t lifetime = 3600);

}  // namespace caduceus::test
