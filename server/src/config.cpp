#include "caduceus/server/config.hpp"

#include <boost/program_options.hpp>
#include <charconv>
#include <fstream>
#include <sstream>

#include "caduceus/adapters/hl7v2/outbound_store.hpp"
#include "caduceus/adapters/hl7v2/time_zone.hpp"
#include "caduceus/server/auth/users.hpp"

namespace caduceus::server {

namespace po = boost::program_options;

fhir::Result<std::pair<std::string, std::uint16_t>> split_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size())
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "'" + text + "' is not HOST:PORT");
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  auto port_text = std::string_view(text).substr(colon + 1);
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port > 65535 || host.empty())
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "'" + text + "' is not HOST:PORT");
  return std::pair{host, static_cast<std::uint16_t>(port)};
}

fhir::Result<std::vector<adapters::hl7v2::Destination>> hl7_out_destinations(const ServeConfig& c) {
  std::vector<adapters::hl7v2::Destination> out;
  for (const std::string& value : c.hl7_out) {
    std::istringstream words(value);
    std::string word;
    while (words >> word) {
      auto d = adapters::hl7v2::parse_destination(word);
      if (!d) return std::unexpected(d.error());
      for (const auto& e : out)
        if (e.name == d->name)
          return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                            "--hl7-out: the name '" + d->name + "' is used twice");
      out.push_back(std::move(*d));
    }
  }
  return out;
}

std::string ServeConfig::host() const {
  auto hp = split_host_port(listen);
  return hp ? hp->first : "127.0.0.1";
}
std::uint16_t ServeConfig::port() const {
  auto hp = split_host_port(listen);
  return hp ? hp->second : 8080;
}

