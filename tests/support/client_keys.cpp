#include "client_keys.hpp"

#include <gtest/gtest.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "caduceus/fhir/json.hpp"
#include "caduceus/server/auth/keys.hpp"

namespace caduceus::test {
namespace {

// A big-number parameter of `key`, big-endian, left-padded to `width` bytes.
std::string bn_param(EVP_PKEY* key, const char* name, int width) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key, name, &bn);
  int n = std::max(width, BN_num_bytes(bn));
  std::string out(static_cast<std::size_t>(n), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), n);
  BN_free(bn);
  return out;
}

}  // namespace

std::string b64url(const std::string& bytes) {
  return server::auth::base64url_encode(bytes);
}

std::string unb64url(std::string text) {
  while (!text.empty() && text.back() == '=') text.pop_back();  // (padding is optional here)
  auto decoded = server::auth::base64url_decode(text);
  return decoded ? *decoded : std::string();
}

ClientKey make_client_key(const std::string& alg, const std::string& kid) {
  EVP_PKEY* key = alg == "ES384" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384")
                                 : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  ClientKey out{alg, kid, {}, {}};
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  out.private_pem.assign(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  if (alg == "ES384")
    out.jwk = R"({"kty":"EC","crv":"P-384","alg":"ES384","kid":")" + kid + R"(","x":")" +
              b64url(bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, 48)) + R"(","y":")" +
              b64url(bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, 48)) + R"("})";
  else
    out.jwk = R"({"kty":"RSA","alg":"RS384","kid":")" + kid + R"(","n":")" +
              b64url(bn_param(key, OSSL_PKEY_PARAM_RSA_N, 0)) + R"(","e":")" +
              b64url(bn_param(key, OSSL_PKEY_PARAM_RSA_E, 0)) + R"("})";
  EVP_PKEY_free(key);
  return out;
}

std::string jwks_of(std::initializer_list<const ClientKey*> keys) {
  std::string out = R"({"keys":[)";
  for (const ClientKey* k : keys) out += (out.back() == '[' ? "" : ",") + k->jwk;
  return out + "]}";
}

std::string random_jti() {
  unsigned char raw[12];
  RAND_bytes(raw, sizeof raw);
  return b64url(std::string(reinterpret_cast<char*>(raw), sizeof raw));
}

std::string sign_assertion(const ClientKey& key, const AssertionClaims& c) {
  jwt_t* jwt = nullptr;
  jwt_new(&jwt);
  jwt_add_grant(jwt, "iss", c.iss.c_str());
  jwt_add_grant(jwt, "sub", c.sub.c_str());
  jwt_add_grant(jwt, "aud", c.aud.c_str());
  jwt_add_grant(jwt, "jti", c.jti.c_str());
  jwt_add_grant_int(jwt, "exp", c.exp);
  jwt_add_header(jwt, "kid", key.kid.c_str());
  if (!c.jku.empty()) jwt_add_header(jwt, "jku", c.jku.c_str());
  jwt_set_alg(jwt, key.alg == "ES384" ? JWT_ALG_ES384 : JWT_ALG_RS384,
              reinterpret_cast<const unsigned char*>(key.private_pem.data()), static_cast<int>(key.private_pem.size()));
  char* text = jwt_encode_str(jwt);
  std::string out = text != nullptr ? text : "";
  std::free(text);
  jwt_free(jwt);
  return out;
}

std::string mint_access_token(const server::auth::SigningKey& key, const std::string& fhir_base,
                              const std::string& client_id, const TokenProfile& profile, std::int64_t lifetime) {
  const std::string origin = fhir_base.substr(0, fhir_base.size() - 5);  // without "/fhir"
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  fhir::json::Value c = fhir::json::Value::object();
  auto str = [](const std::string& s) { return fhir::json::Value::string(s); };
  c.set("iss", str(origin));
  c.set("aud", str(fhir_base));
  c.set("client_id", str(client_id));
  c.set("scope", str(profile.scope));
  c.set("iat", fhir::json::Value::number(std::to_string(now)));
  c.set("exp", fhir::json::Value::number(std::to_string(now + lifetime)));
  c.set("jti", str(random_jti()));
  if (!profile.role.empty()) {
    c.set("sub", str(profile.role + "-user"));
    c.set("role", str(profile.role));
    c.set("fhirUser", str(profile.fhir_user));
  }
  if (!profile.patient.empty()) c.set("patient", str(profile.patient));
  auto token = server::auth::sign_jwt(key, c);
  EXPECT_TRUE(token) << (token ? "" : token.error().issues.front().diagnostics);
  return token ? *token : std::string();
}

}  // namespace caduceus::test
