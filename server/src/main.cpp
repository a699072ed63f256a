// caduceus: everything is constructed here and passed down; nothing below main keeps global state.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bundle.hpp"
#include "caduceus/adapters/hl7v2/inbound.hpp"
#include "caduceus/adapters/hl7v2/outbound_store.hpp"
#include "caduceus/adapters/mllp.hpp"
#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/thread_name.hpp"
#include "caduceus/resources/custom_search.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/resources/structure_checker.hpp"
#include "caduceus/server/auth/admin.hpp"
#include "caduceus/server/auth/admin_cli.hpp"
#include "caduceus/server/auth/smart_auth.hpp"
#include "caduceus/server/auth/users.hpp"
#include "caduceus/server/config.hpp"
#include "caduceus/server/http_server.hpp"
#include "caduceus/server/metrics.hpp"
#include "caduceus/server/migrate.hpp"
#include "caduceus/server/request_log.hpp"
#include "caduceus/server/router.hpp"
#include "hl7_monitor.hpp"

namespace {

using namespace caduceus;

constexpr const char* kUsage =
    "Caduceus: a FHIR R4 server\n"
    "\n"
    "Usage: caduceus COMMAND [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  serve      run the FHIR server (caduceus serve --help lists its options)\n"
    "  import     load transaction/batch Bundle files and NDJSON files into the store (caduceus import --help)\n"
    "  admin      SMART clients and token signing keys (caduceus admin --help)\n"
    "  migrate    copy a whole store to another database, SQLite <-> PostgreSQL (caduceus migrate --help)\n"
    "  version    print the version\n"
    "  admin user add|list|disable|enable|totp   manage the accounts that sign in (caduceus admin user --help)\n";

constexpr const char* kImportUsage =
    "Usage: caduceus import [--db URL] [--search-index BOOL] [--sync-full BOOL] [--chunk N] [--jobs N] PATH...\n"
    "\n"
    "Loads each PATH into the store named by --db (default sqlite:var/caduceus.db), through the same code as\n"
    "POST [base] with a Bundle:\n"
    "  *.ndjson   one resource per line; a resource with an id is written with that id (PUT), one without gets a\n"
    "             new id (POST); lines go in transactions of --chunk lines (default 500), and a chunk that fails is\n"
    "             written again entry by entry (batch), so that only the bad lines are left out\n"
    "  otherwise  a JSON Bundle of type transaction or batch\n"
    "Prints the resources written by type and every error (file and line, or file and Bundle entry); exits 1 when\n"
    "there was any error. Custom SearchParameters are not indexed by import (run $reindex after).\n"
    "--jobs N files are read and written N at a time (default: four per core); a file that fails as a whole is\n"
    "tried once more, alone, after the others (it may refer to what a later file creates). On a terminal a\n"
    "progress line shows files, resources and resources per second. Into an empty store (SQLite or PostgreSQL),\n"
    "the search index's value indexes are built once, after the last file (a store stopped before then builds\n"
    "them when it is next opened). Everything written is on disk when it returns (PostgreSQL: its commits do not\n"
    "wait for the disk one by one, its end waits for all of them).\n";

// The progress line of `caduceus import` on a terminal (stderr): files done, resources written, their rate.
// Silent when stderr is not a terminal. Called from several workers.
class Progress {
 public:
  explicit Progress(std::size_t files) : files_(files), tty_(isatty(2) != 0) {}

  void file_done(std::int64_t resources) {
    std::lock_guard lock(mutex_);
    ++done_;
    resources_ += resources;
    if (tty_) draw();
  }

  void finish() {
    std::lock_guard lock(mutex_);
    if (tty_ && done_ > 0) std::cerr << "\n";
  }

 private:
  void draw() {
    constexpr std::size_t kWidth = 30;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::size_t filled = files_ == 0 ? kWidth : done_ * kWidth / files_;
    std::cerr << "\r[" << std::string(filled, '#') << std::string(kWidth - filled, ' ') << "] " << done_ << "/"
              << files_ << " files, " << resources_ << " resources, "
              << static_cast<std::int64_t>(seconds > 0 ? static_cast<double>(resources_) / seconds : 0.0)
              << " resources/s " << std::flush;
  }

