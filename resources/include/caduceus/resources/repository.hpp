#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/resources/structure_checker.hpp"

namespace caduceus::resources {

class ActiveSearchParameters;  // caduceus/resources/custom_search.hpp

struct WriteOutcome {
  VersionRecord record;  // the version written (body with meta.versionId and meta.lastUpdated set)
  bool created = false;  // a new logical resource (201) rather than a new version of one (200)
};

// The FHIR semantics of writes, over any Store: the server owns id (on create), meta.versionId and
// meta.lastUpdated; every body passes the structural check; version checks and writes are atomic. Thread-safe.
// The REST layer and the HL7 v2 adapters both write through it.
// The search criteria of a conditional operation (If-None-Exist, PUT/DELETE/PATCH [type]?criteria), parsed
// against a snapshot of the search parameters, which `parameters` keeps alive as long as the query points into it.
struct Conditional {
  SearchQuery query;
  std::shared_ptr<const void> parameters;
  std::string text;  // the criteria as the client wrote them, for messages
};

// Sets meta.versionId and meta.lastUpdated of a resource about to be written, keeping the rest of its meta, and
// places meta right after id (as every write does).
void stamp_meta(fhir::json::Value& resource, std::int64_t version, std::int64_t last_updated_ms);
// Sets the resource's id (inserted after resourceType when it has none).
void set_id(fhir::json::Value& resource, const std::string& id);

// A resource serialized before its version number and time are known (off the single writer, where serializing
// cost a twentieth of a create): meta.versionId and meta.lastUpdated hold placeholders at known offsets, which
// body() replaces. Made with stamp_meta's placement: meta comes right after resourceType and id, whose values
// cannot hold its text, so the first `"meta":{"versionId":"` of the JSON is the resource's own.
class PreparedBody {
 public:
  // Stamps the placeholders into `resource` and serializes it; nullopt if the placeholders are not found where
  // they must be (never expected: the caller then serializes on the writer).
  static std::optional<PreparedBody> make(fhir::json::Value& resource);
  // The JSON of the version, as json::write of the resource stamped with (version, last_updated_ms) would give.
  std::string body(std::int64_t version, std::int64_t last_updated_ms) const;

 private:
  std::string json_;
  std::size_t version_at_ = 0, time_at_ = 0;
};

// Appends a new version of type/id inside the store's transaction: its time is the transaction's clock, its body
// body(version, last_updated_ms), its index rows `index`. Every write of a resource version goes through here.
template <class MakeBody>
fhir::Result<VersionRecord> append_version(Transaction& txn, TenantId tenant, std::string type, std::string id,
                                           std::int64_t version, Method method, const std::optional<IndexValues>& index,
                                           MakeBody&& body) {
  VersionRecord rec;
  rec.type = std::move(type);
  rec.id = std::move(id);
  rec.version = version;
  rec.last_updated_ms = txn.now_ms();
  rec.method = method;
  rec.body = body(rec.version, rec.last_updated_ms);
  // (_id and _lastUpdated have no index rows: search reads them from the resource row.)
  auto seq = txn.append(tenant, rec, index ? &*index : nullptr);
  if (!seq) return std::unexpected(seq.error());
  rec.seq = *seq;
  return rec;
}

class Repository {
 public:
  template <class T>
  using Callback = std::function<void(fhir::Result<T>)>;

  // With an indexer, every write also stores the search index values of the new version, in the same
  // transaction; without one (nullptr), none.
  Repository(Store& store, const Definitions& definitions, const StructureChecker& checker,
             const SearchIndexer* indexer = nullptr)
      : store_(store), definitions_(definitions), checker_(checker), indexer_(indexer) {}
  // With the search parameters in force (the R4 ones and the custom ones), taken afresh for every write.
  Repository(Store& store, const Definitions& definitions, const StructureChecker& checker,
             const ActiveSearchParameters& active)
      : store_(store), definitions_(definitions), checker_(checker), indexer_(nullptr), active_(&active) {}
  // The repository `like` over another store (one that decorates like's store, e.g. AccessGuardedStore).
  Repository(Store& store, const Repository& like)
      : store_(store),
        definitions_(like.definitions_),
        checker_(like.checker_),
        indexer_(like.indexer_),
        active_(like.active_) {}

