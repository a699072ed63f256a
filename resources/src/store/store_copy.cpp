// copy_store (caduceus/resources/store/copy.hpp): a store copied table by table, SQLite or PostgreSQL on either
// side. Each side is an Endpoint that lists its tables and columns, reads a table in batches within one snapshot,
// and writes rows within one transaction (SQLite: prepared INSERTs; PostgreSQL: COPY). The full-text table differs
// between the backends (an FTS5 table keyed by rowid on SQLite); both endpoints show it as the same four columns.
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "caduceus/resources/store/copy.hpp"
#include "caduceus/resources/store/store.hpp"
#include "pg_connection.hpp"
#include "pg_full_text.hpp"

namespace caduceus::resources {
namespace {

using fhir::ErrorKind;
using fhir::Result;

enum class Kind { kInt, kReal, kText, kBlob };
struct Column {
  std::string name;
  Kind kind = Kind::kText;
};

struct Value {
  enum class Tag { kNull, kInt, kReal, kText, kBlob } tag = Tag::kNull;
  std::int64_t i = 0;
  double d = 0;
  std::string s;
};
using Row = std::vector<Value>;
using Batch = std::vector<Row>;
using Sink = std::function<Result<void>(Batch&)>;

constexpr const char* kFullText = "idx_text";
// The full-text table as both endpoints show it.
const std::vector<Column>& full_text_columns() {
  static const std::vector<Column> c = {
      {"rid", Kind::kInt}, {"tenant", Kind::kInt}, {"narrative", Kind::kText}, {"content", Kind::kText}};
  return c;
}

// The column that orders a table's rows when read (keys in increasing order: the change feed in seq order).
std::string order_of(const std::string& table) {
  if (table == "resource" || table == kFullText) return "rid";
  if (table == "resource_version") return "seq";
  if (table == "hl7_inbound") return "id";
  return "";
}

std::string column_list(const std::vector<Column>& cols, std::string_view prefix = "") {
  std::string out;
  for (const Column& c : cols) out += (out.empty() ? "" : ", ") + std::string(prefix) + c.name;
  return out;
}

std::unexpected<fhir::Error> unavailable(const std::string& what) {
  return fhir::fail(ErrorKind::kUnavailable, "transient", what);
}

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  // The tables that hold the store's data (each backend's own bookkeeping left out), sorted by name.
  virtual Result<std::vector<std::string>> tables() = 0;
  // A table's columns, in order (generated columns left out).
  virtual Result<std::vector<Column>> columns(const std::string& table) = 0;
  virtual Result<std::int64_t> count(const std::string& table) = 0;
  // Reading: one snapshot for every scan that follows.
  virtual Result<void> begin_snapshot() = 0;
  virtual Result<void> scan(const std::string& table, const std::vector<Column>& cols, std::size_t batch,
                            const Sink& sink) = 0;
  // Writing: one transaction for what follows, until commit().
  virtual Result<void> begin_write() = 0;
  virtual Result<void> clear(const std::vector<std::string>& tables) = 0;
  virtual Result<void> insert_begin(const std::string& table, const std::vector<Column>& cols) = 0;
  virtual Result<void> insert(const Batch& rows) = 0;
  virtual Result<void> insert_end() = 0;
  // After every table: what keeps counting from the copied keys on (sequences, the store's clock).
  virtual Result<void> finish() = 0;
  virtual Result<void> commit() = 0;
  virtual void rollback() = 0;
};

// ---- SQLite ------------------------------------------------------------------------------------------------------

class SqliteEndpoint final : public Endpoint {
 public:
  static Result<std::unique_ptr<SqliteEndpoint>> open(const std::string& path, bool write) {
    sqlite3* db = nullptr;
    const int flags = write ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
    if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
      std::string msg = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close(db);
      return unavailable("cannot open " + path + ": " + msg);
    }
    sqlite3_busy_timeout(db, 10000);
    return std::unique_ptr<SqliteEndpoint>(new SqliteEndpoint(db));
  }
  ~SqliteEndpoint() override {
    sqlite3_finalize(stmt_);
    sqlite3_close(db_);
  }

