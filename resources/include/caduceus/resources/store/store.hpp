#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::resources {

struct AccessFilter;  // caduceus/resources/access_filter.hpp
struct IndexValues;   // caduceus/resources/search_index.hpp
class OAuthTables;    // caduceus/resources/store/oauth_tables.hpp
struct SearchQuery;   // caduceus/resources/search_query.hpp
class UserRows;       // caduceus/resources/store/users.hpp

// Every stored row carries a tenant (partition) key, and every query filters on it. One tenant for now.
using TenantId = std::int64_t;
inline constexpr TenantId kDefaultTenant = 0;

// How a version came to be (Bundle.entry.request.method in history).
enum class Method { kCreate, kUpdate, kDelete };

// One immutable version of a resource, as stored.
struct VersionRecord {
  std::string type;
  std::string id;
  std::int64_t version = 0;
  std::int64_t last_updated_ms = 0;  // milliseconds since the Unix epoch, UTC
  bool deleted = false;
  Method method = Method::kCreate;
  std::string body;      // the resource's JSON, meta included; empty for a delete
  std::int64_t seq = 0;  // position in the store's change feed (system history order)
};

// The current state of a logical resource, as seen inside a write transaction.
struct CurrentInfo {
  std::int64_t version = 0;
  std::int64_t last_updated_ms = 0;
  bool deleted = false;
};

struct HistoryQuery {
  std::string type;                      // empty: whole system
  std::string id;                        // empty: whole type (or system)
  std::optional<std::int64_t> since_ms;  // only versions with last_updated >= since
  // Only versions that were current at some moment in [at_low_ms, at_high_ms).
  std::optional<std::int64_t> at_low_ms;
  std::optional<std::int64_t> at_high_ms;
  std::optional<std::int64_t> before_seq;  // paging cursor: only versions with seq < before_seq
  std::size_t count = 50;
  // When set: only the versions of resources whose current version it lets the requester see (a deleted resource,
  // which has no index rows, then has no visible history).
  std::shared_ptr<const AccessFilter> access;
};

struct HistoryPage {
  std::vector<VersionRecord> entries;           // newest first
  std::optional<std::int64_t> next_before_seq;  // set when more entries follow
};

// One page of search results: the current versions of the matching resources, in a stable order.
struct SearchPage {
  std::vector<VersionRecord> entries;
  std::optional<std::string> next_cursor;  // set when more follow: pass it back as SearchQuery::cursor
  std::optional<std::int64_t> total;       // when the query asked for it (_total=accurate, _summary=count)
  std::vector<VersionRecord> included;     // _include and _revinclude results (each once, none of the matches)
  bool include_limit_reached = false;      // more would have been included than the store's maximum
};

// The same page with its records shared, immutable, rather than copied (from the store's cache of current versions
// where it has one): what the REST layer splices into a searchset Bundle without copying each record first.
struct SharedSearchPage {
  std::vector<std::shared_ptr<const VersionRecord>> entries;
  std::optional<std::string> next_cursor;
  std::optional<std::int64_t> total;
  std::vector<std::shared_ptr<const VersionRecord>> included;
  bool include_limit_reached = false;
};

// One SQL statement that a search runs, as the database would run it (Store::explain).
struct PlanStep {  // one row of SQLite's EXPLAIN QUERY PLAN
  std::int64_t id = 0;
  std::int64_t parent = 0;
  std::string detail;  // "SEARCH x USING COVERING INDEX idx_token_value (tenant=? AND type=? AND param=? AND code=?)"
};

struct StatementPlan {
  std::string role;         // "page", "count", "include", "revinclude"
  std::string description;  // what it is for, in words
  bool runs = true;         // whether this search runs it (the count: only with _total=accurate or _summary=count)
  std::string sql;
  std::vector<std::variant<std::int64_t, double, std::string>> binds;  // in order of the `?`
  std::vector<PlanStep> steps;
  // The indexes the plan uses, in order of first use, parsed from the steps: the name for "USING INDEX x" and
  // "USING COVERING INDEX x", "PRIMARY KEY (alias)" for "USING PRIMARY KEY" / "USING INTEGER PRIMARY KEY", and
  // "AUTOMATIC INDEX (alias)" for an index SQLite builds for the statement alone.
  std::vector<std::string> indexes;
  // SQLite's plan carries no row estimates, so the figure is counted: for "page" and "count" the matches of the
  // search (counting stopped at a bound: then rows_bounded, and there are at least `rows`); for includes the rows
  // the statement returns for the first page. rows_method says which.
  std::optional<std::int64_t> rows;
  bool rows_bounded = false;
  std::string rows_method;
  // The database's own estimate of the matches (PostgreSQL's EXPLAIN; SQLite has none).
  std::optional<std::int64_t> estimated_rows;
  // sqlite_stat1 rows (index, stat) of the indexes used, when ANALYZE has been run on the database; else empty.
  std::vector<std::pair<std::string, std::string>> statistics;
};

