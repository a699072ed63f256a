#pragma once

// The JWK Sets of confidential-asymmetric clients registered by URL (--jwks-url), fetched over HTTPS and cached
// per client (SMART Backend Services: the server may fetch a client's jwks_uri and cache it; a `kid` it does not
// know makes it fetch again, at most once per refetch interval).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "caduceus/fhir/error.hpp"

namespace caduceus::server::auth {

struct HttpsFetchLimits {
  std::chrono::milliseconds timeout = std::chrono::seconds(5);  // connect + handshake + request + response
  std::size_t max_bytes = 256 * 1024;                           // the response body at most
};

// GET an https URL (https://HOST[:PORT][/PATH]) with Beast over OpenSSL: the server's certificate is verified with
// the system trust store (OpenSSL's default verify paths, so SSL_CERT_FILE / SSL_CERT_DIR are honoured) and must
// name HOST (a DNS name, or an IPv4 address in subjectAltName); TLS 1.2 at least; no redirect is followed (a 3xx
// is an error); anything but 200 is an error. Blocking, bounded by `limits.timeout`. Errors: kInvalid with a
// sentence saying what failed.
fhir::Result<std::string> https_get(const std::string& url, const HttpsFetchLimits& limits = {});

// A client's JWK Set (its JSON text), as last fetched from its URL.
class JwksUrlCache {
 public:
  using Fetch = std::function<fhir::Result<std::string>(const std::string& url)>;
  // cache_s: how long a fetched set is used before it is fetched again; refetch_s: the least time between two
  // fetches for one client (a kid not in the set, or a failed fetch, does not trigger more).
  JwksUrlCache(std::int64_t cache_s, std::int64_t refetch_s, Fetch fetch = {});

  // The JWK Set of `client_id` published at `url`, for an assertion whose header names `kid` (empty: none).
  // Fetches when nothing is cached for (client, url), when the cached set is older than cache_s, or when `kid` is
  // not in it and the last fetch is at least refetch_s old. Within refetch_s of a failed fetch, that failure is
  // returned again without fetching. Thread-safe; a fetch holds no lock of other clients.
  fhir::Result<std::string> jwks_for(const std::string& client_id, const std::string& url, const std::string& kid);

 private:
  struct Entry {
    std::string url, jwks, error;  // jwks: the last good set; error: the last fetch's failure, or empty
    std::chrono::steady_clock::time_point fetched, attempted;
    bool has_jwks = false, attempted_once = false;
    std::shared_ptr<std::mutex> fetching = std::make_shared<std::mutex>();  // one fetch at a time per client
  };
  std::int64_t cache_s_, refetch_s_;
  Fetch fetch_;
  std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace caduceus::server::auth