  Result<std::vector<std::string>> tables() override {
    std::vector<std::string> out;
    auto r = query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", [&](sqlite3_stmt* s) {
      std::string name = text(s, 0);
      // SQLite's own tables, the migrations' and bulk loads' bookkeeping (deferred_index: empty once the store has
      // been opened), and the FTS5 table's shadow tables (idx_text_data, ...).
      if (name.starts_with("sqlite_") || name == "schema_migrations" || name == "deferred_index" ||
          name.starts_with(std::string(kFullText) + "_"))
        return;
      out.push_back(std::move(name));
    });
    if (!r) return std::unexpected(r.error());
    return out;
  }

  Result<std::vector<Column>> columns(const std::string& table) override {
    if (table == kFullText) return full_text_columns();
    std::vector<Column> out;
    auto r =
        query("SELECT name, upper(type) FROM pragma_table_info('" + table + "') ORDER BY cid", [&](sqlite3_stmt* s) {
          const std::string type = text(s, 1);
          Kind k = Kind::kText;
          if (type.find("INT") != std::string::npos)
            k = Kind::kInt;
          else if (type.find("REAL") != std::string::npos || type.find("FLOA") != std::string::npos ||
                   type.find("DOUB") != std::string::npos)
            k = Kind::kReal;
          else if (type.find("BLOB") != std::string::npos)
            k = Kind::kBlob;
          out.push_back({text(s, 0), k});
        });
    if (!r) return std::unexpected(r.error());
    return out;
  }

  Result<std::int64_t> count(const std::string& table) override {
    std::int64_t n = 0;
    auto r = query(table == kFullText ? full_text_select(true) : "SELECT COUNT(*) FROM " + table,
                   [&](sqlite3_stmt* s) { n = sqlite3_column_int64(s, 0); });
    if (!r) return std::unexpected(r.error());
    return n;
  }

  Result<void> begin_snapshot() override {
    if (auto r = exec("BEGIN"); !r) return r;
    return query("SELECT COUNT(*) FROM sqlite_master", [](sqlite3_stmt*) {});  // (the read starts here)
  }

  Result<void> scan(const std::string& table, const std::vector<Column>& cols, std::size_t batch,
                    const Sink& sink) override {
    std::string sql = table == kFullText ? full_text_select(false) : "SELECT " + column_list(cols) + " FROM " + table;
    if (table != kFullText && !order_of(table).empty()) sql += " ORDER BY " + order_of(table);
    Batch rows;
    Result<void> failed;
    auto r = query(sql, [&](sqlite3_stmt* s) {
      if (!failed) return;
      Row row(cols.size());
      for (int c = 0; c < static_cast<int>(cols.size()); ++c) {
        Value& v = row[c];
        switch (sqlite3_column_type(s, c)) {
          case SQLITE_NULL: break;
          case SQLITE_INTEGER:
            v.tag = Value::Tag::kInt;
            v.i = sqlite3_column_int64(s, c);
            break;
          case SQLITE_FLOAT:
            v.tag = Value::Tag::kReal;
            v.d = sqlite3_column_double(s, c);
            break;
          default: {
            const void* p = sqlite3_column_blob(s, c);
            v.tag = cols[c].kind == Kind::kBlob ? Value::Tag::kBlob : Value::Tag::kText;
            v.s.assign(static_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s, c)));
          }
        }
      }
      rows.push_back(std::move(row));
      if (rows.size() >= batch) {
        failed = sink(rows);
        rows.clear();
      }
    });
    if (!r) return r;
    if (!failed) return failed;
    if (!rows.empty()) return sink(rows);
    return {};
  }

  Result<void> begin_write() override { return exec("BEGIN IMMEDIATE"); }

  Result<void> clear(const std::vector<std::string>& tables) override {
    for (const std::string& t : tables)
      if (auto r = exec("DELETE FROM " + t); !r) return r;
    return {};
  }

  Result<void> insert_begin(const std::string& table, const std::vector<Column>& cols) override {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
    full_text_ = table == kFullText;
    // The FTS5 table: its rowid is the resource's rid; the tenant is the resource's (not a column of its own).
    std::string sql = full_text_ ? "INSERT INTO idx_text (rowid, narrative, content) VALUES (?, ?, ?)"
                                 : "INSERT INTO " + table + " (" + column_list(cols) + ") VALUES (";
    if (!full_text_) {
      for (std::size_t i = 0; i < cols.size(); ++i) sql += i ? ", ?" : "?";
      sql += ")";
    }
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) return error("prepare " + table);
    return {};
  }

  Result<void> insert(const Batch& rows) override {
    for (const Row& row : rows) {
      int param = 1;
      for (std::size_t c = 0; c < row.size(); ++c) {
        if (full_text_ && c == 1) continue;  // (the tenant)
        const Value& v = row[c];
        int rc = SQLITE_OK;
        switch (v.tag) {
          case Value::Tag::kNull: rc = sqlite3_bind_null(stmt_, param); break;
          case Value::Tag::kInt: rc = sqlite3_bind_int64(stmt_, param, v.i); break;
          case Value::Tag::kReal: rc = sqlite3_bind_double(stmt_, param, v.d); break;
          // Text and bytes alike as TEXT, as the SQLite store binds them (bodies, HL7 messages: read back as bytes).
          case Value::Tag::kText:
          case Value::Tag::kBlob:
            rc = sqlite3_bind_text64(stmt_, param, v.s.data(), v.s.size(), SQLITE_STATIC, SQLITE_UTF8);
            break;
        }
        if (rc != SQLITE_OK) return error("bind");
        ++param;
      }
      if (sqlite3_step(stmt_) != SQLITE_DONE) return error("insert");
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
    return {};
  }

  Result<void> insert_end() override {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
    return {};
  }

  // (AUTOINCREMENT keeps its sqlite_sequence up to the highest seq inserted; other keys follow their maximum.)
  Result<void> finish() override { return {}; }
  Result<void> commit() override { return exec("COMMIT"); }
  void rollback() override { (void)exec("ROLLBACK"); }

 private:
  explicit SqliteEndpoint(sqlite3* db) : db_(db) {}

  // The full-text rows with the tenant of their resource, or (count) how many.
  static std::string full_text_select(bool count) {
    return std::string("SELECT ") + (count ? "COUNT(*)" : "t.rowid, r.tenant, t.narrative, t.content") +
           " FROM idx_text t JOIN resource r ON r.rid = t.rowid" + (count ? "" : " ORDER BY t.rowid");
  }

  static std::string text(sqlite3_stmt* s, int c) {
    const unsigned char* p = sqlite3_column_text(s, c);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p));
  }

  std::unexpected<fhir::Error> error(const std::string& what) {
    return unavailable("SQLite: " + what + ": " + sqlite3_errmsg(db_));
  }

  Result<void> exec(const std::string& sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
      std::string m = msg != nullptr ? msg : sqlite3_errmsg(db_);
      sqlite3_free(msg);
      return unavailable("SQLite: " + sql.substr(0, 40) + ": " + m);
    }
    return {};
  }

  template <class F>
  Result<void> query(const std::string& sql, F&& on_row) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) return error(sql.substr(0, 60));
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) on_row(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return error(sql.substr(0, 60));
    return {};
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  bool full_text_ = false;
};

