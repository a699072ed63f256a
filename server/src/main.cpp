// caduceus: everything is constructed here and passed down; nothing below main keeps global state.
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/resources/custom_search.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/resources/structure_checker.hpp"
#include "caduceus/server/config.hpp"
#include "caduceus/server/http_server.hpp"
#include "caduceus/server/metrics.hpp"
#include "caduceus/server/request_log.hpp"
#include "caduceus/server/router.hpp"

namespace {

using namespace caduceus;

constexpr const char* kUsage =
    "Caduceus: a FHIR R4 server\n"
    "\n"
    "Usage: caduceus COMMAND [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  serve      run the FHIR server (caduceus serve --help lists its options)\n"
    "  version    print the version\n"
    "\n"
    "Coming with later issues: admin (clients, users, keys), import, migrate.\n";

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
  auto store = resources::open_store(config.db, store_options);
  if (!store) {
    print_error(store.error());
    return 1;
  }
  std::optional<resources::Repository> repository;
  std::unique_ptr<resources::Reindexer> reindexer;
  if (active) {
    repository.emplace(**store, **definitions, checker, *active);
    reindexer = std::make_unique<resources::Reindexer>(**store, *active);
    // The custom SearchParameters stored before come back; unfinished reindex jobs go on.
    if (auto started = reindexer->start(); !started) {
      print_error(started.error());
      return 1;
    }
  } else {
    repository.emplace(**store, **definitions, checker);
  }

  server::Metrics metrics;
  server::RequestLog log(config.log_requests);
  auto render_metrics = [&metrics] { return metrics.render(); };
  std::optional<server::Router> router_storage;
  server::RouterOptions router_options;
  router_options.max_bundle_entries = config.max_bundle_entries;
  if (active)
    router_storage.emplace(*repository, router_options, render_metrics, *active, *reindexer);
  else
    router_storage.emplace(*repository, router_options, render_metrics);
  server::Router& router = *router_storage;

  server::HttpServerOptions http_options;
  http_options.host = config.host();
  http_options.port = config.port();
  http_options.io_threads = threads;
  http_options.blocking_threads = config.blocking_threads;
  http_options.body_limit = config.body_limit;
  http_options.read_timeout = std::chrono::seconds(config.read_timeout_s);
  http_options.idle_timeout = std::chrono::seconds(config.idle_timeout_s);

  server::HttpServer http(
      http_options, [&router](const server::Request& request) { return router.handle(request); },
      &server::Router::is_blocking);
  http.set_async_handler([&router](const server::Request& request, std::function<void(server::Response)> done) {
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
  std::string host =
      http_options.host.find(':') != std::string::npos ? "[" + http_options.host + "]" : http_options.host;
  std::string base =
      config.base_url.empty() ? "http://" + host + ":" + std::to_string(*port) + "/fhir" : config.base_url;
  router.set_base_url(base);
  http.stop_on_signals();
  std::printf("Caduceus listening on %s (database %s)\n", base.c_str(), config.db.c_str());
  std::fflush(stdout);
  http.run();
  return 0;
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
  std::cerr << "caduceus: unknown command '" << args[0] << "'\n\n" << kUsage;
  return 2;
}
