#pragma once

#include <memory>
#include <string>

#include "caduceus/resources/access_filter.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {

// The access filters of one request's writes, one per SMART permission (nullptr: that permission is not
// restricted beyond the resource types the authorizer checks).
struct WriteAccess {
  std::shared_ptr<const AccessFilter> create, update, remove, search;
  // The search parameters the filters were parsed with (the _id parameter decides "this resource").
  std::shared_ptr<const SearchParameterRegistry> registry;
  bool restricted() const { return create || update || remove || search; }
};

// A Store that forwards everything to another one, except that every write job runs in a transaction that keeps
// a request's writes inside what its token may touch, decided inside that transaction by the same SQL that
// filters its reads (so no other write comes between the check and the write, and a refusal rolls the whole job
// back: a transaction Bundle writes nothing):
// - a version appended over a live resource: that resource, as it is before the write, must be visible under the
//   `update` filter (`remove` for a deletion);
// - a version appended over a deleted resource: its last live version must have been visible under `update`
//   (history keeps the old versions, so a deleted resource of another patient cannot be taken over);
// - the version written (not a deletion), once its index rows are in: visible under `update`, or for a new
//   resource under `create` or `update` (an update may create);
// - a search inside the job without a filter of its own (conditional operations and references of a Bundle) gets
//   the `search` filter: it only ever matches what the request may see.
// Refusals are ErrorKind::kForbidden naming the resource (issue.expression: its type).
// `repository()` writes through this store with the checks, parsing and indexing of `like`. Make one per request
// with make(); the write jobs keep it alive until they are done.
class AccessGuardedStore final : public Store, public std::enable_shared_from_this<AccessGuardedStore> {
 public:
  static std::shared_ptr<AccessGuardedStore> make(Store& inner, WriteAccess access, const Repository& like);

  Repository& repository() noexcept { return repository_; }

  fhir::Result<VersionRecord> read(TenantId tenant, std::string_view type, std::string_view id) override;
  fhir::Result<VersionRecord> vread(TenantId tenant, std::string_view type, std::string_view id,
                                    std::int64_t version) override;
  fhir::Result<HistoryPage> history(TenantId tenant, const HistoryQuery& query) override;
  fhir::Result<std::int64_t> history_total(TenantId tenant, const HistoryQuery& query) override;
  void write_async(Work work, Done done) override;
  fhir::Result<SearchPage> search(TenantId tenant, const SearchQuery& query) override;
  fhir::Result<SearchPlan> explain(TenantId tenant, const SearchQuery& query) override;
  fhir::Result<void> ping() override;
  fhir::Result<std::optional<bool>> token_revoked(TenantId tenant, const std::string& jti) override;

  AccessGuardedStore(Store& inner, WriteAccess access, const Repository& like);

 private:
  Store& inner_;
  std::shared_ptr<const WriteAccess> access_;
  Repository repository_;
};

// Whether type/id, deleted or not, is visible under `access`: a live resource as its current version, a deleted
// one as its last live version was (the index rows that a deletion keeps aside). With no filter: true.
fhir::Result<bool> is_visible_or_was(Store& store, TenantId tenant, const std::string& type, const std::string& id,
                                     std::shared_ptr<const AccessFilter> access);

}  // namespace caduceus::resources
