#pragma once

#include "caduceus/fhir/error.hpp"

namespace soci {
class session;
}

namespace caduceus::resources {

// Applies the schema migrations that the database has not seen yet, each in its own transaction, and records
// them in schema_migrations. Errors: kUnavailable (with the failing migration named).
fhir::Result<void> apply_sqlite_migrations(soci::session& sql);

}  // namespace caduceus::resources
