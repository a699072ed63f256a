#pragma once

// The building blocks of signing in: Argon2id password hashes (Debian's libargon2, the reference
// implementation) and TOTP one-time codes (RFC 6238, through liboath of the OATH Toolkit). No state.

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "caduceus/fhir/error.hpp"

namespace caduceus::server::auth {

// Argon2id cost parameters. The defaults are OWASP's (m = 19 MiB, t = 2, p = 1).
struct Argon2Params {
  std::uint32_t t_cost = 2;
  std::uint32_t m_cost_kib = 19 * 1024;
  std::uint32_t parallelism = 1;
};

// The encoded Argon2id hash of `password` with a fresh random 16-byte salt: "$argon2id$v=19$m=..,t=..,p=..$salt$hash"
// (the parameters travel with it). Errors: kInternal when libargon2 fails (e.g. out of memory).
fhir::Result<std::string> hash_password(std::string_view password, const Argon2Params& params = {});

// Whether `password` matches the encoded Argon2id hash (compared in constant time by libargon2). False for a
// malformed hash or another Argon2 variant.
bool verify_password(std::string_view encoded, std::string_view password);

// Whether an encoded hash was made with other parameters than `params` (then it is worth rehashing at sign-in).
bool hash_needs_update(std::string_view encoded, const Argon2Params& params);

// A random password for one-time use: 24 characters ("xxxx-xxxx-..."; letters and digits that cannot be
// confused: no 0/O, 1/l/I), from OpenSSL's random generator (about 100 bits).
std::string generate_password();

// ---- TOTP (RFC 6238) ----

enum class TotpAlgorithm { kSha1, kSha256, kSha512 };

struct TotpParams {
  unsigned digits = 6;
  unsigned step_seconds = 30;
  TotpAlgorithm algorithm = TotpAlgorithm::kSha1;  // what authenticator apps support everywhere
};

// A fresh random secret of `bytes` bytes (20 = 160 bits, as RFC 4226 recommends), raw.
std::string generate_totp_secret(std::size_t bytes = 20);

// RFC 4648 base32 without padding (what otpauth URIs carry), and back (case-insensitive, spaces and padding
// ignored; nullopt when it is not base32).
std::string base32_encode(std::string_view raw);
std::optional<std::string> base32_decode(std::string_view text);

// The code for the time `now` (seconds since the epoch). Errors: kInternal.
fhir::Result<std::string> totp_code(std::string_view secret, std::time_t now, const TotpParams& params = {});

// The time step (now / step_seconds, give or take `window` steps) whose code `code` is, or nullopt when it is
// none of them (or not `digits` digits). The comparison takes the same time whatever the code.
std::optional<std::int64_t> totp_match(std::string_view secret, std::string_view code, std::time_t now,
                                       unsigned window = 1, const TotpParams& params = {});

// For the raw `secret`: "otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30",
// the key URI format that authenticator apps scan as a QR code.
std::string otpauth_uri(std::string_view issuer, std::string_view account, std::string_view secret,
                        const TotpParams& params = {});

}  // namespace caduceus::server::auth
