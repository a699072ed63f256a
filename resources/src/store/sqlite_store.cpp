// The SQLite store: SOCI over SQLite in WAL mode. One writer thread commits queued writes together (group
// commit: many requests in one transaction, each isolated by a savepoint), a completion thread fsyncs the WAL
// once for the groups committed meanwhile and then answers their callers, a checkpoint thread copies the WAL into
// the database (sqlite_checkpointer);
// a pool of reader connections serves reads concurrently with the writer.
#include "sqlite_store.hpp"

#include <fcntl.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <variant>

#include "caduceus/fhir/thread_name.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_query.hpp"
#include "current_cache.hpp"
#include "forwarding_transaction.hpp"
#include "hl7_message_sql.hpp"
#include "oauth_sql.hpp"
#include "schema.hpp"
#include "search_sql.hpp"
#include "sqlite_checkpointer.hpp"
#include "sqlite_wal_vfs.hpp"
#include "user_rows.hpp"

namespace caduceus::resources {
namespace {

using fhir::ErrorKind;
using fhir::Result;

constexpr std::string_view kBodyFormatJson = "j";  // body header: 'j' = plain UTF-8 JSON follows

Result<std::string> decode_body(std::string stored) {
  if (stored.empty()) return std::string();
  if (stored.front() != kBodyFormatJson.front())
    return fhir::fail(ErrorKind::kInternal, "exception", "stored body has an unknown format");
  stored.erase(0, 1);
  return stored;
}

fhir::Error db_error(const std::exception& e) {
  return fhir::Error::make(ErrorKind::kUnavailable, "transient", std::string("database error: ") + e.what());
}

int method_code(Method m) {
  return static_cast<int>(m);
}
Method method_from(int c) {
  switch (c) {
    case 1: return Method::kUpdate;
    case 2: return Method::kDelete;
    default: return Method::kCreate;
  }
}

void configure_connection(soci::session& s, bool synchronous_full) {
  s << "PRAGMA journal_mode=WAL";
  s << (synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  s << "PRAGMA busy_timeout=10000";
  s << "PRAGMA foreign_keys=ON";
  // Reads map the database file instead of copying pages through read(2); each connection keeps a larger page
  // cache. (Both only spend address space and page cache the OS can reclaim.)
  s << "PRAGMA mmap_size=2147418112";  // (the most Debian's SQLite maps: MAX_MMAP_SIZE=0x7fff0000)
  s << "PRAGMA cache_size=-8192";
  // Statement journals (one per savepoint) and sorter spills stay in memory: on disk, every page a write job
  // touched was copied to a temporary file first, which cost more than the write itself.
  s << "PRAGMA temp_store=MEMORY";
}

// The writer's own settings. WAL checkpoints are SqliteCheckpointer's (started by open(), off the writer thread):
// in the background from 64,000 pages (250 MiB at 4 KiB) and again every 16,000 more, and by the writer at 128,000
// (500 MiB), which then copies only what the background passes left, so that a page that many commits touch is
// copied into the database a few times per WAL cycle, not once per few commits. (6,000 / 10,000 pages, then
// 16,000 / 32,000, then these, with the kept WAL file and FTS5's automerge (migration 18): on the million-resource
// store, indexed Observation creates went from 5,200 to 6,600 a second, medians of ten alternated runs, the checkpoint
// thread's CPU per create down by a third; README Performance, "The SQLite writer, tenth session".)
// journal_size_limit keeps the WAL file at the size it reaches before the writer's checkpoint (the hard limit
// and a background pass's worth more): truncated back after every reset, the file was extended again block by
// block in each cycle, at a cost to every commit (ext4's block allocation in the writer's profile).
// Its page cache stays at the 8 MiB of every connection: SQLite's pcache walks its whole hash table at every
// commit while the database is smaller than 1 GiB (a B-tree balance puts a page numbered after the lock byte's
// page, 262,145, in the cache, and the commit truncates the cache back to the database's size). With 64 MiB
// that walk was a tenth of the writer's time per create; on a 6 GB store the larger cache did not pay either.
constexpr int kCheckpointSoftPages = 64000;
constexpr int kCheckpointHardPages = 128000;
constexpr long long kWalFrameBytes = 4096 + 24;  // (the default page size; a frame's header)
constexpr long long kWalKeptBytes = (kCheckpointHardPages + kCheckpointSoftPages / 4) * kWalFrameBytes;
void configure_writer(soci::session& s) {
  s << "PRAGMA wal_autocheckpoint=10000";  // (until the checkpointer takes over)
  s << "PRAGMA journal_size_limit=" + std::to_string(kWalKeptBytes);
}

std::string connect_string(const std::string& path) {
  // SOCI's sqlite3 backend reads `db="..."` with the value in double quotes (a path may hold spaces).
  return "db=\"" + path + "\" timeout=10";
}

// Executes a prepared statement that yields at most one row, then resets it at once: a statement left active
// would hold its read snapshot (stopping WAL checkpoints) or block RELEASE of a savepoint.
bool execute_one(soci::statement& st) {
  bool got = st.execute(true);
  auto* backend = static_cast<soci::sqlite3_statement_backend*>(st.get_backend());
  sqlite_api::sqlite3_reset(backend->stmt_);
  return got;
}

// The columns of a version as fetched (bound to a statement with into()), turned into a VersionRecord.
struct VersionRow {
  std::string type, id;
  long long version = 0, last_updated = 0, seq = 0;
  int deleted = 0, method = 0;
  std::string body;
  soci::indicator body_ind = soci::i_ok;

  Result<VersionRecord> record() {
    VersionRecord r;
    r.type = type;
    r.id = id;
    r.version = version;
    r.last_updated_ms = last_updated;
    r.deleted = deleted != 0;
    r.method = method_from(method);
    r.seq = seq;
    if (body_ind == soci::i_ok) {
      auto decoded = decode_body(std::move(body));
      if (!decoded) return std::unexpected(decoded.error());
      r.body = std::move(*decoded);
    }
    return r;
  }
};

// A statement prepared once on a reader's connection and run through SQLite's own API: the two reads by id are
// the hottest queries of the server, and SOCI's per-execution conversions cost as much as the query itself.
// (SOCI owns the connection; everything else goes through SOCI.)
class HotStatement {
 public:
  HotStatement(sqlite_api::sqlite3* db, const char* sql) {
    if (sqlite_api::sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string("cannot prepare a read: ") + sqlite_api::sqlite3_errmsg(db));
  }
  ~HotStatement() { sqlite_api::sqlite3_finalize(stmt_); }
  HotStatement(const HotStatement&) = delete;
  HotStatement& operator=(const HotStatement&) = delete;

  // Binds (tenant, type, id[, version]), steps once, fills row (version .. seq, body) and resets. Returns whether
  // a row came back; throws on a database error.
  bool fetch(std::int64_t tenant, std::string_view type, std::string_view id, std::optional<std::int64_t> version,
             VersionRow& row) {
    using namespace sqlite_api;
    sqlite3_bind_int64(stmt_, 1, tenant);
    sqlite3_bind_text(stmt_, 2, type.data(), static_cast<int>(type.size()), SQLITE_STATIC);
    sqlite3_bind_text(stmt_, 3, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
    if (version) sqlite3_bind_int64(stmt_, 4, *version);
    return step_into(row);
  }

  // The same for a statement whose one parameter is the resource's rid.
  bool fetch_rid(std::int64_t rid, VersionRow& row) {
    sqlite_api::sqlite3_bind_int64(stmt_, 1, rid);
    return step_into(row);
  }

  // Runs a statement with no result rows (BEGIN, COMMIT); throws on a database error.
  void run() {
    int rc = sqlite_api::sqlite3_step(stmt_);
    sqlite_api::sqlite3_reset(stmt_);
    if (rc != SQLITE_DONE) throw std::runtime_error(std::string("statement failed: ") + sqlite_api::sqlite3_errstr(rc));
  }

 private:
  bool step_into(VersionRow& row) {
    using namespace sqlite_api;
    int rc = sqlite3_step(stmt_);
    bool got = rc == SQLITE_ROW;
    if (got) {
      row.version = sqlite3_column_int64(stmt_, 0);
      row.last_updated = sqlite3_column_int64(stmt_, 1);
      row.deleted = sqlite3_column_int(stmt_, 2);
      row.method = sqlite3_column_int(stmt_, 3);
      if (sqlite3_column_type(stmt_, 4) == SQLITE_NULL) {
        row.body_ind = soci::i_null;
        row.body.clear();
      } else {
        const void* blob = sqlite3_column_blob(stmt_, 4);
        row.body.assign(static_cast<const char*>(blob), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, 4)));
        row.body_ind = soci::i_ok;
      }
      row.seq = sqlite3_column_int64(stmt_, 5);
    }
    sqlite3_reset(stmt_);  // ends the read transaction at once (unless one was begun explicitly)
    sqlite3_clear_bindings(stmt_);
    if (!got && rc != SQLITE_DONE) throw std::runtime_error(std::string("read failed: ") + sqlite3_errstr(rc));
    return got;
  }

  sqlite_api::sqlite3_stmt* stmt_ = nullptr;
};

// A statement that writes, prepared once on the writer's connection and run through SQLite's own API (the index
// rows of a resource are many small inserts).
class RawStatement {
 public:
  RawStatement(sqlite_api::sqlite3* db, const char* sql) : db_(db) {
    if (sqlite_api::sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string("cannot prepare: ") + sqlite_api::sqlite3_errmsg(db));
  }
  ~RawStatement() { sqlite_api::sqlite3_finalize(stmt_); }
  RawStatement(const RawStatement&) = delete;
  RawStatement& operator=(const RawStatement&) = delete;

