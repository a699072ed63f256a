#include "caduceus/resources/access_guarded_store.hpp"

#include <utility>

#include "caduceus/resources/search_query.hpp"

namespace caduceus::resources {

using fhir::ErrorKind;
using fhir::Result;

namespace {

std::unexpected<fhir::Error> forbidden(const std::string& type, const std::string& id, const std::string& what) {
  return fhir::fail(ErrorKind::kForbidden, "forbidden",
                    "The token does not give access to " + type + "/" + id + " " + what +
                        " (its scopes, patient context or the user's role leave it out)",
                    type);
}

// Whether the current, live type/id is visible under `filter`, asked inside the transaction (its own writes count).
Result<bool> visible_in(Transaction& txn, TenantId tenant, const SearchParameterRegistry* registry,
                        const std::string& type, const std::string& id,
                        const std::shared_ptr<const AccessFilter>& filter) {
  if (!filter) return true;
  if (filter->allow.empty() || registry == nullptr) return false;
  auto q = visible_id_query(*registry, type, id, filter);
  if (!q) return false;
  auto ids = txn.search_ids(tenant, *q, 1);
  if (!ids) return std::unexpected(ids.error());
  return !ids->empty();
}

// The transaction of a write job, checked (AccessGuardedStore).
class GuardedTransaction final : public Transaction {
 public:
  GuardedTransaction(Transaction& inner, Store& store, const WriteAccess& access)
      : inner_(inner), store_(store), access_(access) {}

  Result<std::optional<CurrentInfo>> current(TenantId tenant, std::string_view type, std::string_view id) override {
    return inner_.current(tenant, type, id);
  }

  Result<std::int64_t> append(TenantId tenant, const VersionRecord& record, const IndexValues* index) override {
    const SearchParameterRegistry* registry = access_.registry.get();
    auto cur = inner_.current(tenant, record.type, record.id);
    if (!cur) return std::unexpected(cur.error());
    const bool live = *cur && !(*cur)->deleted;
    if (live) {
      auto ok = visible_in(inner_, tenant, registry, record.type, record.id,
                           record.deleted ? access_.remove : access_.update);
      if (!ok) return std::unexpected(ok.error());
      if (!*ok) return forbidden(record.type, record.id, record.deleted ? "to delete" : "to change");
    } else if (*cur && access_.update) {
      // A deleted resource: its old versions stay in its history, so only who could see it may bring it back.
      auto ok = is_visible_or_was(store_, tenant, record.type, record.id, access_.update);
      if (!ok) return std::unexpected(ok.error());
      if (!*ok) return forbidden(record.type, record.id, "(deleted) to write again");
    }
    auto seq = inner_.append(tenant, record, index);
    if (!seq || record.deleted) return seq;
    auto ok = visible_in(inner_, tenant, registry, record.type, record.id, access_.update);
    if (ok && !*ok && !live) ok = visible_in(inner_, tenant, registry, record.type, record.id, access_.create);
    if (!ok) return std::unexpected(ok.error());
    if (!*ok) return forbidden(record.type, record.id, "as written");
    return seq;
  }

  std::int64_t now_ms() override { return inner_.now_ms(); }

  Result<std::optional<VersionRecord>> current_record(TenantId tenant, std::string_view type,
                                                      std::string_view id) override {
    return inner_.current_record(tenant, type, id);
  }

  Result<std::vector<std::pair<std::string, std::string>>> search_ids(TenantId tenant, const SearchQuery& query,
                                                                      std::size_t limit) override {
    if (query.access || !access_.search) return inner_.search_ids(tenant, query, limit);
    SearchQuery filtered = query;
    filtered.access = access_.search;
    return inner_.search_ids(tenant, filtered, limit);
  }

