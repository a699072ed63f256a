#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::adapters::hl7v2 {
struct Destination;
}

namespace caduceus::server {

// Everything `caduceus serve` can be told. Each option also comes from CADUCEUS_<NAME> in the environment and
// from a config file (`--config FILE`, lines `name = value`); the command line wins over the environment, which
// wins over the file.
struct ServeConfig {
  std::string listen = "127.0.0.1:8080";
  std::string db = "sqlite:var/caduceus.db";
  // PostgreSQL: where reads and searches may go when stale reads are acceptable (StoreOptions::read_url).
  std::string db_read;
  std::string mllp;                      // empty: off
  std::size_t mllp_max_frame = 1 << 20;  // bytes of one MLLP frame at most (larger: AR)
  int mllp_idle_timeout_s = 300;         // an MLLP connection idle this long is closed
  std::string hl7_timezone = "UTC";      // what an HL7 v2 time without an offset is read in (IANA name or +hh:mm)
  // HL7 v2 outbound destinations, each NAME=HOST:PORT:WHAT[:APP[:FACILITY]] (see adapters/hl7v2/outbound_store.hpp);
  // one value may hold several separated by spaces. Empty: no outbound messages.
  std::vector<std::string> hl7_out;
  int hl7_out_attempts = 8;       // failed deliveries after which a message is dead-lettered
  int hl7_out_backoff_ms = 1000;  // wait after the first failed delivery; doubled after each further one
  std::string tls_cert, tls_key;
  // Mutual TLS: a PEM CA bundle that client certificates are verified against; needs tls_cert. Empty: off.
  std::string tls_client_ca;
  std::string base_url;     // empty: http://LISTEN/fhir with the bound port
  std::size_t threads = 0;  // I/O threads; 0 = one per core
  std::size_t blocking_threads = 64;
  std::size_t body_limit = 16 * 1024 * 1024;
  std::size_t readers = 0;  // pooled database readers; 0 = threads + 2
  int read_timeout_s = 30;
  int idle_timeout_s = 60;
  bool log_requests = true;
  bool sync_full = true;
  bool search_index = true;                 // write search index rows with every version and serve search over them
  std::size_t max_conditional_delete = 1;   // matches a conditional delete may delete (more: 412)
  std::size_t max_bundle_entries = 10'000;  // entries of a batch or transaction Bundle
  std::string data_dir = "var";             // files beside the database: the token signing keys (keys/)
  std::string auth = "off";                 // off, or smart: a SMART Bearer token on every /fhir request
  int system_token_lifetime_s = 300;        // access tokens of Backend Services, seconds (at most 300)
  int user_token_lifetime_s = 3600;         // access tokens of users (SMART App Launch), seconds
  int refresh_token_lifetime_s = 30 * 24 * 3600;  // refresh tokens of offline_access, seconds
  std::string policy;                             // access policy JSON file (roles' rules); empty: the built-in one
  int jwks_cache_lifetime_s = 300;   // a JWK Set fetched from a client's --jwks-url is used this long, seconds
  int jwks_refetch_interval_s = 30;  // least seconds between two fetches of one client's JWK Set
  // Users (server/auth): roles that need a second factor, and the slow-down and lock after failed sign-ins.
  std::string mfa_roles = "physician,nurse,technician,admin";
  std::int64_t signin_slow_after = 3;
  std::int64_t signin_lock_after = 10;
  std::int64_t signin_lock_seconds = 900;

  std::string host() const;
  std::uint16_t port() const;
};

struct ParsedCommand {
  ServeConfig config;
  bool help = false;
  std::string help_text;
};

// Parses `serve` arguments (argv after the word `serve`), the environment and the config file.
// Errors: kInvalid with a message naming the bad option.
fhir::Result<ParsedCommand> parse_serve_args(const std::vector<std::string>& args);

// The destinations of --hl7-out (each checked; names unique). Error kInvalid.
fhir::Result<std::vector<adapters::hl7v2::Destination>> hl7_out_destinations(const ServeConfig& c);

// Splits "HOST:PORT" ("[::1]:8080" for IPv6). Error kInvalid.
fhir::Result<std::pair<std::string, std::uint16_t>> split_host_port(const std::string& text);

}  // namespace caduceus::server
