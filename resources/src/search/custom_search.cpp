#include "caduceus/resources/custom_search.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include "caduceus/fhir/thread_name.hpp"
#include "caduceus/resources/fhirpath.hpp"
#include "caduceus/resources/shared_rows.hpp"

namespace caduceus::resources {

using fhir::ErrorKind;
using fhir::Result;
namespace json = fhir::json;

namespace {

std::unexpected<fhir::Error> invalid(std::string message, std::string element) {
  return fhir::fail(ErrorKind::kInvalid, "invalid", std::move(message), "SearchParameter." + std::move(element));
}

std::string string_member(const json::Value& v, std::string_view name) {
  const json::Value* m = v.find(name);
  return m != nullptr && m->is_string() ? m->text() : std::string();
}

std::vector<std::string> strings_member(const json::Value& v, std::string_view name) {
  std::vector<std::string> out;
  const json::Value* m = v.find(name);
  if (m == nullptr || !m->is_array()) return out;
  for (const json::Value& s : m->items())
    if (s.is_string()) out.push_back(s.text());
  return out;
}

// A search parameter code: a name that the query syntax cannot mistake (no ':', '.', '_' first, ...).
bool is_code(std::string_view code) {
  if (code.empty() || code.size() > 64) return false;
  if (!((code[0] >= 'a' && code[0] <= 'z') || (code[0] >= 'A' && code[0] <= 'Z'))) return false;
  return std::ranges::all_of(code, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string job_key(const std::string& resource_id, std::int64_t version) {
  return "SearchParameter/" + resource_id + "/_history/" + std::to_string(version);
}

}  // namespace

Result<std::optional<SearchParameter>> custom_search_parameter(const json::Value& resource,
                                                               const Definitions& definitions) {
  if (string_member(resource, "status") != "active") return std::optional<SearchParameter>{};
  SearchParameter p;
  p.url = string_member(resource, "url");
  if (p.url.empty()) return invalid("A SearchParameter needs a url", "url");
  p.name = string_member(resource, "name");
  p.code = string_member(resource, "code");
  if (!is_code(p.code))
    return invalid("The code '" + p.code +
                       "' is not usable as a search parameter name (a letter, then letters, digits, '-' or '_')",
                   "code");
  p.base = strings_member(resource, "base");
  if (p.base.empty()) return invalid("A SearchParameter needs a base", "base");
  for (const std::string& b : p.base) {
    if (b != "Resource" && b != "DomainResource" && !definitions.is_resource_type(b))
      return invalid("The base '" + b + "' is not a resource type of FHIR R4", "base");
  }
  const std::string type = string_member(resource, "type");
  auto t = search_param_type_from_name(type);
  if (!t) return invalid("'" + type + "' is not a search parameter type", "type");
  if (*t == SearchParamType::kComposite || *t == SearchParamType::kSpecial)
    return invalid("Custom search parameters of type " + type +
                       " are not supported (number, date, string, token, "
                       "reference, quantity and uri are)",
                   "type");
  p.type = *t;
  p.expression = string_member(resource, "expression");
  if (p.expression.empty()) return invalid("A custom search parameter needs an expression (FHIRPath)", "expression");
  if (auto compiled = fhirpath::FhirPath::compile(p.expression); !compiled)
    return invalid(
        "The expression '" + p.expression + "' is not valid FHIRPath: " + compiled.error().issues.front().diagnostics,
        "expression");
  // The whole expression serves every base: a path that starts with another type's name yields nothing.
  for (const std::string& b : p.base) p.expressions.emplace_back(b, p.expression);
  p.target = strings_member(resource, "target");
  std::ranges::sort(p.target);
  p.modifier = strings_member(resource, "modifier");
  p.comparator = strings_member(resource, "comparator");
  p.chain = strings_member(resource, "chain");
  if (const json::Value* v = resource.find("multipleOr"); v != nullptr && v->is_bool()) p.multiple_or = v->as_bool();
  if (const json::Value* v = resource.find("multipleAnd"); v != nullptr && v->is_bool()) p.multiple_and = v->as_bool();
  p.xpath_usage = string_member(resource, "xpathUsage");
  return std::optional<SearchParameter>{std::move(p)};
}

// ActiveSearchParameters

Result<std::unique_ptr<ActiveSearchParameters>> ActiveSearchParameters::create(
    const Definitions& definitions, std::shared_ptr<const SearchParameterRegistry> base) {
  // (extract() leaves out the rows that other parameters hold too: those of a parameter that would have none left
  // are not computed.)
  auto indexer = SearchIndexer::create(definitions, *base, {}, SearchIndexer::Rows::kWritten);
  if (!indexer) return std::unexpected(indexer.error());
  std::unique_ptr<ActiveSearchParameters> active(
      new ActiveSearchParameters(definitions, std::move(base), std::move(*indexer)));
  std::lock_guard lock(active->mutex_);
  if (auto published = active->publish({}); !published) return std::unexpected(published.error());
  return active;
}

std::shared_ptr<const SearchParameterRegistry> ActiveSearchParameters::search() const {
  std::lock_guard lock(mutex_);
  return search_;
}

std::shared_ptr<const SearchIndexer> ActiveSearchParameters::custom_indexer() const {
  std::lock_guard lock(mutex_);
  return custom_indexer_;
}

IndexValues ActiveSearchParameters::extract(const json::Value& resource, std::shared_ptr<const void>* guard) const {
  IndexValues values = base_indexer_->extract(resource);
  std::shared_ptr<const SearchIndexer> custom = custom_indexer();
  append_index(values, custom->extract(resource));
  if (guard != nullptr) *guard = std::move(custom);
  leave_out_resource_row_values(values);  // (read from the resource row)
  // Rows another parameter holds too are not written twice (a search reads them there).
  if (const json::Value* type = resource.find("resourceType"); type != nullptr && type->is_string())
    leave_out_shared_rows(values, type->text(), *base_);
  return values;
}

Result<void> ActiveSearchParameters::check(const std::string& resource_id, const SearchParameter& parameter) const {
  std::vector<CustomSearchParameter> others = customs();
  std::erase_if(others, [&](const CustomSearchParameter& c) { return c.resource_id == resource_id; });
  for (const CustomSearchParameter& c : others) {
    if (c.parameter.url == parameter.url)
      return invalid("The url '" + parameter.url + "' is already defined by SearchParameter/" + c.resource_id, "url");
  }
  if (base_->by_url(parameter.url) != nullptr)
    return invalid("The url '" + parameter.url + "' is one of the FHIR R4 search parameters", "url");
  auto code_clash = [&](const SearchParameter& other) {
    bool other_common = other.common(), common = parameter.common();
    for (const std::string& b : parameter.base)
      for (const std::string& ob : other.base)
        if ((b == ob || common || other_common) && other.code == parameter.code) return true;
    return false;
  };
  for (const CustomSearchParameter& c : others) {
    if (code_clash(c.parameter))
      return invalid(
          "The code '" + parameter.code + "' is already defined for this base by SearchParameter/" + c.resource_id,
          "code");
  }
  for (const std::string& b : parameter.base) {
    bool common = b == "Resource" || b == "DomainResource";
    const std::vector<std::string>& types = common ? base_->types() : std::vector<std::string>{b};
    for (const std::string& type : types) {
      if (base_->find(type, parameter.code) != nullptr)
        return invalid("The code '" + parameter.code + "' is already a search parameter of " + type, "code");
    }
    if (common && base_->find("Binary", parameter.code) != nullptr)
      return invalid("The code '" + parameter.code + "' is already a search parameter of every resource", "code");
  }
  return {};
}

Result<void> ActiveSearchParameters::publish(const std::vector<CustomSearchParameter>& customs, bool indexed_too) {
  std::vector<SearchParameter> all, searchable;
  for (const CustomSearchParameter& c : customs) {
    all.push_back(c.parameter);
    if (c.searchable) searchable.push_back(c.parameter);
  }
  if (!indexed_too && custom_indexer_ != nullptr) {
    auto search = searchable.empty() ? Result<std::shared_ptr<const SearchParameterRegistry>>(base_)
                                     : SearchParameterRegistry::extend(*base_, searchable);
    if (!search) return std::unexpected(search.error());
    customs_ = customs;
    search_ = std::move(*search);
    return {};
  }
  auto indexed = all.empty() ? Result<std::shared_ptr<const SearchParameterRegistry>>(base_)
                             : SearchParameterRegistry::extend(*base_, all);
  if (!indexed) return std::unexpected(indexed.error());
  auto search = searchable.empty() ? Result<std::shared_ptr<const SearchParameterRegistry>>(base_)
                                   : SearchParameterRegistry::extend(*base_, searchable);
  if (!search) return std::unexpected(search.error());
  // Always an indexer, if an empty one: every write holds the one it used until it is durable, which is how a
  // reindex knows when the writes that did not index a new parameter are all in.
  std::shared_ptr<const SearchIndexer> custom;
  {
    std::set<std::string> urls;
    for (const SearchParameter& p : all) urls.insert(p.url);
    auto created =
        SearchIndexer::create(definitions_, **indexed, [&](const SearchParameter& p) { return urls.contains(p.url); });
    if (!created)
      return fhir::fail(ErrorKind::kInvalid, "invalid", created.error().issues.front().diagnostics,
                        "SearchParameter.expression");
    // The indexer points into the registry it was made from: keep that alive with it.
    auto holder = std::make_shared<
        std::pair<std::shared_ptr<const SearchParameterRegistry>, std::shared_ptr<const SearchIndexer>>>(*indexed,
                                                                                                         *created);
    custom = std::shared_ptr<const SearchIndexer>(holder, holder->second.get());
  }
  customs_ = customs;
  search_ = std::move(*search);
  custom_indexer_ = std::move(custom);
  return {};
}

Result<std::shared_ptr<const SearchIndexer>> ActiveSearchParameters::put(CustomSearchParameter custom) {
  if (auto ok = check(custom.resource_id, custom.parameter); !ok) return std::unexpected(ok.error());
  std::lock_guard lock(mutex_);
  std::vector<CustomSearchParameter> next = customs_;
  std::erase_if(next, [&](const CustomSearchParameter& c) { return c.resource_id == custom.resource_id; });
  next.push_back(std::move(custom));
  std::shared_ptr<const SearchIndexer> before = custom_indexer_;
  if (auto published = publish(next); !published) return std::unexpected(published.error());
  return before;
}

bool ActiveSearchParameters::make_searchable(const std::string& resource_id, std::int64_t version) {
  std::lock_guard lock(mutex_);
  std::vector<CustomSearchParameter> next = customs_;
  bool found = false;
  for (CustomSearchParameter& c : next) {
    if (c.resource_id == resource_id && c.version == version) {
      c.searchable = true;
      found = true;
    }
  }
  return found && publish(next, false).has_value();  // the same parameters are indexed: the indexer stays
}

void ActiveSearchParameters::remove(const std::string& resource_id) {
  std::lock_guard lock(mutex_);
  std::vector<CustomSearchParameter> next = customs_;
  if (std::erase_if(next, [&](const CustomSearchParameter& c) { return c.resource_id == resource_id; }) == 0) return;
  (void)publish(next);  // fewer parameters than a set that was published: cannot clash
}

std::vector<CustomSearchParameter> ActiveSearchParameters::customs() const {
  std::lock_guard lock(mutex_);
  return customs_;
}

// Reindexer

Reindexer::Reindexer(Store& store, ActiveSearchParameters& active, TenantId tenant, std::size_t batch_size)
    : store_(store), active_(active), tenant_(tenant), batch_size_(std::max<std::size_t>(1, batch_size)) {}

Reindexer::~Reindexer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<void> Reindexer::start() {
  std::vector<ReindexJobRecord> saved;
  std::vector<IndexTarget> parameters;
  auto loaded = store_.write([&](Transaction& txn) -> Result<void> {
    parameters.clear();  // (the store may run this again after a rollback)
    auto jobs = txn.reindex_jobs(tenant_);
    if (!jobs) return std::unexpected(jobs.error());
    saved = std::move(*jobs);
    std::int64_t after = 0;
    for (;;) {
      auto batch = txn.index_targets(tenant_, {"SearchParameter"}, after, INT64_MAX, 500);
      if (!batch) return std::unexpected(batch.error());
      if (batch->empty()) break;
      after = batch->back().rid;
      for (auto& t : *batch) parameters.push_back(std::move(t));
    }
    return {};
  });
  if (!loaded) return loaded;

  std::lock_guard lock(mutex_);
  for (const ReindexJobRecord& r : saved) next_id_ = std::max(next_id_, r.id + 1);
  // The last job of each SearchParameter version.
  std::map<std::string, const ReindexJobRecord*> last_job;
  for (const ReindexJobRecord& r : saved)
    if (!r.search_parameter.empty()) last_job[r.search_parameter] = &r;
  for (const IndexTarget& t : parameters) {
    auto body = json::parse(t.record.body);
    if (!body) continue;
    auto p = custom_search_parameter(*body, active_.definitions());
    if (!p || !*p) continue;  // not active (or no longer valid): not in force
    CustomSearchParameter custom{t.record.id, t.record.version, std::move(**p), false};
    const std::string key = job_key(custom.resource_id, custom.version);
    const auto it = last_job.find(key);
    if (it != last_job.end() && it->second->state == "done") {
      custom.searchable = true;
      (void)active_.put(std::move(custom));  // a clash leaves it out
      continue;
    }
    if (it != last_job.end() && (it->second->state == "queued" || it->second->state == "running")) continue;
    // Never indexed here (written while the server ran without the index), or its job failed: a new job.
    Job job;
    job.record.types = custom.parameter.common() ? std::vector<std::string>{} : custom.parameter.base;
    job.record.params = {custom.parameter.code};
    job.record.search_parameter = key;
    job.custom = std::move(custom);
    enqueue(std::move(job));
  }
  for (const ReindexJobRecord& r : saved) {
    Job job;
    job.record = r;
    if (r.state == "queued" || r.state == "running") {
      // Resume: the parameter it serves, if any, is found among the stored ones again.
      if (!r.search_parameter.empty()) {
        bool found = false;
        for (const IndexTarget& t : parameters) {
          if (job_key(t.record.id, t.record.version) != r.search_parameter) continue;
          auto body = json::parse(t.record.body);
          if (!body) break;
          auto p = custom_search_parameter(*body, active_.definitions());
          if (!p || !*p) break;
          job.custom = CustomSearchParameter{t.record.id, t.record.version, std::move(**p), false};
          found = true;
        }
        if (!found) {
          job.record.state = "failed";
          job.record.message = "the SearchParameter is no longer current";
          jobs_[r.id] = std::move(job);
          continue;
        }
      }
      jobs_[r.id] = std::move(job);
      queue_.push_back(r.id);
    } else {
      jobs_[r.id] = std::move(job);
    }
  }
  thread_ = std::thread([this] {
    name_this_thread("cad-reindex");
    run();
  });
  return {};
}

Result<void> Reindexer::check(const json::Value& resource, const std::string& resource_id) const {
  auto p = custom_search_parameter(resource, active_.definitions());
  if (!p) return std::unexpected(p.error());
  if (!*p) return {};
  return active_.check(resource_id, **p);
}

std::int64_t Reindexer::enqueue(Job job) {
  const std::int64_t id = next_id_++;
  job.record.id = id;
  job.record.state = "queued";
  job.record.created_ms = job.record.updated_ms = wall_ms();
  jobs_[id] = std::move(job);
  queue_.push_back(id);
  cv_.notify_all();
  return id;
}

std::optional<std::int64_t> Reindexer::parameter_written(const VersionRecord& record) {
  auto body = json::parse(record.body);
  std::optional<SearchParameter> parameter;
  if (body) {
    auto p = custom_search_parameter(*body, active_.definitions());
    if (p) parameter = std::move(*p);
  }
  if (!parameter) {
    parameter_deleted(record.id);  // not active (any more): out of force
    return std::nullopt;
  }
  std::lock_guard lock(mutex_);
  for (auto& [id, job] : jobs_)  // an older version still waiting: superseded
    if (job.custom && job.custom->resource_id == record.id) job.cancelled = true;
  Job job;
  job.record.types = parameter->common() ? std::vector<std::string>{} : parameter->base;
  job.record.params = {parameter->code};
  job.record.search_parameter = job_key(record.id, record.version);
  job.custom = CustomSearchParameter{record.id, record.version, std::move(*parameter), false};
  return enqueue(std::move(job));
}

void Reindexer::parameter_deleted(const std::string& resource_id) {
  std::lock_guard lock(mutex_);
  for (auto& [id, job] : jobs_)
    if (job.custom && job.custom->resource_id == resource_id) job.cancelled = true;
  active_.remove(resource_id);
}

std::int64_t Reindexer::reindex(std::vector<std::string> types) {
  std::lock_guard lock(mutex_);
  Job job;
  job.record.types = std::move(types);
  return enqueue(std::move(job));
}

namespace {
ReindexStatus status_of(const ReindexJobRecord& r) {
  return ReindexStatus{r.id, r.state, r.types, r.params, r.search_parameter, r.processed, r.total, r.message};
}
}  // namespace

std::optional<ReindexStatus> Reindexer::status(std::int64_t id) const {
  std::lock_guard lock(mutex_);
  const auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return status_of(it->second.record);
}

std::vector<ReindexStatus> Reindexer::jobs() const {
  std::lock_guard lock(mutex_);
  std::vector<ReindexStatus> out;
  for (const auto& [id, job] : jobs_) out.push_back(status_of(job.record));
  return out;
}

void Reindexer::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      const std::int64_t id = queue_.front();
      queue_.pop_front();
      job = jobs_[id];
    }
    run_job(job);
  }
}