  std::mutex mutex_;
  std::size_t files_, done_ = 0;
  std::int64_t resources_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

void print_error(const fhir::Error& e) {
  for (const auto& issue : e.issues) std::cerr << "caduceus: " << issue.diagnostics << "\n";
}

int serve(const std::vector<std::string>& args) {
  auto parsed = server::parse_serve_args(args);
  if (!parsed) {
    print_error(parsed.error());
    std::cerr << "Run `caduceus serve --help` for the options.\n";
    return 2;
  }
  if (parsed->help) {
    std::cout << parsed->help_text;
    return 0;
  }
  const server::ServeConfig& config = parsed->config;
  std::size_t threads = config.threads != 0 ? config.threads : std::max(1u, std::thread::hardware_concurrency());

  auto definitions = resources::Definitions::load(conformance::r4_model_json());
  if (!definitions) {
    print_error(definitions.error());
    return 1;
  }
  resources::StructureChecker checker(**definitions);
  // Search index rows are written only when asked for, until search itself is served (see README, Status).
  // With it, custom SearchParameters and $reindex too.
  std::unique_ptr<resources::ActiveSearchParameters> active;
  if (config.search_index) {
    auto registry = resources::SearchParameterRegistry::load(conformance::r4_search_parameters_json(),
                                                             conformance::r4_compartments_json());
    if (!registry) {
      print_error(registry.error());
      return 1;
    }
    auto created = resources::ActiveSearchParameters::create(**definitions, *registry);
    if (!created) {
      print_error(created.error());
      return 1;
    }
    active = std::move(*created);
  }

  resources::StoreOptions store_options;
  store_options.readers = config.readers != 0 ? config.readers : threads + 2;
  store_options.synchronous_full = config.sync_full;
  store_options.read_url = config.db_read;
  auto store = resources::open_store(config.db, store_options);
  if (!store) {
    print_error(store.error());
    return 1;
  }
  // HL7 v2 out (--hl7-out): FHIR writes go through a store that queues the messages they yield, in the same
  // transaction; the sender threads deliver them once the server listens.
  std::unique_ptr<adapters::hl7v2::OutboundService> hl7_out;
  resources::Store* data_store = store->get();
  if (!config.hl7_out.empty()) {
    adapters::hl7v2::SenderOptions sender_options;
    sender_options.max_attempts = config.hl7_out_attempts;
    sender_options.backoff_initial = std::chrono::milliseconds(config.hl7_out_backoff_ms);
    hl7_out = std::make_unique<adapters::hl7v2::OutboundService>(**store, *server::hl7_out_destinations(config),
                                                                 sender_options);  // checked by parse_serve_args
    data_store = &hl7_out->store();
  }
  // The accounts that sign in; the first start creates the administrator.
  server::auth::UserDirectoryOptions user_options;
  user_options.mfa_roles = *server::auth::parse_roles(config.mfa_roles);  // checked by parse_serve_args
  user_options.slow_after = config.signin_slow_after;
  user_options.lock_after = config.signin_lock_after;
  user_options.lock_duration = std::chrono::seconds(config.signin_lock_seconds);
  server::auth::UserDirectory users(**store, user_options);  // the first administrator: once listening
  std::optional<resources::Repository> repository;
  std::unique_ptr<resources::Reindexer> reindexer;
  if (active) {
    repository.emplace(*data_store, **definitions, checker, *active);
    reindexer = std::make_unique<resources::Reindexer>(*data_store, *active);
    // The custom SearchParameters stored before come back; unfinished reindex jobs go on.
    if (auto started = reindexer->start(); !started) {
      print_error(started.error());
      return 1;
    }
  } else {
    repository.emplace(*data_store, **definitions, checker);
  }

  server::Metrics metrics;
  server::RequestLog log(config.log_requests);
  // HL7 v2 over MLLP (--mllp): made below, once the address is known; its counters go to /metrics.
  std::optional<adapters::hl7v2::InboundProcessor> hl7;
  auto render_metrics = [&metrics, &hl7_out, &hl7] {
    return metrics.render() + (hl7 ? hl7->metrics() : "") + (hl7_out ? hl7_out->metrics() : "");
  };
  // SMART on FHIR (--auth smart): the authorization server's endpoints, and the router's Authorizer.
  std::unique_ptr<server::auth::SmartAuth> smart;
  if (config.auth == "smart") {
    auto keys = server::auth::KeyRing::open(config.data_dir);
    if (!keys) {
      print_error(keys.error());
      return 1;
    }
    server::auth::SmartOptions smart_options;
    smart_options.system_token_lifetime_s = config.system_token_lifetime_s;
    smart_options.users = &users;  // SMART App Launch
    smart_options.user_token_lifetime_s = config.user_token_lifetime_s;
    smart_options.offline_token_lifetime_s = config.refresh_token_lifetime_s;
    smart_options.mutual_tls = !config.tls_client_ca.empty();
    smart_options.jwks_cache_s = config.jwks_cache_lifetime_s;
    smart_options.jwks_refetch_s = config.jwks_refetch_interval_s;
    if (!config.policy.empty()) {
      auto policy = server::auth::AccessPolicy::load(config.policy);
      if (!policy) {
        print_error(policy.error());
        return 1;
      }
      smart_options.policy = std::make_shared<const server::auth::AccessPolicy>(std::move(*policy));
    }
    auto created = server::auth::SmartAuth::create(
        **store, std::move(*keys), **definitions,
        [&active]() -> std::shared_ptr<const resources::SearchParameterRegistry> {
          return active ? active->search() : nullptr;
        },
        smart_options);
    if (!created) {
      print_error(created.error());
      return 1;
    }
    smart = std::move(*created);
  }
  std::optional<server::Router> router_storage;
  server::RouterOptions router_options;
  if (smart)
    router_options.rest_security = [s = smart.get()](const std::string& base) { return s->rest_security(base); };
  router_options.max_conditional_delete = std::max<std::size_t>(1, config.max_conditional_delete);
  router_options.max_bundle_entries = config.max_bundle_entries;
  if (active)
    router_storage.emplace(*repository, router_options, render_metrics, *active, *reindexer);
  else
    router_storage.emplace(*repository, router_options, render_metrics);
  server::Router& router = *router_storage;
  router.set_authorizer(smart.get());
  // The HL7 v2 message monitor (/admin/hl7/messages): the replays are wired once the processors exist (below).
  server::Hl7Monitor hl7_monitor(**store);
  hl7_monitor.set_authorizer(smart.get());
  auto for_monitor = [](const server::Request& request) {
    return server::Hl7Monitor::serves(std::string_view(request.target).substr(0, request.target.find('?')));
  };
  auto for_smart = [&smart](const server::Request& request) {
    return smart &&
           server::auth::SmartAuth::serves(std::string_view(request.target).substr(0, request.target.find('?')));
  };

  server::HttpServerOptions http_options;
  http_options.host = config.host();
  http_options.port = config.port();
  http_options.io_threads = threads;
  http_options.blocking_threads = config.blocking_threads;
  http_options.body_limit = config.body_limit;
  http_options.read_timeout = std::chrono::seconds(config.read_timeout_s);
  http_options.idle_timeout = std::chrono::seconds(config.idle_timeout_s);
  http_options.tls_cert_file = config.tls_cert;
  http_options.tls_key_file = config.tls_key;
  http_options.tls_client_ca_file = config.tls_client_ca;

  server::HttpServer http(
      http_options,
      [&](const server::Request& request) {
        if (for_monitor(request)) {
          std::promise<server::Response> answer;
          auto future = answer.get_future();
          hl7_monitor.handle_async(request, [&answer](server::Response r) { answer.set_value(std::move(r)); });
          return future.get();
        }
        if (!for_smart(request)) return router.handle(request);
        std::promise<server::Response> answer;
        auto future = answer.get_future();
        smart->handle_async(request, [&answer](server::Response r) { answer.set_value(std::move(r)); });
        return future.get();
      },
      [&](const server::Request& request) { return for_monitor(request) || router.answers_later(request); });
  http.set_async_handler([&](const server::Request& request, std::function<void(server::Response)> done) {
    if (for_monitor(request)) return hl7_monitor.handle_async(request, std::move(done));
    if (for_smart(request)) return smart->handle_async(request, std::move(done));
    router.handle_async(request, std::move(done));
  });
  http.set_observer(
      [&](const server::Request& request, const server::Response& response, std::chrono::nanoseconds elapsed) {
        metrics.observe(response.interaction, response.status, std::chrono::duration<double>(elapsed).count());
        log.log(request, response, elapsed);
      });
  metrics.set_open_connections([&http] { return http.open_connections(); });

  auto port = http.listen();
  if (!port) {
    print_error(port.error());
    return 1;
  }
  // Only now that the start cannot fail any more (a bad TLS file, a port in use), so that the one-time password is
  // printed by a server that runs.
  {
    const char* given = std::getenv("CADUCEUS_ADMIN_PASSWORD");
    auto created = users.ensure_admin(given != nullptr ? given : "", std::chrono::system_clock::now());
    if (!created && created.error().kind == fhir::ErrorKind::kNotSupported) {
      // A store without the users table (PostgreSQL, until it has one): nobody can sign in, the API still serves.
      std::fprintf(stderr, "caduceus: WARNING: %s: no administrator is created and nobody can sign in\n",
                   created.error().issues.empty() ? "no users" : created.error().issues[0].diagnostics.c_str());
      created = std::optional<std::string>{};
    }
    if (!created) {
      print_error(created.error());
      return 1;
    }
    if (*created && given != nullptr && *given != '\0')
      std::printf(
          "Caduceus: first start: created the user 'admin' (role admin) with the password from "
          "CADUCEUS_ADMIN_PASSWORD; it must be changed at the first sign-in.\n");
    else if (*created)
      std::printf(
          "Caduceus: first start: created the user 'admin' (role admin) with the one-time password %s "
          "(shown only this once; it must be changed at the first sign-in).\n",
          (*created)->c_str());
  }
  std::string host =
      http_options.host.find(':') != std::string::npos ? "[" + http_options.host + "]" : http_options.host;
  std::string base = config.base_url.empty() ? (config.tls_cert.empty() ? "http://" : "https://") + host + ":" +
                                                   std::to_string(*port) + "/fhir"
                                             : config.base_url;
  router.set_base_url(base);
  if (smart) smart->set_base_url(base);
  if (!config.base_url.empty())  // (behind a load balancer: where this process itself listens)
    std::fprintf(stderr, "Caduceus: this server listens on %s://%s:%u\n", config.tls_cert.empty() ? "http" : "https",
                 host.c_str(), static_cast<unsigned>(*port));
  // HL7 v2 over MLLP (--mllp): its own listener and thread, writing through the same repository.
  std::unique_ptr<adapters::MllpServer> mllp;
  std::string mllp_text;
  if (!config.mllp.empty()) {
    auto hp = server::split_host_port(config.mllp);
    adapters::hl7v2::InboundOptions hl7_options;
    hl7_options.time_zone = *adapters::hl7v2::TimeZone::parse(config.hl7_timezone);  // checked with the options
    hl7.emplace(*repository, active.get(), hl7_options);
    adapters::MllpOptions mllp_options;
    mllp_options.host = hp->first;
    mllp_options.port = hp->second;
    mllp_options.max_frame = config.mllp_max_frame;
    mllp_options.idle_timeout = std::chrono::seconds(config.mllp_idle_timeout_s);
    mllp = std::make_unique<adapters::MllpServer>(
        mllp_options,
        [&hl7](std::string message, bool oversize, std::function<void(std::string)> send, std::function<void()> done) {
          hl7->handle(std::move(message), std::move(send), std::move(done), oversize);
        });
    auto mllp_port = mllp->start();
    if (!mllp_port) {
      print_error(mllp_port.error());
      return 1;
    }
    std::string mllp_host = hp->first.find(':') != std::string::npos ? "[" + hp->first + "]" : hp->first;
    mllp_text = ", HL7 v2 MLLP on " + mllp_host + ":" + std::to_string(*mllp_port);
  }
  // Replays go through the same processor as MLLP (or, without --mllp, one of their own).
  std::optional<adapters::hl7v2::InboundProcessor> hl7_replayer;
  if (!hl7) {
    adapters::hl7v2::InboundOptions replay_options;
    replay_options.time_zone = *adapters::hl7v2::TimeZone::parse(config.hl7_timezone);  // checked with the options
    hl7_replayer.emplace(*repository, active.get(), replay_options);
  }
  hl7_monitor.set_inbound(hl7 ? &*hl7 : &*hl7_replayer);
  hl7_monitor.set_outbound(hl7_out.get());
  http.stop_on_signals();
  std::printf("Caduceus listening on %s (database %s)%s\n", base.c_str(), config.db.c_str(), mllp_text.c_str());
  if (!smart)
    std::fprintf(stderr,
                 "caduceus: WARNING: --auth off: the FHIR API is open to anyone who can reach %s (start with --auth "
                 "smart to require SMART tokens)\n",
                 base.c_str());
  std::fflush(stdout);
  if (hl7_out) hl7_out->start();
  http.run();
  if (mllp) mllp->stop();
  if (hl7_out) hl7_out->stop();
  return 0;
}

bool parse_bool(const std::string& text, bool& out) {
  if (text == "true" || text == "1" || text == "yes") return (out = true), true;
  if (text == "false" || text == "0" || text == "no") return (out = false), true;
  return false;
}

int import_files(const std::vector<std::string>& args) {
  std::string db = server::ServeConfig{}.db;
  bool search_index = true, sync_full = true;
  std::size_t chunk = 500;
  std::size_t jobs = 4 * std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << kImportUsage;
      return 0;
    }
    auto value = [&](std::string& out) {
      if (i + 1 >= args.size()) return false;
      out = args[++i];
      return true;
    };
    std::string v;
    if (a == "--db") {
      if (!value(db)) return std::cerr << "caduceus import: --db needs a value\n", 2;
    } else if (a == "--search-index" || a == "--sync-full") {
      if (!value(v) || !parse_bool(v, a == "--search-index" ? search_index : sync_full))
        return std::cerr << "caduceus import: " << a << " takes true or false\n", 2;
    } else if (a == "--jobs") {
      if (!value(v) || std::atoll(v.c_str()) <= 0)
        return std::cerr << "caduceus import: --jobs takes a positive number\n", 2;
      jobs = static_cast<std::size_t>(std::atoll(v.c_str()));
    } else if (a == "--chunk") {
      if (!value(v) || std::atoll(v.c_str()) <= 0)
        return std::cerr << "caduceus import: --chunk takes a positive number\n", 2;
      chunk = static_cast<std::size_t>(std::atoll(v.c_str()));
    } else if (a.starts_with("--")) {
      std::cerr << "caduceus import: unknown option '" << a << "'\n\n" << kImportUsage;
      return 2;
    } else {
      paths.push_back(a);
    }
  }
  if (paths.empty()) {
    std::cerr << kImportUsage;
    return 2;
  }
  auto definitions = resources::Definitions::load(conformance::r4_model_json());
  if (!definitions) return print_error(definitions.error()), 1;
  resources::StructureChecker checker(**definitions);
  std::unique_ptr<resources::ActiveSearchParameters> active;
  if (search_index) {
    auto registry = resources::SearchParameterRegistry::load(conformance::r4_search_parameters_json(),
                                                             conformance::r4_compartments_json());
    if (!registry) return print_error(registry.error()), 1;
    auto created = resources::ActiveSearchParameters::create(**definitions, *registry);
    if (!created) return print_error(created.error()), 1;
    active = std::move(*created);
  }
  resources::StoreOptions store_options;
  store_options.readers = 2;
  store_options.synchronous_full = sync_full;
  // No cache of current versions: it serves a server's reads by id, and an import reads almost nothing of what it
  // writes (a PUT of a resource already there reads it from the database). Filled, it cost the writer a hash insert
  // per resource and the end of the import the freeing of every body it held.
  store_options.cache_bytes = 0;
  // Its commits need not reach the disk one by one: all of them have when it says it is done (Store::sync).
  store_options.bulk_load = true;
  auto store = resources::open_store(db, store_options);
  if (!store) return print_error(store.error()), 1;
  std::optional<resources::Repository> repository;
  if (active)
    repository.emplace(**store, **definitions, checker, *active);
  else
    repository.emplace(**store, **definitions, checker);
  server::BundleOptions options;
  options.base_url = "http://127.0.0.1:8080/fhir";
  options.max_entries = std::max<std::size_t>(chunk, 10'000);
  options.return_resources = false;
  server::BundleProcessor processor(*repository, active ? active->search() : nullptr, options);

  // One file: what it wrote by type and its errors. `whole` is set when the file failed as a whole (a
  // transaction refused: nothing of it is stored), so that it can be tried again after the others.
  struct FileResult {
    std::map<std::string, std::int64_t> written;
    std::vector<std::string> errors;
    bool whole = false;
  };
  auto describe = [](const fhir::Error& e) {
    std::string text;
    for (const fhir::Issue& issue : e.issues) text += (text.empty() ? "" : "; ") + issue.diagnostics;
    return text;
  };
  auto import_one = [&](const std::string& path) {
    FileResult result;
    std::map<std::string, std::int64_t>& written = result.written;
    std::vector<std::string>& errors = result.errors;
    auto count = [&](const server::BundleOutcome& out) {
      for (const resources::VersionRecord& v : out.written)
        if (!v.deleted) ++written[v.type];
    };
    auto outcome_text = [](const std::string& body) {
      std::string text;
      auto parsed = fhir::json::parse(body);
      if (const fhir::json::Value* issues = parsed ? parsed->find("issue") : nullptr; issues && issues->is_array())
        for (const fhir::json::Value& issue : issues->items())
          if (const fhir::json::Value* d = issue.find("diagnostics"); d && d->is_string())
            text += (text.empty() ? "" : "; ") + d->text();
      return text.empty() ? body : text;
    };
    {
      std::ifstream in(path, std::ios::binary);
      if (!in) {
        errors.push_back(path + ": cannot be read");
        return result;
      }
      if (path.ends_with(".ndjson")) {
        // Chunks of lines: a transaction each; a failing chunk again as a batch, for the line of each error.
        std::vector<std::pair<std::size_t, fhir::json::Value>> lines;  // (line number, resource)
        std::vector<std::pair<std::size_t, std::string>> line_errors;
        auto flush = [&] {
          if (lines.empty()) return;
          auto bundle_of = [&](const char* type) {
            fhir::json::Value b = fhir::json::Value::object();
            b.set("resourceType", fhir::json::Value::string("Bundle"));
            b.set("type", fhir::json::Value::string(type));
            fhir::json::Value entries = fhir::json::Value::array();
            for (const auto& [line, resource] : lines) {
              const fhir::json::Value* rt = resource.find("resourceType");
              const fhir::json::Value* id = resource.find("id");
              std::string t = rt && rt->is_string() ? rt->text() : std::string("Resource");
              bool put = id && id->is_string();
              fhir::json::Value request = fhir::json::Value::object();
              request.set("method", fhir::json::Value::string(put ? "PUT" : "POST"));
              request.set("url", fhir::json::Value::string(put ? t + "/" + id->text() : t));
              fhir::json::Value e = fhir::json::Value::object();
              e.set("resource", resource);
              e.set("request", std::move(request));
              entries.push_back(std::move(e));
            }
            b.set("entry", std::move(entries));
            return b;
          };
          server::BundleOutcome out = processor.process(bundle_of("transaction"));
          if (out.status < 400) {
            count(out);
          } else {
            out = processor.process(bundle_of("batch"));
            count(out);
            for (const auto& [index, error] : out.failed) {
              // (The entry's place in the chunk means nothing to the reader: the line says where.)
              std::string d = describe(error);
              if (d.starts_with("Bundle.entry[")) {
                auto colon = d.find(": ");
                if (colon != std::string::npos) d = d.substr(colon + 2);
              }
              line_errors.emplace_back(lines[index].first, d);
            }
          }
          lines.clear();
        };
        std::string text;
        for (std::size_t number = 1; std::getline(in, text); ++number) {
          if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
          auto parsed = fhir::json::parse(text);
          if (!parsed || !parsed->is_object()) {
            line_errors.emplace_back(number, parsed ? std::string("not a JSON object") : describe(parsed.error()));
            continue;
          }
          lines.emplace_back(number, std::move(*parsed));
          if (lines.size() >= chunk) flush();
        }
        flush();
        std::sort(line_errors.begin(), line_errors.end());
        for (const auto& [number, message] : line_errors)
          errors.push_back(path + ":" + std::to_string(number) + ": " + message);
        return result;
      }
      // Read whole, at its size (no stream buffer to copy it out of, no zeros written first).
      std::error_code size_error;
      const std::uintmax_t size = std::filesystem::file_size(path, size_error);
      std::string text;
      if (!size_error)
        text.resize_and_overwrite(static_cast<std::size_t>(size), [&](char* data, std::size_t n) {
          in.read(data, static_cast<std::streamsize>(n));
          return static_cast<std::size_t>(in.gcount());
        });
      if (size_error || text.size() != size) {
        errors.push_back(path + ": cannot be read");
        return result;
      }
      auto parsed = fhir::json::parse(text);
      if (!parsed) {
        errors.push_back(path + ": " + describe(parsed.error()));
        return result;
      }
      server::BundleOutcome out = processor.process(std::move(*parsed));
      if (out.status >= 400) {
        errors.push_back(path + ": " + outcome_text(out.body));
        result.whole = true;
        return result;
      }
      count(out);
      for (const auto& [index, error] : out.failed) errors.push_back(path + ": " + describe(error));
    }
    return result;
  };

  // Files go to `jobs` workers at once: their transactions meet in the store's commit groups, and one file's
  // parsing and checks run while another's rows are written. The workers run at a lower priority (nice +10) than
  // the store's writer thread, which all of them wait for: with more workers than cores, the writer gets a core
  // whenever it has a group to write, and the workers have the rest (the Synthea import on 2 cores, SQLite:
  // 2.74-2.76 s with 2 workers at equal priority, 2.36-2.47 s with 8 so; README Performance). The main thread
  // only waits, at its own priority (the store's last checkpoint runs on it). A file refused as a whole (for instance a
  // conditional reference to what another file, still to come, creates) is tried once more after all the
  // others, alone; only then do its errors count.
  Progress progress(paths.size());
  std::vector<FileResult> results(paths.size());
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    name_this_thread("cad-import");
    errno = 0;
    const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
    if (errno == 0) (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), std::min(nice + 10, 19));
    for (std::size_t i = next++; i < paths.size(); i = next++) {
      results[i] = import_one(paths[i]);
      std::int64_t n = 0;
      for (const auto& [type, k] : results[i].written) n += k;
      progress.file_done(n);
    }
  };
  if (active) {
    auto deferred = (*store)->defer_search_indexes();
    if (!deferred) return print_error(deferred.error()), 1;
  }
  std::vector<std::thread> workers;
  for (std::size_t j = 0; j < std::min(jobs, paths.size()); ++j) workers.emplace_back(work);
  for (std::thread& t : workers) t.join();
  for (std::size_t i = 0; i < paths.size(); ++i)
    if (results[i].whole) results[i] = import_one(paths[i]);
  progress.finish();
  // What went wrong with the store after the files (the summary of what was written comes first all the same).
  std::vector<std::string> store_errors;
  if (auto restored = (*store)->restore_search_indexes(); !restored)
    store_errors.push_back("the search indexes were not built (they will be when the store is next opened): " +
                           restored.error().issues[0].diagnostics);
  // The first searches after a load are planned on what is there now (PostgreSQL: ANALYZE).
  if (auto analyzed = (*store)->refresh_statistics(); !analyzed)
    std::cerr << "caduceus import: the statistics were not refreshed: " << analyzed.error().issues[0].diagnostics
              << "\n";
  // (Also after a failed build: the commits of the load did not wait for the disk.)
  if (auto synced = (*store)->sync(); !synced)
    store_errors.push_back("the writes may not all be on disk: " + synced.error().issues[0].diagnostics);
  std::map<std::string, std::int64_t> written;
  std::vector<std::string> errors;
  for (FileResult& r : results) {
    for (const auto& [type, n] : r.written) written[type] += n;
    errors.insert(errors.end(), r.errors.begin(), r.errors.end());
  }
  std::int64_t total = 0;
  for (const auto& [type, n] : written) total += n;
  std::cout << "Imported " << total << " resource version(s)";
  std::string sep = ": ";
  for (const auto& [type, n] : written) {
    std::cout << sep << type << " " << n;
    sep = ", ";
  }
  std::cout << "\n";
  for (const std::string& e : errors) std::cerr << "caduceus import: " << e << "\n";
  if (!errors.empty()) std::cerr << errors.size() << " error(s)\n";
  for (const std::string& e : store_errors) std::cerr << "caduceus import: " << e << "\n";
  return errors.empty() && store_errors.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "version" || args[0] == "--version") {
    std::cout << "caduceus 0.1.0 (FHIR R4 4.0.1)\n";
    return 0;
  }
  if (args[0] == "serve") return serve({args.begin() + 1, args.end()});
  if (args[0] == "import") return import_files({args.begin() + 1, args.end()});
  if (args[0] == "migrate") return server::run_migrate({args.begin() + 1, args.end()}, std::cout, std::cerr);
  if (args[0] == "admin" && args.size() >= 2 && args[1] == "user")
    return server::auth::run_admin_user({args.begin() + 2, args.end()}, std::cin, std::cout, std::cerr);
  if (args[0] == "admin") return server::auth::admin_command({args.begin() + 1, args.end()});
  std::cerr << "caduceus: unknown command '" << args[0] << "'\n\n" << kUsage;
  return 2;
}