// ---- PostgreSQL --------------------------------------------------------------------------------------------------

std::string number_text(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, end);
}

// A value in COPY's text format.
void append_copy_value(std::string& out, const Value& v, Kind kind, bool full_text_column) {
  switch (v.tag) {
    case Value::Tag::kNull: out += "\\N"; return;
    case Value::Tag::kInt: out += std::to_string(v.i); return;
    case Value::Tag::kReal: out += number_text(v.d); return;
    case Value::Tag::kText:
    case Value::Tag::kBlob: break;
  }
  if (kind == Kind::kBlob) {  // bytea's hex form, its backslash escaped
    static constexpr char kHex[] = "0123456789abcdef";
    out += "\\\\x";
    for (unsigned char ch : v.s) {
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
    return;
  }
  const std::string folded = full_text_column ? pg::full_text_document(v.s) : std::string();
  for (char ch : full_text_column ? folded : v.s) {
    switch (ch) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: out += ch;
    }
  }
}

class PostgresEndpoint final : public Endpoint {
 public:
  static Result<std::unique_ptr<PostgresEndpoint>> open(const std::string& url) {
    auto c = pg::Connection::open(url);
    if (!c) return std::unexpected(pg::to_error(c.error(), "cannot open the PostgreSQL database"));
    return std::unique_ptr<PostgresEndpoint>(new PostgresEndpoint(std::move(*c)));
  }
  ~PostgresEndpoint() override = default;

