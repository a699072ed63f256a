#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"

typedef struct evp_pkey_st EVP_PKEY;

namespace caduceus::server::auth {

using PKey = std::shared_ptr<EVP_PKEY>;

// A key pair that signs access tokens: ES256 (EC P-256) or RS256 (RSA 2048).
struct SigningKey {
  std::string kid;  // the base64url SHA-256 of its public key (DER SubjectPublicKeyInfo), shortened
  std::string alg;  // "ES256" or "RS256"
  PKey key;
  std::string private_pem, public_pem;
};

// The server's signing keys, one PEM file each under DATA_DIR/keys/ (<kid>.pem, mode 0600), and the file
// DATA_DIR/keys/current naming the key that signs. Older keys stay there (and in the JWKS, so tokens they signed
// still verify) until removed.
class KeyRing {
 public:
  // Loads the keys; when there are none, generates an ES256 key first. Errors: kUnavailable when the folder or a
  // file cannot be read or written, kInvalid for a key file that is not a usable private key.
  static fhir::Result<KeyRing> open(const std::filesystem::path& data_dir);
  // Generates a new key of `alg` (ES256 or RS256) and makes it the current one. Returns its kid.
  static fhir::Result<std::string> rotate(const std::filesystem::path& data_dir, std::string_view alg);
  // Deletes a key file. Errors: kNotFound, kInvalid for the current key (rotate first).
  static fhir::Result<void> remove(const std::filesystem::path& data_dir, std::string_view kid);

  const SigningKey& current() const { return keys_.at(current_); }
  const SigningKey* find(std::string_view kid) const;
  const std::vector<SigningKey>& keys() const noexcept { return keys_; }
  // {"keys":[...]}: the public keys, with kid, alg and use "sig".
  fhir::json::Value jwks() const;

 private:
  std::vector<SigningKey> keys_;
  std::size_t current_ = 0;
};

// base64url without padding (RFC 7515), through OpenSSL's base64.
std::string base64url_encode(std::string_view bytes);
// nullopt-like error (kInvalid) on bad input.
fhir::Result<std::string> base64url_decode(std::string_view text);
// n random bytes from OpenSSL's generator, base64url-encoded.
std::string random_token(std::size_t bytes);

// A client secret's salted hash for storage: "pbkdf2-sha256$ITERATIONS$SALT$HASH" (OpenSSL PKCS5_PBKDF2_HMAC).
std::string hash_secret(std::string_view secret);
// Whether `secret` matches a hash made by hash_secret (compared in constant time).
bool verify_secret(std::string_view secret, std::string_view hash);

// The public JWK of a key ({"kty":"EC","crv":"P-256","x":..,"y":..} or {"kty":"RSA","n":..,"e":..}).
fhir::Result<fhir::json::Value> public_jwk(EVP_PKEY* key);
// The public key of a JWK (EC P-256, P-384, P-521 or RSA), built with OpenSSL's OSSL_PARAM API. Errors: kInvalid.
fhir::Result<PKey> key_from_jwk(const fhir::json::Value& jwk);
// The PEM SubjectPublicKeyInfo of a key.
fhir::Result<std::string> public_pem(EVP_PKEY* key);

// Signs a JWT with `claims` (a JSON object) and a `kid` header, by libjwt. Errors: kInternal.
fhir::Result<std::string> sign_jwt(const SigningKey& key, const fhir::json::Value& claims);

// A JWT's header, read without checking the signature (to pick the key).
struct JwtHeader {
  std::string alg, kid;
  std::string jku;  // the JWK Set URL the token names, or empty
};
// Errors: kInvalid when it is not a JWT.
fhir::Result<JwtHeader> peek_jwt_header(const std::string& token);
// Verifies a JWT's signature with a public key (PEM) by libjwt, requiring the header's alg to be `alg`
// (never "none"); returns its claims. Errors: kInvalid when the signature or the alg does not hold.
fhir::Result<fhir::json::Value> verify_jwt(const std::string& token, const std::string& public_pem,
                                           std::string_view alg);

}  // namespace caduceus::server::auth
