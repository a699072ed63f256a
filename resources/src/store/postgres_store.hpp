#pragma once

#include <memory>
#include <string_view>

#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {

// Opens the PostgreSQL store at `url` (any libpq URI or connection string), applying the migrations.
// options.readers is the size of the pool of read connections (plus one connection for the writer).
// Errors: kUnavailable when the database cannot be reached or migrated.
fhir::Result<std::unique_ptr<Store>> open_postgres_store(std::string_view url, const StoreOptions& options);

}  // namespace caduceus::resources