  Result<std::vector<std::string>> tables() override {
    auto r =
        run("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' ORDER BY 1",
            {});
    if (!r) return std::unexpected(r.error());
    std::vector<std::string> out;
    for (int i = 0; i < r->rows(); ++i) {
      std::string name = r->text(i, 0);
      if (name != "schema_migrations" && name != "store_clock" && name != "deferred_index")
        out.push_back(std::move(name));  // (deferred_index: empty once the store has been opened)
    }
    return out;
  }

  Result<std::vector<Column>> columns(const std::string& table) override {
    auto r =
        run("SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = $1 AND is_generated = 'NEVER' AND data_type <> 'tsvector' "
            "ORDER BY ordinal_position",
            {pg::Param(table)});
    if (!r) return std::unexpected(r.error());
    std::vector<Column> out;
    for (int i = 0; i < r->rows(); ++i) {
      const std::string type = r->text(i, 1);
      Kind k = Kind::kText;
      if (type == "bigint" || type == "integer" || type == "smallint" || type == "boolean")
        k = Kind::kInt;
      else if (type == "double precision" || type == "real" || type == "numeric")
        k = Kind::kReal;
      else if (type == "bytea")
        k = Kind::kBlob;
      out.push_back({r->text(i, 0), k});
    }
    return out;
  }

  Result<std::int64_t> count(const std::string& table) override {
    auto r = run("SELECT COUNT(*) FROM " + table, {});
    if (!r) return std::unexpected(r.error());
    return r->i64(0, 0);
  }

  Result<void> begin_snapshot() override {
    return status(conn_->exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"), "begin");
  }

  Result<void> scan(const std::string& table, const std::vector<Column>& cols, std::size_t batch,
                    const Sink& sink) override {
    std::string sql = "DECLARE copy_rows NO SCROLL CURSOR FOR SELECT " + column_list(cols) + " FROM " + table;
    if (!order_of(table).empty()) sql += " ORDER BY " + order_of(table);
    if (auto r = status(conn_->exec(sql), "scan " + table); !r) return r;
    const std::string fetch = "FETCH " + std::to_string(batch) + " FROM copy_rows";
    for (;;) {
      auto r = run(fetch, {});  // (binary results)
      if (!r) return std::unexpected(r.error());
      if (r->rows() == 0) break;
      Batch rows;
      rows.reserve(static_cast<std::size_t>(r->rows()));
      for (int i = 0; i < r->rows(); ++i) {
        Row row(cols.size());
        for (int c = 0; c < static_cast<int>(cols.size()); ++c) {
          if (r->null(i, c)) continue;
          Value& v = row[c];
          switch (r->type(c)) {
            case 16:
            case 20:
            case 21:
            case 23:
              v.tag = Value::Tag::kInt;
              v.i = r->i64(i, c);
              break;
            case 701:
              v.tag = Value::Tag::kReal;
              v.d = r->f64(i, c);
              break;
            case 17:
              v.tag = Value::Tag::kBlob;
              v.s = r->text(i, c);
              break;
            default: v.tag = Value::Tag::kText; v.s = r->text(i, c);
          }
        }
        rows.push_back(std::move(row));
      }
      if (auto s = sink(rows); !s) return s;
    }
    return status(conn_->exec("CLOSE copy_rows"), "scan " + table);
  }

  Result<void> begin_write() override {
    if (auto r = status(conn_->exec("BEGIN"), "begin"); !r) return r;
    // As every writer does: wait for the writers of running servers, and keep them out until the commit.
    return status(conn_->exec("SELECT last_ms FROM store_clock WHERE id = 1 FOR UPDATE"), "lock the store");
  }

  Result<void> clear(const std::vector<std::string>& tables) override {
    if (tables.empty()) return {};
    std::string list;
    for (const std::string& t : tables) list += (list.empty() ? "" : ", ") + t;
    return status(conn_->exec("TRUNCATE " + list), "clear the target");
  }

  Result<void> insert_begin(const std::string& table, const std::vector<Column>& cols) override {
    table_ = table;
    cols_ = cols;
    // (COPY writes the given values into identity columns as they are: rid, seq and message ids are kept.)
    // (The full-text rows get their tsvector too, made as the writer makes it.)
    PGresult* r = PQexec(
        conn_->raw(),
        ("COPY " + table + " (" + column_list(cols) + (table == kFullText ? ", tsv" : "") + ") FROM STDIN").c_str());
    const bool ready = r != nullptr && PQresultStatus(r) == PGRES_COPY_IN;
    std::string error = ready ? "" : r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_->raw());
    PQclear(r);
    if (!ready) return unavailable("PostgreSQL: copy " + table + ": " + error);
    return {};
  }