  RawStatement& bind(int i, std::int64_t v) {
    sqlite_api::sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  RawStatement& bind(int i, double v) {
    sqlite_api::sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  RawStatement& bind(int i, std::string_view v) {
    // An empty view may have no data pointer, which SQLite would bind as NULL: bind "" instead.
    sqlite_api::sqlite3_bind_text(stmt_, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  RawStatement& bind_null(int i) {
    sqlite_api::sqlite3_bind_null(stmt_, i);
    return *this;
  }
  RawStatement& bind(int i, const std::optional<std::string>& v) {
    return v ? bind(i, std::string_view(*v)) : bind_null(i);
  }
  // Binds the values to the parameters first, first + 1, ... (a std::string as text).
  template <class... V>
  RawStatement& bind_from(int first, const V&... values) {
    (bind(first++, values), ...);
    return *this;
  }
  RawStatement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  RawStatement& bind_blob(int i, std::string_view v) {
    sqlite_api::sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  // Runs a statement that returns one integer (an INSERT ... RETURNING, whose change is made at the first step)
  // and returns it; throws on an error or when no row comes back.
  std::int64_t run_returning() {
    int rc = sqlite_api::sqlite3_step(stmt_);
    std::int64_t value = rc == SQLITE_ROW ? sqlite_api::sqlite3_column_int64(stmt_, 0) : 0;
    sqlite_api::sqlite3_reset(stmt_);
    sqlite_api::sqlite3_clear_bindings(stmt_);
    if (rc != SQLITE_ROW) throw std::runtime_error(std::string("write failed: ") + sqlite_api::sqlite3_errmsg(db_));
    return value;
  }
  // Runs an INSERT and returns the rowid it gave its row (sqlite3_last_insert_rowid): a RETURNING clause would
  // have SQLite keep its output in a temporary table.
  std::int64_t run_insert() {
    run();
    return sqlite_api::sqlite3_last_insert_rowid(db_);
  }
  // Runs it to completion; throws on an error (the writer rolls the request back). The parameters are unbound
  // after, unless `clear` is false: for a statement whose every parameter is bound before each run (the values
  // bound with SQLITE_STATIC are then still pointed to, but not read again before they are bound anew).
  void run(bool clear = true) {
    int rc = sqlite_api::sqlite3_step(stmt_);
    sqlite_api::sqlite3_reset(stmt_);
    if (clear) sqlite_api::sqlite3_clear_bindings(stmt_);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
      throw std::runtime_error(std::string("write failed: ") + sqlite_api::sqlite3_errmsg(db_));
  }

 private:
  sqlite_api::sqlite3* db_;
  sqlite_api::sqlite3_stmt* stmt_ = nullptr;
};

// The rows of one table, several to an INSERT: a resource's rows of one index table (its codes, its references) go
// in statements of up to kMaxRows rows each, which SQLite runs as one loop over the VALUES rows with the table's
// cursor open, instead of one statement each (a step, a reset and a seek from the root for every row: in a
// micro-benchmark of idx_token rows, 1.23 µs per row one by one, 0.86 µs eight at a time). Statement k, of k + 1
// rows, is prepared the first time a resource has that many.
class MultiRowInsert {
 public:
  static constexpr std::size_t kMaxRows = 8;

  // `head`: "INSERT OR IGNORE INTO idx_token VALUES " (the rows follow); `columns`: the table's columns, of which
  // the first `shared` are the same in every row of a run (the resource's rid, tenant and type: parameters ?1 ..
  // ?shared of every row, bound once per statement).
  MultiRowInsert(sqlite_api::sqlite3* db, std::string head, int columns, int shared = 0)
      : db_(db), head_(std::move(head)), columns_(columns), shared_(shared) {}

  // Writes rows[0..n): bind_shared(statement) binds parameters 1 .. shared; bind(statement, first, row) binds one
  // row's other columns, parameters first + 1 .. first + columns - shared. Every parameter is bound before each
  // run, so none is cleared after.
  template <class Rows, class BindShared, class Bind>
  void run(const Rows& rows, BindShared&& bind_shared, Bind&& bind) {
    const int own = columns_ - shared_;
    for (std::size_t at = 0; at < rows.size(); at += kMaxRows) {
      const std::size_t n = std::min(kMaxRows, rows.size() - at);
      RawStatement& st = statement(n);
      bind_shared(st);
      for (std::size_t i = 0; i < n; ++i) bind(st, shared_ + static_cast<int>(i) * own, rows[at + i]);
      st.run(/*clear=*/false);
    }
  }

 private:
  RawStatement& statement(std::size_t n) {
    std::unique_ptr<RawStatement>& st = statements_[n - 1];
    if (!st) {
      const int own = columns_ - shared_;
      std::string sql = head_;
      for (std::size_t r = 0; r < n; ++r) {
        sql += r ? ", (" : "(";
        for (int c = 0; c < columns_; ++c) {
          const int number = c < shared_ ? c + 1 : shared_ + static_cast<int>(r) * own + (c - shared_) + 1;
          sql += (c ? ", ?" : "?") + std::to_string(number);
        }
        sql += ')';
      }
      st = std::make_unique<RawStatement>(db_, sql.c_str());
    }
    return *st;
  }

  sqlite_api::sqlite3* db_;
  std::string head_;
  int columns_;
  int shared_;
  std::array<std::unique_ptr<RawStatement>, kMaxRows> statements_;
};

// The writer's statements for the search index tables.
struct IndexWriter {
  std::vector<std::unique_ptr<RawStatement>> deletes;
  std::vector<std::unique_ptr<RawStatement>> param_deletes;  // rows of one parameter of one resource
  std::vector<std::unique_ptr<RawStatement>> set_asides;     // rows of a deleted resource (set_aside_tenant)
  MultiRowInsert string_rows, token_rows, reference_rows, date_rows, number_rows, quantity_rows, uri_rows,
      composite_rows, identifier_type_rows;
  RawStatement text_row, text_delete;
  // idx_patient_token (migration 5) follows idx_reference and idx_token: its rows of a resource are found through
  // the resource's `patient` reference rows, so they go before those do, and come back from both tables after
  // the new rows are in.
  RawStatement patient_token_delete, patient_token_fill;
  MultiRowInsert patient_token_rows;

  explicit IndexWriter(sqlite_api::sqlite3* db)
      : string_rows(db, "INSERT OR IGNORE INTO idx_string VALUES ", 6, 3),
        token_rows(db, "INSERT OR IGNORE INTO idx_token VALUES ", 7, 3),
        reference_rows(db, "INSERT OR IGNORE INTO idx_reference VALUES ", 10, 3),
        date_rows(db, "INSERT OR IGNORE INTO idx_date VALUES ", 6, 3),
        number_rows(db, "INSERT OR IGNORE INTO idx_number VALUES ", 7, 3),
        quantity_rows(db, "INSERT OR IGNORE INTO idx_quantity VALUES ", 10, 3),
        uri_rows(db, "INSERT OR IGNORE INTO idx_uri VALUES ", 5, 3),
        composite_rows(db, "INSERT OR IGNORE INTO idx_composite VALUES ", 19, 3),
        identifier_type_rows(db, "INSERT OR IGNORE INTO idx_identifier_type VALUES ", 7, 3),
        text_row(db, "INSERT INTO idx_text (rowid, narrative, content) VALUES (?1, ?2, ?3)"),
        text_delete(db, "DELETE FROM idx_text WHERE rowid = ?1"),
        patient_token_delete(db,
                             "DELETE FROM idx_patient_token WHERE (tenant, target_id, target_type, type) IN "
                             "(SELECT tenant, target_id, target_type, type FROM idx_reference "
                             "WHERE rid = ?1 AND param = 'patient') AND rid = ?1"),
        patient_token_fill(
            db, (std::string("INSERT OR IGNORE INTO idx_patient_token SELECT r.tenant, r.target_id, r.target_type, "
                             "t.type, t.param, t.code, t.system, t.rid FROM idx_reference r JOIN idx_token t "
                             "ON t.rid = r.rid WHERE r.rid = ?1 AND r.param = 'patient' AND r.target_id <> '' "
                             "AND t.code <> '' AND ") +
                 kPatientTokenParamSql)
                    .c_str()),
        patient_token_rows(db, "INSERT OR IGNORE INTO idx_patient_token VALUES ", 8) {
    for (const char* table : {"idx_string", "idx_token", "idx_reference", "idx_date", "idx_number", "idx_quantity",
                              "idx_uri", "idx_composite", "idx_identifier_type"}) {
      const std::string del = std::string("DELETE FROM ") + table + " WHERE rid = ?1";
      deletes.push_back(std::make_unique<RawStatement>(db, del.c_str()));
      param_deletes.push_back(std::make_unique<RawStatement>(db, (del + " AND param = ?2").c_str()));
      const std::string aside = std::string("UPDATE ") + table + " SET tenant = ?2 WHERE rid = ?1";
      set_asides.push_back(std::make_unique<RawStatement>(db, aside.c_str()));
    }
  }

  // (A fill after the insert of the parameter's new rows puts back what the delete took of other parameters.)
  void remove_param(std::int64_t rid, std::string_view param) {
    patient_token_delete.bind(1, rid).run();
    for (auto& d : param_deletes) d->bind(1, rid).bind(2, param).run();
  }

  void remove(std::int64_t rid) {
    patient_token_delete.bind(1, rid).run();
    for (auto& d : deletes) d->bind(1, rid).run();
    pending_text.push_back(TextOp{rid, false, {}, {}});
  }

  // A deletion: the rows of the last live version move under `aside` (set_aside_tenant), out of every search;
  // the full-text and patient-token rows, which only searches use, go.
  void set_aside(std::int64_t rid, std::int64_t aside) {
    patient_token_delete.bind(1, rid).run();
    for (auto& u : set_asides) u->bind(1, rid).bind(2, aside).run();
    pending_text.push_back(TextOp{rid, false, {}, {}});
  }

  // The full-text rows wait for the end of the job group (flush_text() before COMMIT, or before a read in the
  // transaction): FTS5 writes its pending rows out as a new segment at every statement savepoint, so rows
  // written between other statements would each become a segment of their own, to be merged later; written
  // together they become one. drop_text() forgets them when their job is rolled back.
  void flush_text() {
    for (const TextOp& op : pending_text) {
      if (op.insert)
        text_row.bind(1, op.rid).bind(2, std::string_view(op.narrative)).bind(3, std::string_view(op.content)).run();
      else
        text_delete.bind(1, op.rid).run();
    }
    pending_text.clear();
  }
  void drop_text() { pending_text.clear(); }

  struct TextOp {
    std::int64_t rid = 0;
    bool insert = false;
    std::string narrative, content;
  };
  std::vector<TextOp> pending_text;

  // `all_params`: `v` holds the values of every parameter of the resource (else those of some parameters, after
  // remove_param() of each).
  void insert(std::int64_t rid, std::int64_t tenant, std::string_view type, const IndexValues& v,
              bool all_params = true) {
    // Columns 1-3 of every index table, rid, tenant and type, are the resource's: parameters 1-3 of each statement.
    // A row's own columns, its param first, follow from `at` + 1.
    auto shared = [&](RawStatement& st) { st.bind_from(1, rid, tenant, type); };
    string_rows.run(v.strings, shared, [&](RawStatement& st, int at, const auto& r) {
      st.bind_from(at + 1, r.param, r.normalized, r.exact);
    });
    token_rows.run(v.tokens, shared, [&](RawStatement& st, int at, const auto& r) {
      st.bind_from(at + 1, r.param, r.system ? std::string_view(*r.system) : std::string_view(), r.code, r.text);
    });
    reference_rows.run(v.references, shared, [&](RawStatement& st, int at, const auto& r) {
      st.bind_from(at + 1, r.param, r.type, r.id, r.version, r.url, r.identifier_system, r.identifier_value);
    });
    date_rows.run(v.dates, shared,
                  [&](RawStatement& st, int at, const auto& r) { st.bind_from(at + 1, r.param, r.low_ms, r.high_ms); });
    number_rows.run(v.numbers, shared, [&](RawStatement& st, int at, const auto& r) {
      st.bind_from(at + 1, r.param, r.low, r.high, r.value);
    });
    quantity_rows.run(v.quantities, shared, [&](RawStatement& st, int at, const auto& r) {
      st.bind_from(at + 1, r.param, r.low, r.high, r.value, r.system, r.code, r.unit);
    });
    uri_rows.run(v.uris, shared,
                 [&](RawStatement& st, int at, const auto& r) { st.bind_from(at + 1, r.param, r.uri); });
    composite_rows.run(v.composites, shared, [&](RawStatement& st, int at, const auto& r) {
      st.bind_from(at + 1, r.param, r.item, r.component, r.system, r.code, r.text, r.normalized, r.exact, r.low, r.high,
                   r.unit, r.value, r.target_type, r.target_id, r.url, r.uri);
    });
    identifier_type_rows.run(v.identifier_types, shared, [&](RawStatement& st, int at, const auto& r) {
      st.bind_from(at + 1, r.param, r.type_system, r.type_code, r.value);
    });
    if (!v.narrative.empty() || !v.content.empty()) pending_text.push_back(TextOp{rid, true, v.narrative, v.content});
    if (!all_params) {
      patient_token_fill.bind(1, rid).run();  // the rows of the parameters not in `v` come back from the tables
      return;
    }
    // The same rows as patient_token_fill's, from the values at hand rather than read back from the two tables.
    patient_pairs_.clear();
    for (const auto& p : v.references) {
      if (p.param != "patient" || p.id.empty()) continue;
      for (const auto& t : v.tokens)
        if (!t.code.empty() && patient_token_param(t.param)) patient_pairs_.emplace_back(&p, &t);
    }
    patient_token_rows.run(
        patient_pairs_, [](RawStatement&) {},
        [&](RawStatement& st, int at, const auto& pair) {
          const auto& [p, t] = pair;
          st.bind_from(at + 1, tenant, p->id, p->type, type, t->param, t->code,
                       t->system ? std::string_view(*t->system) : std::string_view(), rid);
        });
  }

 private:
  std::vector<std::pair<const ReferenceIndex*, const TokenIndex*>> patient_pairs_;  // (kept: its capacity)
};

// The type and id of resources by their rid, for searches that find rids in an index table and want the cached
// versions (keyed by type and id) without asking the resource table. A rid names the same resource for good: resource
// rows are never deleted (a deletion is a version), and a rid is learnt only from a committed snapshot, so no
// rolled-back insert's rid can be in here. Bounded: emptied when full. Thread-safe.
class RidKeys {
 public:
  static constexpr std::size_t kMax = 1 << 16;

  bool find(std::int64_t rid, std::string& type, std::string& id) const {
    std::lock_guard lock(mutex_);
    auto it = keys_.find(rid);
    if (it == keys_.end()) return false;
    type = it->second.first;
    id = it->second.second;
    return true;
  }
  void put(std::int64_t rid, const std::string& type, const std::string& id) {
    std::lock_guard lock(mutex_);
    if (keys_.size() >= kMax) keys_.clear();
    keys_.try_emplace(rid, type, id);
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::int64_t, std::pair<std::string, std::string>> keys_;
};

// Prepared search statements of one connection, by their SQL text: a search of the same shape (the values are
// bound) skips SQLite's parser and planner. At most kMax; when full it starts again empty.
class StatementCache {
 public:
  static constexpr std::size_t kMax = 128;
  explicit StatementCache(sqlite_api::sqlite3* db) : db_(db) {}
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;
  ~StatementCache() { clear(); }

  // The statement for `sql`, reset and with no bindings; nullptr (and the error in the connection) if it does
  // not prepare.
  sqlite_api::sqlite3_stmt* get(const std::string& sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) {
      sqlite_api::sqlite3_reset(it->second);
      sqlite_api::sqlite3_clear_bindings(it->second);
      return it->second;
    }
    if (statements_.size() >= kMax) clear();
    sqlite_api::sqlite3_stmt* st = nullptr;
    if (sqlite_api::sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK)
      return nullptr;
    statements_.emplace(sql, st);
    return st;
  }

 private:
  void clear() {
    for (auto& [sql, st] : statements_) sqlite_api::sqlite3_finalize(st);
    statements_.clear();
  }

  sqlite_api::sqlite3* db_;
  std::unordered_map<std::string, sqlite_api::sqlite3_stmt*> statements_;
};

// One reader connection and its prepared reads.
struct Reader {
  soci::session sql;
  VersionRow row;
  std::optional<HotStatement> read_current;
  std::optional<HotStatement> read_version;
  std::optional<HotStatement> read_rid;  // the current version of the resource with rowid ?1
  std::optional<HotStatement> begin, commit;
  std::optional<StatementCache> searches;  // (destroyed before the connection)

  explicit Reader(const std::string& path, bool synchronous_full) : sql(soci::sqlite3, connect_string(path)) {
    configure_connection(sql, synchronous_full);
    auto* db = static_cast<soci::sqlite3_session_backend*>(sql.get_backend())->conn_;
    searches.emplace(db);
    read_current.emplace(db,
                         "SELECT v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
                         "FROM resource r JOIN resource_version v ON v.rid = r.rid AND v.version = r.version "
                         "WHERE r.tenant = ?1 AND r.type = ?2 AND r.id = ?3");
    read_version.emplace(db,
                         "SELECT v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
                         "FROM resource r JOIN resource_version v ON v.rid = r.rid "
                         "WHERE r.tenant = ?1 AND r.type = ?2 AND r.id = ?3 AND v.version = ?4");
    read_rid.emplace(db,
                     "SELECT v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
                     "FROM resource r JOIN resource_version v ON v.rid = r.rid AND v.version = r.version "
                     "WHERE r.rid = ?1");
    begin.emplace(db, "BEGIN");
    commit.emplace(db, "COMMIT");
  }

  // Several reads in one snapshot (one read transaction instead of one per statement: fewer locks of the
  // shared-memory index, and a page whose matches and versions agree). Ends it on leaving the scope.
  struct Snapshot {
    Reader& r;
    explicit Snapshot(Reader& reader) : r(reader) { r.begin->run(); }
    ~Snapshot() {
      try {
        r.commit->run();
      } catch (const std::exception&) {
        auto* db = static_cast<soci::sqlite3_session_backend*>(r.sql.get_backend())->conn_;
        sqlite_api::sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      }
    }
    Snapshot(const Snapshot&) = delete;
    Snapshot& operator=(const Snapshot&) = delete;
  };

  ~Reader() {
    searches.reset();
    read_current.reset();
    read_version.reset();
    read_rid.reset();
    begin.reset();
    commit.reset();
  }

  Result<VersionRecord> record(std::string_view type, std::string_view id) {
    row.type.assign(type);
    row.id.assign(id);
    return row.record();
  }
};

struct WriteJob {
  Store::Work work;
  Store::Done done;
};

class SqliteStore;

class SqliteTransaction final : public ForwardingTransaction<SqliteStore> {
 public:
  using ForwardingTransaction::ForwardingTransaction;
  Result<UserRows*> users() override;

 private:
  std::unique_ptr<UserRows> users_;
};

void bind_all(sqlite_api::sqlite3_stmt* st, const SqlQuery& q) {
  for (std::size_t i = 0; i < q.binds.size(); ++i) {
    int n = static_cast<int>(i + 1);
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::int64_t>)
            sqlite_api::sqlite3_bind_int64(st, n, v);
          else if constexpr (std::is_same_v<T, double>)
            sqlite_api::sqlite3_bind_double(st, n, v);
          else
            sqlite_api::sqlite3_bind_text(st, n, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
        },
        q.binds[i]);
  }
}

// Runs a built query on a connection, calling on_row for each row. Throws on a database error.
// With `cache`, the statement comes from (and stays in) the connection's cache, reset after use.
template <class F>
void run_query(sqlite_api::sqlite3* db, const SqlQuery& q, F&& on_row, StatementCache* cache = nullptr) {
  sqlite_api::sqlite3_stmt* st = nullptr;
  if (cache != nullptr) {
    st = cache->get(q.sql);
    if (st == nullptr) throw std::runtime_error(std::string("search query: ") + sqlite_api::sqlite3_errmsg(db));
  } else if (sqlite_api::sqlite3_prepare_v2(db, q.sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    throw std::runtime_error(std::string("search query: ") + sqlite_api::sqlite3_errmsg(db));
  }
  struct Done {  // finalizes a statement of its own, resets a cached one: also when on_row throws
    sqlite_api::sqlite3_stmt* st;
    bool cached;
    ~Done() {
      if (cached)
        sqlite_api::sqlite3_reset(st);
      else
        sqlite_api::sqlite3_finalize(st);
    }
  } done{st, cache != nullptr};
  bind_all(st, q);
  int rc;
  while ((rc = sqlite_api::sqlite3_step(st)) == SQLITE_ROW) on_row(st);
  if (rc != SQLITE_DONE) throw std::runtime_error(std::string("search query: ") + sqlite_api::sqlite3_errmsg(db));
}

const char* column_text(sqlite_api::sqlite3_stmt* st, int column) {
  const unsigned char* text = sqlite_api::sqlite3_column_text(st, column);
  return text != nullptr ? reinterpret_cast<const char*>(text) : "";
}

// A statement whose rows (if any) are not wanted; throws as run_query does.
void run_sql(sqlite_api::sqlite3* db, const SqlQuery& q) {
  run_query(db, q, [](sqlite_api::sqlite3_stmt*) {});
}

// Bulk loading (Store::defer_search_indexes). Into an empty store, the value indexes of the search index tables
// (idx_token_value, idx_reference_target, ...: every index of an idx_ table but its key) are dropped and noted in
// deferred_index (migration 19), in the writer's transaction; build_deferred_indexes() makes them again from all
// rows at once and forgets them. Each inserted row otherwise went to a random place of each index: importing the
// 100 Synthea Bundles, the writer spent 1.9 s where it now spends 1.2, and the build takes 0.3 s (README
// Performance, "Bulk import"). The indexes of resource and resource_version (_lastUpdated, history) stay: their
// entries go in at the end of each type's part, and their build (which reads every version again) ran on one core
// after the load, where each insert runs while the other core parses (the build after the load: 0.50-0.78 s with
// them, 0.48-0.62 s without). Full-text rows are not deferred. Both throw on a database error.
bool drop_value_indexes(sqlite_api::sqlite3* db) {
  bool empty = true;
  run_query(db, SqlQuery{"SELECT 1 FROM resource LIMIT 1", {}}, [&](sqlite_api::sqlite3_stmt*) { empty = false; });
  if (!empty) return false;  // (rebuilding what is there could cost more than the load saves)
  std::vector<std::pair<std::string, std::string>> indexes;
  run_query(db,
            SqlQuery{"SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL "
                     "AND tbl_name LIKE 'idx\\_%' ESCAPE '\\' "
                     "ORDER BY name",
                     {}},
            [&](sqlite_api::sqlite3_stmt* st) { indexes.emplace_back(column_text(st, 0), column_text(st, 1)); });
  for (const auto& [name, sql] : indexes) {
    run_sql(db, SqlQuery{"INSERT OR REPLACE INTO deferred_index (name, sql) VALUES (?, ?)", {name, sql}});
    run_sql(db, SqlQuery{"DROP INDEX \"" + name + "\"", {}});
  }
  return !indexes.empty();
}

// The value indexes waiting, the largest first (by their tables' usual sizes: tokens and references are most of
// the rows of a clinical store); any other after them, by name.
std::vector<std::pair<std::string, std::string>> deferred_indexes(sqlite_api::sqlite3* db) {
  std::vector<std::pair<std::string, std::string>> indexes;
  run_query(db, SqlQuery{"SELECT name, sql FROM deferred_index ORDER BY name", {}},
            [&](sqlite_api::sqlite3_stmt* st) { indexes.emplace_back(column_text(st, 0), column_text(st, 1)); });
  static constexpr std::array<std::string_view, 4> kLargest = {"idx_token_value", "idx_reference_target",
                                                               "idx_composite_value", "idx_date_value"};
  auto rank = [](const std::string& name) {
    return static_cast<std::size_t>(std::ranges::find(kLargest, name) - kLargest.begin());
  };
  std::ranges::stable_sort(indexes, {}, [&](const auto& index) { return rank(index.first); });
  return indexes;
}

// Builds the first `limit` indexes waiting (all by default) and forgets them; returns how many are still waiting.
std::size_t build_deferred_indexes(sqlite_api::sqlite3* db,
                                   std::size_t limit = std::numeric_limits<std::size_t>::max()) {
  std::vector<std::pair<std::string, std::string>> indexes = deferred_indexes(db);
  const std::size_t n = std::min(limit, indexes.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto& [name, sql] = indexes[i];
    bool exists = false;
    run_query(db, SqlQuery{"SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?", {name}},
              [&](sqlite_api::sqlite3_stmt*) { exists = true; });
    if (!exists) run_sql(db, SqlQuery{sql, {}});
    run_sql(db, SqlQuery{"DELETE FROM deferred_index WHERE name = ?", {name}});
  }
  return indexes.size() - n;
}

// At open, before the migrations (one of them could change an index that waits): the indexes of a bulk load that
// stopped before its end are built again.
void build_deferred_indexes_at_open(sqlite_api::sqlite3* db) {
  bool has_table = false;
  run_query(db, SqlQuery{"SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'deferred_index'", {}},
            [&](sqlite_api::sqlite3_stmt*) { has_table = true; });
  if (!has_table) return;
  run_sql(db, SqlQuery{"BEGIN IMMEDIATE", {}});
  try {
    build_deferred_indexes(db);
    run_sql(db, SqlQuery{"COMMIT", {}});
  } catch (...) {
    sqlite_api::sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

// SQLite's EXPLAIN QUERY PLAN of a built query: rows of (id, parent, notused, detail).
std::vector<PlanStep> query_plan(sqlite_api::sqlite3* db, const SqlQuery& q) {
  std::vector<PlanStep> steps;
  SqlQuery eqp{"EXPLAIN QUERY PLAN " + q.sql, q.binds};
  run_query(db, eqp, [&](sqlite_api::sqlite3_stmt* st) {
    steps.push_back(
        PlanStep{sqlite_api::sqlite3_column_int64(st, 0), sqlite_api::sqlite3_column_int64(st, 1), column_text(st, 3)});
  });
  return steps;
}

// The indexes named by plan steps ("SEARCH x USING COVERING INDEX idx_token_value (...)"), each once.
std::vector<std::string> indexes_used(const std::vector<PlanStep>& steps) {
  std::vector<std::string> out;
  auto add = [&](std::string name) {
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(std::move(name));
  };
  for (const PlanStep& step : steps) {
    std::string_view d = step.detail;
    // "SEARCH alias ..." or "SCAN alias ...": the alias names the table in the statement.
    std::string alias;
    if (d.starts_with("SEARCH ") || d.starts_with("SCAN ")) {
      std::string_view rest = d.substr(d.find(' ') + 1);
      alias = std::string(rest.substr(0, rest.find(' ')));
    }
    auto word_after = [&](std::string_view marker) -> std::optional<std::string> {
      auto at = d.find(marker);
      if (at == std::string_view::npos) return std::nullopt;
      std::string_view rest = d.substr(at + marker.size());
      return std::string(rest.substr(0, rest.find(' ')));
    };
    if (d.find("USING AUTOMATIC") != std::string_view::npos) {
      add("AUTOMATIC INDEX (" + alias + ")");
    } else if (auto name = word_after("USING COVERING INDEX ")) {
      add(*name);
    } else if (auto name = word_after("USING INDEX ")) {
      add(*name);
    } else if (d.find("USING INTEGER PRIMARY KEY") != std::string_view::npos ||
               d.find("USING PRIMARY KEY") != std::string_view::npos) {
      add("PRIMARY KEY (" + alias + ")");
    }
  }
  return out;
}

// The name of the parameter a _has criterion is written with (its innermost criterion's name).
std::string has_name(const HasCriterion& h) {
  if (h.nested) return has_name(*h.nested);
  return h.criterion ? h.criterion->name : std::string("_has");
}

// How far the explainer counts the matches of a search.
constexpr std::size_t kExplainCountBound = 10000;

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, bool remove_on_close, const StoreOptions& options)
      : path_(std::move(path)),
        remove_on_close_(remove_on_close),
        options_(options),
        cache_(options.cache_bytes),
        writer_sql_() {}

  ~SqliteStore() override {
    {
      std::lock_guard lock(queue_mutex_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    if (writer_thread_.joinable()) writer_thread_.join();
    {
      std::lock_guard lock(completion_mutex_);
      completion_stopping_ = true;
    }
    completion_cv_.notify_all();
    if (completion_thread_.joinable()) completion_thread_.join();  // after the last completion
    if (checkpointer_) checkpointer_->stop();
    readers_.clear();
    cur_stmt_.reset();
    create_stmt_.reset();
    upsert_stmt_.reset();
    insert_stmt_.reset();
    index_writer_.reset();
    writer_cache_.reset();
    begin_stmt_.reset();
    commit_stmt_.reset();
    savepoint_stmt_.reset();
    release_stmt_.reset();
    rollback_to_stmt_.reset();
    writer_sql_.close();
    if (lock_fd_ >= 0) ::close(lock_fd_);
    if (wal_fd_ >= 0) ::close(wal_fd_);
    if (remove_on_close_) {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::path(path_).parent_path(), ec);
    }
  }

  Result<void> open() {
    // Every write must pass through this process, or the cache of current versions could go stale: hold an
    // exclusive lock beside the database for as long as the store is open. The kernel drops it if we die.
    std::string lock_path = path_ + ".lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0)
      return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot open the lock file '" + lock_path + "'");
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
      return fhir::fail(ErrorKind::kUnavailable, "lock-error",
                        "the database '" + path_ + "' is in use by another Caduceus process (stop it first)");
    install_wal_coalescing_vfs();  // (once per process: every connection opened from now on)
    try {
      writer_sql_.open(soci::sqlite3, connect_string(path_));
      configure_connection(writer_sql_, options_.synchronous_full);
      configure_writer(writer_sql_);
      build_deferred_indexes_at_open(writer_db());
      if (auto migrated = apply_sqlite_migrations(writer_sql_); !migrated) return migrated;
      // From here on the writer's commits do not fsync: the completion thread does, once for all the groups
      // committed meanwhile, before it answers their callers (completion_loop), while the writer goes on with
      // the next group.
      writer_sql_ << "PRAGMA synchronous=NORMAL";
      prepare_writer();
      for (std::size_t i = 0; i < std::max<std::size_t>(1, options_.readers); ++i)
        readers_.push_back(std::make_unique<Reader>(path_, options_.synchronous_full));
      for (auto& r : readers_) free_readers_.push_back(r.get());
      long long max_lu = 0;
      soci::indicator ind;
      writer_sql_ << "SELECT MAX(last_updated) FROM resource_version", soci::into(max_lu, ind);
      last_ms_ = ind == soci::i_ok ? max_lu : 0;
      checkpointer_ = std::make_unique<SqliteCheckpointer>(path_, kCheckpointSoftPages, kCheckpointHardPages);
      checkpointer_->attach(writer_db());
    } catch (const std::exception& e) {
      return fhir::fail(ErrorKind::kUnavailable, "exception",
                        "cannot open the SQLite database '" + path_ + "': " + e.what());
    }
    completion_thread_ = std::thread([this] {
      name_this_thread("cad-sqlite-sync");
      completion_loop();
    });
    writer_thread_ = std::thread([this] {
      name_this_thread("cad-sqlite-wr");
      writer_loop();
    });
    return {};
  }

  Result<VersionRecord> read(TenantId tenant, std::string_view type, std::string_view id) override {
    if (auto cached = cache_.find(tenant, type, id)) return VersionRecord(*cached);
    const std::uint64_t evictions = cache_.evictions(tenant, type, id);
    auto fetched = with_reader([&](Reader& r) -> Result<VersionRecord> {
      if (!r.read_current->fetch(tenant, type, id, std::nullopt, r.row))
        return fhir::fail(ErrorKind::kNotFound, "not-found",
                          "Resource " + std::string(type) + "/" + std::string(id) + " is not known");
      return r.record(type, id);
    });
    if (fetched) cache_.put(tenant, *fetched, evictions);
    return fetched;
  }

  Result<VersionRecord> vread(TenantId tenant, std::string_view type, std::string_view id,
                              std::int64_t version) override {
    return with_reader([&](Reader& r) -> Result<VersionRecord> {
      if (!r.read_version->fetch(tenant, type, id, version, r.row))
        return fhir::fail(ErrorKind::kNotFound, "not-found",
                          "Version " + std::to_string(version) + " of " + std::string(type) + "/" + std::string(id) +
                              " is not known");
      return r.record(type, id);
    });
  }

  Result<HistoryPage> history(TenantId tenant, const HistoryQuery& q) override {
    if (q.count == 0) return HistoryPage{};  // _count=0: the total only, no entries
    if (auto restored = restore_search_indexes(); !restored) return std::unexpected(restored.error());
    return with_reader([&](Reader& r) -> Result<HistoryPage> {
      HistoryPage page;
      HistoryAccess access;
      if (auto ok = access.build(tenant, q); !ok) return std::unexpected(ok.error());
      std::string sql =
          "SELECT v.type, v.id, v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
          "FROM resource_version v WHERE " +
          history_where(q) + access.sql;
      sql += " ORDER BY v.seq DESC LIMIT :lim";
      long long t = tenant;
      std::string type = q.type, id = q.id;
      long long since = q.since_ms.value_or(0), low = q.at_low_ms.value_or(0), high = q.at_high_ms.value_or(0);
      long long before = q.before_seq.value_or(0);
      long long limit = static_cast<long long>(q.count) + 1;
      VersionRow row;
      soci::statement st(r.sql);
      st.exchange(soci::into(row.type));
      st.exchange(soci::into(row.id));
      st.exchange(soci::into(row.version));
      st.exchange(soci::into(row.last_updated));
      st.exchange(soci::into(row.deleted));
      st.exchange(soci::into(row.method));
      st.exchange(soci::into(row.body, row.body_ind));
      st.exchange(soci::into(row.seq));
      bind_history(st, t, type, id, q, since, low, high, before);
      access.bind(st);
      st.exchange(soci::use(limit));
      st.alloc();
      st.prepare(sql);
      st.define_and_bind();
      st.execute(false);
      while (st.fetch()) {
        if (page.entries.size() == q.count) {
          page.next_before_seq = page.entries.back().seq;
          break;
        }
        auto rec = row.record();
        if (!rec) return std::unexpected(rec.error());
        page.entries.push_back(std::move(*rec));
      }
      return page;
    });
  }

  Result<std::int64_t> history_total(TenantId tenant, const HistoryQuery& q) override {
    if (auto restored = restore_search_indexes(); !restored) return std::unexpected(restored.error());
    return with_reader([&](Reader& r) -> Result<std::int64_t> {
      HistoryQuery all = q;
      all.before_seq.reset();
      HistoryAccess access;
      if (auto ok = access.build(tenant, all); !ok) return std::unexpected(ok.error());
      std::string sql = "SELECT COUNT(*) FROM resource_version v WHERE " + history_where(all) + access.sql;
      long long t = tenant, total = 0;
      std::string type = all.type, id = all.id;
      long long since = all.since_ms.value_or(0), low = all.at_low_ms.value_or(0), high = all.at_high_ms.value_or(0),
                before = 0;
      soci::statement st(r.sql);
      st.exchange(soci::into(total));
      bind_history(st, t, type, id, all, since, low, high, before);
      access.bind(st);
      st.alloc();
      st.prepare(sql);
      st.define_and_bind();
      st.execute(true);
      return static_cast<std::int64_t>(total);
    });
  }

  Result<bool> defer_search_indexes() override {
    bool dropped = false;
    auto written = write([&](Transaction&) -> Result<void> {
      try {
        dropped = drop_value_indexes(writer_db());
      } catch (const std::exception& e) {
        return std::unexpected(db_error(e));
      }
      return {};
    });
    if (!written) return std::unexpected(written.error());
    if (dropped) indexes_deferred_ = true;
    return dropped;
  }

  // On the writer's thread (a search inside a write job) the indexes are built in the running job's transaction.
  // From any other thread, one index per write job, the largest first: the checkpoint thread copies what each
  // one wrote into the database on the other core while the writer builds the next, and what is left to copy
  // when the store closes is the last (smallest) index's pages, not the ~20 MB of all of them (after `caduceus
  // import` of the Synthea set, under strace: the close's checkpoint and fsync 8 ms instead of 140 ms).
  // indexes_deferred_ then follows deferred_index once each transaction commits (run_jobs).
  Result<void> restore_search_indexes() override {
    if (!indexes_deferred_.load()) return {};
    std::size_t waiting = 0;
    // In the running write transaction, on the writer's thread: builds up to `limit` of the indexes waiting.
    auto build = [&](std::size_t limit) -> Result<void> {
      try {
        waiting = build_deferred_indexes(writer_db(), limit);
      } catch (const std::exception& e) {
        return std::unexpected(db_error(e));
      }
      restored_in_group_ = true;
      return {};
    };
    if (std::this_thread::get_id() == writer_thread_.get_id()) return build(std::numeric_limits<std::size_t>::max());
    do {
      if (checkpointer_) checkpointer_->checkpoint_now();  // (the load's WAL first, then each index's pages)
      if (auto built = write([&](Transaction&) { return build(1); }); !built) return built;
    } while (waiting > 0);
    return {};
  }

  void write_async(Work work, Done done) override {
    {
      std::lock_guard lock(queue_mutex_);
      if (!stopping_) {
        queue_.push_back(WriteJob{std::move(work), std::move(done)});
        work = nullptr;
      }
    }
    if (work) {  // not queued: the store is closing
      done(fhir::fail(ErrorKind::kUnavailable, "transient", "the store is shutting down"));
      return;
    }
    queue_cv_.notify_one();
  }

  struct Hit {
    std::int64_t rid = 0;
    std::string id;
    std::string type;
  };

  // The rows of a page query: (rid, id, type).
  static std::vector<Hit> page_hits(sqlite_api::sqlite3* db, const SqlQuery& page_sql) {
    std::vector<Hit> hits;
    run_query(db, page_sql, [&](sqlite_api::sqlite3_stmt* st) {
      hits.push_back(Hit{sqlite_api::sqlite3_column_int64(st, 0), column_text(st, 1), column_text(st, 2)});
    });
    return hits;
  }

  static Result<std::optional<std::int64_t>> cursor_of(const SearchQuery& query) {
    if (!query.cursor) return std::optional<std::int64_t>{};
    std::int64_t rid = 0;
    auto [ptr, ec] = std::from_chars(query.cursor->data(), query.cursor->data() + query.cursor->size(), rid);
    if (ec != std::errc() || ptr != query.cursor->data() + query.cursor->size() || rid < 0)
      return fhir::fail(ErrorKind::kInvalid, "invalid", "'" + *query.cursor + "' is not a paging cursor", "_cursor");
    return std::optional<std::int64_t>(rid);
  }

  // Where a page starts: after a rid (unsorted searches) or after a sort position (with _sort).
  struct PagePosition {
    std::optional<std::int64_t> after_rid;
    std::optional<SortPosition> after_sorted;
  };

  static Result<PagePosition> page_position(const SearchQuery& query) {
    PagePosition p;
    if (query.cursor && !query.sort.empty()) {
      auto position = decode_sort_cursor(query, *query.cursor);
      if (!position) return std::unexpected(position.error());
      p.after_sorted = std::move(*position);
      return p;
    }
    auto cursor = cursor_of(query);
    if (!cursor) return std::unexpected(cursor.error());
    p.after_rid = *cursor;
    return p;
  }

  static Result<SqlQuery> page_sql_of(TenantId tenant, const SearchQuery& query, const PagePosition& position,
                                      std::size_t limit) {
    if (query.sort.empty()) return build_search_sql(tenant, query, position.after_rid, limit, false);
    return build_sorted_search_sql(tenant, query, position.after_sorted ? &*position.after_sorted : nullptr, limit);
  }

  Result<SearchPage> search(TenantId tenant, const SearchQuery& query) override {
    auto shared = search_shared(tenant, query);
    if (!shared) return std::unexpected(shared.error());
    SearchPage page;
    page.entries.reserve(shared->entries.size());
    for (const auto& v : shared->entries) page.entries.push_back(*v);
    page.included.reserve(shared->included.size());
    for (const auto& v : shared->included) page.included.push_back(*v);
    page.next_cursor = std::move(shared->next_cursor);
    page.total = shared->total;
    page.include_limit_reached = shared->include_limit_reached;
    return page;
  }

  // The records of the page are those of the cache of current versions (or read in the page's snapshot and then
  // put in the cache), shared: nothing is copied.
  Result<SharedSearchPage> search_shared(TenantId tenant, const SearchQuery& query) override {
    if (auto restored = restore_search_indexes(); !restored) return std::unexpected(restored.error());
    auto position = page_position(query);
    if (!position) return std::unexpected(position.error());
    bool want_total = query.total == Total::kAccurate || query.summary == Summary::kCount;
    std::size_t limit = query.summary == Summary::kCount ? 0 : query.count;
    // The chart's search (patient and code) reads its matches' rids from idx_patient_token alone; their types and
    // ids come from rid_keys_ (or one probe each, remembered), and their versions from the cache.
    const std::optional<SqlQuery> rid_sql =
        query.sort.empty() ? build_patient_token_rids_sql(tenant, query, position->after_rid, limit + 1) : std::nullopt;
    auto page_sql = rid_sql ? Result<SqlQuery>(SqlQuery{}) : page_sql_of(tenant, query, *position, limit + 1);
    if (!page_sql) return std::unexpected(page_sql.error());
    std::optional<SqlQuery> count_sql;
    if (want_total) {
      auto c = build_search_sql(tenant, query, std::nullopt, 0, true);
      if (!c) return std::unexpected(c.error());
      count_sql = std::move(*c);
    }
    const std::uint64_t epoch = cache_.epoch();  // before the snapshot begins (see CurrentCache::put_read)
    return with_reader([&](Reader& r) -> Result<SharedSearchPage> {
      auto* db = static_cast<soci::sqlite3_session_backend*>(r.sql.get_backend())->conn_;
      Reader::Snapshot snapshot(r);
      SharedSearchPage page;
      std::vector<Hit> hits;
      std::vector<SortPosition> positions;  // of each hit, when sorted
      if (rid_sql) {
        std::vector<std::int64_t> rids;
        run_query(
            db, *rid_sql,
            [&](sqlite_api::sqlite3_stmt* st) { rids.push_back(sqlite_api::sqlite3_column_int64(st, 0)); },
            &*r.searches);
        hits.reserve(rids.size());
        for (std::int64_t rid : rids) {
          Hit& h = hits.emplace_back(Hit{rid, {}, {}});
          if (rid_keys_.find(rid, h.type, h.id)) continue;
          SqlQuery key;
          key.sql = "SELECT id, type FROM resource WHERE rid = ?";
          key.binds.emplace_back(rid);
          run_query(
              db, key,
              [&](sqlite_api::sqlite3_stmt* st) {
                h.id = column_text(st, 0);
                h.type = column_text(st, 1);
              },
              &*r.searches);
          if (h.id.empty()) return fhir::fail(ErrorKind::kInternal, "exception", "an index row without its resource");
          rid_keys_.put(rid, h.type, h.id);
        }
      } else {
        run_query(
            db, *page_sql,
            [&](sqlite_api::sqlite3_stmt* st) {
              hits.push_back(Hit{sqlite_api::sqlite3_column_int64(st, 0), column_text(st, 1), column_text(st, 2)});
              if (query.sort.empty()) return;
              SortPosition& p = positions.emplace_back();
              p.rid = hits.back().rid;
              for (int i = 0; i < static_cast<int>(query.sort.size()); ++i) {
                const int col = 3 + i;  // after rid, id, type
                switch (sqlite_api::sqlite3_column_type(st, col)) {
                  case SQLITE_NULL: p.keys.emplace_back(std::nullopt); break;
                  case SQLITE_INTEGER: p.keys.emplace_back(sqlite_api::sqlite3_column_int64(st, col)); break;
                  case SQLITE_FLOAT: p.keys.emplace_back(sqlite_api::sqlite3_column_double(st, col)); break;
                  default:
                    p.keys.emplace_back(
                        std::string(reinterpret_cast<const char*>(sqlite_api::sqlite3_column_text(st, col)),
                                    static_cast<std::size_t>(sqlite_api::sqlite3_column_bytes(st, col))));
                }
              }
            },
            &*r.searches);
      }
      if (limit == 0) {
        hits.clear();  // _count=0 and _summary=count: no entries, nothing to page
      } else if (hits.size() > limit) {
        hits.resize(limit);
        page.next_cursor =
            query.sort.empty() ? std::to_string(hits.back().rid) : encode_sort_cursor(query, positions[limit - 1]);
      }
      for (const auto& [rid, id, type] : hits) {
        // The current version, from the cache of current versions when it is there (as a read by id; it may be
        // newer than the match), else from the snapshot of the match, and then kept in the cache.
        std::shared_ptr<const VersionRecord> rec = cache_.find(tenant, type, id);
        if (!rec) {
          if (!r.read_rid->fetch_rid(rid, r.row)) continue;
          auto fetched = r.record(type, id);
          if (!fetched) return std::unexpected(fetched.error());
          rec = std::make_shared<const VersionRecord>(std::move(*fetched));
          cache_.put_read(tenant, rec, epoch);
        }
        // Deleted since the match (a newer version from the cache): it has no body to show.
        if (rec->deleted) continue;
        page.entries.push_back(std::move(rec));
      }
      if (!query.includes.empty()) {
        // (collect_includes works on copies: _include pages copy their matches once, as before.)
        SearchPage copies;
        copies.entries.reserve(page.entries.size());
        for (const auto& v : page.entries) copies.entries.push_back(*v);
        if (auto included = include_into(r, db, tenant, query, copies, epoch); !included)
          return std::unexpected(included.error());
        for (VersionRecord& v : copies.included)
          page.included.push_back(std::make_shared<const VersionRecord>(std::move(v)));
        page.include_limit_reached = copies.include_limit_reached;
      }
      if (count_sql)
        run_query(
            db, *count_sql, [&](sqlite_api::sqlite3_stmt* st) { page.total = sqlite_api::sqlite3_column_int64(st, 0); },
            &*r.searches);
      return page;
    });
  }

  Result<SearchPlan> explain(TenantId tenant, const SearchQuery& original) override {
    if (auto restored = restore_search_indexes(); !restored) return std::unexpected(restored.error());
    auto position = page_position(original);
    if (!position) return std::unexpected(position.error());
    SearchPlan plan;
    SearchQuery query = original;
    const bool want_total = query.total == Total::kAccurate || query.summary == Summary::kCount;
    const std::size_t limit = query.summary == Summary::kCount ? 0 : query.count;
    // What the SQL builder refuses as not supported yet (and search() would answer 501 for) is taken out, and
    // said so, until the rest builds: the plan answers for any parsed search.
    std::optional<SqlQuery> page_sql;
    for (;;) {
      auto built = page_sql_of(tenant, query, *position, limit + 1);
      if (built) {
        page_sql = std::move(*built);
        break;
      }
      const fhir::Error& e = built.error();
      if (e.kind != ErrorKind::kNotSupported || e.issues.empty()) return std::unexpected(e);
      const std::string& what = e.issues[0].expression;
      std::size_t before = query.criteria.size() + query.has.size() + query.sort.size();
      if (what == "_sort") query.sort.clear();
      std::erase_if(query.criteria, [&](const Criterion& c) { return c.name == what; });
      std::erase_if(query.has, [&](const HasCriterion& h) { return has_name(h) == what; });
      if (query.criteria.size() + query.has.size() + query.sort.size() == before) return std::unexpected(e);
      plan.notes.push_back(
          e.issues[0].diagnostics +
          ": the search answers 501 Not Implemented with it; this plan is of the same search without '" + what + "'");
    }
    auto count_sql = build_search_sql(tenant, query, std::nullopt, 0, true);
    if (!count_sql) return std::unexpected(count_sql.error());
    return with_reader([&](Reader& r) -> Result<SearchPlan> {
      auto* db = static_cast<soci::sqlite3_session_backend*>(r.sql.get_backend())->conn_;
      bool analyzed = false;
      run_query(db, SqlQuery{"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'", {}},
                [&](sqlite_api::sqlite3_stmt*) { analyzed = true; });
      auto statement = [&](std::string role, std::string description, bool runs, const SqlQuery& q) {
        StatementPlan s;
        s.role = std::move(role);
        s.description = std::move(description);
        s.runs = runs;
        s.sql = q.sql;
        s.binds = q.binds;
        s.steps = query_plan(db, q);
        s.indexes = indexes_used(s.steps);
        if (analyzed) {
          for (const std::string& index : s.indexes) {
            SqlQuery stat{"SELECT stat FROM sqlite_stat1 WHERE idx = ?", {index}};
            run_query(db, stat,
                      [&](sqlite_api::sqlite3_stmt* st) { s.statistics.emplace_back(index, column_text(st, 0)); });
          }
        }
        return s;
      };
      // The number of matches, counted with the search's own conditions, as far as the bound.
      std::int64_t matches = 0;
      run_query(db, bounded_match_count_sql(*count_sql, kExplainCountBound),
                [&](sqlite_api::sqlite3_stmt* st) { matches = sqlite_api::sqlite3_column_int64(st, 0); });
      const bool bounded = matches >= static_cast<std::int64_t>(kExplainCountBound);
      const std::string counted =
          "the matches of the search, counted with SELECT COUNT(*) over its conditions (stopped at " +
          std::to_string(kExplainCountBound) + "); SQLite's query plan has no row estimates";

      StatementPlan page = statement(
          "page",
          "the matches of one page (" + std::to_string(limit) + " and one more to know whether a next page follows), " +
              (query.sort.empty() ? std::string("in rid order after the cursor")
                                  : "sorted by _sort=" + sort_spec(query) + " after the cursor"),
          true, *page_sql);
      page.rows = matches;
      page.rows_bounded = bounded;
      page.rows_method = counted;
      plan.statements.push_back(std::move(page));
      StatementPlan count =
          statement("count",
                    want_total ? "the total (_total=accurate or _summary=count)"
                               : "the total: not run by this search (only with _total=accurate or _summary=count)",
                    want_total, *count_sql);
      count.rows = matches;
      count.rows_bounded = bounded;
      count.rows_method = counted;
      plan.statements.push_back(std::move(count));

      if (!query.includes.empty()) {
        std::vector<Hit> hits = page_hits(db, *page_sql);
        if (hits.size() > limit) hits.resize(limit);
        for (const Include& inc : query.includes) {
          std::map<std::string, std::vector<std::string>> by_type;
          for (const Hit& h : hits)
            if (inc.reverse || inc.source_type.empty() || h.type == inc.source_type) by_type[h.type].push_back(h.id);
          std::string name =
              std::string(inc.reverse ? "_revinclude" : "_include") + (inc.iterate ? ":iterate" : "") + "=";
          if (inc.wildcard && inc.source_type.empty())
            name += "*";
          else
            name += inc.source_type + ":" + (inc.wildcard ? std::string("*") : inc.parameter->code) +
                    (inc.target_type.empty() ? "" : ":" + inc.target_type);
          if (by_type.empty()) {
            // No match on the first page to start from: the statement for an empty list of ids.
            std::string type = !inc.reverse && !inc.source_type.empty() ? inc.source_type
                               : !query.type.empty()                    ? query.type
                               : !query.types.empty()                   ? query.types.front()
                                                                        : std::string("Resource");
            by_type[type];
          }
          for (const auto& [type, ids] : by_type) {
            if (inc.reverse && !inc.target_type.empty() && inc.target_type != type) continue;
            SqlQuery q = build_include_sql(tenant, inc, type, ids, query.access.get());
            std::string description =
                name + (inc.reverse ? ": the resources that refer to the " : ": what is referred to by the ") +
                std::to_string(ids.size()) + " " + type + " match(es) of the first page";
            StatementPlan s = statement(inc.reverse ? "revinclude" : "include", std::move(description), true, q);
            std::int64_t rows = 0;
            run_query(db, q, [&](sqlite_api::sqlite3_stmt*) { ++rows; });
            s.rows = rows;
            s.rows_method = "the rows the statement returns for these ids, counted by running it";
            plan.statements.push_back(std::move(s));
          }
          if (inc.iterate)
            plan.notes.push_back(
                name +
                ": each further round runs the same statement for the resources the previous round added (at most " +
                std::to_string(options_.max_included) + " included per page)");
        }
      }
      if (!analyzed)
        plan.notes.push_back(
            "ANALYZE has not been run on this database: there are no sqlite_stat1 statistics, and SQLite plans from "
            "its defaults");
      return plan;
    });
  }

  // Adds the _include / _revinclude results of a page (and, for :iterate, of what they add, until nothing new
  // comes or the maximum is reached). Runs on the caller's reader.
  // `epoch`: CurrentCache::epoch() from before the reader's snapshot began.
  Result<void> include_into(Reader& r, sqlite_api::sqlite3* db, TenantId tenant, const SearchQuery& query,
                            SearchPage& page, std::uint64_t epoch) {
    return collect_includes(
        query, options_.max_included, page,
        [&](const Include& inc, const std::string& type,
            const std::vector<std::string>& ids) -> Result<std::vector<std::pair<std::string, std::string>>> {
          std::vector<std::pair<std::string, std::string>> targets;
          run_query(
              db, build_include_sql(tenant, inc, type, ids, query.access.get()),
              [&](sqlite_api::sqlite3_stmt* st) { targets.emplace_back(column_text(st, 0), column_text(st, 1)); });
          return targets;
        },
        // From the cache of current versions when it is there, else from the snapshot, then kept in the cache.
        [&](const std::string& t, const std::string& id) -> Result<std::optional<VersionRecord>> {
          if (auto cached = cache_.find(tenant, t, id)) return std::optional<VersionRecord>(*cached);
          if (!r.read_current->fetch(tenant, t, id, std::nullopt, r.row)) return std::optional<VersionRecord>{};
          auto fetched = r.record(t, id);
          if (!fetched) return std::optional<VersionRecord>{};  // (a body that does not decode is left out)
          cache_.put_read(tenant, *fetched, epoch);
          return std::optional<VersionRecord>{std::move(*fetched)};
        });
  }

  Result<void> ping() override {
    return with_reader([&](Reader& r) -> Result<void> {
      int one = 0;
      r.sql << "SELECT 1", soci::into(one);
      if (one != 1) return fhir::fail(ErrorKind::kUnavailable, "transient", "the database did not answer");
      return {};
    });
  }

  // Writer-side operations used by SqliteTransaction (writer thread only).
  Result<std::optional<CurrentInfo>> txn_current(TenantId tenant, std::string_view type, std::string_view id) {
    w_tenant_ = tenant;
    w_type_.assign(type);
    w_id_.assign(id);
    if (!execute_one(*cur_stmt_)) return std::optional<CurrentInfo>{};
    return std::optional<CurrentInfo>{CurrentInfo{w_version_, w_last_updated_, w_deleted_ != 0}};
  }

  Result<std::int64_t> txn_append(TenantId tenant, const VersionRecord& rec, const IndexValues* index) {
    const std::int64_t deleted = rec.deleted ? 1 : 0;
    // A first version has no resource row yet (a resource created again after its deletion goes on from its last
    // version): a plain INSERT, whose rowid SQLite gives without the temporary table a RETURNING clause costs. The
    // writer's instructions for an import of ten Synthea Bundles went from 771 to 668 M with the version's INSERT.
    RawStatement& upsert = rec.version == 1 ? *create_stmt_ : *upsert_stmt_;
    upsert.bind(1, std::int64_t{tenant})
        .bind(2, std::string_view(rec.type))
        .bind(3, std::string_view(rec.id))
        .bind(4, rec.version)
        .bind(5, rec.last_updated_ms)
        .bind(6, deleted);
    const std::int64_t rid = rec.version == 1 ? upsert.run_insert() : upsert.run_returning();
    insert_stmt_->bind(1, rid)
        .bind(2, std::int64_t{tenant})
        .bind(3, std::string_view(rec.type))
        .bind(4, std::string_view(rec.id))
        .bind(5, rec.version)
        .bind(6, rec.last_updated_ms)
        .bind(7, deleted)
        .bind(8, std::int64_t{method_code(rec.method)});
    if (rec.deleted) {
      insert_stmt_->bind_null(9);
    } else {
      w_body_.assign(kBodyFormatJson);  // (a buffer kept from one write to the next)
      w_body_.append(rec.body);
      insert_stmt_->bind_blob(9, w_body_);
    }
    const std::int64_t seq = insert_stmt_->run_insert();
    // The index describes the current version only: the previous version's rows go, the new ones come.
    if (rec.deleted)
      index_writer_->set_aside(rid, set_aside_tenant(tenant));
    else if (rec.version > 1)
      index_writer_->remove(rid);
    if (index != nullptr && !rec.deleted) index_writer_->insert(rid, tenant, rec.type, *index);
    if (cache_.enabled()) {  // (a copy of the version, body included, for the cache once committed)
      appended_.emplace_back(tenant, rec);
      appended_.back().second.seq = seq;
    }
    return seq;
  }

  // The current version of one resource with its body, read on the writer's connection (so inside the job's
  // transaction: its earlier writes count).
  Result<std::optional<VersionRecord>> txn_current_record(TenantId tenant, std::string_view type, std::string_view id) {
    SqlQuery q;
    q.sql =
        "SELECT v.version, v.last_updated, v.deleted, v.method, v.body, v.seq FROM resource r "
        "JOIN resource_version v ON v.rid = r.rid AND v.version = r.version "
        "WHERE r.tenant = ? AND r.type = ? AND r.id = ?";
    q.binds = {std::int64_t{tenant}, std::string(type), std::string(id)};
    std::optional<VersionRecord> out;
    try {
      std::optional<fhir::Error> failed;
      run_writer(q, [&](sqlite_api::sqlite3_stmt* st) {
        VersionRecord rec;
        rec.type.assign(type);
        rec.id.assign(id);
        rec.version = sqlite_api::sqlite3_column_int64(st, 0);
        rec.last_updated_ms = sqlite_api::sqlite3_column_int64(st, 1);
        rec.deleted = sqlite_api::sqlite3_column_int64(st, 2) != 0;
        rec.method = method_from(static_cast<int>(sqlite_api::sqlite3_column_int64(st, 3)));
        rec.seq = sqlite_api::sqlite3_column_int64(st, 5);
        if (!rec.deleted) {
          const auto* p = static_cast<const char*>(sqlite_api::sqlite3_column_blob(st, 4));
          auto body = decode_body(
              std::string(p == nullptr ? "" : p, static_cast<std::size_t>(sqlite_api::sqlite3_column_bytes(st, 4))));
          if (!body) {
            failed = body.error();
            return;
          }
          rec.body = std::move(*body);
        }
        out = std::move(rec);
      });
      if (failed) return std::unexpected(*failed);
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return out;
  }

  // The WHERE of the reindex walks, and its binds.
  static SqlQuery targets_where(TenantId tenant, const std::vector<std::string>& types, std::int64_t after_rid,
                                std::int64_t max_rid) {
    SqlQuery q;
    q.sql = " WHERE r.tenant = ? AND r.deleted = 0 AND r.rid > ? AND r.rid <= ?";
    q.binds = {std::int64_t{tenant}, after_rid, max_rid};
    if (!types.empty()) {
      q.sql += " AND r.type IN (";
      for (std::size_t i = 0; i < types.size(); ++i) {
        q.sql += i == 0 ? "?" : ", ?";
        q.binds.emplace_back(types[i]);
      }
      q.sql += ")";
    }
    return q;
  }

  // Whether a search reads the full-text table (_text, _content), also through a chain or a _has.
  static bool uses_full_text(const Criterion& c) {
    if (c.parameter != nullptr && (c.parameter->code == "_text" || c.parameter->code == "_content")) return true;
    return c.chained && uses_full_text(*c.chained);
  }
  static bool uses_full_text(const HasCriterion& h) {
    return (h.criterion && uses_full_text(*h.criterion)) || (h.nested && uses_full_text(*h.nested));
  }
  static bool uses_full_text(const SearchQuery& q) {
    for (const Criterion& c : q.criteria)
      if (uses_full_text(c)) return true;
    for (const HasCriterion& h : q.has)
      if (uses_full_text(h)) return true;
    return false;
  }

  sqlite_api::sqlite3* writer_db() {
    return static_cast<soci::sqlite3_session_backend*>(writer_sql_.get_backend())->conn_;
  }

  // A query on the writer's connection, its statement kept prepared in the writer's cache (the writer runs the
  // same few statements for every write: parsing and planning them again each time cost a sixth of its time).
  template <class F>
  void run_writer(const SqlQuery& q, F&& on_row) {
    run_query(writer_db(), q, std::forward<F>(on_row), writer_cache_ ? &*writer_cache_ : nullptr);
  }

  Result<std::vector<std::pair<std::string, std::string>>> txn_search_ids(TenantId tenant, const SearchQuery& query,
                                                                          std::size_t limit) {
    SearchQuery plain = query;
    plain.sort.clear();
    plain.includes.clear();
    plain.cursor.reset();
    auto sql = build_search_sql(tenant, plain, std::nullopt, limit, false);
    // (A search inside a write, such as a conditional reference of a Bundle being imported.)
    if (auto restored = restore_search_indexes(); !restored) return std::unexpected(restored.error());
    // _text and _content see this transaction's writes. Only they: full-text rows written between the other
    // statements make FTS5 write a segment at each statement savepoint (see IndexWriter::flush_text), which cost
    // the HL7 v2 writes, searching by identifier between their writes, an eighth of the writer's time.
    if (index_writer_ && uses_full_text(plain)) index_writer_->flush_text();
    if (!sql) return std::unexpected(sql.error());
    std::vector<std::pair<std::string, std::string>> out;
    try {
      run_writer(*sql, [&](sqlite_api::sqlite3_stmt* st) {
        out.emplace_back(column_text(st, 2), column_text(st, 1));  // rid, id, type
      });
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return out;
  }

  Result<IndexExtent> txn_index_extent(TenantId tenant, const std::vector<std::string>& types, std::int64_t after_rid,
                                       std::int64_t max_rid) {
    SqlQuery q = targets_where(tenant, types, after_rid, max_rid);
    q.sql = "SELECT COALESCE(MAX(r.rid), 0), COUNT(*) FROM resource r" + q.sql;
    IndexExtent extent;
    try {
      run_writer(q, [&](sqlite_api::sqlite3_stmt* st) {
        extent.max_rid = sqlite_api::sqlite3_column_int64(st, 0);
        extent.count = sqlite_api::sqlite3_column_int64(st, 1);
      });
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return extent;
  }

  Result<std::vector<IndexTarget>> txn_index_targets(TenantId tenant, const std::vector<std::string>& types,
                                                     std::int64_t after_rid, std::int64_t max_rid, std::size_t limit) {
    SqlQuery q = targets_where(tenant, types, after_rid, max_rid);
    q.sql =
        "SELECT r.rid, r.type, r.id, v.version, v.last_updated, v.body, v.seq FROM resource r "
        "JOIN resource_version v ON v.rid = r.rid AND v.version = r.version" +
        q.sql + " ORDER BY r.rid LIMIT ?";
    q.binds.emplace_back(static_cast<std::int64_t>(limit));
    std::vector<IndexTarget> out;
    try {
      auto text = [](sqlite_api::sqlite3_stmt* st, int i) {
        const auto* p = static_cast<const char*>(sqlite_api::sqlite3_column_blob(st, i));
        return std::string(p == nullptr ? "" : p, static_cast<std::size_t>(sqlite_api::sqlite3_column_bytes(st, i)));
      };
      std::optional<fhir::Error> failed;
      run_writer(q, [&](sqlite_api::sqlite3_stmt* st) {
        IndexTarget t;
        t.rid = sqlite_api::sqlite3_column_int64(st, 0);
        t.record.type = text(st, 1);
        t.record.id = text(st, 2);
        t.record.version = sqlite_api::sqlite3_column_int64(st, 3);
        t.record.last_updated_ms = sqlite_api::sqlite3_column_int64(st, 4);
        auto body = decode_body(text(st, 5));
        if (!body) {
          failed = body.error();
          return;
        }
        t.record.body = std::move(*body);
        t.record.seq = sqlite_api::sqlite3_column_int64(st, 6);
        out.push_back(std::move(t));
      });
      if (failed) return std::unexpected(*failed);
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return out;
  }

  Result<void> txn_replace_index(TenantId tenant, std::int64_t rid, std::string_view type,
                                 const std::vector<std::string>& params, const IndexValues& values) {
    try {
      if (params.empty())
        index_writer_->remove(rid);
      else
        for (const std::string& p : params) index_writer_->remove_param(rid, p);
      index_writer_->insert(rid, tenant, type, values, params.empty());
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return {};
  }

  static std::string join_words(const std::vector<std::string>& words) {
    std::string out;
    for (const std::string& w : words) out += (out.empty() ? "" : " ") + w;
    return out;
  }

  static std::vector<std::string> split_words(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
      std::size_t end = text.find(' ', start);
      if (end == std::string::npos) end = text.size();
      if (end > start) out.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    return out;
  }

  OAuthTables* txn_oauth_tables() {
    if (!oauth_tables_) oauth_tables_ = make_sql_oauth_tables(writer_sql_);  // (on the writer thread only)
    return oauth_tables_.get();
  }

  Result<void> txn_save_reindex_job(TenantId tenant, const ReindexJobRecord& job) {
    SqlQuery q;
    q.sql = "INSERT OR REPLACE INTO reindex_job VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    q.binds = {std::int64_t{tenant}, job.id,      join_words(job.types), join_words(job.params),
               job.search_parameter, job.state,   job.processed,         job.total,
               job.last_rid,         job.max_rid, job.message,           job.created_ms,
               job.updated_ms};
    try {
      run_writer(q, [](sqlite_api::sqlite3_stmt*) {});
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return {};
  }

  // ---- inbound HL7 v2 messages ----

  static constexpr char kRawFormat = 'r';  // first byte of hl7_inbound.raw and .ack: the bytes as they are

  // A text or blob column as bytes ("" for NULL); a blob of ours without its format byte.
  static std::string column_bytes(sqlite_api::sqlite3_stmt* st, int i) {
    const void* p = sqlite_api::sqlite3_column_blob(st, i);
    int n = sqlite_api::sqlite3_column_bytes(st, i);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), static_cast<std::size_t>(n));
  }
  static std::string column_raw_blob(sqlite_api::sqlite3_stmt* st, int i) {
    std::string b = column_bytes(st, i);
    if (!b.empty() && b.front() == kRawFormat) b.erase(0, 1);
    return b;
  }

  static std::string join_resources(const std::vector<std::string>& list) {
    std::string out;
    for (const auto& r : list) out += (out.empty() ? "" : " ") + r;
    return out;
  }

  Result<std::vector<InboundMessageRecord>> inbound_rows(const SqlQuery& q) {
    std::vector<InboundMessageRecord> out;
    auto* bytes = &column_bytes;
    auto* blob = &column_raw_blob;
    try {
      run_writer(q, [&](sqlite_api::sqlite3_stmt* st) {
        InboundMessageRecord r;
        r.id = sqlite_api::sqlite3_column_int64(st, 0);
        r.sending_application = bytes(st, 1);
        r.sending_facility = bytes(st, 2);
        r.control_id = bytes(st, 3);
        r.message_type = bytes(st, 4);
        r.received_ms = sqlite_api::sqlite3_column_int64(st, 5);
        r.raw = blob(st, 6);
        r.status = bytes(st, 7);
        r.ack = blob(st, 8);
        r.resources = split_words(bytes(st, 9));
        r.error = bytes(st, 10);
        r.updated_ms = sqlite_api::sqlite3_column_int64(st, 11);
        r.replays = sqlite_api::sqlite3_column_int64(st, 12);
        r.replayed_ms = sqlite_api::sqlite3_column_int64(st, 13);
        out.push_back(std::move(r));
      });
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return out;
  }

  static constexpr const char* kInboundColumns = kHl7InboundSelect;

  Result<std::vector<InboundMessageRecord>> txn_list_inbound_messages(TenantId tenant, const Hl7MessageQuery& query) {
    return inbound_rows(hl7_message_list_sql(tenant, query, true, false));
  }

  Result<std::optional<InboundMessageRecord>> txn_find_inbound_message(TenantId tenant, std::string_view app,
                                                                       std::string_view facility,
                                                                       std::string_view control_id) {
    SqlQuery q;
    q.sql = std::string(kInboundColumns) +
            " AND sending_application = ? AND sending_facility = ? AND control_id = ? AND control_id <> ''";
    q.binds = {std::int64_t{tenant}, std::string(app), std::string(facility), std::string(control_id)};
    auto rows = inbound_rows(q);
    if (!rows) return std::unexpected(rows.error());
    if (rows->empty()) return std::optional<InboundMessageRecord>{};
    return std::optional<InboundMessageRecord>{std::move(rows->front())};
  }

  Result<std::optional<InboundMessageRecord>> txn_inbound_message(TenantId tenant, std::int64_t id) {
    SqlQuery q;
    q.sql = std::string(kInboundColumns) + " AND id = ?";
    q.binds = {std::int64_t{tenant}, id};
    auto rows = inbound_rows(q);
    if (!rows) return std::unexpected(rows.error());
    if (rows->empty()) return std::optional<InboundMessageRecord>{};
    return std::optional<InboundMessageRecord>{std::move(rows->front())};
  }

  Result<std::int64_t> txn_insert_inbound_message(TenantId tenant, const InboundMessageRecord& r) {
    if (!r.control_id.empty()) {
      auto existing = txn_find_inbound_message(tenant, r.sending_application, r.sending_facility, r.control_id);
      if (!existing) return std::unexpected(existing.error());
      if (*existing)
        return fhir::fail(ErrorKind::kConflict, "duplicate",
                          "message " + r.control_id + " from " + r.sending_application + " is stored already");
    }
    SqlQuery q;
    q.sql =
        "INSERT INTO hl7_inbound (tenant, sending_application, sending_facility, control_id, message_type, received, "
        "raw, status, ack, resources, error, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    q.binds = {std::int64_t{tenant},
               r.sending_application,
               r.sending_facility,
               r.control_id,
               r.message_type,
               r.received_ms,
               kRawFormat + r.raw,
               r.status,
               kRawFormat + r.ack,
               join_resources(r.resources),
               r.error,
               r.updated_ms};
    try {
      run_writer(q, [](sqlite_api::sqlite3_stmt*) {});
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return static_cast<std::int64_t>(sqlite_api::sqlite3_last_insert_rowid(writer_db()));
  }

  Result<void> txn_update_inbound_message(TenantId tenant, const InboundMessageRecord& r) {
    SqlQuery q;
    q.sql =
        "UPDATE hl7_inbound SET status = ?, ack = ?, resources = ?, error = ?, updated = ?, replays = ?, replayed = ? "
        "WHERE tenant = ? AND id = ?";
    q.binds = {r.status,  kRawFormat + r.ack, join_resources(r.resources), r.error, r.updated_ms,
               r.replays, r.replayed_ms,      std::int64_t{tenant},        r.id};
    try {
      run_writer(q, [](sqlite_api::sqlite3_stmt*) {});
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    if (sqlite_api::sqlite3_changes(writer_db()) == 0)
      return fhir::fail(ErrorKind::kNotFound, "not-found", "no inbound message " + std::to_string(r.id));
    return {};
  }

  // ---- outbound HL7 v2 messages (hl7_outbound; message and ack behind a format byte, as in hl7_inbound) ----

  Result<std::int64_t> txn_insert_outbound_message(TenantId tenant, const OutboundMessageRecord& r) {
    SqlQuery q;
    q.sql =
        "INSERT INTO hl7_outbound (tenant, destination, message_type, control_id, message, source, status, attempts, "
        "last_error, ack, created, updated, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    q.binds = {std::int64_t{tenant},   r.destination,      r.message_type, r.control_id,
               kRawFormat + r.message, r.source,           r.status,       r.attempts,
               r.last_error,           kRawFormat + r.ack, r.created_ms,   r.updated_ms,
               r.next_attempt_ms};
    try {
      run_writer(q, [](sqlite_api::sqlite3_stmt*) {});
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return static_cast<std::int64_t>(sqlite_api::sqlite3_last_insert_rowid(writer_db()));
  }

  Result<void> txn_update_outbound_message(TenantId tenant, const OutboundMessageRecord& r) {
    SqlQuery q;
    q.sql =
        "UPDATE hl7_outbound SET status = ?, attempts = ?, last_error = ?, ack = ?, updated = ?, next_attempt = ? "
        "WHERE tenant = ? AND id = ?";
    q.binds = {r.status,     r.attempts,        r.last_error,         kRawFormat + r.ack,
               r.updated_ms, r.next_attempt_ms, std::int64_t{tenant}, r.id};
    try {
      run_writer(q, [](sqlite_api::sqlite3_stmt*) {});
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    if (sqlite_api::sqlite3_changes(writer_db()) == 0)
      return fhir::fail(ErrorKind::kNotFound, "not-found", "no outbound message " + std::to_string(r.id));
    return {};
  }

  Result<std::optional<OutboundMessageRecord>> txn_outbound_message(TenantId tenant, std::int64_t id) {
    SqlQuery q;
    q.sql = std::string(kHl7OutboundSelect) + " AND id = ?";
    q.binds = {std::int64_t{tenant}, id};
    auto rows = outbound_rows(q);
    if (!rows) return std::unexpected(rows.error());
    if (rows->empty()) return std::optional<OutboundMessageRecord>{};
    return std::optional<OutboundMessageRecord>{std::move(rows->front())};
  }

  Result<std::vector<OutboundMessageRecord>> txn_list_outbound_messages(TenantId tenant, const Hl7MessageQuery& query) {
    return outbound_rows(hl7_message_list_sql(tenant, query, false, false));
  }

  Result<std::vector<OutboundMessageRecord>> txn_outbound_messages(TenantId tenant, const OutboundQuery& query) {
    SqlQuery q;
    q.sql = kHl7OutboundSelect;
    q.binds = {std::int64_t{tenant}};
    if (!query.destination.empty()) {
      q.sql += " AND destination = ?";
      q.binds.emplace_back(query.destination);
    }
    if (!query.status.empty()) {
      q.sql += " AND status = ?";
      q.binds.emplace_back(query.status);
    }
    q.sql += " ORDER BY id";
    if (query.limit > 0) {
      q.sql += " LIMIT ?";
      q.binds.emplace_back(static_cast<std::int64_t>(query.limit));
    }
    return outbound_rows(q);
  }

  // The rows of a query over kHl7OutboundSelect's columns.
  Result<std::vector<OutboundMessageRecord>> outbound_rows(const SqlQuery& q) {
    std::vector<OutboundMessageRecord> out;
    auto* bytes = &column_bytes;
    auto* blob = &column_raw_blob;
    try {
      run_writer(q, [&](sqlite_api::sqlite3_stmt* st) {
        OutboundMessageRecord r;
        r.id = sqlite_api::sqlite3_column_int64(st, 0);
        r.destination = bytes(st, 1);
        r.message_type = bytes(st, 2);
        r.control_id = bytes(st, 3);
        r.message = blob(st, 4);
        r.source = bytes(st, 5);
        r.status = bytes(st, 6);
        r.attempts = sqlite_api::sqlite3_column_int64(st, 7);
        r.last_error = bytes(st, 8);
        r.ack = blob(st, 9);
        r.created_ms = sqlite_api::sqlite3_column_int64(st, 10);
        r.updated_ms = sqlite_api::sqlite3_column_int64(st, 11);
        r.next_attempt_ms = sqlite_api::sqlite3_column_int64(st, 12);
        out.push_back(std::move(r));
      });
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return out;
  }

  Result<std::vector<ReindexJobRecord>> txn_reindex_jobs(TenantId tenant) {
    SqlQuery q;
    q.sql =
        "SELECT id, types, params, search_parameter, state, processed, total, last_rid, max_rid, message, created, "
        "updated FROM reindex_job WHERE tenant = ? ORDER BY id";
    q.binds = {std::int64_t{tenant}};
    std::vector<ReindexJobRecord> out;
    try {
      auto text = [](sqlite_api::sqlite3_stmt* st, int i) {
        const auto* p = reinterpret_cast<const char*>(sqlite_api::sqlite3_column_text(st, i));
        return std::string(p == nullptr ? "" : p);
      };
      run_writer(q, [&](sqlite_api::sqlite3_stmt* st) {
        ReindexJobRecord j;
        j.id = sqlite_api::sqlite3_column_int64(st, 0);
        j.types = split_words(text(st, 1));
        j.params = split_words(text(st, 2));
        j.search_parameter = text(st, 3);
        j.state = text(st, 4);
        j.processed = sqlite_api::sqlite3_column_int64(st, 5);
        j.total = sqlite_api::sqlite3_column_int64(st, 6);
        j.last_rid = sqlite_api::sqlite3_column_int64(st, 7);
        j.max_rid = sqlite_api::sqlite3_column_int64(st, 8);
        j.message = text(st, 9);
        j.created_ms = sqlite_api::sqlite3_column_int64(st, 10);
        j.updated_ms = sqlite_api::sqlite3_column_int64(st, 11);
        out.push_back(std::move(j));
      });
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return out;
  }

  soci::session& writer_session() { return writer_sql_; }

  std::int64_t txn_now_ms() {
    auto now =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    last_ms_ = std::max<std::int64_t>(last_ms_, now);
    return last_ms_;
  }

 private:
  // The access filter of a history query (HistoryQuery::access) as " AND v.rid IN (...)", its `?` made into named
  // placeholders (soci binds them in order, after history_where's).
  struct HistoryAccess {
    std::string sql;
    std::deque<long long> ints;
    std::deque<double> reals;
    std::deque<std::string> texts;
    std::vector<std::variant<long long*, double*, std::string*>> order;

    Result<void> build(TenantId tenant, const HistoryQuery& q) {
      if (!q.access) return {};
      auto cond = build_access_condition(tenant, *q.access, q.type);
      if (!cond) return std::unexpected(cond.error());
      sql = " AND ";
      int n = 0;
      for (char c : cond->sql) {
        if (c == '?')
          sql += ":a" + std::to_string(n++);
        else
          sql += c;
      }
      for (const auto& b : cond->binds) {
        if (const auto* i = std::get_if<std::int64_t>(&b))
          order.emplace_back(&ints.emplace_back(*i));
        else if (const auto* d = std::get_if<double>(&b))
          order.emplace_back(&reals.emplace_back(*d));
        else
          order.emplace_back(&texts.emplace_back(std::get<std::string>(b)));
      }
      return {};
    }
    void bind(soci::statement& st) {
      for (auto& v : order) std::visit([&](auto* p) { st.exchange(soci::use(*p)); }, v);
    }
  };

  static std::string history_where(const HistoryQuery& q) {
    // An instance's versions: through its rid (resource_version's (rid, version) key), as SQLite migration 12 dropped
    // the index by (tenant, type, id, seq). (The unary + keeps SQLite from walking every version of the tenant
    // through the (tenant, last_updated) index instead.)
    std::string w = !q.type.empty() && !q.id.empty() ? "+v.tenant = :t" : "v.tenant = :t";
    if (!q.type.empty() && !q.id.empty())
      w += " AND v.rid = (SELECT rid FROM resource WHERE tenant = :t2 AND type = :ty AND id = :id)";
    else if (!q.type.empty())
      w += " AND v.type = :ty";
    else if (!q.id.empty())
      w += " AND v.id = :id";
    if (q.since_ms) w += " AND v.last_updated >= :since";
    if (q.at_low_ms && q.at_high_ms)
      w += " AND v.last_updated < :high AND NOT EXISTS (SELECT 1 FROM resource_version n WHERE n.rid = v.rid "
           "AND n.version = v.version + 1 AND n.last_updated <= :low)";
    if (q.before_seq) w += " AND v.seq < :before";
    return w;
  }

  static void bind_history(soci::statement& st, long long& t, std::string& type, std::string& id, const HistoryQuery& q,
                           long long& since, long long& low, long long& high, long long& before) {
    st.exchange(soci::use(t));
    if (!q.type.empty() && !q.id.empty()) st.exchange(soci::use(t));
    if (!q.type.empty()) st.exchange(soci::use(type));
    if (!q.id.empty()) st.exchange(soci::use(id));
    if (q.since_ms) st.exchange(soci::use(since));
    if (q.at_low_ms && q.at_high_ms) {
      st.exchange(soci::use(high));
      st.exchange(soci::use(low));
    }
    if (q.before_seq) st.exchange(soci::use(before));
  }

  template <class F>
  auto with_reader(F&& f) -> decltype(f(std::declval<Reader&>())) {
    Reader* r = nullptr;
    {
      std::unique_lock lock(readers_mutex_);
      readers_cv_.wait(lock, [&] { return !free_readers_.empty(); });
      r = free_readers_.back();
      free_readers_.pop_back();
    }
    struct Release {
      SqliteStore* self;
      Reader* r;
      ~Release() {
        {
          std::lock_guard lock(self->readers_mutex_);
          self->free_readers_.push_back(r);
        }
        self->readers_cv_.notify_one();
      }
    } release{this, r};
    try {
      return f(*r);
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

  void prepare_writer() {
    index_writer_ =
        std::make_unique<IndexWriter>(static_cast<soci::sqlite3_session_backend*>(writer_sql_.get_backend())->conn_);
    writer_cache_.emplace(writer_db());
    begin_stmt_ = std::make_unique<RawStatement>(writer_db(), "BEGIN IMMEDIATE");
    commit_stmt_ = std::make_unique<RawStatement>(writer_db(), "COMMIT");
    savepoint_stmt_.emplace((writer_sql_.prepare << "SAVEPOINT job"));
    release_stmt_.emplace((writer_sql_.prepare << "RELEASE job"));
    rollback_to_stmt_.emplace((writer_sql_.prepare << "ROLLBACK TO job"));
    cur_stmt_.emplace((writer_sql_.prepare << "SELECT version, last_updated, deleted FROM resource "
                                              "WHERE tenant = :t AND type = :ty AND id = :id",
                       soci::into(w_version_), soci::into(w_last_updated_), soci::into(w_deleted_),
                       soci::use(w_tenant_), soci::use(w_type_), soci::use(w_id_)));
    upsert_stmt_ = std::make_unique<RawStatement>(
        writer_db(),
        "INSERT INTO resource(tenant, type, id, version, last_updated, deleted) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "
        "ON CONFLICT(tenant, type, id) DO UPDATE SET version = excluded.version, last_updated = "
        "excluded.last_updated, deleted = excluded.deleted RETURNING rid");
    insert_stmt_ = std::make_unique<RawStatement>(
        writer_db(),
        "INSERT INTO resource_version(rid, tenant, type, id, version, last_updated, deleted, method, body) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    create_stmt_ = std::make_unique<RawStatement>(
        writer_db(),
        "INSERT INTO resource(tenant, type, id, version, last_updated, deleted) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  }

  void writer_loop() {
    std::vector<WriteJob> batch;
    std::vector<Result<void>> results;
    for (;;) {
      {
        std::unique_lock lock(queue_mutex_);
        queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty() && stopping_) return;
        while (!queue_.empty() && batch.size() < options_.max_group) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      run_batch(batch, results);
      // The completions (building each answer) and the jobs' destruction run on the completion thread: the
      // writer goes on to the next group at once.
      {
        std::lock_guard lock(completion_mutex_);
        completions_.emplace_back(std::move(batch), std::move(results));
      }
      completion_cv_.notify_one();
      batch = {};
      results = {};
    }
  }

  // Calls the completions of committed (or failed) groups, in commit order, once they are durable: one
  // fdatasync of the WAL covers every group taken, since each group's commit had written its frames before the
  // writer queued it here. The writer meanwhile runs the next group (its commits do not fsync). A reader may see
  // a commit those few milliseconds before it is on disk; no caller is told it is stored before it is.
  void completion_loop() {
    for (;;) {
      std::deque<std::pair<std::vector<WriteJob>, std::vector<Result<void>>>> groups;
      {
        std::unique_lock lock(completion_mutex_);
        completion_cv_.wait(lock, [&] { return completion_stopping_ || !completions_.empty(); });
        if (completions_.empty()) return;  // (and stopping: the writer has stopped, nothing more comes)
        groups.swap(completions_);
      }
      Result<void> synced = sync_wal();
      for (auto& [batch, results] : groups) {
        for (std::size_t i = 0; i < batch.size(); ++i) {
          if (results[i] && !synced) results[i] = std::unexpected(synced.error());
          try {
            batch[i].done(std::move(results[i]));
          } catch (...) {
            // A caller's completion must not take the thread down; it has had its answer.
          }
        }
      }
    }
  }

  // fdatasync of the WAL file (with --sync-full, the default), through a descriptor of our own: SQLite keeps the
  // file while its connections are open, and one that was removed and made again is opened anew.
  Result<void> sync_wal() {
    if (!options_.synchronous_full) return {};
    struct stat st {};
    if (wal_fd_ >= 0 && (::fstat(wal_fd_, &st) != 0 || st.st_nlink == 0)) {
      ::close(wal_fd_);
      wal_fd_ = -1;
    }
    if (wal_fd_ < 0) wal_fd_ = ::open((path_ + "-wal").c_str(), O_RDONLY | O_CLOEXEC);
    if (wal_fd_ >= 0 && ::fdatasync(wal_fd_) == 0) return {};
    return fhir::fail(ErrorKind::kUnavailable, "transient",
                      "the write was committed but the database could not make it durable (fdatasync of " + path_ +
                          "-wal: " + std::strerror(errno) + ")");
  }

  // Runs a group of write jobs in one transaction. First optimistically, without a savepoint per job: a
  // savepoint makes SQLite copy every page a job touches that an earlier job of the group touched too, which
  // costs a fifth of the writer's time with the search index on. If every job succeeds, that is the commit. If
  // one fails (its own error, or an exception), the whole transaction is rolled back and, for a group of more
  // than one, the group runs again with a savepoint per job so that only the failing jobs are undone. A job
  // may therefore run twice; Store::Work says so.
  void run_batch(std::vector<WriteJob>& batch, std::vector<Result<void>>& results) {
    if (run_jobs(batch, results, /*savepoints=*/false) || batch.size() == 1) return;
    results.clear();
    run_jobs(batch, results, /*savepoints=*/true);
  }

  // One attempt at a group. Returns false when, without savepoints, a job failed and everything was rolled
  // back (results then hold the failure of a single job, or nothing usable for a group).
  bool run_jobs(std::vector<WriteJob>& batch, std::vector<Result<void>>& results, bool savepoints) {
    SqliteTransaction txn(*this);
    restored_in_group_ = false;
    try {
      begin_stmt_->run();
    } catch (const std::exception& e) {
      for (std::size_t i = 0; i < batch.size(); ++i) results.push_back(std::unexpected(db_error(e)));
      return true;
    }
    appended_.clear();
    for (WriteJob& job : batch) {
      Result<void> r;
      std::size_t appended_before = appended_.size();
      if (!savepoints) {
        try {
          r = job.work(txn);
        } catch (const std::exception& e) {
          r = std::unexpected(db_error(e));
        }
        if (!r) {
          appended_.clear();
          if (index_writer_) index_writer_->drop_text();
          try {
            writer_sql_ << "ROLLBACK";
          } catch (const std::exception&) {
          }
          results.push_back(std::move(r));
          return false;
        }
        results.push_back(std::move(r));
        continue;
      }
      try {
        savepoint_stmt_->execute(true);
        r = job.work(txn);
        if (r && index_writer_) index_writer_->flush_text();  // inside the job's savepoint
        if (!r) rollback_to_stmt_->execute(true);
        release_stmt_->execute(true);
      } catch (const std::exception& e) {
        r = std::unexpected(db_error(e));
        try {
          writer_sql_ << "ROLLBACK TO job";
          writer_sql_ << "RELEASE job";
        } catch (const std::exception&) {
        }
      }
      if (index_writer_) index_writer_->drop_text();  // (flushed, or rolled back with the job)
      if (!r) appended_.resize(appended_before);      // rolled back: not current after all
      results.push_back(std::move(r));
    }
    try {
      if (index_writer_) index_writer_->flush_text();
      commit_stmt_->run();
      if (restored_in_group_) {
        // (A job that built them may have been rolled back to its savepoint since: the table says. If it cannot
        // be read, they count as waiting still: the next search's restore finds out.)
        bool waiting = false;
        try {
          run_query(writer_db(), SqlQuery{"SELECT 1 FROM deferred_index LIMIT 1", {}},
                    [&](sqlite_api::sqlite3_stmt*) { waiting = true; });
        } catch (const std::exception&) {
          waiting = true;
        }
        indexes_deferred_ = waiting;
      }
      // Committed: these versions are current (before any caller hears of them, which is after the WAL sync).
      for (auto& [tenant, record] : appended_) cache_.put(tenant, std::move(record));
      appended_.clear();
    } catch (const std::exception& e) {
      appended_.clear();
      if (index_writer_) index_writer_->drop_text();
      try {
        writer_sql_ << "ROLLBACK";
      } catch (const std::exception&) {
      }
      for (auto& r : results)
        if (r) r = std::unexpected(db_error(e));
    }
    return true;
  }

  std::string path_;
  bool remove_on_close_;
  StoreOptions options_;
  int lock_fd_ = -1;
  CurrentCache cache_;
  RidKeys rid_keys_;
  std::vector<std::pair<TenantId, VersionRecord>> appended_;  // this batch's versions, written by the writer
  // Bulk loading: the value indexes wait in deferred_index (defer_search_indexes); a job of this group built them
  // (restore_search_indexes; writer thread only).
  std::atomic<bool> indexes_deferred_{false};
  bool restored_in_group_ = false;

  soci::session writer_sql_;
  std::optional<soci::statement> cur_stmt_;
  std::unique_ptr<RawStatement> create_stmt_;
  std::unique_ptr<RawStatement> upsert_stmt_, insert_stmt_;  // a version's two rows
  std::optional<soci::statement> savepoint_stmt_, release_stmt_, rollback_to_stmt_;
  std::unique_ptr<IndexWriter> index_writer_;
  std::unique_ptr<SqliteCheckpointer> checkpointer_;
  std::optional<StatementCache> writer_cache_;  // the writer's other statements (run_writer)
  std::unique_ptr<RawStatement> begin_stmt_, commit_stmt_;
  std::unique_ptr<OAuthTables> oauth_tables_;
  long long w_tenant_ = 0, w_version_ = 0, w_last_updated_ = 0;
  int w_deleted_ = 0;
  std::string w_type_, w_id_, w_body_;
  std::int64_t last_ms_ = 0;

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<WriteJob> queue_;
  bool stopping_ = false;
  std::thread writer_thread_;

  std::mutex completion_mutex_;
  std::condition_variable completion_cv_;
  std::deque<std::pair<std::vector<WriteJob>, std::vector<Result<void>>>> completions_;
  bool completion_stopping_ = false;
  std::thread completion_thread_;
  int wal_fd_ = -1;  // (completion thread only)

  std::mutex readers_mutex_;
  std::condition_variable readers_cv_;
  std::vector<std::unique_ptr<Reader>> readers_;
  std::vector<Reader*> free_readers_;
};

Result<UserRows*> SqliteTransaction::users() {
  if (!users_) users_ = make_user_rows(store_.writer_session());
  return users_.get();
}

}  // namespace

// SQLite's process-wide settings, made once before its first use: no global memory statistics (a global mutex
// taken on every allocation), and no per-connection mutex (each connection is used by one thread at a time: the
// writer thread, or a reader taken from the pool).
void configure_sqlite_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    sqlite_api::sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite_api::sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
  });
}

Result<std::unique_ptr<Store>> open_sqlite_store(std::string_view path, const StoreOptions& options) {
  configure_sqlite_library();
  std::string file(path);
  bool throwaway = false;
  if (file == ":memory:") {
    // A throwaway store: a private temporary folder, removed when the store closes. (SQLite's own :memory:
    // databases are per connection, and we use several.)
    std::random_device rd;
    auto dir = std::filesystem::temp_directory_path() /
               ("caduceus-mem-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return fhir::fail(ErrorKind::kUnavailable, "exception", "cannot create " + dir.string());
    file = (dir / "store.db").string();
    throwaway = true;
  } else {
    auto parent = std::filesystem::path(file).parent_path();
    if (!parent.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(parent, ec);
      if (ec)
        return fhir::fail(ErrorKind::kUnavailable, "exception",
                          "cannot create the folder '" + parent.string() + "': " + ec.message());
    }
  }
  StoreOptions o = options;
  if (throwaway) o.synchronous_full = false;
  auto store = std::make_unique<SqliteStore>(file, throwaway, o);
  if (auto opened = store->open(); !opened) return std::unexpected(opened.error());
  return store;
}

}  // namespace caduceus::resources
