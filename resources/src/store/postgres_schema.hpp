#pragma once

#include <string>
#include <utility>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "pg_connection.hpp"

namespace caduceus::resources {

// Applies the PostgreSQL schema migrations that the database has not seen yet, each in its own transaction,
// and records them in schema_migrations. Holds a session advisory lock meanwhile, so that servers starting
// together on one database apply each migration once (the others wait, then find it applied).
// Errors: kUnavailable (with the failing migration named).
fhir::Result<void> apply_postgres_migrations(pg::Connection& conn);

// Bulk loading (Store::defer_search_indexes). Into an empty store, drops the indexes that new resources' writes do
// not use (every non-unique one of the search index tables, resource and resource_version: the value indexes, the
// full text's GIN, the indexes by _lastUpdated and of history, the search tables' indexes on rid, which a new version
// of a resource needs: PostgresStore::need_rid_indexes) and notes each in deferred_index
// (migration 21), in one transaction that holds store_clock (no write of another server in between); false when the
// store holds resources (nothing is dropped then).
fhir::Result<bool> drop_value_indexes(pg::Connection& conn);
// The indexes that wait in deferred_index, each its name and a CREATE INDEX IF NOT EXISTS statement.
fhir::Result<std::vector<std::pair<std::string, std::string>>> deferred_indexes(pg::Connection& conn);
// Builds one of them and forgets it.
fhir::Result<void> build_deferred_index(pg::Connection& conn, const std::string& name, const std::string& sql);

// The advisory lock key of the migrations (pg_advisory_lock), shared by every Caduceus on a database.
inline constexpr std::int64_t kMigrationLockKey = 0x43616475'63657573;  // "Caduceus"

}  // namespace caduceus::resources