  Result<IndexExtent> index_extent(TenantId tenant, const std::vector<std::string>& types, std::int64_t after_rid,
                                   std::int64_t max_rid) override {
    return inner_.index_extent(tenant, types, after_rid, max_rid);
  }
  Result<std::vector<IndexTarget>> index_targets(TenantId tenant, const std::vector<std::string>& types,
                                                 std::int64_t after_rid, std::int64_t max_rid,
                                                 std::size_t limit) override {
    return inner_.index_targets(tenant, types, after_rid, max_rid, limit);
  }
  Result<void> replace_index(TenantId tenant, std::int64_t rid, std::string_view type,
                             const std::vector<std::string>& params, const IndexValues& values) override {
    return inner_.replace_index(tenant, rid, type, params, values);
  }
  Result<void> save_reindex_job(TenantId tenant, const ReindexJobRecord& job) override {
    return inner_.save_reindex_job(tenant, job);
  }
  Result<std::vector<ReindexJobRecord>> reindex_jobs(TenantId tenant) override { return inner_.reindex_jobs(tenant); }
  OAuthTables* oauth_tables() override { return inner_.oauth_tables(); }
  Result<UserRows*> users() override { return inner_.users(); }
  Result<std::optional<InboundMessageRecord>> find_inbound_message(TenantId tenant, std::string_view app,
                                                                   std::string_view facility,
                                                                   std::string_view control_id) override {
    return inner_.find_inbound_message(tenant, app, facility, control_id);
  }
  Result<std::int64_t> insert_inbound_message(TenantId tenant, const InboundMessageRecord& record) override {
    return inner_.insert_inbound_message(tenant, record);
  }
  Result<void> update_inbound_message(TenantId tenant, const InboundMessageRecord& record) override {
    return inner_.update_inbound_message(tenant, record);
  }
  Result<std::optional<InboundMessageRecord>> inbound_message(TenantId tenant, std::int64_t id) override {
    return inner_.inbound_message(tenant, id);
  }
  Result<std::int64_t> insert_outbound_message(TenantId tenant, const OutboundMessageRecord& record) override {
    return inner_.insert_outbound_message(tenant, record);
  }
  Result<void> update_outbound_message(TenantId tenant, const OutboundMessageRecord& record) override {
    return inner_.update_outbound_message(tenant, record);
  }
  Result<std::vector<OutboundMessageRecord>> outbound_messages(TenantId tenant, const OutboundQuery& query) override {
    return inner_.outbound_messages(tenant, query);
  }
  Result<std::optional<OutboundMessageRecord>> outbound_message(TenantId tenant, std::int64_t id) override {
    return inner_.outbound_message(tenant, id);
  }
  Result<std::vector<InboundMessageRecord>> list_inbound_messages(TenantId tenant,
                                                                  const Hl7MessageQuery& query) override {
    return inner_.list_inbound_messages(tenant, query);
  }
  Result<std::vector<OutboundMessageRecord>> list_outbound_messages(TenantId tenant,
                                                                    const Hl7MessageQuery& query) override {
    return inner_.list_outbound_messages(tenant, query);
  }

 private:
  Transaction& inner_;
  Store& store_;
  const WriteAccess& access_;
};

}  // namespace

AccessGuardedStore::AccessGuardedStore(Store& inner, WriteAccess access, const Repository& like)
    : inner_(inner), access_(std::make_shared<const WriteAccess>(std::move(access))), repository_(*this, like) {}

std::shared_ptr<AccessGuardedStore> AccessGuardedStore::make(Store& inner, WriteAccess access, const Repository& like) {
  return std::make_shared<AccessGuardedStore>(inner, std::move(access), like);
}

Result<VersionRecord> AccessGuardedStore::read(TenantId tenant, std::string_view type, std::string_view id) {
  return inner_.read(tenant, type, id);
}
Result<VersionRecord> AccessGuardedStore::vread(TenantId tenant, std::string_view type, std::string_view id,
                                                std::int64_t version) {
  return inner_.vread(tenant, type, id, version);
}
Result<HistoryPage> AccessGuardedStore::history(TenantId tenant, const HistoryQuery& query) {
  return inner_.history(tenant, query);
}
Result<std::int64_t> AccessGuardedStore::history_total(TenantId tenant, const HistoryQuery& query) {
  return inner_.history_total(tenant, query);
}
void AccessGuardedStore::write_async(Work work, Done done) {
  // The jobs hold this store (and its repository, whose callbacks may use it) until their answer is given.
  inner_.write_async(
      [self = shared_from_this(), work = std::move(work)](Transaction& txn) -> Result<void> {
        GuardedTransaction guarded(txn, self->inner_, *self->access_);
        return work(guarded);
      },
      [self = shared_from_this(), done = std::move(done)](Result<void> r) { done(std::move(r)); });
}
Result<SearchPage> AccessGuardedStore::search(TenantId tenant, const SearchQuery& query) {
  return inner_.search(tenant, query);
}
Result<SearchPlan> AccessGuardedStore::explain(TenantId tenant, const SearchQuery& query) {
  return inner_.explain(tenant, query);
}
Result<void> AccessGuardedStore::ping() {
  return inner_.ping();
}
Result<std::optional<bool>> AccessGuardedStore::token_revoked(TenantId tenant, const std::string& jti) {
  return inner_.token_revoked(tenant, jti);
}

Result<bool> is_visible_or_was(Store& store, TenantId tenant, const std::string& type, const std::string& id,
                               std::shared_ptr<const AccessFilter> access) {
  if (!access) return true;
  if (access->allow.empty()) return false;
  HistoryQuery q;
  q.type = type;
  q.id = id;
  q.count = 1;
  q.access = std::move(access);
  auto page = store.history(tenant, q);
  if (!page) return std::unexpected(page.error());
  return !page->entries.empty();
}

}  // namespace caduceus::resources
