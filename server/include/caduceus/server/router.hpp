#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "caduceus/resources/custom_search.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/server/authorizer.hpp"
#include "caduceus/server/http_types.hpp"

namespace caduceus::server {

struct RouterOptions {
  std::string base_url = "http://127.0.0.1:8080/fhir";  // public base, used in Location and fullUrl
  std::size_t history_default_count = 50;
  std::size_t history_max_count = 1000;
  std::string software_version = "0.1.0";
  std::size_t max_conditional_delete = 1;   // 1: conditionalDelete "single"; more: "multiple" up to this many
  std::size_t max_bundle_entries = 10'000;  // entries of a batch or transaction Bundle (beyond: 413)
  // When set: the CapabilityStatement's rest.security, made from the base URL (SMART oauth-uris).
  std::function<fhir::json::Value(const std::string& base_url)> rest_security;
};

// The FHIR REST API and the operational endpoints, as a plain function of a request value. Thread-safe.
class Router {
 public:
  using Completion = std::function<void(Response)>;

  // `search_parameters`: when set, GET [type]?... and POST [type]/_search are served (over the index rows that
  // the repository writes); when nullptr they answer 501.
  Router(resources::Repository& repository, RouterOptions options, std::function<std::string()> render_metrics,
         const resources::SearchParameterRegistry* search_parameters = nullptr);
  // With search over the parameters in force (`active`: the R4 ones and the searchable custom ones, taken afresh
  // for every request), custom SearchParameters (a write of one goes to `reindexer`) and $reindex.
  Router(resources::Repository& repository, RouterOptions options, std::function<std::string()> render_metrics,
         const resources::ActiveSearchParameters& active, resources::Reindexer& reindexer);

  // Answers a request. Writes answer once durable: `done` may then run later, on a thread of the store's (it
  // must be cheap and thread-safe); everything else answers before handle_async returns.
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  void handle_async(const Request& request, Completion done) const;
  // The same, waiting for the answer.
  Response handle(const Request& request) const;

  // Whether a request may wait on a database commit (run it off the I/O threads).
  static bool is_blocking(const Request& request) noexcept;
  // Whether dispatch may answer a request later, through its Completion: what is_blocking says, and a read by id
  // (`GET` or `HEAD /fhir/{type}/{id}`) on a store that gathers reads (Store::reads_async: PostgreSQL). Such a request
  // must go through handle_async (handle() would hold an I/O thread until its batch is back).
  bool answers_later(const Request& request) const noexcept;

  // The public base URL (known once the listener is bound); call before serving.
  void set_base_url(std::string base_url);
  // Every request under /fhir is first put to `authorizer` (kept by the caller; nullptr: none). Call before serving.
  void set_authorizer(const Authorizer* authorizer) { authorizer_ = authorizer; }

 private:
  struct Impl;
  // Answers now, or returns nullopt after starting a write that will answer through `done`.
  std::optional<Response> dispatch(const Request& request, const Completion& done) const;

  resources::Repository& repository_;
  RouterOptions options_;
  std::function<std::string()> render_metrics_;
  // The search parameters to serve a request with (nullptr when search is off); keep it while using it.
  std::shared_ptr<const resources::SearchParameterRegistry> search_parameters() const;
  // The CapabilityStatement for the parameters in force.
  std::string capability_json() const;

  const resources::SearchParameterRegistry* search_parameters_;
  const resources::ActiveSearchParameters* active_ = nullptr;
  resources::Reindexer* reindexer_ = nullptr;
  const Authorizer* authorizer_ = nullptr;
  mutable std::mutex capability_mutex_;  // guards the two below
  mutable std::string capability_json_;
  mutable std::shared_ptr<const resources::SearchParameterRegistry> capability_for_;
  // Threads for requests that wait on the store synchronously (Bundles), off the I/O threads. Declared last:
  // destroyed first, after running what was queued.
  class WorkerPool;
  std::unique_ptr<WorkerPool> workers_;
};

}  // namespace caduceus::server