fhir::Result<ParsedCommand> parse_serve_args(const std::vector<std::string>& args) {
  ParsedCommand out;
  ServeConfig& c = out.config;
  std::string config_file;
  po::options_description desc(
      "caduceus serve: run the FHIR server\n\nOptions (each also CADUCEUS_<NAME>, and "
      "`name = value` in a --config file)");
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("config", po::value(&config_file), "read options from FILE (lines `name = value`)")
    ("listen", po::value(&c.listen)->default_value(c.listen), "HTTP address HOST:PORT (port 0 picks a free port)")
    ("db", po::value(&c.db)->default_value(c.db),
       "database: sqlite:PATH, sqlite::memory: or postgresql://USER@HOST:PORT/DB (any libpq URI)")
    ("mllp", po::value(&c.mllp), "HL7 v2 MLLP listener HOST:PORT (off by default; port 0 picks a free port)")
    ("mllp-max-frame", po::value(&c.mllp_max_frame)->default_value(c.mllp_max_frame),
       "largest HL7 v2 message over MLLP in bytes (larger: answered AR)")
    ("mllp-idle-timeout", po::value(&c.mllp_idle_timeout_s)->default_value(c.mllp_idle_timeout_s),
       "seconds an MLLP connection may idle before it is closed")
    ("hl7-timezone", po::value(&c.hl7_timezone)->default_value(c.hl7_timezone),
       "time zone of HL7 v2 times without an offset: an IANA name (Europe/Paris) or a UTC offset (+hh:mm)")
    ("hl7-out", po::value(&c.hl7_out)->composing(),
       "HL7 v2 outbound destination NAME=HOST:PORT:WHAT[:APP[:FACILITY]], WHAT a comma list of orm, oml, rde, oru "
       "(repeatable; space-separated in one value)")
    ("hl7-out-attempts", po::value(&c.hl7_out_attempts)->default_value(c.hl7_out_attempts),
       "failed deliveries of an outbound HL7 v2 message after which it is dead-lettered")
    ("hl7-out-backoff-ms", po::value(&c.hl7_out_backoff_ms)->default_value(c.hl7_out_backoff_ms),
       "milliseconds before retrying a failed outbound HL7 v2 delivery (doubled each time, 5 minutes at most)")
    ("tls-cert", po::value(&c.tls_cert), "serve HTTPS with this certificate (PEM)")
    ("tls-key", po::value(&c.tls_key), "the private key of --tls-cert (PEM, unencrypted)")
    ("tls-client-ca", po::value(&c.tls_client_ca),
       "mutual TLS: ask clients for a certificate and verify it against these CAs (PEM bundle); needs --tls-cert. "
       "tls-client-auth clients get certificate-bound tokens (see README, Mutual TLS)")
    ("mfa-roles", po::value(&c.mfa_roles)->default_value(c.mfa_roles),
       "roles whose users sign in with a TOTP code too (comma-separated; empty: none)")
    ("signin-slow-after", po::value(&c.signin_slow_after)->default_value(c.signin_slow_after),
       "failed sign-ins in a row after which each next attempt must wait (1 s, doubling, 30 s at most)")
    ("signin-lock-after", po::value(&c.signin_lock_after)->default_value(c.signin_lock_after),
       "failed sign-ins in a row that lock the account")
    ("signin-lock-seconds", po::value(&c.signin_lock_seconds)->default_value(c.signin_lock_seconds),
       "how long a locked account stays locked")
    ("base-url", po::value(&c.base_url), "public FHIR base URL (default http://LISTEN/fhir)")
    ("threads", po::value(&c.threads)->default_value(c.threads), "I/O threads (0: one per core)")
    ("blocking-threads", po::value(&c.blocking_threads)->default_value(c.blocking_threads),
       "threads for requests that wait on a commit")
    ("body-limit", po::value(&c.body_limit)->default_value(c.body_limit), "largest request body in bytes")
    ("max-bundle-entries", po::value(&c.max_bundle_entries)->default_value(c.max_bundle_entries),
       "entries of a batch or transaction Bundle at most (beyond: 413)")
    ("db-read", po::value(&c.db_read)->default_value(c.db_read),
       "PostgreSQL: a standby (libpq URI) for reads by id, searches and history, when they may be a little behind "
       "the primary; writes stay on --db (empty: everything on --db)")
    ("db-readers", po::value(&c.readers)->default_value(c.readers),
       "pooled database read connections, the PostgreSQL connection pool (0: threads + 2)")
    ("read-timeout", po::value(&c.read_timeout_s)->default_value(c.read_timeout_s), "seconds to receive a whole request")
    ("idle-timeout", po::value(&c.idle_timeout_s)->default_value(c.idle_timeout_s), "seconds a keep-alive connection may idle")
    ("log-requests", po::value(&c.log_requests)->default_value(c.log_requests), "one JSON line per request on stdout")
    ("sync-full", po::value(&c.sync_full)->default_value(c.sync_full),
       "fsync every commit (SQLite synchronous=FULL); false trades durability on power loss for speed")
    ("search-index", po::value(&c.search_index)->default_value(c.search_index),
       "write the search index with every version and serve search over it (false: store only, search answers 501)")
    ("data-dir", po::value(&c.data_dir)->default_value(c.data_dir),
       "folder for files beside the database: the token signing keys (DATA_DIR/keys)")
    ("auth", po::value(&c.auth)->default_value(c.auth),
       "off, or smart: every /fhir request but metadata needs a SMART Bearer token (see README, SMART on FHIR)")
    ("system-token-lifetime", po::value(&c.system_token_lifetime_s)->default_value(c.system_token_lifetime_s),
       "seconds a Backend Services access token lives (1 to 300)")
    ("user-token-lifetime", po::value(&c.user_token_lifetime_s)->default_value(c.user_token_lifetime_s),
       "seconds an access token of a signed-in user lives (SMART App Launch)")
    ("refresh-token-lifetime", po::value(&c.refresh_token_lifetime_s)->default_value(c.refresh_token_lifetime_s),
       "seconds an offline_access refresh token lives (rotated at each use)")
    ("jwks-cache-lifetime", po::value(&c.jwks_cache_lifetime_s)->default_value(c.jwks_cache_lifetime_s),
       "seconds a JWK Set fetched from a client's --jwks-url is used before it is fetched again")
    ("jwks-refetch-interval", po::value(&c.jwks_refetch_interval_s)->default_value(c.jwks_refetch_interval_s),
       "least seconds between two fetches of one client's --jwks-url (an unknown kid or a failure refetches no sooner)")
    ("policy", po::value(&c.policy)->default_value(c.policy),
       "access policy JSON file: what each role may see (empty: the built-in hospital rules; see README)")
    ("max-conditional-delete", po::value(&c.max_conditional_delete)->default_value(c.max_conditional_delete),
       "resources one conditional delete (DELETE [type]?criteria) may delete; more matches answer 412");
  // clang-format on
  std::ostringstream help;
  help << desc;
  out.help_text = help.str();
  try {
    po::variables_map vm;
    std::vector<const char*> argv{"serve"};
    for (const auto& a : args) argv.push_back(a.c_str());
    po::store(po::parse_command_line(static_cast<int>(argv.size()), argv.data(), desc), vm);
    // Environment: CADUCEUS_DB -> db, CADUCEUS_TLS_CERT -> tls-cert.
    po::store(po::parse_environment(desc,
                                    [&](const std::string& name) -> std::string {
                                      if (!name.starts_with("CADUCEUS_")) return {};
                                      std::string opt = name.substr(9);
                                      for (char& ch : opt) ch = ch == '_' ? '-' : static_cast<char>(std::tolower(ch));
                                      if (opt == "help") return {};
                                      return desc.find_nothrow(opt, false) ? opt : std::string();
                                    }),
              vm);
    if (vm.count("config")) {
      std::ifstream in(vm["config"].as<std::string>());
      if (!in)
        return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                          "cannot read the config file '" + vm["config"].as<std::string>() + "'");
      po::store(po::parse_config_file(in, desc), vm);
    }
    po::notify(vm);
    out.help = vm.count("help") > 0;
  } catch (const std::exception& e) {
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", e.what());
  }
  if (out.help) return out;
  if (auto hp = split_host_port(c.listen); !hp) return std::unexpected(hp.error());
  if (!c.mllp.empty()) {
    if (auto hp = split_host_port(c.mllp); !hp)
      return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--mllp: '" + c.mllp + "' is not HOST:PORT");
  }
  if (c.mllp_max_frame < 64) return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--mllp-max-frame must be >= 64");
  if (c.mllp_idle_timeout_s <= 0)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--mllp-idle-timeout must be positive");
  if (auto tz = adapters::hl7v2::TimeZone::parse(c.hl7_timezone); !tz)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--hl7-timezone: " + tz.error().issues.front().diagnostics);
  if (auto d = hl7_out_destinations(c); !d) return std::unexpected(d.error());
  if (c.hl7_out_attempts < 1)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--hl7-out-attempts must be >= 1");
  if (c.hl7_out_backoff_ms < 1)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--hl7-out-backoff-ms must be positive");
  if (c.tls_cert.empty() != c.tls_key.empty())
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--tls-cert and --tls-key go together");
  if (!c.tls_client_ca.empty() && c.tls_cert.empty())
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--tls-client-ca needs HTTPS (--tls-cert and --tls-key)");
  if (c.auth != "off" && c.auth != "smart")
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--auth takes off or smart, not '" + c.auth + "'");
  if (auto hp = split_host_port(c.listen); hp && c.auth == "off") {
    const std::string& host = hp->first;
    if (host != "localhost" && host != "::1" && !host.starts_with("127."))
      return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                        "--auth off opens the FHIR API to anyone who can reach it: it is for development on a "
                        "loopback address only (--listen 127.0.0.1:PORT); to listen on " +
                            c.listen + ", start with --auth smart");
  }
  if (c.system_token_lifetime_s < 1 || c.system_token_lifetime_s > 300)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--system-token-lifetime must be 1 to 300 seconds");
  if (c.user_token_lifetime_s < 1 || c.refresh_token_lifetime_s < 1)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                      "--user-token-lifetime and --refresh-token-lifetime must be at least 1 second");
  if (c.jwks_cache_lifetime_s < 0 || c.jwks_refetch_interval_s < 0)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                      "--jwks-cache-lifetime and --jwks-refetch-interval must be at least 0 seconds");
  if (auto roles = auth::parse_roles(c.mfa_roles); !roles)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--mfa-roles: " + roles.error().issues[0].diagnostics);
  if (c.signin_lock_after <= 0 || c.signin_slow_after < 0 || c.signin_lock_seconds <= 0)
    return fhir::fail(
        fhir::ErrorKind::kInvalid, "invalid",
        "--signin-lock-after and --signin-lock-seconds must be positive, --signin-slow-after not negative");
  if (c.max_bundle_entries == 0)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--max-bundle-entries must be positive");
  if (c.body_limit == 0) return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--body-limit must be positive");
  return out;
}

}  // namespace caduceus::server