struct SearchPlan {
  std::vector<StatementPlan> statements;
  // What the plan leaves out or assumes: a part of the query the search would refuse as not supported yet (the
  // plan is then of the search without it), the bound of the counts, includes planned for the first page only.
  std::vector<std::string> notes;
};

// The current, not deleted version of a resource, with the store's key for it (reindexing walks resources by rid).
struct IndexTarget {
  std::int64_t rid = 0;
  VersionRecord record;
};

// How many current, not deleted resources a reindex covers, and the highest rid among them (0 when none).
struct IndexExtent {
  std::int64_t max_rid = 0;
  std::int64_t count = 0;
};

// A reindex job as persisted (so that an unfinished one is resumed after a restart).
struct ReindexJobRecord {
  std::int64_t id = 0;
  std::vector<std::string> types;   // empty: every type
  std::vector<std::string> params;  // the codes whose rows are rewritten; empty: all rows of each resource
  std::string search_parameter;     // "SearchParameter/<id>/_history/<version>" it makes searchable, or empty
  std::string state;                // queued, running, done, failed
  std::int64_t processed = 0, total = 0;
  std::int64_t last_rid = 0;  // resources with rid <= last_rid are done
  std::int64_t max_rid = 0;   // the job covers rid <= max_rid (fixed when it starts running)
  std::string message;        // why it failed
  std::int64_t created_ms = 0, updated_ms = 0;
};

// An inbound HL7 v2 message as kept (the adapters' message log): stored before it is acknowledged.
struct InboundMessageRecord {
  std::int64_t id = 0;                                // assigned by the store
  std::string sending_application, sending_facility;  // MSH-3 and MSH-4 as received
  std::string control_id;                             // MSH-10 ("" when the message had none)
  std::string message_type;                           // MSH-9 as received, e.g. "ADT^A01^ADT_A01"
  std::int64_t received_ms = 0;
  std::string raw;                     // the bytes as received
  std::string status;                  // received, processed, error, rejected
  std::string ack;                     // the last acknowledgement sent (the application one once there is one)
  std::vector<std::string> resources;  // "Patient/123/_history/2" of each version it produced
  std::string error;                   // why it failed (status error or rejected)
  std::int64_t updated_ms = 0;
  std::int64_t replays = 0;      // how many times an operator had it processed again (the monitor's $replay)
  std::int64_t replayed_ms = 0;  // when the last of them was (0: never)
};

// An outbound HL7 v2 message waiting for (or done with) delivery to a destination (the adapters' durable queue).
struct OutboundMessageRecord {
  std::int64_t id = 0;  // assigned by the store; the order of delivery within a destination
  std::string destination;
  std::string message_type;  // ORM^O01
  std::string control_id;    // its MSH-10
  std::string message;       // the message (segments ended by CR)
  std::string source;        // the resource version that triggered it, e.g. ServiceRequest/1/_history/2
  std::string status;        // pending, sent, dead
  std::int64_t attempts = 0;
  std::string last_error;
  std::string ack;
  std::int64_t created_ms = 0, updated_ms = 0, next_attempt_ms = 0;
};

// Which outbound messages to list: all filters optional (empty: any); by id ascending, at most `limit` (0: all).
struct OutboundQuery {
  std::string destination;
  std::string status;
  std::size_t limit = 0;
};

