#include "caduceus/resources/store/store.hpp"

#include <future>

#include "postgres_store.hpp"
#include "sqlite_store.hpp"

namespace caduceus::resources {

std::string_view to_string(Method m) noexcept {
  switch (m) {
    case Method::kCreate: return "POST";
    case Method::kUpdate: return "PUT";
    case Method::kDelete: return "DELETE";
  }
  return "PUT";
}

namespace {
std::unexpected<fhir::Error> no_reindex() {
  return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported", "this store does not reindex");
}
}  // namespace

fhir::Result<std::vector<std::pair<std::string, std::string>>> Transaction::search_ids(TenantId, const SearchQuery&,
                                                                                       std::size_t) {
  return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported",
                    "This store cannot search inside a transaction (conditional operations)");
}

fhir::Result<std::optional<VersionRecord>> Transaction::current_record(TenantId, std::string_view, std::string_view) {
  return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported",
                    "This store cannot read a resource inside a transaction (PATCH in a Bundle)");
}

fhir::Result<IndexExtent> Transaction::index_extent(TenantId, const std::vector<std::string>&, std::int64_t,
                                                    std::int64_t) {
  return no_reindex();
}
fhir::Result<std::vector<IndexTarget>> Transaction::index_targets(TenantId, const std::vector<std::string>&,
                                                                  std::int64_t, std::int64_t, std::size_t) {
  return no_reindex();
}
fhir::Result<void> Transaction::replace_index(TenantId, std::int64_t, std::string_view, const std::vector<std::string>&,
                                              const IndexValues&) {
  return no_reindex();
}
fhir::Result<void> Transaction::save_reindex_job(TenantId, const ReindexJobRecord&) {
  return no_reindex();
}
fhir::Result<std::vector<ReindexJobRecord>> Transaction::reindex_jobs(TenantId) {
  return no_reindex();
}

OAuthTables* Transaction::oauth_tables() {
  return nullptr;
}

fhir::Result<UserRows*> Transaction::users() {
  return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported", "this store keeps no users");
}

namespace {
std::unexpected<fhir::Error> no_inbound() {
  return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported", "this store does not keep HL7 v2 messages");
}
}  // namespace

fhir::Result<std::optional<InboundMessageRecord>> Transaction::find_inbound_message(TenantId, std::string_view,
                                                                                    std::string_view,
                                                                                    std::string_view) {
  return no_inbound();
}
fhir::Result<std::int64_t> Transaction::insert_inbound_message(TenantId, const InboundMessageRecord&) {
  return no_inbound();
}
fhir::Result<void> Transaction::update_inbound_message(TenantId, const InboundMessageRecord&) {
  return no_inbound();
}
fhir::Result<std::optional<InboundMessageRecord>> Transaction::inbound_message(TenantId, std::int64_t) {
  return no_inbound();
}

fhir::Result<std::int64_t> Transaction::insert_outbound_message(TenantId, const OutboundMessageRecord&) {
  return no_inbound();
}
fhir::Result<void> Transaction::update_outbound_message(TenantId, const OutboundMessageRecord&) {
  return no_inbound();
}
fhir::Result<std::vector<OutboundMessageRecord>> Transaction::outbound_messages(TenantId, const OutboundQuery&) {
  return no_inbound();
}
fhir::Result<std::vector<InboundMessageRecord>> Transaction::list_inbound_messages(TenantId, const Hl7MessageQuery&) {
  return no_inbound();
}
fhir::Result<std::optional<OutboundMessageRecord>> Transaction::outbound_message(TenantId, std::int64_t) {
  return no_inbound();
}
fhir::Result<std::vector<OutboundMessageRecord>> Transaction::list_outbound_messages(TenantId, const Hl7MessageQuery&) {
  return no_inbound();
}

fhir::Result<void> Store::write(Work work) {
  std::promise<fhir::Result<void>> promise;
  auto future = promise.get_future();
  write_async(std::move(work), [&promise](fhir::Result<void> r) { promise.set_value(std::move(r)); });
  return future.get();
}

fhir::Result<SharedSearchPage> Store::search_shared(TenantId tenant, const SearchQuery& query) {
  auto page = search(tenant, query);
  if (!page) return std::unexpected(page.error());
  SharedSearchPage shared;
  shared.entries.reserve(page->entries.size());
  for (VersionRecord& v : page->entries) shared.entries.push_back(std::make_shared<const VersionRecord>(std::move(v)));
  shared.included.reserve(page->included.size());
  for (VersionRecord& v : page->included)
    shared.included.push_back(std::make_shared<const VersionRecord>(std::move(v)));
  shared.next_cursor = std::move(page->next_cursor);
  shared.total = page->total;
  shared.include_limit_reached = page->include_limit_reached;
  return shared;
}

fhir::Result<SearchPlan> Store::explain(TenantId, const SearchQuery&) {
  return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported", "This store cannot explain its searches",
                    "_explain");
}

fhir::Result<std::optional<bool>> Store::token_revoked(TenantId, const std::string&) {
  return std::optional<bool>();
}

fhir::Result<void> Store::refresh_statistics() {
  return {};
}

fhir::Result<bool> Store::defer_search_indexes() {
  return false;
}

fhir::Result<void> Store::restore_search_indexes() {
  return {};
}

fhir::Result<void> Store::sync() {
  return {};
}

fhir::Result<std::unique_ptr<Store>> open_store(std::string_view url, const StoreOptions& options) {
  if (url.starts_with("sqlite:")) {
    std::string_view path = url.substr(7);
    if (path.empty()) return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "sqlite: needs a path");
    if (!options.read_url.empty())  // (its readers see every commit at once: there is nothing to route)
      return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "a read database (--db-read) is for PostgreSQL only");
    return open_sqlite_store(path, options);
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) return open_postgres_store(url, options);
  return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                    "unknown database URL '" + std::string(url) +
                        "': expected sqlite:PATH, sqlite::memory: or postgresql://USER@HOST:PORT/DB");
}

}  // namespace caduceus::resources