fhir::Result<void> Reindexer::save(const ReindexJobRecord& record) {
  return store_.write([&](Transaction& txn) { return txn.save_reindex_job(tenant_, record); });
}

void Reindexer::set_state(std::int64_t id, const ReindexJobRecord& record) {
  std::lock_guard lock(mutex_);
  if (auto it = jobs_.find(id); it != jobs_.end()) it->second.record = record;
}

void Reindexer::run_job(Job& job) {
  ReindexJobRecord& r = job.record;
  auto fail = [&](std::string message) {
    r.state = "failed";
    r.message = std::move(message);
    r.updated_ms = wall_ms();
    (void)save(r);
    set_state(r.id, r);
  };

  if (job.custom) {
    // First every new write indexes the parameter; then the resources written before are backfilled.
    std::shared_ptr<const SearchIndexer> before;
    {
      std::lock_guard lock(mutex_);
      if (jobs_[r.id].cancelled) {
        r.state = "failed";
        r.message = "the SearchParameter was changed or deleted before its reindex ran";
      } else if (auto put = active_.put(*job.custom); !put) {
        r.state = "failed";
        r.message = put.error().issues.front().diagnostics;
      } else {
        before = std::move(*put);
      }
    }
    // (Never call the store with mutex_ held: the store's thread may be waiting for it in parameter_written.)
    if (r.state == "failed") {
      r.updated_ms = wall_ms();
      (void)save(r);
      set_state(r.id, r);
      return;
    }
    // Writes whose rows were extracted without the new parameter hold the older indexer until they are durable:
    // wait for them, so that the backfill below sees every one of them.
    std::weak_ptr<const SearchIndexer> old = before;
    before.reset();
    for (int i = 0; i < 60000 && !old.expired(); ++i) {
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;  // resumed at the next start
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  if (r.state != "running") {
    r.state = "running";
    r.updated_ms = wall_ms();
    auto saved = store_.write([&](Transaction& txn) -> Result<void> {
      auto extent = txn.index_extent(tenant_, r.types, r.last_rid, INT64_MAX);
      if (!extent) return std::unexpected(extent.error());
      r.max_rid = extent->max_rid;
      r.total = extent->count;
      return txn.save_reindex_job(tenant_, r);
    });
    if (!saved) return fail(saved.error().issues.front().diagnostics);
    set_state(r.id, r);
  }

  const std::vector<std::string> params = r.params;
  auto keep = [&](const std::string& code) { return std::ranges::find(params, code) != params.end(); };
  while (r.last_rid < r.max_rid) {
    bool stop = false, cancel = false;
    {
      std::lock_guard lock(mutex_);
      stop = stopping_;
      cancel = jobs_[r.id].cancelled;
    }
    if (stop) return;  // resumed at the next start
    if (cancel) return fail("the SearchParameter was changed or deleted during its reindex");
    ReindexJobRecord next;
    auto done = store_.write([&](Transaction& txn) -> Result<void> {
      next = r;  // (from the saved state each time: the store may run this again after a rollback)
      auto targets = txn.index_targets(tenant_, next.types, next.last_rid, next.max_rid, batch_size_);
      if (!targets) return std::unexpected(targets.error());
      std::shared_ptr<const SearchIndexer> custom = active_.custom_indexer();
      for (const IndexTarget& t : *targets) {
        auto body = json::parse(t.record.body);
        if (!body) continue;
        IndexValues values;
        if (params.empty()) {
          values = active_.extract(*body);
        } else {
          values = custom->extract(*body);
          filter_index(values, keep);
        }
        if (auto replaced = txn.replace_index(tenant_, t.rid, t.record.type, params, values); !replaced)
          return replaced;
      }
      next.processed += static_cast<std::int64_t>(targets->size());
      next.last_rid = targets->empty() ? next.max_rid : targets->back().rid;
      next.updated_ms = wall_ms();
      return txn.save_reindex_job(tenant_, next);
    });
    if (!done) return fail(done.error().issues.front().diagnostics);
    r = next;
    set_state(r.id, r);
  }

  if (job.custom) {
    std::lock_guard lock(mutex_);
    if (jobs_[r.id].cancelled) {
      r.state = "failed";
      r.message = "the SearchParameter was changed or deleted during its reindex";
    } else {
      active_.make_searchable(job.custom->resource_id, job.custom->version);
      r.state = "done";
    }
  } else {
    r.state = "done";
  }
  r.processed = std::max(r.processed, r.total);
  r.updated_ms = wall_ms();
  (void)save(r);
  set_state(r.id, r);
}

}  // namespace caduceus::resources