  // Creates a resource of `type` with a new id (any id in the body is replaced).
  // Errors: kInvalid with the issues (bad structure, wrong resourceType), kUnavailable.
  fhir::Result<WriteOutcome> create(TenantId tenant, std::string_view type, fhir::json::Value resource);

  // Updates (or, when the resource does not exist yet and allow_create, creates) type/id. The body's id must
  // equal `id`. if_match: the version the client last saw; kPreconditionFailed when it is not current.
  fhir::Result<WriteOutcome> update(TenantId tenant, std::string_view type, std::string_view id,
                                    fhir::json::Value resource, std::optional<std::int64_t> if_match,
                                    bool allow_create = true);

  // Deletes type/id: appends a version marked deleted. Returns that version, or nullopt when there was nothing
  // to delete (never existed, or already deleted). kPreconditionFailed when if_match is not current.
  fhir::Result<std::optional<VersionRecord>> remove(TenantId tenant, std::string_view type, std::string_view id,
                                                    std::optional<std::int64_t> if_match);

  // Checks a body for `type` without writing it (structure, resourceType, id rules). `id_expected`: on update the
  // body must carry this id.
  std::vector<fhir::Issue> check(std::string_view type, const fhir::json::Value& resource,
                                 std::optional<std::string_view> id_expected) const;

  // The same three writes, answering through a callback once the write is durable (or has failed), without
  // holding the calling thread. The callback runs on the caller's thread when the body is refused before any
  // write, else on a thread of the store's: keep it short.
  void create_async(TenantId tenant, std::string_view type, fhir::json::Value resource, Callback<WriteOutcome> done);
  void update_async(TenantId tenant, std::string_view type, std::string_view id, fhir::json::Value resource,
                    std::optional<std::int64_t> if_match, bool allow_create, Callback<WriteOutcome> done);
  void remove_async(TenantId tenant, std::string_view type, std::string_view id, std::optional<std::int64_t> if_match,
                    Callback<std::optional<VersionRecord>> done);

