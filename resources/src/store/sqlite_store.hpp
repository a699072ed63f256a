#pragma once

#include <memory>
#include <string_view>

#include "caduceus/resources/store/store.hpp"

namespace caduceus::resources {

// Opens (creating if needed) the SQLite store at path; ":memory:" makes a throwaway store.
fhir::Result<std::unique_ptr<Store>> open_sqlite_store(std::string_view path, const StoreOptions& options);

}  // namespace caduceus::resources