  Result<void> insert(const Batch& rows) override {
    std::string data;
    const bool full_text = table_ == kFullText;
    for (const Row& row : rows) {
      for (std::size_t c = 0; c < row.size(); ++c) {
        if (c) data += '\t';
        append_copy_value(data, row[c], cols_[c].kind, full_text && c >= 2);
      }
      if (full_text) {
        auto folded = [&](std::size_t c) {
          return c < row.size() && row[c].tag != Value::Tag::kNull ? pg::full_text_document(row[c].s) : std::string();
        };
        data += '\t';
        data += pg::tsvector_literal(folded(2), folded(3));  // (no tab, newline or backslash in it)
      }
      data += '\n';
    }
    if (PQputCopyData(conn_->raw(), data.data(), static_cast<int>(data.size())) != 1)
      return unavailable(std::string("PostgreSQL: copy ") + table_ + ": " + PQerrorMessage(conn_->raw()));
    return {};
  }

  Result<void> insert_end() override {
    if (PQputCopyEnd(conn_->raw(), nullptr) != 1)
      return unavailable(std::string("PostgreSQL: copy ") + table_ + ": " + PQerrorMessage(conn_->raw()));
    std::string error;
    while (PGresult* r = PQgetResult(conn_->raw())) {
      if (PQresultStatus(r) != PGRES_COMMAND_OK) error = PQresultErrorMessage(r);
      PQclear(r);
    }
    if (!error.empty()) return unavailable("PostgreSQL: copy " + table_ + ": " + error);
    return {};
  }

  Result<void> finish() override {
    // Identity columns go on after the highest copied key; the store's clock is at least the latest lastUpdated.
    auto ids =
        run("SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND is_identity = 'YES'",
            {});
    if (!ids) return std::unexpected(ids.error());
    for (int i = 0; i < ids->rows(); ++i) {
      const std::string t = ids->text(i, 0), c = ids->text(i, 1);
      if (auto r = run("SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX(" + c + ") FROM " + t +
                           "), 0) + 1, false)",
                       {pg::Param(t), pg::Param(c)});
          !r)
        return std::unexpected(r.error());
    }
    return status(conn_->exec("UPDATE store_clock SET last_ms = GREATEST(last_ms, "
                              "(SELECT COALESCE(MAX(last_updated), 0) FROM resource_version)) WHERE id = 1"),
                  "set the store's clock");
  }

