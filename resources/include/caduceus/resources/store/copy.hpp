#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::resources {

// Copying a whole store to another database, of the same or the other backend (`caduceus migrate`): SQLite to
// PostgreSQL and back. What is copied is every table the store holds, row for row and with its keys (rid, seq,
// message ids), so that the copy is the same store: every version of every resource of every tenant with its
// version id, lastUpdated and method (deletes included), in the same change-feed order (history pages alike),
// the search index as it is (so searches answer the same), custom SearchParameters with their reindex jobs,
// users, OAuth clients, used client-assertion ids, revoked tokens and inbound HL7 v2 messages.
//
// The source is read in one snapshot (a server may keep running on it, writes after the snapshot are not
// copied), in batches (the store is never held in memory). The target gets its schema (the migrations of this
// build, also applied to the source first) and all rows in one transaction: on failure it is left as it was.

struct CopyProgress {
  std::string table;
  std::int64_t done = 0;   // rows of the table copied so far
  std::int64_t total = 0;  // rows of the table in the snapshot
  bool finished = false;   // the table is copied (the last call for it)
};

struct CopyOptions {
  // A target that holds any row is refused (kConflict), unless force: then its rows are deleted first (in the
  // same transaction as the copy).
  bool force = false;
  std::size_t batch = 1000;  // rows read and written at a time
  // Called after each batch, and once more when a table is done (finished), on the calling thread.
  std::function<void(const CopyProgress&)> progress;
};

struct CopySummary {
  std::vector<std::pair<std::string, std::int64_t>> tables;  // rows copied, by table, in copy order
};

// Copies the store at `from` to the store at `to` (store URLs as open_store takes them; not sqlite::memory:).
// Errors: kInvalid for a bad URL, the same database twice, a missing SQLite source file, or schemas that do not
// match; kConflict for a target that is not empty (without force); kUnavailable for a database error.
fhir::Result<CopySummary> copy_store(std::string_view from, std::string_view to, const CopyOptions& options = {});

}  // namespace caduceus::resources
