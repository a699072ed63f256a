// Backend Services clients in tests: key pairs made with OpenSSL, their public halves as JWKs, and client
// assertions (RFC 7523) signed with libjwt.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

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

}  // namespace caduceus::test