  // Conditional writes: the criteria are evaluated inside the write's own transaction (Transaction::search_ids),
  // so no other write can come between the check and the write. kPreconditionFailed when several resources match.
  //
  // Conditional create (If-None-Exist): no match creates (created = true); one match writes nothing and answers
  // that resource's current version (created = false).
  void conditional_create_async(TenantId tenant, std::string_view type, fhir::json::Value resource,
                                std::shared_ptr<const Conditional> criteria, Callback<WriteOutcome> done);
  // Conditional update (PUT [type]?criteria): one match is updated (a body id that differs from it: kInvalid); no
  // match creates, with the body's id when it has one (update as create), else a new id.
  void conditional_update_async(TenantId tenant, std::string_view type, fhir::json::Value resource,
                                std::shared_ptr<const Conditional> criteria, Callback<WriteOutcome> done);
  // The same conditional update, made inside a write job of the caller's (Store::write_async), so that it
  // commits together with the caller's other writes (the HL7 v2 adapters store the message and its resources in
  // one transaction). The body passes check() first. Errors as conditional_update_async; the caller's job should
  // return them (nothing of it is then kept).
  fhir::Result<WriteOutcome> conditional_update_in(Transaction& txn, TenantId tenant, std::string_view type,
                                                   fhir::json::Value resource, const Conditional& criteria);
  // An update (or create) of type/id made inside a write job of the caller's, for a caller that has found the id
  // itself in that same transaction (the HL7 v2 writer, after its conditional search): no second search. The body
  // passes check() first and must carry `id`.
  fhir::Result<WriteOutcome> update_in(Transaction& txn, TenantId tenant, std::string_view type, std::string_view id,
                                       fhir::json::Value resource);
  // A write's body checked and its index values extracted ahead of the write job, off the store's writer thread
  // (see prepare and update_in below). `guard`: what extracted the values (keep it until the write is durable).
  struct Prepared {
    fhir::json::Value resource;  // with its id
    std::optional<IndexValues> index;
    std::shared_ptr<const void> guard;
  };
  // Checks `resource` as update_in would for type/id (the body must carry `id`) and extracts its index values.
  // Errors: kInvalid with the issues.
  fhir::Result<Prepared> prepare(std::string_view type, std::string_view id, fhir::json::Value resource) const;
  // update_in of a prepared body, written as type/id (`id` may differ from the prepared body's: the index values
  // do not depend on the resource's own id, so that a body prepared for a new id can be written over a match).
  // No check and no extraction in the job: only the current version's lookup and the append.
  fhir::Result<WriteOutcome> update_in(Transaction& txn, TenantId tenant, std::string_view type, std::string_view id,
                                       const Prepared& prepared);
  // Conditional delete (DELETE [type]?criteria): deletes every match when there are at most max_matches (at least
  // one), else kPreconditionFailed and nothing is deleted. Answers the deletion versions written (none: no match).
  void conditional_delete_async(TenantId tenant, std::string_view type, std::shared_ptr<const Conditional> criteria,
                                std::size_t max_matches, Callback<std::vector<VersionRecord>> done);
  // Patch: reads the current version, applies `patch` to its body and writes the result as the next version, if
  // that version is still the current one; else reads and applies again (so concurrent patches are never lost).
  // The patched body must keep type and id and passes the same check as any update; a patch that fails or makes
  // the resource invalid is kUnprocessable and writes nothing. if_match: kPreconditionFailed when not current.
  // Errors: kNotFound, kGone (deleted), the patch's own errors, kConflict when it keeps losing the race.
  using PatchFn = std::function<fhir::Result<void>(fhir::json::Value&)>;
  fhir::Result<WriteOutcome> patch(TenantId tenant, std::string_view type, std::string_view id, const PatchFn& patch,
                                   std::optional<std::int64_t> if_match);
  // Conditional patch (PATCH [type]?criteria): the patch of the one match, written only if, inside the write's
  // transaction, the criteria still match that resource alone and its version is the one patched (else all again).
  // kNotFound when nothing matches, kPreconditionFailed when several do.
  fhir::Result<WriteOutcome> conditional_patch(TenantId tenant, std::string_view type,
                                               std::shared_ptr<const Conditional> criteria, const PatchFn& patch);
  // The search index values that a write of `resource` would store (nullopt when the repository does not index;
  // _lastUpdated left out). `guard`: keep it until the write is durable. For writes made outside the repository
  // (transaction Bundles), in a Store::write job of their own.
  std::optional<IndexValues> index_values(const fhir::json::Value& resource, std::shared_ptr<const void>& guard) const {
    return index_of(resource, guard);
  }

  Store& store() noexcept { return store_; }
  const Definitions& definitions() const noexcept { return definitions_; }

 private:
  Store& store_;
  const Definitions& definitions_;
  const StructureChecker& checker_;
  const SearchIndexer* indexer_;
  const ActiveSearchParameters* active_ = nullptr;

  // The index values of a resource about to be written (without _lastUpdated, added once it is known). `guard`
  // receives what must live until the write is durable (see ActiveSearchParameters::extract).
  std::optional<IndexValues> index_of(const fhir::json::Value& resource, std::shared_ptr<const void>& guard) const;
  // A create's new id, set in `resource` once the resource passes the structural check (the server owns the id: a
  // client's is replaced first, so that it cannot fail the check). Errors: the check's.
  fhir::Result<std::string> new_checked_id(std::string_view type, fhir::json::Value& resource) const;
  // One round of a patch: nullopt when another write came first (or, with criteria, the criteria no longer match
  // that resource alone), and nothing was written.
  fhir::Result<std::optional<WriteOutcome>> patch_round(TenantId tenant, const std::string& type, const std::string& id,
                                                        const PatchFn& patch, std::optional<std::int64_t> if_match,
                                                        const std::shared_ptr<const Conditional>& criteria);
};

// A new resource id that sorts by creation time: an RFC 9562 version 7 UUID (48 bits of Unix milliseconds, then
// 74 random bits), in lower case. Consecutive ids land on the same last page of each id-keyed index instead of a
// random page each. Its cost: the id tells when (to the millisecond) the resource was created, as
// meta.lastUpdated of its first version does.
std::string new_resource_id();
// Whether text is a valid FHIR id ([A-Za-z0-9-.]{1,64}).
bool is_valid_id(std::string_view text) noexcept;

}  // namespace caduceus::resources
