#pragma once

// The writer's Transaction of a store (SqliteStore, PostgresStore): every call goes to the store's `txn_` member of
// the same name, which runs it on the writer's connection inside the open transaction. users() is left to each
// store's own subclass (how it reaches its user rows differs).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {

template <class S>
class ForwardingTransaction : public Transaction {
 public:
  explicit ForwardingTransaction(S& store) : store_(store) {}

  fhir::Result<std::optional<CurrentInfo>> current(TenantId tenant, std::string_view type,
                                                   std::string_view id) override {
    return store_.txn_current(tenant, type, id);
  }
  fhir::Result<std::int64_t> append(TenantId tenant, const VersionRecord& record, const IndexValues* index) override {
    return store_.txn_append(tenant, record, index);
  }
  std::int64_t now_ms() override { return store_.txn_now_ms(); }
  fhir::Result<std::optional<VersionRecord>> current_record(TenantId tenant, std::string_view type,
                                                            std::string_view id) override {
    return store_.txn_current_record(tenant, type, id);
  }
  fhir::Result<std::vector<std::pair<std::string, std::string>>> search_ids(TenantId tenant, const SearchQuery& query,
                                                                            std::size_t limit) override {
    return store_.txn_search_ids(tenant, query, limit);
  }
  fhir::Result<IndexExtent> index_extent(TenantId tenant, const std::vector<std::string>& types, std::int64_t after_rid,
                                         std::int64_t max_rid) override {
    return store_.txn_index_extent(tenant, types, after_rid, max_rid);
  }
  fhir::Result<std::vector<IndexTarget>> index_targets(TenantId tenant, const std::vector<std::string>& types,
                                                       std::int64_t after_rid, std::int64_t max_rid,
                                                       std::size_t limit) override {
    return store_.txn_index_targets(tenant, types, after_rid, max_rid, limit);
  }
  fhir::Result<void> replace_index(TenantId tenant, std::int64_t rid, std::string_view type,
                                   const std::vector<std::string>& params, const IndexValues& values) override {
    return store_.txn_replace_index(tenant, rid, type, params, values);
  }
  fhir::Result<void> save_reindex_job(TenantId tenant, const ReindexJobRecord& job) override {
    return store_.txn_save_reindex_job(tenant, job);
  }
  fhir::Result<std::vector<ReindexJobRecord>> reindex_jobs(TenantId tenant) override {
    return store_.txn_reindex_jobs(tenant);
  }
  OAuthTables* oauth_tables() override { return store_.txn_oauth_tables(); }
  fhir::Result<std::optional<InboundMessageRecord>> find_inbound_message(TenantId tenant, std::string_view app,
                                                                         std::string_view facility,
                                                                         std::string_view control_id) override {
    return store_.txn_find_inbound_message(tenant, app, facility, control_id);
  }
  fhir::Result<std::int64_t> insert_inbound_message(TenantId tenant, const InboundMessageRecord& record) override {
    return store_.txn_insert_inbound_message(tenant, record);
  }
  fhir::Result<void> update_inbound_message(TenantId tenant, const InboundMessageRecord& record) override {
    return store_.txn_update_inbound_message(tenant, record);
  }
  fhir::Result<std::optional<InboundMessageRecord>> inbound_message(TenantId tenant, std::int64_t id) override {
    return store_.txn_inbound_message(tenant, id);
  }
  fhir::Result<std::int64_t> insert_outbound_message(TenantId tenant, const OutboundMessageRecord& record) override {
    return store_.txn_insert_outbound_message(tenant, record);
  }
  fhir::Result<void> update_outbound_message(TenantId tenant, const OutboundMessageRecord& record) override {
    return store_.txn_update_outbound_message(tenant, record);
  }
  fhir::Result<std::vector<OutboundMessageRecord>> outbound_messages(TenantId tenant,
                                                                     const OutboundQuery& query) override {
    return store_.txn_outbound_messages(tenant, query);
  }
  fhir::Result<std::vector<InboundMessageRecord>> list_inbound_messages(TenantId tenant,
                                                                        const Hl7MessageQuery& query) override {
    return store_.txn_list_inbound_messages(tenant, query);
  }
  fhir::Result<std::optional<OutboundMessageRecord>> outbound_message(TenantId tenant, std::int64_t id) override {
    return store_.txn_outbound_message(tenant, id);
  }
  fhir::Result<std::vector<OutboundMessageRecord>> list_outbound_messages(TenantId tenant,
                                                                          const Hl7MessageQuery& query) override {
    return store_.txn_list_outbound_messages(tenant, query);
  }

 protected:
  S& store_;
};

}  // namespace caduceus::resources