// Which HL7 v2 messages to list (the message monitor), newest first: by time (inbound: received, outbound:
// created), then id, both descending. Every filter is optional (empty: any).
struct Hl7MessageQuery {
  std::string message_type;           // MSH-9 equal to it, or starting with it and then '^' ("ADT", "ADT^A01")
  std::vector<std::string> statuses;  // any of these
  std::string control_id;             // MSH-10
  std::optional<std::int64_t> since_ms, until_ms;  // time in [since, until)
  std::string resource;     // inbound only: messages that produced a version of this resource ("Patient/p1")
  std::string destination;  // outbound only
  // Paging: only the messages after the position (time, id) in that order, i.e. time < first, or time = first and
  // id < second.
  std::optional<std::pair<std::int64_t, std::int64_t>> before;
  std::size_t limit = 50;
};

// One unit of writes, atomic and durable together. Implemented by each backend.
class Transaction {
 public:
  virtual ~Transaction() = default;
  // The current version of a resource, or nullopt if it never existed. Backends lock what they must so that
  // the check made with it and the following append are atomic.
  virtual fhir::Result<std::optional<CurrentInfo>> current(TenantId tenant, std::string_view type,
                                                           std::string_view id) = 0;
  // Appends a version (record.seq is ignored and assigned) and makes it the current one. `index`: the search
  // index values of that version, replacing those of the previous one (nullptr: no index rows; a delete always
  // removes them).
  virtual fhir::Result<std::int64_t> append(TenantId tenant, const VersionRecord& record,
                                            const IndexValues* index = nullptr) = 0;
  // The store's clock, in ms since the epoch; never runs backwards within one store.
  virtual std::int64_t now_ms() = 0;
  // The current version with its body (deleted ones included, deleted = true and no body), seen from inside this
  // transaction (writes made earlier in it count), or nullopt if it never existed. For a read-modify-write inside
  // the job (a PATCH entry of a Bundle). kNotSupported from a backend without it.
  virtual fhir::Result<std::optional<VersionRecord>> current_record(TenantId tenant, std::string_view type,
                                                                    std::string_view id);

  // The (type, id) of the current, not deleted resources that match `query` (its criteria, _has, compartment
  // and types; paging, _sort, _include and _summary are ignored), seen from inside this transaction: writes
  // made earlier in it count, and no other write can come between this and what the caller writes next. At most
  // `limit` are returned (ask for one more than you accept to tell "too many"). For conditional operations and
  // conditional references. kNotSupported from a backend without it.
  virtual fhir::Result<std::vector<std::pair<std::string, std::string>>> search_ids(TenantId tenant,
                                                                                    const SearchQuery& query,
                                                                                    std::size_t limit);

  // Reindexing (a backend that does not offer it answers kNotSupported). The current, not deleted resources of
  // `types` (every type when empty) with after_rid < rid <= max_rid: how many, and the highest rid.
  virtual fhir::Result<IndexExtent> index_extent(TenantId tenant, const std::vector<std::string>& types,
                                                 std::int64_t after_rid, std::int64_t max_rid);
  // Those resources, in rid order, at most `limit`.
  virtual fhir::Result<std::vector<IndexTarget>> index_targets(TenantId tenant, const std::vector<std::string>& types,
                                                               std::int64_t after_rid, std::int64_t max_rid,
                                                               std::size_t limit);
  // Replaces the index rows of resource `rid` (of `type`) for the parameters `params` (all its rows when empty)
  // with the rows of `values` (which should hold no others).
  virtual fhir::Result<void> replace_index(TenantId tenant, std::int64_t rid, std::string_view type,
                                           const std::vector<std::string>& params, const IndexValues& values);
  // Inserts or replaces a reindex job (by id).
  virtual fhir::Result<void> save_reindex_job(TenantId tenant, const ReindexJobRecord& job);
  // Every reindex job, by id.
  virtual fhir::Result<std::vector<ReindexJobRecord>> reindex_jobs(TenantId tenant);