  Result<void> commit() override {
    if (auto r = status(conn_->exec("COMMIT"), "commit"); !r) return r;
    (void)conn_->exec("ANALYZE");  // (statistics for the planner, after a bulk load)
    return {};
  }
  void rollback() override { (void)conn_->exec("ROLLBACK"); }

 private:
  explicit PostgresEndpoint(std::unique_ptr<pg::Connection> c) : conn_(std::move(c)) {}

  static Result<void> status(std::expected<pg::Result, pg::Failure> r, const std::string& what) {
    if (!r) return std::unexpected(pg::to_error(r.error(), "PostgreSQL: " + what));
    return {};
  }
  Result<pg::Result> run(const std::string& sql, const std::vector<pg::Param>& params) {
    auto r = conn_->exec(sql, params);
    if (!r) return std::unexpected(pg::to_error(r.error(), "PostgreSQL"));
    return std::move(*r);
  }

  std::unique_ptr<pg::Connection> conn_;
  std::string table_;
  std::vector<Column> cols_;
};

// ---- the copy ----------------------------------------------------------------------------------------------------

struct Target {
  bool sqlite = false;
  std::string location;  // the SQLite path, or the libpq URL
};

Result<Target> parse_url(std::string_view url, std::string_view role) {
  if (url.starts_with("sqlite:")) {
    std::string path(url.substr(7));
    if (path.empty() || path == ":memory:")
      return fhir::fail(ErrorKind::kInvalid, "invalid", std::string(role) + ": a SQLite store needs a file path");
    return Target{true, path};
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) return Target{false, std::string(url)};
  return fhir::fail(ErrorKind::kInvalid, "invalid",
                    std::string(role) + ": '" + std::string(url) +
                        "' is not a store URL (sqlite:PATH or postgresql://USER@HOST:PORT/DB)");
}

Result<std::unique_ptr<Endpoint>> open_endpoint(const Target& t, bool write) {
  if (t.sqlite) {
    auto e = SqliteEndpoint::open(t.location, write);
    if (!e) return std::unexpected(e.error());
    return std::unique_ptr<Endpoint>(std::move(*e));
  }
  auto e = PostgresEndpoint::open(t.location);
  if (!e) return std::unexpected(e.error());
  return std::unique_ptr<Endpoint>(std::move(*e));
}

