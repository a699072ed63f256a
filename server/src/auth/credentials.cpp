#include "caduceus/server/auth/credentials.hpp"

#include <argon2.h>
#include <liboath/oath.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "../release_memory.hpp"

namespace caduceus::server::auth {

namespace {

using fhir::ErrorKind;

constexpr std::uint32_t kSaltBytes = 16;
constexpr std::uint32_t kHashBytes = 32;

// Random bytes from OpenSSL's CSPRNG; throws if it cannot give them (it never fails once seeded).
std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("the random generator failed");
  return out;
}

// liboath's library initialisation (it keeps no state of ours), once per process.
bool oath_ready() {
  static const bool ready = oath_init() == OATH_OK;
  return ready;
}

int oath_flags(TotpAlgorithm algorithm) {
  switch (algorithm) {
    case TotpAlgorithm::kSha256: return OATH_TOTP_HMAC_SHA256;
    case TotpAlgorithm::kSha512: return OATH_TOTP_HMAC_SHA512;
    case TotpAlgorithm::kSha1: return 0;
  }
  return 0;
}

std::string_view algorithm_name(TotpAlgorithm algorithm) {
  switch (algorithm) {
    case TotpAlgorithm::kSha256: return "SHA256";
    case TotpAlgorithm::kSha512: return "SHA512";
    case TotpAlgorithm::kSha1: return "SHA1";
  }
  return "SHA1";
}

// Percent-encoding of a URI component (RFC 3986 unreserved characters kept).
std::string uri_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace

fhir::Result<std::string> hash_password(std::string_view password, const Argon2Params& params) {
  std::string salt;
  try {
    salt = random_bytes(kSaltBytes);
  } catch (const std::exception& e) {
    return fhir::fail(ErrorKind::kInternal, "exception", e.what());
  }
  std::string encoded(
      argon2_encodedlen(params.t_cost, params.m_cost_kib, params.parallelism, kSaltBytes, kHashBytes, Argon2_id), '\0');
  int rc = argon2id_hash_encoded(params.t_cost, params.m_cost_kib, params.parallelism, password.data(), password.size(),
                                 salt.data(), salt.size(), kHashBytes, encoded.data(), encoded.size());
  // An Argon2id hash or check allocates its memory cost (19 MiB) and frees it; tcmalloc would keep those pages (the
  // server 19 MiB larger after every sign-in peak). Hashing is rare and slow anyway: they go back at once.
  release_free_memory();
  if (rc != ARGON2_OK)
    return fhir::fail(ErrorKind::kInternal, "exception", std::string("Argon2id: ") + argon2_error_message(rc));
  encoded.resize(std::strlen(encoded.c_str()));
  return encoded;
}

bool verify_password(std::string_view encoded, std::string_view password) {
  if (!encoded.starts_with("$argon2id$")) return false;
  std::string text(encoded);  // NUL-terminated for libargon2
  bool ok = argon2id_verify(text.c_str(), password.data(), password.size()) == ARGON2_OK;
  release_free_memory();  // (as after a hash)
  return ok;
}

bool hash_needs_update(std::string_view encoded, const Argon2Params& params) {
  std::string expected = "$argon2id$v=19$m=" + std::to_string(params.m_cost_kib) +
                         ",t=" + std::to_string(params.t_cost) + ",p=" + std::to_string(params.parallelism) + "$";
  return !encoded.starts_with(expected);
}

std::string generate_password() {
  static constexpr std::string_view kAlphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";  // 56
  std::string out;
  while (out.size() < 24) {
    // Rejection sampling keeps every character equally likely.
    for (unsigned char byte : random_bytes(32)) {
      if (out.size() == 24) break;
      if (byte >= 224) continue;  // 224 = 4 * 56
      if (out.size() % 5 == 4) out.push_back('-');
      out.push_back(kAlphabet[byte % kAlphabet.size()]);
    }
  }
  return out;
}

std::string generate_totp_secret(std::size_t bytes) {
  return random_bytes(bytes);
}

std::string base32_encode(std::string_view raw) {
  oath_ready();
  char* out = nullptr;
  std::size_t length = 0;
  if (oath_base32_encode(raw.data(), raw.size(), &out, &length) != OATH_OK || out == nullptr) return {};
  std::unique_ptr<char, decltype(&std::free)> owned(out, &std::free);
  std::string text(out, length);
  while (!text.empty() && text.back() == '=') text.pop_back();
  return text;
}

std::optional<std::string> base32_decode(std::string_view text) {
  oath_ready();
  std::string clean;
  for (char c : text) {
    if (c == ' ' || c == '=' || c == '-') continue;
    clean.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  while (clean.size() % 8 != 0) clean.push_back('=');  // liboath wants the padding
  char* out = nullptr;
  std::size_t length = 0;
  if (oath_base32_decode(clean.data(), clean.size(), &out, &length) != OATH_OK) return std::nullopt;
  std::unique_ptr<char, decltype(&std::free)> owned(out, &std::free);
  return std::string(out == nullptr ? "" : out, out == nullptr ? 0 : length);
}

fhir::Result<std::string> totp_code(std::string_view secret, std::time_t now, const TotpParams& params) {
  if (!oath_ready()) return fhir::fail(ErrorKind::kInternal, "exception", "liboath did not initialise");
  char code[16] = {};
  if (params.digits < 6 || params.digits > 8)
    return fhir::fail(ErrorKind::kInternal, "exception", "TOTP codes have 6 to 8 digits");
  int rc = oath_totp_generate2(secret.data(), secret.size(), now, params.step_seconds, 0, params.digits,
                               oath_flags(params.algorithm), code);
  if (rc != OATH_OK) return fhir::fail(ErrorKind::kInternal, "exception", std::string("TOTP: ") + oath_strerror(rc));
  return std::string(code);
}

std::optional<std::int64_t> totp_match(std::string_view secret, std::string_view code, std::time_t now, unsigned window,
                                       const TotpParams& params) {
  if (!oath_ready() || code.size() != params.digits) return std::nullopt;
  for (char c : code)
    if (c < '0' || c > '9') return std::nullopt;
  // liboath computes each candidate of the window and asks us to compare: in constant time.
  struct Given {
    std::string_view code;
  } given{code};
  auto compare = [](void* handle, const char* candidate) -> int {
    const auto* g = static_cast<const Given*>(handle);
    if (std::strlen(candidate) != g->code.size()) return 1;
    return CRYPTO_memcmp(candidate, g->code.data(), g->code.size()) == 0 ? 0 : 1;
  };
  int position = 0;
  std::uint64_t counter = 0;
  int rc = oath_totp_validate4_callback(secret.data(), secret.size(), now, params.step_seconds, 0, params.digits,
                                        window, &position, &counter, oath_flags(params.algorithm), compare, &given);
  if (rc < 0) return std::nullopt;
  return static_cast<std::int64_t>(counter);
}

std::string otpauth_uri(std::string_view issuer, std::string_view account, std::string_view secret,
                        const TotpParams& params) {
  std::string label = uri_encode(issuer) + ":" + uri_encode(account);
  return "otpauth://totp/" + label + "?secret=" + base32_encode(secret) + "&issuer=" + uri_encode(issuer) +
         "&algorithm=" + std::string(algorithm_name(params.algorithm)) + "&digits=" + std::to_string(params.digits) +
         "&period=" + std::to_string(params.step_seconds);
}

}  // namespace caduceus::server::auth