  // The authorization server's tables (clients, used assertion ids, revoked tokens) within this transaction;
  // nullptr from a backend without them. Valid until the work returns.
  virtual OAuthTables* oauth_tables();
  // The user table (caduceus/resources/store/users.hpp), valid for this transaction only. kNotSupported from a
  // backend without it.
  virtual fhir::Result<UserRows*> users();
  // Inbound HL7 v2 messages (a backend without them answers kNotSupported). The message with that sender and
  // control id (MSH-3, MSH-4, MSH-10), or nullopt.
  virtual fhir::Result<std::optional<InboundMessageRecord>> find_inbound_message(TenantId tenant,
                                                                                 std::string_view sending_application,
                                                                                 std::string_view sending_facility,
                                                                                 std::string_view control_id);
  // Inserts a message (record.id ignored) and returns its id. kConflict when one with the same sender and
  // (non-empty) control id exists.
  virtual fhir::Result<std::int64_t> insert_inbound_message(TenantId tenant, const InboundMessageRecord& record);
  // Sets status, ack, resources, error, updated, replays and replayed of message record.id. kNotFound when there is
  // none.
  virtual fhir::Result<void> update_inbound_message(TenantId tenant, const InboundMessageRecord& record);
  // One message by id, or nullopt.
  virtual fhir::Result<std::optional<InboundMessageRecord>> inbound_message(TenantId tenant, std::int64_t id);
  // The messages matching `query` (its destination ignored), newest first, at most query.limit.
  virtual fhir::Result<std::vector<InboundMessageRecord>> list_inbound_messages(TenantId tenant,
                                                                                const Hl7MessageQuery& query);
  // Outbound HL7 v2 messages (a backend without them answers kNotSupported), written in the same transaction as
  // the FHIR write that triggers them. Inserts one (record.id ignored) and returns its id.
  virtual fhir::Result<std::int64_t> insert_outbound_message(TenantId tenant, const OutboundMessageRecord& record);
  // Sets status, attempts, last_error, ack, updated and next attempt of message record.id. kNotFound when none.
  virtual fhir::Result<void> update_outbound_message(TenantId tenant, const OutboundMessageRecord& record);
  // The messages matching `query`, by id ascending.
  virtual fhir::Result<std::vector<OutboundMessageRecord>> outbound_messages(TenantId tenant,
                                                                             const OutboundQuery& query);
  // One outbound message by id, or nullopt.
  virtual fhir::Result<std::optional<OutboundMessageRecord>> outbound_message(TenantId tenant, std::int64_t id);
  // The outbound messages matching `query` (its resource ignored), newest first, at most query.limit.
  virtual fhir::Result<std::vector<OutboundMessageRecord>> list_outbound_messages(TenantId tenant,
                                                                                  const Hl7MessageQuery& query);
};

struct StoreOptions {
  std::size_t readers = 8;             // pooled read connections
  bool synchronous_full = true;        // fsync every commit (an acknowledged write survives power loss)
  std::size_t max_group = 256;         // writes committed together at most (group commit)
  std::size_t cache_bytes = 64 << 20;  // memory for current versions kept for reads by id (0: none)
  std::size_t max_included = 1000;     // resources one search page may add by _include / _revinclude
  // A bulk load (`caduceus import`): no commit needs to be on disk before the next one starts, as long as all of
  // them are when sync() returns. PostgreSQL: the writer commits with synchronous_commit off (a crash of the
  // database server, not of this process, can lose the commits of its last moments). SQLite: no change.
  bool bulk_load = false;
  // PostgreSQL: another database (a streaming standby of the primary, or a libpq URI of several standbys) where reads
  // by id, searches and history may go when stale reads are acceptable: they see the primary's commits once the
  // standby has applied them (synchronous_commit = remote_apply makes that before the commit returns). Writes, and
  // the reads and searches inside a write (conditional operations, Bundles), stay on the primary. Empty: all on the
  // primary.
  std::string read_url;
};

// The persistence interface that the REST layer and the adapters use. Thread-safe.
class Store {
 public:
  using Work = std::function<fhir::Result<void>(Transaction&)>;
  using Done = std::function<void(fhir::Result<void>)>;

  virtual ~Store() = default;

