#include "caduceus/server/config.hpp"

#include <boost/program_options.hpp>
#include <charconv>
#include <fstream>
#include <sstream>

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
    ("mllp", po::value(&c.mllp), "HL7 v2 MLLP listener HOST:PORT (off by default)")
    ("tls-cert", po::value(&c.tls_cert), "serve HTTPS with this certificate (PEM)")
    ("tls-key", po::value(&c.tls_key), "the private key of --tls-cert (PEM)")
    ("base-url", po::value(&c.base_url), "public FHIR base URL (default http://LISTEN/fhir)")
    ("threads", po::value(&c.threads)->default_value(c.threads), "I/O threads (0: one per core)")
    ("blocking-threads", po::value(&c.blocking_threads)->default_value(c.blocking_threads),
       "threads for requests that wait on a commit")
    ("body-limit", po::value(&c.body_limit)->default_value(c.body_limit), "largest request body in bytes")
    ("max-bundle-entries", po::value(&c.max_bundle_entries)->default_value(c.max_bundle_entries),
       "entries of a batch or transaction Bundle at most (beyond: 413)")
    ("db-readers", po::value(&c.readers)->default_value(c.readers),
       "pooled database read connections, the PostgreSQL connection pool (0: threads + 2)")
    ("read-timeout", po::value(&c.read_timeout_s)->default_value(c.read_timeout_s), "seconds to receive a whole request")
    ("idle-timeout", po::value(&c.idle_timeout_s)->default_value(c.idle_timeout_s), "seconds a keep-alive connection may idle")
    ("log-requests", po::value(&c.log_requests)->default_value(c.log_requests), "one JSON line per request on stdout")
    ("sync-full", po::value(&c.sync_full)->default_value(c.sync_full),
       "fsync every commit (SQLite synchronous=FULL); false trades durability on power loss for speed")
    ("search-index", po::value(&c.search_index)->default_value(c.search_index),
       "write the search index with every version and serve search over it (false: store only, search answers 501)")
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
  if (!c.mllp.empty())
    return fhir::fail(fhir::ErrorKind::kInvalid, "not-supported",
                      "--mllp: the HL7 v2 listener is not part of this build yet (see the HL7 v2 issue)");
  if (!c.tls_cert.empty() || !c.tls_key.empty())
    return fhir::fail(fhir::ErrorKind::kInvalid, "not-supported",
                      "--tls-cert/--tls-key: HTTPS is not part of this build yet (it comes with the security issue); "
                      "put a TLS-terminating proxy in front meanwhile");
  if (c.max_bundle_entries == 0)
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--max-bundle-entries must be positive");
  if (c.body_limit == 0) return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--body-limit must be positive");
  return out;
}

}  // namespace caduceus::server