// Copy order: resources before their versions (a foreign key on PostgreSQL), then by name.
void order_tables(std::vector<std::string>& tables) {
  auto rank = [](const std::string& t) { return t == "resource" ? 0 : t == "resource_version" ? 1 : 2; };
  std::stable_sort(tables.begin(), tables.end(),
                   [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
}

bool same_columns(const std::vector<Column>& a, const std::vector<Column>& b) {
  std::set<std::string> x, y;
  for (const Column& c : a) x.insert(c.name);
  for (const Column& c : b) y.insert(c.name);
  return x == y;
}

Result<CopySummary> copy_tables(Endpoint& from, Endpoint& to, const CopyOptions& options) {
  auto source_tables = from.tables();
  if (!source_tables) return std::unexpected(source_tables.error());
  auto target_tables = to.tables();
  if (!target_tables) return std::unexpected(target_tables.error());
  std::vector<std::string> tables = *source_tables;
  order_tables(tables);

  // The target must hold every table and column of the source (the same schema): else refuse, naming it.
  std::map<std::string, std::vector<Column>> target_columns;
  for (const std::string& t : tables) {
    if (std::find(target_tables->begin(), target_tables->end(), t) == target_tables->end())
      return fhir::fail(ErrorKind::kInvalid, "invalid",
                        "the target has no table '" + t + "': the two stores' schemas differ");
    auto sc = from.columns(t);
    if (!sc) return std::unexpected(sc.error());
    auto tc = to.columns(t);
    if (!tc) return std::unexpected(tc.error());
    if (!same_columns(*sc, *tc))
      return fhir::fail(ErrorKind::kInvalid, "invalid",
                        "the columns of table '" + t + "' differ between the stores: their schemas differ");
    target_columns[t] = std::move(*tc);
  }

  if (auto w = to.begin_write(); !w) return std::unexpected(w.error());
  auto body = [&]() -> Result<CopySummary> {
    // Never mix two stores: a target with any row is refused, or (force) emptied first.
    std::vector<std::string> nonempty;
    for (const std::string& t : *target_tables) {
      auto n = to.count(t);
      if (!n) return std::unexpected(n.error());
      if (*n > 0) nonempty.push_back(t + " (" + std::to_string(*n) + " rows)");
    }
    if (!nonempty.empty() && !options.force) {
      std::string list;
      for (const std::string& t : nonempty) list += (list.empty() ? "" : ", ") + t;
      return fhir::fail(ErrorKind::kConflict, "conflict",
                        "the target store is not empty: " + list +
                            ". Copy into an empty database, or give --force to delete what it holds first");
    }
    if (!nonempty.empty())
      if (auto c = to.clear(*target_tables); !c) return std::unexpected(c.error());

    if (auto s = from.begin_snapshot(); !s) return std::unexpected(s.error());
    CopySummary summary;
    for (const std::string& t : tables) {
      const std::vector<Column>& cols = target_columns[t];
      auto total = from.count(t);
      if (!total) return std::unexpected(total.error());
      CopyProgress progress{t, 0, *total};
      if (auto b = to.insert_begin(t, cols); !b) return std::unexpected(b.error());
      auto scanned = from.scan(t, cols, std::max<std::size_t>(1, options.batch), [&](Batch& rows) -> Result<void> {
        if (auto i = to.insert(rows); !i) return i;
        progress.done += static_cast<std::int64_t>(rows.size());
        if (options.progress) options.progress(progress);
        return {};
      });
      if (auto e = to.insert_end(); !e && scanned) scanned = std::move(e);
      if (!scanned) return std::unexpected(scanned.error());
      // Every row read is written: the counts agree.
      auto written = to.count(t);
      if (!written) return std::unexpected(written.error());
      if (*written != progress.done || progress.done != *total)
        return fhir::fail(ErrorKind::kInternal, "exception",
                          "table " + t + ": " + std::to_string(*total) + " rows in the source, " +
                              std::to_string(progress.done) + " read, " + std::to_string(*written) + " in the target");
      progress.finished = true;
      if (options.progress) options.progress(progress);
      summary.tables.emplace_back(t, progress.done);
    }
    if (auto f = to.finish(); !f) return std::unexpected(f.error());
    if (auto c = to.commit(); !c) return std::unexpected(c.error());
    return summary;
  }();
  if (!body) to.rollback();
  return body;
}

}  // namespace

Result<CopySummary> copy_store(std::string_view from_url, std::string_view to_url, const CopyOptions& options) {
  auto from = parse_url(from_url, "--from");
  if (!from) return std::unexpected(from.error());
  auto to = parse_url(to_url, "--to");
  if (!to) return std::unexpected(to.error());
  if (from->sqlite && !std::filesystem::exists(from->location))
    return fhir::fail(ErrorKind::kInvalid, "invalid", "--from: there is no SQLite store at " + from->location);
  if (from->sqlite == to->sqlite) {
    std::error_code ec;
    const bool same = from->sqlite ? std::filesystem::exists(to->location) &&
                                         std::filesystem::equivalent(from->location, to->location, ec)
                                   : from->location == to->location;
    if (same) return fhir::fail(ErrorKind::kInvalid, "invalid", "--from and --to name the same store");
  }
  // Both stores get the schema of this build (the source too: as a server starting on it would).
  for (std::string_view url : {from_url, to_url}) {
    StoreOptions o;
    o.readers = 1;
    auto store = open_store(url, o);
    if (!store) return std::unexpected(store.error());
  }
  auto source = open_endpoint(*from, false);
  if (!source) return std::unexpected(source.error());
  auto target = open_endpoint(*to, true);
  if (!target) return std::unexpected(target.error());
  return copy_tables(**source, **target, options);
}

}  // namespace caduceus::resources
