#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {

// Custom search parameters: SearchParameter resources created at run time (status active), on top of the R4 ones.
//
// A custom parameter is first *indexed*: every write extracts its rows, while a background reindex job backfills
// the resources written before. Once that job is done it is also *searchable*. The two sets are published as
// immutable snapshots, swapped atomically: a request takes a snapshot and keeps it for as long as it uses the
// pointers into it.

// Reads a SearchParameter resource as a custom parameter. nullopt when its status is not `active` (it is then
// stored, but neither indexed nor searchable). Errors: kInvalid with one issue naming the element
// (SearchParameter.expression that does not compile, SearchParameter.type composite or special, a base that is not
// a resource type, a code that is not a name, no url).
fhir::Result<std::optional<SearchParameter>> custom_search_parameter(const fhir::json::Value& resource,
                                                                     const Definitions& definitions);

struct CustomSearchParameter {
  std::string resource_id;    // of the SearchParameter resource
  std::int64_t version = 0;   // its version
  SearchParameter parameter;  // as read by custom_search_parameter
  bool searchable = false;    // its reindex is done
};

// The search parameters in force: the R4 ones plus the custom ones. Thread-safe.
class ActiveSearchParameters {
 public:
  // Errors: kInternal when the base parameters do not compile (see SearchIndexer::create).
  static fhir::Result<std::unique_ptr<ActiveSearchParameters>> create(
      const Definitions& definitions, std::shared_ptr<const SearchParameterRegistry> base);

  // What search serves: the base and the searchable custom parameters.
  std::shared_ptr<const SearchParameterRegistry> search() const;
  // What writes index: the base indexer, and one for every custom parameter (searchable or not; never nullptr,
  // empty when there are none). A write keeps the custom one until it is durable (see Reindexer: it waits for the
  // writes extracted with an older one).
  const SearchIndexer& base_indexer() const noexcept { return *base_indexer_; }
  std::shared_ptr<const SearchIndexer> custom_indexer() const;
  // The rows of every indexed parameter for `resource` (`_lastUpdated` left out); `guard` receives the custom
  // indexer used, to keep until the write is durable.
  IndexValues extract(const fhir::json::Value& resource, std::shared_ptr<const void>* guard = nullptr) const;

  const Definitions& definitions() const noexcept { return definitions_; }
  const SearchParameterRegistry& base() const noexcept { return *base_; }

  // Checks that `parameter` (of SearchParameter/`resource_id`) fits with the others: (base, code) and url not
  // already defined by another parameter. Errors: kInvalid naming SearchParameter.code or .url.
  fhir::Result<void> check(const std::string& resource_id, const SearchParameter& parameter) const;
  // Adds or replaces (by resource id) a custom parameter, and publishes new snapshots. Returns the custom
  // indexer that was in force before. Errors: as check.
  fhir::Result<std::shared_ptr<const SearchIndexer>> put(CustomSearchParameter custom);
  // Makes SearchParameter/resource_id searchable if it is still at `version`. Returns whether it did.
  bool make_searchable(const std::string& resource_id, std::int64_t version);
  // Removes it from both sets (its rows stay in the index tables until each resource is written again).
  void remove(const std::string& resource_id);
  std::vector<CustomSearchParameter> customs() const;

 private:
  ActiveSearchParameters(const Definitions& definitions, std::shared_ptr<const SearchParameterRegistry> base,
                         std::shared_ptr<const SearchIndexer> base_indexer)
      : definitions_(definitions), base_(std::move(base)), base_indexer_(std::move(base_indexer)), search_(base_) {}
  // Builds and publishes the snapshots for `customs` (mutex_ held); with !indexed_too only the search one.
  fhir::Result<void> publish(const std::vector<CustomSearchParameter>& customs, bool indexed_too = true);

  const Definitions& definitions_;
  std::shared_ptr<const SearchParameterRegistry> base_;
  std::shared_ptr<const SearchIndexer> base_indexer_;

  mutable std::mutex mutex_;  // guards what follows; writers also hold it while building
  std::vector<CustomSearchParameter> customs_;
  std::shared_ptr<const SearchParameterRegistry> search_;
  std::shared_ptr<const SearchIndexer> custom_indexer_;
};

// The state of a reindex job, as GET [base]/$reindex/[id] shows it.
struct ReindexStatus {
  std::int64_t id = 0;
  std::string state;  // queued, running, done, failed
  std::vector<std::string> types;
  std::vector<std::string> params;
  std::string search_parameter;
  std::int64_t processed = 0, total = 0;
  std::string message;
};

// Runs reindex jobs, one after the other, on a thread of its own: each batch of resources is rewritten in its own
// write transaction of the store (so that other writes go on in between), and the job's progress is saved in the
// same transaction, so that a job cut short by a stop is resumed by the next start(). Thread-safe.
class Reindexer {
 public:
  Reindexer(Store& store, ActiveSearchParameters& active, TenantId tenant = kDefaultTenant,
            std::size_t batch_size = 200);
  ~Reindexer();  // stops after the current batch; unfinished jobs stay saved
  Reindexer(const Reindexer&) = delete;
  Reindexer& operator=(const Reindexer&) = delete;

  // Loads the stored active SearchParameters (searchable at once when their last job is done) and the saved jobs,
  // resumes what is unfinished, and starts the thread. Call once, before serving. Errors: as the store's.
  fhir::Result<void> start();

  // Whether a SearchParameter body may be written as SearchParameter/resource_id (empty on create): see
  // custom_search_parameter and ActiveSearchParameters::check.
  fhir::Result<void> check(const fhir::json::Value& resource, const std::string& resource_id) const;
  // A SearchParameter version was written (durably): when active, it is queued to be indexed and made searchable;
  // else it is removed from the active set. Returns the job id, if one was queued. Cheap (the work is done on the
  // reindex thread): may be called from the store's thread.
  std::optional<std::int64_t> parameter_written(const VersionRecord& record);
  // SearchParameter/resource_id was deleted: it stops being indexed and searchable now; a job of it still queued
  // or running fails.
  void parameter_deleted(const std::string& resource_id);
  // $reindex: rewrites every row of every current resource of `types` (all types when empty). Returns the job id.
  std::int64_t reindex(std::vector<std::string> types);

  std::optional<ReindexStatus> status(std::int64_t id) const;
  std::vector<ReindexStatus> jobs() const;

 private:
  struct Job {
    ReindexJobRecord record;
    std::optional<CustomSearchParameter> custom;  // the parameter it makes searchable
    bool cancelled = false;
  };

  std::int64_t enqueue(Job job);  // mutex_ held
  void run();
  void run_job(Job& job);
  fhir::Result<void> save(const ReindexJobRecord& record);
  void set_state(std::int64_t id, const ReindexJobRecord& record);

  Store& store_;
  ActiveSearchParameters& active_;
  TenantId tenant_;
  std::size_t batch_size_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::int64_t> queue_;
  std::map<std::int64_t, Job> jobs_;
  std::int64_t next_id_ = 1;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace caduceus::resources