  // The current version (deleted ones included, with deleted = true). kNotFound when it never existed.
  virtual fhir::Result<VersionRecord> read(TenantId tenant, std::string_view type, std::string_view id) = 0;
  // The same, answered through `done`: here, on this thread (the default), or later on a thread of the store's
  // (one that gathers the reads of many requests into one round trip to its database: reads_async() is true then,
  // and the caller should not wait for `done` on a thread that serves other requests).
  using ReadDone = std::function<void(fhir::Result<VersionRecord>)>;
  virtual void read_async(TenantId tenant, std::string_view type, std::string_view id, ReadDone done) {
    done(read(tenant, type, id));
  }
  virtual bool reads_async() const { return false; }
  // One version. kNotFound when there is no such version.
  virtual fhir::Result<VersionRecord> vread(TenantId tenant, std::string_view type, std::string_view id,
                                            std::int64_t version) = 0;
  virtual fhir::Result<HistoryPage> history(TenantId tenant, const HistoryQuery& query) = 0;
  // Number of versions that history(query) would list over all pages (paging cursor ignored).
  virtual fhir::Result<std::int64_t> history_total(TenantId tenant, const HistoryQuery& query) = 0;
  // Runs `work` in one transaction and commits it durably, then calls `done` with the outcome (on a thread of
  // the store's; keep `done` short). If work fails, nothing it wrote remains and its error is passed on.
  // kUnavailable when the database cannot be reached. `work` may run on another thread than the caller's, and
  // more than once: a run whose transaction was rolled back (because another write of its commit group failed)
  // is run again, so `work` must compute its effect from the transaction each time and let a later run
  // overwrite whatever an earlier one left in the caller's state.
  virtual void write_async(Work work, Done done) = 0;
  // The same, waiting for the commit.
  fhir::Result<void> write(Work work);
  // The matches of a search (over the index rows written with --search-index), one page of query.count after
  // query.cursor. Errors: kNotSupported for what the query builder does not do yet, kInvalid for a bad cursor.
  virtual fhir::Result<SearchPage> search(TenantId tenant, const SearchQuery& query) = 0;
  // The same search, its records shared (SharedSearchPage). The default wraps search(); a store with a cache of
  // current versions hands out the cached records themselves.
  virtual fhir::Result<SharedSearchPage> search_shared(TenantId tenant, const SearchQuery& query);
  // How the store would run search(query) (the first page and the count; includes for the ids of the first page):
  // each SQL statement, its bound values, the database's plan for it, the indexes used and row figures. It answers
  // for any parsed query: what search() would refuse as not supported yet is left out of the plan and said in
  // its notes. The default: kNotSupported (a store that cannot explain).
  virtual fhir::Result<SearchPlan> explain(TenantId tenant, const SearchQuery& query);
  // Whether the database answers (for /readyz).
  virtual fhir::Result<void> ping() = 0;
  // Whether the access token `jti` is revoked (OAuthTables::revoke_token), as the database says now: for a store
  // that several server processes share, so that a revocation made through one is seen by the others. nullopt
  // (the default) for a store only this process writes: what this process revoked is all there is.
  virtual fhir::Result<std::optional<bool>> token_revoked(TenantId tenant, const std::string& jti);
  // After a bulk load (`caduceus import`): brings the planner's statistics up to date, so that the first searches
  // are planned on the data that is there (PostgreSQL: ANALYZE; its autovacuum would do it only a while later).
  // The default does nothing.
  virtual fhir::Result<void> refresh_statistics();
  // Bulk loading (`caduceus import`). defer_search_indexes() asks the store to stop keeping the search index
  // tables' value indexes (PostgreSQL: also those of _lastUpdated and history) up to date row by row, and
  // restore_search_indexes() to build them again from all rows at once (sorting them once costs less than inserting
  // every row at a random place of a growing B-tree). A store defers only when that pays (into an empty store): true if
  // it did. Meanwhile every search and history still answers the same (SQLite: a search, a transaction's search or a
  // history first restores the indexes; PostgreSQL: they scan instead), and a store that was stopped before the restore
  // restores them when it is opened again. The default defers nothing.
  virtual fhir::Result<bool> defer_search_indexes();
  virtual fhir::Result<void> restore_search_indexes();
  // Returns once every write committed so far is on disk (StoreOptions::bulk_load). The default does nothing: its
  // commits are durable one by one.
  virtual fhir::Result<void> sync();
};

// Opens the store named by a URL: `sqlite:PATH`, `sqlite::memory:` (a throwaway store), `postgresql://...` (any
// libpq URI; options.readers is then the size of its connection pool). Applies migrations.
// Errors: kInvalid for an unknown scheme, kUnavailable when the database cannot be opened.
fhir::Result<std::unique_ptr<Store>> open_store(std::string_view url, const StoreOptions& options = {});

std::string_view to_string(Method m) noexcept;

}  // namespace caduceus::resources
