#pragma once

#include "caduceus/fhir/error.hpp"
#include "pg_connection.hpp"

namespace caduceus::resources {

// Applies the PostgreSQL schema migrations that the database has not seen yet, each in its own transaction,
// and records them in schema_migrations. Holds a session advisory lock meanwhile, so that servers starting
// together on one database apply each migration once (the others wait, then find it applied).
// Errors: kUnavailable (with the failing migration named).
fhir::Result<void> apply_postgres_migrations(pg::Connection& conn);

// The advisory lock key of the migrations (pg_advisory_lock), shared by every Caduceus on a database.
inline constexpr std::int64_t kMigrationLockKey = 0x43616475'63657573;  // "Caduceus"

}  // namespace caduceus::resources
