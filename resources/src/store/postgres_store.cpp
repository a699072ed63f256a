// The PostgreSQL store: libpq directly (see README "PostgreSQL"). A pool of connections serves reads; one writer
// thread per process commits queued writes together (group commit, as the SQLite store does). Every write
// transaction first locks the one row of store_clock: the writers of all server processes on one database are
// serialized through it, so that a resource's version check and its new version are atomic across processes,
// seq (the change feed) is in commit order, and lastUpdated never runs backwards. No cache of current versions:
// another process may write any resource at any time.
#include "postgres_store.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "caduceus/fhir/thread_name.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/store/oauth_tables.hpp"
#include "caduceus/resources/store/users.hpp"
#include "forwarding_transaction.hpp"
#include "hl7_message_sql.hpp"
#include "pg_connection.hpp"
#include "pg_full_text.hpp"
#include "postgres_explain.hpp"
#include "postgres_schema.hpp"
#include "search_sql.hpp"

namespace caduceus::resources {
namespace {

using fhir::ErrorKind;
using fhir::Result;
using pg::Param;

constexpr char kBodyFormatJson = 'j';  // body header: 'j' = plain UTF-8 JSON follows (as in SQLite)

Result<std::string> decode_body(std::string_view stored) {
  if (stored.empty()) return std::string();
  if (stored.front() != kBodyFormatJson)
    return fhir::fail(ErrorKind::kInternal, "exception", "stored body has an unknown format");
  return std::string(stored.substr(1));
}

Method method_from(std::int64_t c) {
  switch (c) {
    case 1: return Method::kUpdate;
    case 2: return Method::kDelete;
    default: return Method::kCreate;
  }
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The columns "version, last_updated, deleted, method, body, seq" from column `at` on, as a record.
Result<VersionRecord> record_of(const pg::Result& r, int row, int at, std::string type, std::string id) {
  VersionRecord rec;
  rec.type = std::move(type);
  rec.id = std::move(id);
  rec.version = r.i64(row, at);
  rec.last_updated_ms = r.i64(row, at + 1);
  rec.deleted = r.i64(row, at + 2) != 0;
  rec.method = method_from(r.i64(row, at + 3));
  if (!r.null(row, at + 4)) {
    auto body = decode_body(r.view(row, at + 4));
    if (!body) return std::unexpected(body.error());
    rec.body = std::move(*body);
  }
  rec.seq = r.i64(row, at + 5);
  return rec;
}

// ---- index rows: one multi-row INSERT per resource (unnest of one array per column) ---------------------------

// A PostgreSQL array literal element, quoted.
void append_element(std::string& out, std::string_view v) {
  out += out.size() == 1 ? "\"" : ",\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

std::string number_text(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  if (d == 0) return "0";  // (-0 too: equal to 0 in PostgreSQL, so one text for both)
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, end);
}

// One array parameter in PostgreSQL's binary array format (what array_recv reads): one dimension, no NULLs,
// elements of type `oid` (pg::kInt8Oid, ...), each its length and its binary value. Sent so, an array costs
// PostgreSQL no parsing of a text literal (array_in, which was a sixth of its time in an import).
class BinaryArray {
 public:
  explicit BinaryArray(std::uint32_t oid) : oid_(oid) {}
  void add_bytes(std::string_view a, std::string_view b = {}) {
    pg::put_be32(elements_, static_cast<std::uint32_t>(a.size() + b.size()));
    elements_ += a;
    elements_ += b;
    ++count_;
  }
  void add_int(std::int64_t v) {
    pg::put_be32(elements_, 8);
    pg::put_be64(elements_, static_cast<std::uint64_t>(v));
    ++count_;
  }
  void add_double(double d) {
    if (d == 0) d = 0;  // (-0 as 0, as the text form did)
    std::uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    pg::put_be32(elements_, 8);
    pg::put_be64(elements_, bits);
    ++count_;
  }
  std::size_t size() const { return count_; }
  void clear() {
    elements_.clear();
    count_ = 0;
  }
  // The parameter; the array is empty afterwards.
  Param take() {
    std::string out;
    out.reserve(20 + elements_.size());
    pg::put_be32(out, count_ ? 1 : 0);  // dimensions (an empty array has none)
    pg::put_be32(out, 0);               // no NULLs
    pg::put_be32(out, oid_);
    if (count_) {
      pg::put_be32(out, static_cast<std::uint32_t>(count_));
      pg::put_be32(out, 1);  // lower bound
    }
    out += elements_;
    clear();
    return Param::bytes(std::move(out));
  }

 private:
  std::uint32_t oid_;
  std::string elements_;
  std::size_t count_ = 0;
};

// The rows of one index table, column by column: one binary array parameter per column, for unnest(). A row equal to
// one already added on its key columns (all but `not_key`: those that tell two rows of a resource apart) is left
// out: the same value found twice in a resource (two equal codings, say) is one row, as a primary key on those
// columns would keep it (SQLite has one; PostgreSQL's tables have an index on rid only, see migration 22), without
// ON CONFLICT (which costs an index probe per row).
class TableRows {
 public:
  TableRows(const char* table, const char* columns, std::vector<const char*> types, std::vector<std::size_t> not_key)
      : table_(table), columns_list_(columns), types_(std::move(types)), not_key_(std::move(not_key)) {
    for (const char* t : types_) {
      const std::string_view type(t);
      arrays_.emplace_back(type == "bigint"     ? pg::kInt8Oid
                           : type == "float8"   ? pg::kFloat8Oid
                           : type == "tsvector" ? pg::kTsvectorOid
                                                : pg::kTextOid);
    }
    clear();
  }
  template <class... V>
  void add(const V&... values) {
    key_.clear();
    std::size_t i = 0;
    (add_key(i++, values), ...);
    if (!keys_.insert(key_).second) return;
    i = 0;
    (put(i++, values), ...);
  }
  void clear() {
    for (BinaryArray& a : arrays_) a.clear();
    keys_.clear();
  }
  // Appends "i_table AS (INSERT ...)" to sql, numbering its parameters from `next`. `on_conflict`: rows already in
  // the table are skipped (a reindex of some parameters); without, the rows must be new (a new version's).
  void statement(std::string& sql, int& next, bool on_conflict) const {
    sql += sql.empty() ? "WITH " : ", ";
    sql += std::string("i_") + table_ + " AS (INSERT INTO " + table_ + columns_list_ + " SELECT ";
    for (std::size_t i = 0; i < types_.size(); ++i)
      sql += (i ? ", unnest($" : "unnest($") + std::to_string(next++) + "::" + types_[i] + "[])";
    sql += on_conflict ? " ON CONFLICT DO NOTHING)" : ")";
  }
  // Moves its arrays to params (in the order of statement()) and starts again.
  void take(std::vector<Param>& params) {
    for (BinaryArray& a : arrays_) params.push_back(a.take());
    clear();
  }

 private:
  bool in_key(std::size_t i) const { return std::find(not_key_.begin(), not_key_.end(), i) == not_key_.end(); }
  // The key: each key column's bytes as they are (a text after its length), in column order.
  void add_key(std::size_t i, std::string_view v) {
    if (!in_key(i)) return;
    pg::put_be32(key_, static_cast<std::uint32_t>(v.size()));
    key_ += v;
  }
  void add_key(std::size_t i, std::int64_t v) {
    if (in_key(i)) pg::put_be64(key_, static_cast<std::uint64_t>(v));
  }
  void add_key(std::size_t i, double v) {
    if (!in_key(i)) return;
    if (v == 0) v = 0;  // (-0 and 0: one value)
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    pg::put_be64(key_, bits);
  }
  void put(std::size_t i, std::string_view v) { arrays_[i].add_bytes(v); }  // (text, or a binary tsvector)
  void put(std::size_t i, std::int64_t v) { arrays_[i].add_int(v); }
  void put(std::size_t i, double v) { arrays_[i].add_double(v); }

  const char* table_;
  const char* columns_list_;
  std::vector<const char*> types_;
  std::vector<std::size_t> not_key_;
  std::vector<BinaryArray> arrays_;
  std::unordered_set<std::string> keys_;
  std::string key_;  // (the row being added's)
};

constexpr const char* kIndexTables[] = {"idx_string", "idx_token",     "idx_reference",
                                        "idx_date",   "idx_number",    "idx_quantity",
                                        "idx_uri",    "idx_composite", "idx_identifier_type"};

// One statement that deletes the index rows of resource $1 (of parameters = ANY($2), when with_params).
std::string delete_index_sql(bool with_params) {
  std::string sql;
  for (const char* t : kIndexTables) {
    sql += sql.empty() ? "WITH " : ", ";
    sql += std::string("d_") + t + " AS (DELETE FROM " + t + " WHERE rid = $1" +
           (with_params ? " AND param = ANY($2::text[])" : "") + ")";
  }
  // All of them: kPatientTokenFill puts back what other parameters keep.
  sql += ", d_idx_patient_token AS (DELETE FROM idx_patient_token WHERE rid = $1)";
  sql += with_params ? " SELECT 1" : " DELETE FROM idx_text WHERE rid = $1";
  return sql;
}

// A deletion: the index rows of resource $1 move under tenant $2 (set_aside_tenant), out of every search; the
// full-text and patient-token rows, which only searches use, go.
std::string set_aside_index_sql() {
  std::string sql;
  for (const char* t : kIndexTables) {
    sql += sql.empty() ? "WITH " : ", ";
    sql += std::string("u_") + t + " AS (UPDATE " + t + " SET tenant = $2 WHERE rid = $1)";
  }
  sql += ", d_idx_patient_token AS (DELETE FROM idx_patient_token WHERE rid = $1)";
  sql += " DELETE FROM idx_text WHERE rid = $1";
  return sql;
}

// idx_patient_token's rows of resource $1, from its `patient` reference rows and its token rows already in the
// tables (a reindex of some parameters: the others' rows are only in the database).
const std::string kPatientTokenFill =
    "INSERT INTO idx_patient_token SELECT r.tenant, r.target_id, r.target_type, t.type, t.param, t.code, t.system, "
    "t.rid FROM idx_reference r JOIN idx_token t ON t.rid = r.rid WHERE r.rid = $1 AND r.param = 'patient' "
    "AND r.target_id <> '' AND t.code <> '' AND " +
    std::string(kPatientTokenParamSql) + " ON CONFLICT DO NOTHING";

// New resources (version 1) of a commit group, written together with its index rows by the same statement: a
// create costs no round trip of its own. Their rid and seq are taken by the writer from the identity sequences'
// positions, read while it holds store_clock (no other writer draws from them meanwhile) and set forward before
// its COMMIT (PostgresStore::run_jobs). Binary arrays, the bodies one bytea[] (no escaping of JSON text).
class VersionRows {
 public:
  void add(std::int64_t rid, std::int64_t seq, std::int64_t tenant, std::string_view type, std::string_view id,
           std::int64_t last_updated, std::int64_t method, std::string_view body) {
    rids_.add_int(rid);
    seqs_.add_int(seq);
    tenants_.add_int(tenant);
    types_.add_bytes(type);
    ids_.add_bytes(id);
    last_updated_.add_int(last_updated);
    methods_.add_int(method);
    bodies_.add_bytes(std::string_view(&kBodyFormatJson, 1), body);
  }
  bool empty() const { return rids_.size() == 0; }
  void clear() {
    for (BinaryArray* a : arrays()) a->clear();
  }
  // "v AS (...), v_resource AS (...), v_version AS (...)" with parameters $1..$8 (the index tables' follow).
  static constexpr int kParams = 8;
  static std::string statement() {
    return "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], "
           "$6::bigint[], $7::bigint[], $8::bytea[]) AS v(rid, seq, tenant, type, id, last_updated, method, body)), "
           "v_resource AS (INSERT INTO resource(rid, tenant, type, id, version, last_updated, deleted) "
           "OVERRIDING SYSTEM VALUE SELECT rid, tenant, type, id, 1, last_updated, 0 FROM v), "
           "v_version AS (INSERT INTO resource_version(seq, rid, tenant, type, id, version, last_updated, deleted, "
           "method, body) OVERRIDING SYSTEM VALUE SELECT seq, rid, tenant, type, id, 1, last_updated, 0, method, body "
           "FROM v)";
  }
  void take(std::vector<Param>& params) {
    for (BinaryArray* a : arrays()) params.push_back(a->take());
  }

 private:
  std::array<BinaryArray*, kParams> arrays() {
    return {&rids_, &seqs_, &tenants_, &types_, &ids_, &last_updated_, &methods_, &bodies_};
  }
  BinaryArray rids_{pg::kInt8Oid}, seqs_{pg::kInt8Oid}, tenants_{pg::kInt8Oid}, types_{pg::kTextOid},
      ids_{pg::kTextOid}, last_updated_{pg::kInt8Oid}, methods_{pg::kInt8Oid}, bodies_{pg::kByteaOid};
};

// The index rows of several resources (a commit group's), written by ONE statement of fixed text (prepared once
// per connection): a multi-row INSERT ... SELECT FROM unnest() per table, each column an array parameter.
class IndexBatch {
 public:
  // Adds the rows of resource `rid`. `patient_tokens`: `v` holds every parameter's rows, so idx_patient_token's
  // rows are made here, as kPatientTokenFill would make them from the tables (its `patient` references by
  // its tokens other than identifier and the common ones).
  void add(std::int64_t rid, std::int64_t tenant, std::string_view type, const IndexValues& v, bool patient_tokens) {
    for (const auto& r : v.strings) strings_.add(rid, tenant, type, r.param, r.normalized, r.exact);
    for (const auto& r : v.tokens)
      tokens_.add(rid, tenant, type, r.param, r.system ? std::string_view(*r.system) : std::string_view(), r.code,
                  r.text);
    for (const auto& r : v.references)
      references_.add(rid, tenant, type, r.param, r.type, r.id, r.version, r.url, r.identifier_system,
                      r.identifier_value);
    for (const auto& r : v.dates) dates_.add(rid, tenant, type, r.param, r.low_ms, r.high_ms);
    for (const auto& r : v.numbers) numbers_.add(rid, tenant, type, r.param, r.low, r.high, r.value);
    for (const auto& r : v.quantities)
      quantities_.add(rid, tenant, type, r.param, r.low, r.high, r.value, r.system, r.code, r.unit);
    for (const auto& r : v.uris) uris_.add(rid, tenant, type, r.param, r.uri);
    for (const auto& r : v.composites)
      composites_.add(rid, tenant, type, r.param, static_cast<std::int64_t>(r.item),
                      static_cast<std::int64_t>(r.component), r.system, r.code, r.text, r.normalized, r.exact, r.low,
                      r.high, r.unit, r.value, r.target_type, r.target_id, r.url, r.uri);
    for (const auto& r : v.identifier_types)
      identifier_types_.add(rid, tenant, type, r.param, r.type_system, r.type_code, r.value);
    if (patient_tokens)
      for (const auto& ref : v.references) {
        if (ref.param != "patient" || ref.id.empty()) continue;
        for (const auto& t : v.tokens)
          if (!t.code.empty() && patient_token_param(t.param))
            patient_tokens_.add(tenant, ref.id, ref.type, type, t.param, t.code,
                                t.system ? std::string_view(*t.system) : std::string_view(), rid);
      }
    if (!v.narrative.empty() || !v.content.empty()) {
      std::string narrative = pg::full_text_document(v.narrative);
      std::string content = pg::full_text_document(v.content);
      std::string tsv = pg::tsvector_binary(narrative, content);
      text_.add(rid, tenant, narrative, content, tsv);
    }
    rids_.insert(rid);
  }
  // A new resource's row and first version (VersionRows), written before the index rows by the same statement.
  void add_version(std::int64_t rid, std::int64_t seq, std::int64_t tenant, const VersionRecord& rec) {
    versions_.add(rid, seq, tenant, rec.type, rec.id, rec.last_updated_ms, static_cast<std::int64_t>(rec.method),
                  rec.body);
  }
  bool empty() const { return rids_.empty() && versions_.empty(); }
  std::size_t resources() const { return rids_.size(); }  // (with index rows)
  bool has_versions() const { return !versions_.empty(); }
  bool has(std::int64_t rid) const { return rids_.contains(rid); }
  void clear() {
    for (TableRows* t : tables()) t->clear();
    versions_.clear();
    rids_.clear();
  }
  // The statement (the same text whatever the rows: empty arrays insert nothing). `on_conflict`: see
  // TableRows::statement.
  const std::string& sql(bool on_conflict) {
    auto build = [this](bool skip) {
      std::string sql = VersionRows::statement();
      int next = VersionRows::kParams + 1;
      for (TableRows* t : tables()) t->statement(sql, next, skip);
      return sql + " SELECT 1";
    };
    static const std::string plain = build(false), skipping = build(true);
    return on_conflict ? skipping : plain;
  }
  // Its parameters; the batch is empty afterwards.
  std::vector<Param> take() {
    std::vector<Param> params;
    versions_.take(params);
    for (TableRows* t : tables()) t->take(params);
    rids_.clear();
    return params;
  }

 private:
  std::vector<TableRows*> tables() {
    return {&strings_, &tokens_,     &references_,       &dates_,          &numbers_, &quantities_,
            &uris_,    &composites_, &identifier_types_, &patient_tokens_, &text_};
  }
  static constexpr const char* B = "bigint";
  static constexpr const char* T = "text";
  static constexpr const char* F = "float8";
  // (Columns 1 and 2 are tenant and type, outside every primary key.)
  TableRows strings_{"idx_string", "", {B, B, T, T, T, T}, {1, 2}};
  TableRows tokens_{"idx_token", "", {B, B, T, T, T, T, T}, {1, 2}};
  TableRows references_{"idx_reference", "", {B, B, T, T, T, T, T, T, T, T}, {1, 2}};
  TableRows dates_{"idx_date", "", {B, B, T, T, B, B}, {1, 2}};
  TableRows numbers_{"idx_number", "", {B, B, T, T, F, F, T}, {1, 2}};
  TableRows quantities_{"idx_quantity", "", {B, B, T, T, F, F, T, T, T, T}, {1, 2}};
  TableRows uris_{"idx_uri", "", {B, B, T, T, T}, {1, 2}};
  TableRows composites_{
      "idx_composite", "", {B, B, T, T, B, B, T, T, T, T, T, F, F, T, T, T, T, T, T}, {1, 2, 14}};  // (14: value)
  TableRows identifier_types_{"idx_identifier_type", "", {B, B, T, T, T, T, T}, {1, 2}};
  TableRows patient_tokens_{"idx_patient_token", "", {B, T, T, T, T, T, T, B}, {}};
  TableRows text_{"idx_text", " (rid, tenant, narrative, content, tsv)", {B, B, T, T, "tsvector"}, {1, 2, 3, 4}};
  VersionRows versions_;
  std::set<std::int64_t> rids_;
};

std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) out.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string array_of(const std::vector<std::string>& items) {
  std::string out = "{";
  for (const std::string& s : items) append_element(out, s);
  return out + "}";
}

// A search built by search_sql.cpp (SQLite's dialect, which is mostly PostgreSQL's too) for PostgreSQL: `?` becomes
// `$n`, the binds text parameters, and a subquery in FROM gets the alias PostgreSQL 15 requires. What is SQLite's
// own is translated (FTS5's MATCH on idx_text: a tsquery on its tsvector columns, see pg_full_text.hpp), dropped (a
// unary + before a column) or renamed (char() is chr()).
Result<std::pair<std::string, std::vector<Param>>> to_postgres(const SqlQuery& q) {
  std::string source = q.sql;
  // _text and _content: the FTS5 expression bound to the `?` becomes a tsquery over bound terms.
  static constexpr std::pair<std::string_view, std::string_view> kFullText[] = {
      // (_text: the narrative's words, of weight A; the parenthesis marks it for the binding below.)
      {"(SELECT rowid FROM idx_text WHERE narrative MATCH ?)", "(SELECT rid FROM idx_text WHERE tsv @@ (?))"},
      {"(SELECT rowid FROM idx_text WHERE idx_text MATCH ?)", "(SELECT rid FROM idx_text WHERE tsv @@ ?)"},
  };
  for (const auto& [from, to] : kFullText)
    for (std::size_t at = source.find(from); at != std::string::npos; at = source.find(from, at + to.size()))
      source.replace(at, from.size(), to);
  if (source.find(" MATCH ") != std::string::npos)
    return fhir::fail(ErrorKind::kNotSupported, "not-supported",
                      "this full-text search is not available on the PostgreSQL store yet");
  auto param_of = [](const SqlQuery::Bind& b) {
    return std::visit(
        [](const auto& v) -> Param {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, double>)
            return Param(number_text(v));
          else
            return Param(v);
        },
        b);
  };
  std::string sql;
  sql.reserve(source.size() + 16);
  std::vector<Param> params;
  params.reserve(q.binds.size());
  std::size_t bind = 0;
  bool quoted = false;
  for (std::size_t i = 0; i < source.size(); ++i) {
    const char c = source[i];
    if (c == '\'') quoted = !quoted;
    if (!quoted && c == '?') {
      if (bind >= q.binds.size())
        return fhir::fail(ErrorKind::kInternal, "exception", "search SQL has more parameters than values");
      const SqlQuery::Bind& b = q.binds[bind++];
      const bool text = sql.ends_with(" tsv @@ (");
      if ((text || sql.ends_with(" tsv @@ ")) && std::holds_alternative<std::string>(b)) {
        std::vector<std::string> terms;
        auto tsquery = pg::tsquery_sql(std::get<std::string>(b), static_cast<int>(params.size()) + 1, terms, text);
        if (!tsquery) return std::unexpected(tsquery.error());
        sql += *tsquery;
        for (std::string& t : terms) params.emplace_back(std::move(t));
        continue;
      }
      params.push_back(param_of(b));
      sql += "$" + std::to_string(params.size());
      continue;
    }
    // SQLite's unary + before a column ("+r.type") keeps its planner off an index; PostgreSQL has no unary +
    // for text (and plans by statistics): dropped.
    if (!quoted && c == '+' && i + 1 < source.size() && std::isalpha(static_cast<unsigned char>(source[i + 1])) &&
        (i == 0 || source[i - 1] == ' ' || source[i - 1] == '(' || source[i - 1] == ','))
      continue;
    sql += c;
  }
  if (sql.starts_with("SELECT COUNT(*) FROM (") && sql.ends_with(")")) sql += " AS matches";
  for (std::size_t at = sql.find("char(1)"); at != std::string::npos; at = sql.find("char(1)", at))
    sql.replace(at, 7, "chr(1)");  // (the separator of a token sort key)
  return std::pair{std::move(sql), std::move(params)};
}

struct WriteJob {
  Store::Work work;
  Store::Done done;
};

class PostgresStore;

// The authorization server's tables (caduceus/resources/store/oauth_tables.hpp) on the writer's connection, inside
// the job's transaction. Lists are stored space-separated, as on SQLite.
class PgOAuthTables final : public OAuthTables {
 public:
  explicit PgOAuthTables(pg::Connection& conn) : conn_(conn) {}

  fhir::Result<void> add_client(TenantId tenant, const ClientRecord& c) override {
    auto r = conn_.exec(std::string("INSERT INTO oauth_client (tenant, ") + kClientColumns +
                            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
                            "ON CONFLICT (tenant, client_id) DO NOTHING RETURNING 1",
                        {Param(tenant), Param(c.client_id), Param(c.name), Param(c.kind), Param(c.secret_hash),
                         Param(c.jwks), Param(c.jwks_url), Param(join_words(c.redirect_uris)),
                         Param(join_words(c.scopes)), Param(c.created_ms), Param(c.tls_subject)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    if (r->rows() == 0)
      return fhir::fail(ErrorKind::kConflict, "duplicate", "a client '" + c.client_id + "' is already registered");
    return {};
  }

  fhir::Result<bool> remove_client(TenantId tenant, const std::string& client_id) override {
    auto r = conn_.exec("DELETE FROM oauth_client WHERE tenant = $1 AND client_id = $2 RETURNING 1",
                        {Param(tenant), Param(client_id)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    return r->rows() > 0;
  }

  fhir::Result<std::optional<ClientRecord>> client(TenantId tenant, const std::string& client_id) override {
    auto all = select(tenant, &client_id);
    if (!all) return std::unexpected(all.error());
    if (all->empty()) return std::optional<ClientRecord>();
    return std::optional<ClientRecord>(std::move(all->front()));
  }

  fhir::Result<std::vector<ClientRecord>> clients(TenantId tenant) override { return select(tenant, nullptr); }

  fhir::Result<bool> use_jti(TenantId tenant, const std::string& client_id, const std::string& jti,
                             std::int64_t expires_ms, std::int64_t now_ms) override {
    if (auto d =
            conn_.exec("DELETE FROM oauth_used_jti WHERE tenant = $1 AND expires < $2", {Param(tenant), Param(now_ms)});
        !d)
      return std::unexpected(pg::to_error(d.error(), "oauth"));
    auto r = conn_.exec(
        "INSERT INTO oauth_used_jti (tenant, client_id, jti, expires) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (tenant, client_id, jti) DO NOTHING RETURNING 1",
        {Param(tenant), Param(client_id), Param(jti), Param(expires_ms)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    return r->rows() > 0;  // none inserted: seen before
  }

  fhir::Result<void> revoke_token(TenantId tenant, const std::string& jti, std::int64_t expires_ms) override {
    auto r = conn_.exec(
        "INSERT INTO oauth_revoked_token (tenant, jti, expires) VALUES ($1, $2, $3) "
        "ON CONFLICT (tenant, jti) DO NOTHING",
        {Param(tenant), Param(jti), Param(expires_ms)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    return {};
  }

  fhir::Result<std::vector<std::string>> revoked_tokens(TenantId tenant, std::int64_t now_ms) override {
    if (auto d = conn_.exec("DELETE FROM oauth_revoked_token WHERE tenant = $1 AND expires < $2",
                            {Param(tenant), Param(now_ms)});
        !d)
      return std::unexpected(pg::to_error(d.error(), "oauth"));
    auto r = conn_.exec("SELECT jti FROM oauth_revoked_token WHERE tenant = $1", {Param(tenant)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    std::vector<std::string> out;
    for (int i = 0; i < r->rows(); ++i) out.push_back(r->text(i, 0));
    return out;
  }

  fhir::Result<void> put_grant(TenantId tenant, const GrantRecord& g, std::int64_t now_ms) override {
    if (auto d =
            conn_.exec("DELETE FROM oauth_grant WHERE tenant = $1 AND expires < $2", {Param(tenant), Param(now_ms)});
        !d)
      return std::unexpected(pg::to_error(d.error(), "oauth"));
    auto r = conn_.exec(
        "INSERT INTO oauth_grant (tenant, kind, key, family, data, expires, consumed) VALUES ($1, $2, $3, $4, $5, $6, "
        "$7) ON CONFLICT (tenant, kind, key) DO UPDATE SET family = excluded.family, data = excluded.data, "
        "expires = excluded.expires, consumed = excluded.consumed",
        {Param(tenant), Param(g.kind), Param(g.key), Param(g.family), Param(g.data), Param(g.expires_ms),
         Param(g.consumed ? 1 : 0)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    return {};
  }

  fhir::Result<std::optional<GrantRecord>> find_grant(TenantId tenant, const std::string& kind, const std::string& key,
                                                      std::int64_t now_ms) override {
    return select_grant(tenant, kind, key, now_ms, "");
  }

  fhir::Result<std::optional<GrantRecord>> consume_grant(TenantId tenant, const std::string& kind,
                                                         const std::string& key, std::int64_t now_ms) override {
    // FOR UPDATE: another server consuming the same grant waits for this transaction, then sees it consumed.
    auto found = select_grant(tenant, kind, key, now_ms, " FOR UPDATE");
    if (!found || !*found || (*found)->consumed) return found;
    auto r = conn_.exec("UPDATE oauth_grant SET consumed = 1 WHERE tenant = $1 AND kind = $2 AND key = $3",
                        {Param(tenant), Param(kind), Param(key)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    return found;
  }

  fhir::Result<void> revoke_grant_family(TenantId tenant, const std::string& family) override {
    auto r = conn_.exec("UPDATE oauth_grant SET consumed = 1 WHERE tenant = $1 AND family = $2",
                        {Param(tenant), Param(family)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    return {};
  }

 private:
  static constexpr const char* kClientColumns =
      "client_id, name, kind, secret_hash, jwks, jwks_url, redirect_uris, scopes, created, tls_subject";

  fhir::Result<std::optional<GrantRecord>> select_grant(TenantId tenant, const std::string& kind,
                                                        const std::string& key, std::int64_t now_ms,
                                                        const char* suffix) {
    auto r = conn_.exec(std::string("SELECT family, data, expires, consumed FROM oauth_grant WHERE tenant = $1 AND "
                                    "kind = $2 AND key = $3 AND expires >= $4") +
                            suffix,
                        {Param(tenant), Param(kind), Param(key), Param(now_ms)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    if (r->rows() == 0) return std::optional<GrantRecord>();
    GrantRecord g;
    g.kind = kind;
    g.key = key;
    g.family = r->text(0, 0);
    g.data = r->text(0, 1);
    g.expires_ms = r->i64(0, 2);
    g.consumed = r->i64(0, 3) != 0;
    return std::optional<GrantRecord>(std::move(g));
  }

  fhir::Result<std::vector<ClientRecord>> select(TenantId tenant, const std::string* client_id) {
    std::string sql = std::string("SELECT ") + kClientColumns + " FROM oauth_client WHERE tenant = $1";
    std::vector<Param> params{Param(tenant)};
    if (client_id != nullptr) {
      sql += " AND client_id = $2";
      params.emplace_back(*client_id);
    }
    auto r = conn_.exec(sql + " ORDER BY client_id", params);
    if (!r) return std::unexpected(pg::to_error(r.error(), "oauth"));
    std::vector<ClientRecord> out;
    for (int i = 0; i < r->rows(); ++i) {
      ClientRecord c;
      c.client_id = r->text(i, 0);
      c.name = r->text(i, 1);
      c.kind = r->text(i, 2);
      c.secret_hash = r->text(i, 3);
      c.jwks = r->text(i, 4);
      c.jwks_url = r->text(i, 5);
      c.redirect_uris = split_words(r->text(i, 6));
      c.scopes = split_words(r->text(i, 7));
      c.created_ms = r->i64(i, 8);
      c.tls_subject = r->text(i, 9);
      out.push_back(std::move(c));
    }
    return out;
  }

  pg::Connection& conn_;
};

// The users table (caduceus/resources/store/users.hpp) on the writer's connection, inside the job's transaction.
class PgUserRows final : public UserRows {
 public:
  explicit PgUserRows(pg::Connection& conn) : conn_(conn) {}

  Result<std::optional<UserRecord>> find(TenantId tenant, std::string_view username) override {
    auto r = conn_.exec(std::string("SELECT ") + kColumns + " FROM users WHERE tenant = $1 AND username = $2",
                        {Param(tenant), Param(username)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "users"));
    if (r->rows() == 0) return std::optional<UserRecord>{};
    return std::optional<UserRecord>{from_row(*r, 0)};
  }

  Result<void> insert(TenantId tenant, const UserRecord& u) override {
    auto params = values(tenant, u);
    auto r = conn_.exec(std::string("INSERT INTO users (tenant, ") + kColumns +
                            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) "
                            "ON CONFLICT (tenant, username) DO NOTHING RETURNING 1",
                        params);
    if (!r) return std::unexpected(pg::to_error(r.error(), "users"));
    if (r->rows() == 0)
      return fhir::fail(ErrorKind::kConflict, "duplicate", "the user '" + u.username + "' exists already");
    return {};
  }

  Result<void> update(TenantId tenant, const UserRecord& u) override {
    auto r = conn_.exec(
        "UPDATE users SET role = $3, fhir_user = $4, password_hash = $5, must_change_password = $6, disabled = $7, "
        "totp_secret = $8, totp_pending = $9, totp_last_step = $10, failed_count = $11, next_attempt = $12, "
        "locked_until = $13, created = $14, updated = $15, last_sign_in = $16 "
        "WHERE tenant = $1 AND username = $2 RETURNING 1",
        values(tenant, u));
    if (!r) return std::unexpected(pg::to_error(r.error(), "users"));
    if (r->rows() == 0) return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + u.username + "'");
    return {};
  }

  Result<std::vector<UserRecord>> list(TenantId tenant) override {
    auto r = conn_.exec(std::string("SELECT ") + kColumns + " FROM users WHERE tenant = $1 ORDER BY username",
                        {Param(tenant)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "users"));
    std::vector<UserRecord> out;
    for (int i = 0; i < r->rows(); ++i) out.push_back(from_row(*r, i));
    return out;
  }

  Result<std::int64_t> count(TenantId tenant) override {
    auto r = conn_.exec("SELECT COUNT(*) FROM users WHERE tenant = $1", {Param(tenant)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "users"));
    return r->i64(0, 0);
  }

 private:
  static constexpr const char* kColumns =
      "username, role, fhir_user, password_hash, must_change_password, disabled, totp_secret, totp_pending, "
      "totp_last_step, failed_count, next_attempt, locked_until, created, updated, last_sign_in";

  // $1 tenant, then the columns of kColumns in order ($2 .. $16).
  static std::vector<Param> values(TenantId tenant, const UserRecord& u) {
    return {Param(tenant),
            Param(u.username),
            Param(u.role),
            Param(u.fhir_user),
            Param(u.password_hash),
            Param(std::int64_t{u.must_change_password ? 1 : 0}),
            Param(std::int64_t{u.disabled ? 1 : 0}),
            Param(u.totp_secret),
            Param(u.totp_pending),
            Param(u.totp_last_step),
            Param(u.failed_count),
            Param(u.next_attempt_ms),
            Param(u.locked_until_ms),
            Param(u.created_ms),
            Param(u.updated_ms),
            Param(u.last_sign_in_ms)};
  }

  static UserRecord from_row(const pg::Result& r, int row) {
    UserRecord u;
    u.username = r.text(row, 0);
    u.role = r.text(row, 1);
    u.fhir_user = r.text(row, 2);
    u.password_hash = r.text(row, 3);
    u.must_change_password = r.i64(row, 4) != 0;
    u.disabled = r.i64(row, 5) != 0;
    u.totp_secret = r.text(row, 6);
    u.totp_pending = r.text(row, 7);
    u.totp_last_step = r.i64(row, 8);
    u.failed_count = r.i64(row, 9);
    u.next_attempt_ms = r.i64(row, 10);
    u.locked_until_ms = r.i64(row, 11);
    u.created_ms = r.i64(row, 12);
    u.updated_ms = r.i64(row, 13);
    u.last_sign_in_ms = r.i64(row, 14);
    return u;
  }

  pg::Connection& conn_;
};

class PostgresTransaction final : public ForwardingTransaction<PostgresStore> {
 public:
  using ForwardingTransaction::ForwardingTransaction;
  Result<UserRows*> users() override;
};

constexpr const char* kReadCurrent =
    "SELECT v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
    "FROM resource r JOIN resource_version v ON v.rid = r.rid AND v.version = r.version "
    "WHERE r.tenant = $1 AND r.type = $2 AND r.id = $3";

// The current versions of many resources at once: $1, $2, $3 are arrays of tenants, types and ids; each row
// carries the 1-based position (ord) of the resource it answers. LATERAL: a probe of the (tenant, type, id) key per
// element, whatever the planner guesses of the arrays' length.
constexpr const char* kReadCurrentBatch =
    "SELECT q.ord, x.version, x.last_updated, x.deleted, x.method, x.body, x.seq "
    "FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY AS q(tenant, type, id, ord) "
    "CROSS JOIN LATERAL (SELECT v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
    "FROM resource r JOIN resource_version v ON v.rid = r.rid AND v.version = r.version "
    "WHERE r.tenant = q.tenant AND r.type = q.type AND r.id = q.id) x";

// Waits until `queue` has jobs or `stopping` is set, then moves up to `most` of them into `batch`. False when
// stopping with nothing left to do.
template <class Job>
bool take_batch(std::mutex& mutex, std::condition_variable& cv, std::deque<Job>& queue, const bool& stopping,
                std::size_t most, std::vector<Job>& batch) {
  std::unique_lock lock(mutex);
  cv.wait(lock, [&] { return stopping || !queue.empty(); });
  if (queue.empty()) return false;
  while (!queue.empty() && batch.size() < most) {
    batch.push_back(std::move(queue.front()));
    queue.pop_front();
  }
  return true;
}

// Answers each job of the batch with its result (same order), then empties both. A completion that throws does
// not keep the others from theirs: its caller has had its answer.
template <class Job, class R>
void deliver(std::vector<Job>& batch, std::vector<R>& results) {
  for (std::size_t i = 0; i < batch.size(); ++i) {
    try {
      batch[i].done(std::move(results[i]));
    } catch (...) {
    }
  }
  batch.clear();
  results.clear();
}

// A read waiting for its batch (PostgresStore::read_async).
struct ReadJob {
  TenantId tenant;
  std::string type, id;
  Store::ReadDone done;
};

class PostgresStore final : public Store {
  // Connections for statements outside the writer's transaction, each used by one thread at a time.
  struct Pool {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::unique_ptr<pg::Connection>> connections;
    std::vector<pg::Connection*> free;
    Result<void> open(const std::string& url, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) {
        auto c = pg::Connection::open(url);
        if (!c) return std::unexpected(pg::to_error(c.error(), "cannot open the PostgreSQL database"));
        free.push_back(c->get());
        connections.push_back(std::move(*c));
      }
      return {};
    }
  };

 public:
  PostgresStore(std::string url, const StoreOptions& options) : url_(std::move(url)), options_(options) {}

  ~PostgresStore() override {
    {
      std::lock_guard lock(queue_mutex_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    if (writer_thread_.joinable()) writer_thread_.join();
    {
      std::lock_guard lock(reads_mutex_);
      reads_stopping_ = true;
    }
    reads_cv_.notify_all();
    for (std::thread& t : read_threads_) t.join();
  }

  Result<void> open() {
    auto writer = pg::Connection::open(url_);
    if (!writer) return std::unexpected(pg::to_error(writer.error(), "cannot open the PostgreSQL database"));
    writer_ = std::move(*writer);
    if (auto migrated = apply_postgres_migrations(*writer_); !migrated) return migrated;
    if (auto built = prepare_clock_statements(); !built) return built;
    // Without a read URL one pool serves everything; with one, reads by id, searches and history go to its pool
    // (a standby: they may be a little behind), and the primary's pool keeps what must see the primary (revocations,
    // bulk-load maintenance, sync, /readyz): two connections.
    const std::size_t readers = std::max<std::size_t>(1, options_.readers);
    if (auto opened = primary_.open(url_, options_.read_url.empty() ? readers : 2); !opened) return opened;
    if (!options_.read_url.empty())
      if (auto opened = stale_.open(options_.read_url, readers); !opened) return opened;
    writer_thread_ = std::thread([this] {
      name_this_thread("cad-pg-writer");
      writer_loop();
    });
    // Two gatherers: while one waits for its batch's answer, the other collects the next.
    for (std::size_t i = 0; i < std::min<std::size_t>(2, readers); ++i)
      read_threads_.emplace_back([this] {
        name_this_thread("cad-pg-read");
        read_loop();
      });
    return {};
  }

  // The statements that open and close a write transaction, naming the identity sequences of resource.rid and
  // resource_version.seq: the first locks store_clock and reads where both sequences stand; the last moves the
  // clock and both sequences past what the transaction took (see VersionRows).
  Result<void> prepare_clock_statements() {
    // Each name as a relation name (quoted where needed) and as a string literal of that (PostgreSQL's quote_literal).
    auto names = writer_->exec(
        "SELECT r, s, quote_literal(r), quote_literal(s) FROM (SELECT pg_get_serial_sequence('resource', 'rid') AS r, "
        "pg_get_serial_sequence('resource_version', 'seq') AS s) n",
        {});
    if (!names || names->rows() != 1 || names->null(0, 0) || names->null(0, 1))
      return fhir::fail(ErrorKind::kInternal, "exception", "resource.rid or resource_version.seq has no sequence");
    const std::string rid_seq = names->text(0, 0), seq_seq = names->text(0, 1);
    const std::string rid_seq_literal = names->text(0, 2), seq_seq_literal = names->text(0, 3);
    auto next = [](const std::string& seq) {
      return "(SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM " + seq + ")";
    };
    // (The sequences are read by the outer query, once the CTE has the lock: subqueries beside FOR UPDATE in one
    // SELECT are evaluated before it waits for the lock, and would give what stood before the other writer's
    // COMMIT.)
    lock_clock_sql_ =
        "WITH c AS MATERIALIZED (SELECT last_ms FROM store_clock WHERE id = 1 FOR UPDATE) "
        "SELECT c.last_ms, " +
        next(rid_seq) + ", " + next(seq_seq) + " FROM c";
    advance_clock_sql_ =
        "UPDATE store_clock SET last_ms = GREATEST(last_ms, $1) WHERE id = 1 RETURNING "
        "CASE WHEN $2::bigint > 0 THEN setval(" +
        rid_seq_literal +
        ", $2::bigint) END, "
        "CASE WHEN $3::bigint > 0 THEN setval(" +
        seq_seq_literal + ", $3::bigint) END";
    return {};
  }

  Result<VersionRecord> read(TenantId tenant, std::string_view type, std::string_view id) override {
    return with_read_conn([&](pg::Connection& c) -> Result<VersionRecord> {
      auto r = c.run("read_current", kReadCurrent, {Param(tenant), Param(type), Param(id)});
      if (!r) return std::unexpected(pg::to_error(r.error(), "read"));
      if (r->rows() == 0)
        return fhir::fail(ErrorKind::kNotFound, "not-found",
                          "Resource " + std::string(type) + "/" + std::string(id) + " is not known");
      return record_of(*r, 0, 0, std::string(type), std::string(id));
    });
  }

  // Reads by id from many requests at once go to PostgreSQL together: one statement (one parse-free execution, one
  // round trip, one wake-up of the backend) for all the reads queued while the previous batch was out. Under load
  // that is many reads per statement; alone, a read waits for nobody.
  void read_async(TenantId tenant, std::string_view type, std::string_view id, ReadDone done) override {
    {
      std::lock_guard lock(reads_mutex_);
      reads_.push_back(ReadJob{tenant, std::string(type), std::string(id), std::move(done)});
    }
    reads_cv_.notify_one();
  }
  bool reads_async() const override { return true; }

  Result<VersionRecord> vread(TenantId tenant, std::string_view type, std::string_view id,
                              std::int64_t version) override {
    return with_read_conn([&](pg::Connection& c) -> Result<VersionRecord> {
      auto r = c.run("read_version",
                     "SELECT v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
                     "FROM resource r JOIN resource_version v ON v.rid = r.rid "
                     "WHERE r.tenant = $1 AND r.type = $2 AND r.id = $3 AND v.version = $4",
                     {Param(tenant), Param(type), Param(id), Param(version)});
      if (!r) return std::unexpected(pg::to_error(r.error(), "vread"));
      if (r->rows() == 0)
        return fhir::fail(ErrorKind::kNotFound, "not-found",
                          "Version " + std::to_string(version) + " of " + std::string(type) + "/" + std::string(id) +
                              " is not known");
      return record_of(*r, 0, 0, std::string(type), std::string(id));
    });
  }

  Result<HistoryPage> history(TenantId tenant, const HistoryQuery& q) override {
    if (q.count == 0) return HistoryPage{};  // _count=0: the total only, no entries
    std::vector<Param> params;
    std::string sql =
        "SELECT v.type, v.id, v.version, v.last_updated, v.deleted, v.method, v.body, v.seq FROM resource_version v "
        "WHERE " +
        history_where(tenant, q, params);
    params.emplace_back(static_cast<std::int64_t>(q.count) + 1);
    sql += " ORDER BY v.seq DESC LIMIT $" + std::to_string(params.size());
    return with_read_conn([&](pg::Connection& c) -> Result<HistoryPage> {
      auto r = c.run_cached(sql, params);
      if (!r) return std::unexpected(pg::to_error(r.error(), "history"));
      HistoryPage page;
      for (int i = 0; i < r->rows(); ++i) {
        if (page.entries.size() == q.count) {
          page.next_before_seq = page.entries.back().seq;
          break;
        }
        auto rec = record_of(*r, i, 2, r->text(i, 0), r->text(i, 1));
        if (!rec) return std::unexpected(rec.error());
        page.entries.push_back(std::move(*rec));
      }
      return page;
    });
  }

  Result<std::int64_t> history_total(TenantId tenant, const HistoryQuery& q) override {
    HistoryQuery all = q;
    all.before_seq.reset();
    std::vector<Param> params;
    std::string sql = "SELECT COUNT(*) FROM resource_version v WHERE " + history_where(tenant, all, params);
    return with_read_conn([&](pg::Connection& c) -> Result<std::int64_t> {
      auto r = c.run_cached(sql, params);
      if (!r) return std::unexpected(pg::to_error(r.error(), "history"));
      return r->i64(0, 0);
    });
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

  // Search: the SQL of search_sql.cpp, for the criteria, paging (cursor: the last rid) and _total. Strings sort in the
  // database's collation (SQLite: bytewise): create the database with LC_COLLATE C for the same order. The statement of
  // one page of `query` (`rows` rows after its cursor), in search_sql.cpp's dialect.
  static Result<SqlQuery> page_query(TenantId tenant, const SearchQuery& query, std::size_t rows) {
    std::optional<std::int64_t> after;
    std::optional<SortPosition> after_sorted;
    if (query.cursor && !query.sort.empty()) {
      auto position = decode_sort_cursor(query, *query.cursor);
      if (!position) return std::unexpected(position.error());
      after_sorted = std::move(*position);
    } else if (query.cursor) {
      std::int64_t rid = 0;
      auto [ptr, ec] = std::from_chars(query.cursor->data(), query.cursor->data() + query.cursor->size(), rid);
      if (ec != std::errc() || ptr != query.cursor->data() + query.cursor->size() || rid < 0)
        return fhir::fail(ErrorKind::kInvalid, "invalid", "'" + *query.cursor + "' is not a paging cursor", "_cursor");
      after = rid;
    }
    return query.sort.empty() ? build_search_sql(tenant, query, after, rows, false)
                              : build_sorted_search_sql(tenant, query, after_sorted ? &*after_sorted : nullptr, rows);
  }

  Result<SearchPage> search(TenantId tenant, const SearchQuery& query) override {
    const bool want_total = query.total == Total::kAccurate || query.summary == Summary::kCount;
    const std::size_t limit = query.summary == Summary::kCount ? 0 : query.count;
    auto built = page_query(tenant, query, limit + 1);
    if (!built) return std::unexpected(built.error());
    auto page_sql = to_postgres(*built);
    if (!page_sql) return std::unexpected(page_sql.error());
    std::optional<std::pair<std::string, std::vector<Param>>> count_sql;
    if (want_total) {
      auto c = build_search_sql(tenant, query, std::nullopt, 0, true);
      if (!c) return std::unexpected(c.error());
      auto pc = to_postgres(*c);
      if (!pc) return std::unexpected(pc.error());
      count_sql = std::move(*pc);
    }
    return with_read_conn([&](pg::Connection& c) -> Result<SearchPage> {
      SearchPage page;
      auto hits = c.run_cached(page_sql->first, page_sql->second);  // rid, id, type
      if (!hits) return std::unexpected(pg::to_error(hits.error(), "search"));
      const int n = limit == 0 ? 0 : std::min(hits->rows(), static_cast<int>(limit));
      if (limit > 0 && hits->rows() > static_cast<int>(limit)) {
        if (query.sort.empty()) {
          page.next_cursor = std::to_string(hits->i64(n - 1, 0));
        } else {  // the sort keys of the page's last row follow rid, id, type
          SortPosition p;
          p.rid = hits->i64(n - 1, 0);
          for (int k = 0; k < static_cast<int>(query.sort.size()); ++k) {
            const int col = 3 + k;
            if (hits->null(n - 1, col))
              p.keys.emplace_back(std::nullopt);
            else if (const unsigned t = hits->type(col); t == 20 || t == 21 || t == 23)
              p.keys.emplace_back(SqlQuery::Bind(hits->i64(n - 1, col)));
            else if (t == 701)
              p.keys.emplace_back(SqlQuery::Bind(hits->f64(n - 1, col)));
            else
              p.keys.emplace_back(SqlQuery::Bind(hits->text(n - 1, col)));
          }
          page.next_cursor = encode_sort_cursor(query, p);
        }
      }
      if (n > 0) {
        // The current versions of the page's matches, in one statement (each may be newer than the match: what a
        // read would answer).
        std::vector<std::string> rids;
        for (int i = 0; i < n; ++i) rids.push_back(std::to_string(hits->i64(i, 0)));
        auto r = c.run("read_current_rids",
                       "SELECT r.rid, v.version, v.last_updated, v.deleted, v.method, v.body, v.seq "
                       "FROM resource r JOIN resource_version v ON v.rid = r.rid AND v.version = r.version "
                       "WHERE r.rid = ANY($1::bigint[]) AND r.tenant = $2",
                       {Param(array_of(rids)), Param(tenant)});
        if (!r) return std::unexpected(pg::to_error(r.error(), "search"));
        std::map<std::int64_t, int> row_of;
        for (int k = 0; k < r->rows(); ++k) row_of.emplace(r->i64(k, 0), k);
        for (int i = 0; i < n; ++i) {
          auto at = row_of.find(hits->i64(i, 0));
          if (at == row_of.end()) continue;
          auto rec = record_of(*r, at->second, 1, hits->text(i, 2), hits->text(i, 1));
          if (!rec) return std::unexpected(rec.error());
          if (rec->deleted) continue;  // deleted between the match and this read
          page.entries.push_back(std::move(*rec));
        }
      }
      if (!query.includes.empty())
        if (auto included = include_into(c, tenant, query, page); !included) return std::unexpected(included.error());
      if (count_sql) {
        auto total = c.run_cached(count_sql->first, count_sql->second);
        if (!total) return std::unexpected(pg::to_error(total.error(), "search"));
        page.total = total->i64(0, 0);
      }
      return page;
    });
  }

  // The explainer (Store::explain): the real statements in PostgreSQL's dialect, each with PostgreSQL's plan
  // (EXPLAIN, FORMAT JSON: the nodes, the indexes read, the estimated rows) and, as on SQLite, the rows counted
  // (the matches, up to a bound; for includes, the rows returned for the first page's matches).
  Result<SearchPlan> explain(TenantId tenant, const SearchQuery& original) override {
    SearchPlan plan;
    SearchQuery query = original;
    const bool want_total = query.total == Total::kAccurate || query.summary == Summary::kCount;
    const std::size_t limit = query.summary == Summary::kCount ? 0 : query.count;
    // What cannot run here (search() answers 501) is taken out and said, as on SQLite: the query builder names
    // the parameter.
    std::optional<SqlQuery> page_sql;
    for (;;) {
      auto built = page_query(tenant, query, limit + 1);
      Result<std::pair<std::string, std::vector<Param>>> translated =
          built ? to_postgres(*built) : std::unexpected(built.error());
      if (translated) {
        page_sql = std::move(*built);
        break;
      }
      const fhir::Error& e = translated.error();
      if (e.kind != ErrorKind::kNotSupported || e.issues.empty()) return std::unexpected(e);
      std::vector<std::string> what;
      if (!e.issues[0].expression.empty())
        what.push_back(e.issues[0].expression);
      else
        what = {"_text", "_content"};
      const std::size_t before = query.criteria.size() + query.has.size() + query.sort.size();
      if (std::find(what.begin(), what.end(), "_sort") != what.end()) query.sort.clear();
      std::erase_if(query.criteria,
                    [&](const Criterion& c) { return std::find(what.begin(), what.end(), c.name) != what.end(); });
      if (query.criteria.size() + query.has.size() + query.sort.size() == before) return std::unexpected(e);
      std::string names;
      for (const std::string& w : what) names += (names.empty() ? "'" : " and '") + w + "'";
      plan.notes.push_back(
          e.issues[0].diagnostics +
          ": the search answers 501 Not Implemented with it; this plan is of the same search without " + names);
    }
    auto count_sql = build_search_sql(tenant, query, std::nullopt, 0, true);
    if (!count_sql) return std::unexpected(count_sql.error());
    constexpr std::size_t kCountBound = 10000;
    return with_read_conn([&](pg::Connection& c) -> Result<SearchPlan> {
      auto statement = [&](std::string role, std::string description, bool runs,
                           const SqlQuery& q) -> Result<StatementPlan> {
        auto pq = to_postgres(q);
        if (!pq) return std::unexpected(pq.error());
        StatementPlan s;
        s.role = std::move(role);
        s.description = std::move(description);
        s.runs = runs;
        s.sql = pq->first;
        s.binds = q.binds;
        auto explained = pg::explain(c, pq->first, pq->second);
        if (!explained) return std::unexpected(explained.error());
        s.steps = std::move(explained->steps);
        s.indexes = std::move(explained->indexes);
        s.estimated_rows = explained->estimated_rows;
        return s;
      };
      auto counted = to_postgres(bounded_match_count_sql(*count_sql, kCountBound));
      if (!counted) return std::unexpected(counted.error());
      auto n = c.exec(counted->first, counted->second);
      if (!n) return std::unexpected(pg::to_error(n.error(), "explain"));
      const std::int64_t matches = n->rows() > 0 ? n->i64(0, 0) : 0;
      const bool bounded = matches >= static_cast<std::int64_t>(kCountBound);
      const std::string method =
          "the matches of the search, counted with SELECT COUNT(*) over its conditions (stopped at " +
          std::to_string(kCountBound) + "); PostgreSQL's own estimate is under estimate and in the steps";
      auto page = statement("page",
                            "the matches of one page (" + std::to_string(limit) +
                                " and one more to know whether a next page follows), " +
                                (query.sort.empty() ? std::string("in rid order after the cursor")
                                                    : "sorted by _sort=" + sort_spec(query) + " after the cursor"),
                            true, *page_sql);
      if (!page) return std::unexpected(page.error());
      page->rows = matches;
      page->rows_bounded = bounded;
      page->rows_method = method;
      plan.statements.push_back(std::move(*page));
      auto count = statement("count",
                             want_total ? "the total (_total=accurate or _summary=count)"
                                        : "the total: not run by this search (only with _total=accurate or "
                                          "_summary=count)",
                             want_total, *count_sql);
      if (!count) return std::unexpected(count.error());
      count->rows = matches;
      count->rows_bounded = bounded;
      count->rows_method = method;
      plan.statements.push_back(std::move(*count));

      if (!query.includes.empty()) {
        auto ps = to_postgres(*page_sql);
        if (!ps) return std::unexpected(ps.error());
        auto hits = c.exec(ps->first, ps->second);  // rid, id, type
        if (!hits) return std::unexpected(pg::to_error(hits.error(), "explain"));
        const int first = std::min(hits->rows(), static_cast<int>(limit));
        for (const Include& inc : query.includes) {
          std::map<std::string, std::vector<std::string>> by_type;
          for (int i = 0; i < first; ++i) {
            const std::string type = hits->text(i, 2);
            if (inc.reverse || inc.source_type.empty() || type == inc.source_type)
              by_type[type].push_back(hits->text(i, 1));
          }
          std::string name =
              std::string(inc.reverse ? "_revinclude" : "_include") + (inc.iterate ? ":iterate" : "") + "=";
          if (inc.wildcard && inc.source_type.empty())
            name += "*";
          else
            name += inc.source_type + ":" + (inc.wildcard ? std::string("*") : inc.parameter->code) +
                    (inc.target_type.empty() ? "" : ":" + inc.target_type);
          if (by_type.empty()) {
            std::string type = !inc.reverse && !inc.source_type.empty() ? inc.source_type
                               : !query.type.empty()                    ? query.type
                               : !query.types.empty()                   ? query.types.front()
                                                                        : std::string("Resource");
            by_type[type];
          }
          for (const auto& [type, ids] : by_type) {
            if (inc.reverse && !inc.target_type.empty() && inc.target_type != type) continue;
            SqlQuery q = build_include_sql(tenant, inc, type, ids);
            auto s = statement(
                inc.reverse ? "revinclude" : "include",
                name + (inc.reverse ? ": the resources that refer to the " : ": what is referred to by the ") +
                    std::to_string(ids.size()) + " " + type + " match(es) of the first page",
                true, q);
            if (!s) return std::unexpected(s.error());
            auto pq = to_postgres(q);
            if (!pq) return std::unexpected(pq.error());
            auto rows = c.exec(pq->first, pq->second);
            if (!rows) return std::unexpected(pg::to_error(rows.error(), "explain"));
            s->rows = rows->rows();
            s->rows_method = "the rows the statement returns for these ids, counted by running it";
            plan.statements.push_back(std::move(*s));
          }
          if (inc.iterate)
            plan.notes.push_back(
                name +
                ": each further round runs the same statement for the resources the previous round added (at most " +
                std::to_string(options_.max_included) + " included per page)");
        }
      }
      plan.notes.push_back(
          "PostgreSQL plans by its statistics (ANALYZE, autovacuum): on small or new tables it reads whole tables "
          "(Seq Scan) where an index would serve a larger one");
      return plan;
    });
  }

  // _include and _revinclude (collect_includes), each on the search's connection.
  Result<void> include_into(pg::Connection& c, TenantId tenant, const SearchQuery& query, SearchPage& page) {
    return collect_includes(
        query, options_.max_included, page,
        [&](const Include& inc, const std::string& type,
            const std::vector<std::string>& ids) -> Result<std::vector<std::pair<std::string, std::string>>> {
          auto sql = to_postgres(build_include_sql(tenant, inc, type, ids, query.access.get()));
          if (!sql) return std::unexpected(sql.error());
          auto rows = c.run_cached(sql->first, sql->second);  // type, id
          if (!rows) return std::unexpected(pg::to_error(rows.error(), "search"));
          std::vector<std::pair<std::string, std::string>> out;
          for (int i = 0; i < rows->rows(); ++i) out.emplace_back(rows->text(i, 0), rows->text(i, 1));
          return out;
        },
        [&](const std::string& t, const std::string& id) -> Result<std::optional<VersionRecord>> {
          auto r = c.run("read_current", kReadCurrent, {Param(tenant), Param(t), Param(id)});
          if (!r) return std::unexpected(pg::to_error(r.error(), "search"));
          if (r->rows() == 0) return std::optional<VersionRecord>{};
          auto rec = record_of(*r, 0, 0, t, id);
          if (!rec) return std::optional<VersionRecord>{};  // (a body that does not decode is left out)
          return std::optional<VersionRecord>{std::move(*rec)};
        });
  }

  Result<std::optional<bool>> token_revoked(TenantId tenant, const std::string& jti) override {
    return with_conn([&](pg::Connection& c) -> Result<std::optional<bool>> {
      auto r = c.run("token_revoked", "SELECT 1 FROM oauth_revoked_token WHERE tenant = $1 AND jti = $2",
                     {Param(tenant), Param(jti)});
      if (!r) return std::unexpected(pg::to_error(r.error(), "revocation"));
      return std::optional<bool>(r->rows() > 0);
    });
  }

  // Runs each(connection, i) for i in [0, n), in order, on two pooled connections at once (one, if the pool has
  // one): maintenance after a bulk load, a statement of which keeps one core of the database server busy.
  Result<void> on_two_connections(std::size_t n,
                                  const std::function<Result<void>(pg::Connection&, std::size_t)>& each) {
    std::atomic<std::size_t> next{0};
    auto run = [&]() -> Result<void> {
      std::size_t i = next++;  // (out here: when with_conn runs the lambda again on a new connection, from i on)
      return with_conn([&](pg::Connection& c) -> Result<void> {
        for (; i < n; i = next++)
          if (auto r = each(c, i); !r) return r;
        return {};
      });
    };
    auto other = std::async(std::launch::async, run);  // (with a pool of one, it finds nothing left to do)
    Result<void> mine = run();
    Result<void> theirs = other.get();
    return mine ? theirs : mine;
  }

  // ANALYZE of each table, the largest first, two at once (the 100 Synthea Bundles: 0.6 s for ANALYZE of all, one
  // after the other, at the end of an import of 4 s).
  Result<void> refresh_statistics() override {
    auto tables = with_conn([&](pg::Connection& c) -> Result<std::vector<std::string>> {
      auto r = c.exec(
          "SELECT quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
          "WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY pg_relation_size(c.oid) DESC, 1");
      if (!r) return std::unexpected(pg::to_error(r.error(), "ANALYZE: the tables"));
      std::vector<std::string> names;
      for (int i = 0; i < r->rows(); ++i) names.emplace_back(r->view(i, 0));
      return names;
    });
    if (!tables) return std::unexpected(tables.error());
    return on_two_connections(tables->size(), [&](pg::Connection& c, std::size_t i) -> Result<void> {
      if (auto r = c.exec("ANALYZE " + (*tables)[i]); !r)
        return std::unexpected(pg::to_error(r.error(), "ANALYZE " + (*tables)[i]));
      return {};
    });
  }

  // Bulk loading: see drop_value_indexes (postgres_schema.hpp). Searches and history meanwhile answer the same,
  // slower (reads by id and versions keep their indexes; a search, a conditional write's too, and a history scan the
  // tables instead); the import builds them after its last file, two at once (but those on rid: need_rid_indexes),
  // and a server that opens the database builds any still waiting.
  Result<bool> defer_search_indexes() override {
    auto dropped = with_conn([&](pg::Connection& c) { return drop_value_indexes(c); });
    if (dropped && *dropped) rid_indexes_waiting_ = true;
    return dropped;
  }
  Result<void> restore_search_indexes() override {
    auto waiting = with_conn([&](pg::Connection& c) { return deferred_indexes(c); });
    if (!waiting) return std::unexpected(waiting.error());
    return on_two_connections(waiting->size(), [&](pg::Connection& c, std::size_t i) {
      return build_deferred_index(c, (*waiting)[i].first, (*waiting)[i].second);
    });
  }

  // The writer's commits of a bulk load did not wait for the WAL to reach the disk (run_jobs). A commit that does
  // wait flushes the WAL up to its own record, so every commit before it too: one transaction that writes (the
  // clock's row, unchanged) and commits with synchronous_commit on (whatever the database's default).
  Result<void> sync() override {
    return with_conn([&](pg::Connection& c) -> Result<void> {
      for (const char* sql : {"BEGIN", "SET LOCAL synchronous_commit = on",
                              "UPDATE store_clock SET last_ms = last_ms WHERE id = 1", "COMMIT"})
        if (auto r = c.exec(sql); !r) {
          (void)c.exec("ROLLBACK");
          return std::unexpected(pg::to_error(r.error(), "sync"));
        }
      return {};
    });
  }

  Result<void> ping() override {
    return with_conn([&](pg::Connection& c) -> Result<void> {
      auto r = c.exec("SELECT 1");
      if (!r) return std::unexpected(pg::to_error(r.error(), "ping"));
      return {};
    });
  }

  // ---- writer side (writer thread only) --------------------------------------------------------------------

  // ---- inbound HL7 v2 messages (hl7_inbound; as on SQLite, raw and ack behind a format byte) ----------------
  static constexpr char kRawFormat = 'r';
  static constexpr const char* kInboundSelect =
      "SELECT id, sending_application, sending_facility, control_id, message_type, received, raw, status, ack, "
      "resources, error, updated, replays, replayed FROM hl7_inbound WHERE tenant = $1";

  Result<std::vector<InboundMessageRecord>> inbound_rows(const std::string& sql, const std::vector<Param>& params) {
    auto r = writer_->exec(sql, params);
    if (!r) return std::unexpected(pg::to_error(r.error(), "hl7 inbound"));
    std::vector<InboundMessageRecord> out;
    for (int row = 0; row < r->rows(); ++row) {
      auto blob = [&](int col) {
        std::string b(r->view(row, col));
        if (!b.empty() && b.front() == kRawFormat) b.erase(0, 1);
        return b;
      };
      InboundMessageRecord m;
      m.id = r->i64(row, 0);
      m.sending_application = r->text(row, 1);
      m.sending_facility = r->text(row, 2);
      m.control_id = r->text(row, 3);
      m.message_type = r->text(row, 4);
      m.received_ms = r->i64(row, 5);
      m.raw = blob(6);
      m.status = r->text(row, 7);
      m.ack = blob(8);
      m.resources = split_words(r->text(row, 9));
      m.error = r->text(row, 10);
      m.updated_ms = r->i64(row, 11);
      m.replays = r->i64(row, 12);
      m.replayed_ms = r->i64(row, 13);
      out.push_back(std::move(m));
    }
    return out;
  }

  Result<std::optional<InboundMessageRecord>> inbound_row(const std::string& sql, const std::vector<Param>& params) {
    auto rows = inbound_rows(sql, params);
    if (!rows) return std::unexpected(rows.error());
    if (rows->empty()) return std::optional<InboundMessageRecord>{};
    return std::optional<InboundMessageRecord>{std::move(rows->front())};
  }

  Result<std::vector<InboundMessageRecord>> txn_list_inbound_messages(TenantId tenant, const Hl7MessageQuery& query) {
    auto converted = to_postgres(hl7_message_list_sql(tenant, query, true, true));
    if (!converted) return std::unexpected(converted.error());
    return inbound_rows(converted->first, converted->second);
  }

  Result<std::optional<InboundMessageRecord>> txn_find_inbound_message(TenantId tenant, std::string_view app,
                                                                       std::string_view facility,
                                                                       std::string_view control_id) {
    return inbound_row(std::string(kInboundSelect) +
                           " AND sending_application = $2 AND sending_facility = $3 AND control_id = $4 "
                           "AND control_id <> ''",
                       {Param(tenant), Param(app), Param(facility), Param(control_id)});
  }

  Result<std::optional<InboundMessageRecord>> txn_inbound_message(TenantId tenant, std::int64_t id) {
    return inbound_row(std::string(kInboundSelect) + " AND id = $2", {Param(tenant), Param(id)});
  }

  Result<std::int64_t> txn_insert_inbound_message(TenantId tenant, const InboundMessageRecord& m) {
    auto r = writer_->exec(
        "INSERT INTO hl7_inbound (tenant, sending_application, sending_facility, control_id, message_type, received, "
        "raw, status, ack, resources, error, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
        "ON CONFLICT (tenant, sending_application, sending_facility, control_id) WHERE control_id <> '' "
        "DO NOTHING RETURNING id",
        {Param(tenant), Param(m.sending_application), Param(m.sending_facility), Param(m.control_id),
         Param(m.message_type), Param(m.received_ms), Param::bytes(kRawFormat + m.raw), Param(m.status),
         Param::bytes(kRawFormat + m.ack), Param(join_words(m.resources)), Param(m.error), Param(m.updated_ms)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "hl7 inbound"));
    if (r->rows() == 0)
      return fhir::fail(ErrorKind::kConflict, "duplicate",
                        "message " + m.control_id + " from " + m.sending_application + " is stored already");
    return r->i64(0, 0);
  }

  Result<void> txn_update_inbound_message(TenantId tenant, const InboundMessageRecord& m) {
    auto r = writer_->exec(
        "UPDATE hl7_inbound SET status = $1, ack = $2, resources = $3, error = $4, updated = $5, replays = $6, "
        "replayed = $7 WHERE tenant = $8 AND id = $9 RETURNING 1",
        {Param(m.status), Param::bytes(kRawFormat + m.ack), Param(join_words(m.resources)), Param(m.error),
         Param(m.updated_ms), Param(m.replays), Param(m.replayed_ms), Param(tenant), Param(m.id)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "hl7 inbound"));
    if (r->rows() == 0)
      return fhir::fail(ErrorKind::kNotFound, "not-found", "no inbound message " + std::to_string(m.id));
    return {};
  }

  // ---- outbound HL7 v2 messages (hl7_outbound; message and ack behind a format byte) ---------------------
  Result<std::int64_t> txn_insert_outbound_message(TenantId tenant, const OutboundMessageRecord& m) {
    auto r = writer_->exec(
        "INSERT INTO hl7_outbound (tenant, destination, message_type, control_id, message, source, status, attempts, "
        "last_error, ack, created, updated, next_attempt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
        "$13) RETURNING id",
        {Param(tenant), Param(m.destination), Param(m.message_type), Param(m.control_id),
         Param::bytes(kRawFormat + m.message), Param(m.source), Param(m.status), Param(m.attempts), Param(m.last_error),
         Param::bytes(kRawFormat + m.ack), Param(m.created_ms), Param(m.updated_ms), Param(m.next_attempt_ms)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "hl7 outbound"));
    return r->i64(0, 0);
  }

  Result<void> txn_update_outbound_message(TenantId tenant, const OutboundMessageRecord& m) {
    auto r = writer_->exec(
        "UPDATE hl7_outbound SET status = $1, attempts = $2, last_error = $3, ack = $4, updated = $5, "
        "next_attempt = $6 WHERE tenant = $7 AND id = $8 RETURNING 1",
        {Param(m.status), Param(m.attempts), Param(m.last_error), Param::bytes(kRawFormat + m.ack), Param(m.updated_ms),
         Param(m.next_attempt_ms), Param(tenant), Param(m.id)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "hl7 outbound"));
    if (r->rows() == 0)
      return fhir::fail(ErrorKind::kNotFound, "not-found", "no outbound message " + std::to_string(m.id));
    return {};
  }

  Result<std::vector<OutboundMessageRecord>> txn_outbound_messages(TenantId tenant, const OutboundQuery& query) {
    std::string sql =
        "SELECT id, destination, message_type, control_id, message, source, status, attempts, last_error, ack, "
        "created, updated, next_attempt FROM hl7_outbound WHERE tenant = $1";
    std::vector<Param> params{Param(tenant)};
    if (!query.destination.empty()) {
      params.push_back(Param(query.destination));
      sql += " AND destination = $" + std::to_string(params.size());
    }
    if (!query.status.empty()) {
      params.push_back(Param(query.status));
      sql += " AND status = $" + std::to_string(params.size());
    }
    sql += " ORDER BY id";
    if (query.limit > 0) {
      params.push_back(Param(static_cast<std::int64_t>(query.limit)));
      sql += " LIMIT $" + std::to_string(params.size());
    }
    return outbound_rows(sql, params);
  }

  Result<std::optional<OutboundMessageRecord>> txn_outbound_message(TenantId tenant, std::int64_t id) {
    auto rows = outbound_rows(
        "SELECT id, destination, message_type, control_id, message, source, status, attempts, last_error, ack, "
        "created, updated, next_attempt FROM hl7_outbound WHERE tenant = $1 AND id = $2",
        {Param(tenant), Param(id)});
    if (!rows) return std::unexpected(rows.error());
    if (rows->empty()) return std::optional<OutboundMessageRecord>{};
    return std::optional<OutboundMessageRecord>{std::move(rows->front())};
  }

  Result<std::vector<OutboundMessageRecord>> txn_list_outbound_messages(TenantId tenant, const Hl7MessageQuery& query) {
    auto converted = to_postgres(hl7_message_list_sql(tenant, query, false, true));
    if (!converted) return std::unexpected(converted.error());
    return outbound_rows(converted->first, converted->second);
  }

  // The rows of a query over hl7_outbound's columns (as in txn_outbound_messages).
  Result<std::vector<OutboundMessageRecord>> outbound_rows(const std::string& sql, const std::vector<Param>& params) {
    auto r = writer_->exec(sql, params);
    if (!r) return std::unexpected(pg::to_error(r.error(), "hl7 outbound"));
    std::vector<OutboundMessageRecord> out;
    for (int row = 0; row < r->rows(); ++row) {
      auto blob = [&](int col) {
        std::string b(r->view(row, col));
        if (!b.empty() && b.front() == kRawFormat) b.erase(0, 1);
        return b;
      };
      OutboundMessageRecord m;
      m.id = r->i64(row, 0);
      m.destination = r->text(row, 1);
      m.message_type = r->text(row, 2);
      m.control_id = r->text(row, 3);
      m.message = blob(4);
      m.source = r->text(row, 5);
      m.status = r->text(row, 6);
      m.attempts = r->i64(row, 7);
      m.last_error = r->text(row, 8);
      m.ack = blob(9);
      m.created_ms = r->i64(row, 10);
      m.updated_ms = r->i64(row, 11);
      m.next_attempt_ms = r->i64(row, 12);
      out.push_back(std::move(m));
    }
    return out;
  }

  OAuthTables* txn_oauth_tables() {
    if (!oauth_) oauth_ = std::make_unique<PgOAuthTables>(*writer_);  // (on the writer thread only)
    return oauth_.get();
  }

  UserRows* txn_users() {
    if (!users_) users_ = std::make_unique<PgUserRows>(*writer_);  // (on the writer thread only)
    return users_.get();
  }

  // The current version with its body, on the writer's connection (inside the job's transaction).
  Result<std::optional<VersionRecord>> txn_current_record(TenantId tenant, std::string_view type, std::string_view id) {
    if (auto f = flush_versions(); !f) return std::unexpected(f.error());
    auto r = writer_->run("current_record", kReadCurrent, {Param(tenant), Param(type), Param(id)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "write"));
    if (r->rows() == 0) return std::optional<VersionRecord>{};
    auto rec = record_of(*r, 0, 0, std::string(type), std::string(id));
    if (!rec) return std::unexpected(rec.error());
    return std::optional<VersionRecord>{std::move(*rec)};
  }

  Result<std::optional<CurrentInfo>> txn_current(TenantId tenant, std::string_view type, std::string_view id) {
    if (auto f = flush_versions(); !f) return std::unexpected(f.error());
    auto r = writer_->run("current",
                          "SELECT version, last_updated, deleted FROM resource "
                          "WHERE tenant = $1 AND type = $2 AND id = $3",
                          {Param(tenant), Param(type), Param(id)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "write"));
    if (r->rows() == 0) return std::optional<CurrentInfo>{};
    return std::optional<CurrentInfo>{CurrentInfo{r->i64(0, 0), r->i64(0, 1), r->i64(0, 2) != 0}};
  }

  // A new resource (version 1): its row and version wait in pending_ with its index rows, for the end of the job
  // group or a statement that reads them (one round trip for the whole group). Any other version: the resource row
  // and the new version in one statement (one round trip), the index rows waiting in pending_. rid and seq come
  // from the writer's own counters (see VersionRows).
  Result<std::int64_t> txn_append(TenantId tenant, const VersionRecord& rec, const IndexValues* index) {
    if (rec.version == 1 && !rec.deleted) {
      const std::int64_t rid = next_rid_++, seq = next_seq_++;
      pending_.add_version(rid, seq, tenant, rec);
      if (index != nullptr) pending_.add(rid, tenant, rec.type, *index, /*patient_tokens=*/true);
      return seq;
    }
    if (auto f = flush_versions(); !f) return std::unexpected(f.error());  // (the resource may be one of them)
    if (auto built = need_rid_indexes(); !built) return std::unexpected(built.error());
    Param body = rec.deleted ? Param::null() : Param::bytes(kBodyFormatJson + rec.body);
    const std::int64_t seq = next_seq_++;
    auto ins = writer_->run(
        "append",
        "WITH up AS (INSERT INTO resource(rid, tenant, type, id, version, last_updated, deleted) "
        "OVERRIDING SYSTEM VALUE VALUES ($9, $1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, type, id) DO UPDATE SET "
        "version = excluded.version, last_updated = excluded.last_updated, deleted = excluded.deleted RETURNING rid) "
        "INSERT INTO resource_version(seq, rid, tenant, type, id, version, last_updated, deleted, method, body) "
        "OVERRIDING SYSTEM VALUE SELECT $10, up.rid, $1, $2, $3, $4, $5, $6, $7, $8 FROM up RETURNING rid",
        {Param(tenant), Param(rec.type), Param(rec.id), Param(rec.version), Param(rec.last_updated_ms),
         Param(rec.deleted ? 1 : 0), Param(static_cast<std::int64_t>(rec.method)), std::move(body), Param(next_rid_),
         Param(seq)});
    if (!ins) return std::unexpected(pg::to_error(ins.error(), "write"));
    const std::int64_t rid = ins->i64(0, 0);
    if (rid == next_rid_) ++next_rid_;  // (a new row took it; an existing one kept its own)
    // The index describes the current version only: the previous version's rows go, the new ones come.
    if (rec.version > 1 && pending_.has(rid))  // (written earlier in this group: its rows must be there first)
      if (auto f = flush_index(); !f) return std::unexpected(f.error());
    if (rec.deleted) {
      static const std::string aside = set_aside_index_sql();
      if (auto d = writer_->run("set_aside_index", aside.c_str(), {Param(rid), Param(set_aside_tenant(tenant))}); !d)
        return std::unexpected(pg::to_error(d.error(), "write"));
    } else if (rec.version > 1) {
      static const std::string del = delete_index_sql(false);
      if (auto d = writer_->run("delete_index", del.c_str(), {Param(rid)}); !d)
        return std::unexpected(pg::to_error(d.error(), "write"));
    }
    if (index != nullptr && !rec.deleted) pending_.add(rid, tenant, rec.type, *index, /*patient_tokens=*/true);
    return seq;
  }

  // Bulk loading: the search tables' indexes on rid wait with the others (drop_value_indexes), as the rows of new
  // resources never need them. The first write of this process that finds rows by rid (a new version or a deletion
  // replaces the previous version's rows; a reindex) builds them first, in its transaction: otherwise each such
  // write would read the tables whole. (Another process's writes meanwhile do read them whole.)
  static bool on_rid(const std::string& create_index_sql) { return create_index_sql.ends_with(" (rid)"); }
  Result<void> need_rid_indexes() {
    if (!rid_indexes_waiting_) return {};
    auto waiting = deferred_indexes(*writer_);
    if (!waiting) return std::unexpected(waiting.error());
    for (const auto& [name, sql] : *waiting)
      if (on_rid(sql))
        if (auto built = build_deferred_index(*writer_, name, sql); !built) return built;
    rid_indexes_built_ = true;  // (they wait no more once the transaction commits)
    return {};
  }

  // Writes the new resources and the index rows waiting in pending_ (one statement for all of them). `on_conflict`:
  // skip index rows that are there already (a reindex of some parameters); else they are the rows of new versions,
  // none there yet.
  Result<void> flush_index(bool on_conflict = false) {
    if (pending_.empty()) return {};
    auto params = pending_.take();
    auto r = on_conflict ? writer_->run("insert_index_skip", pending_.sql(true).c_str(), params)
                         : writer_->run("insert_index", pending_.sql(false).c_str(), params);
    if (!r) return std::unexpected(pg::to_error(r.error(), "write"));
    return {};
  }

  // Writes the waiting new resources (with every waiting index row) before a statement that reads resource rows.
  Result<void> flush_versions() {
    if (!pending_.has_versions()) return {};
    return flush_index();
  }

  Result<std::vector<std::pair<std::string, std::string>>> txn_search_ids(TenantId tenant, const SearchQuery& query,
                                                                          std::size_t limit) {
    SearchQuery plain = query;
    plain.sort.clear();
    plain.includes.clear();
    plain.cursor.reset();
    auto built = build_search_sql(tenant, plain, std::nullopt, limit, false);
    if (!built) return std::unexpected(built.error());
    auto sql = to_postgres(*built);
    if (!sql) return std::unexpected(sql.error());
    if (auto f = flush_index(); !f) return std::unexpected(f.error());  // (this transaction's writes count)
    auto r = writer_->run_cached(sql->first, sql->second);
    if (!r) return std::unexpected(pg::to_error(r.error(), "search"));
    std::vector<std::pair<std::string, std::string>> out;
    for (int i = 0; i < r->rows(); ++i) out.emplace_back(r->text(i, 2), r->text(i, 1));  // rid, id, type
    return out;
  }

  std::int64_t txn_now_ms() {
    clock_ms_ = std::max(clock_ms_, wall_ms());
    return clock_ms_;
  }

  static std::string targets_where(TenantId tenant, const std::vector<std::string>& types, std::int64_t after_rid,
                                   std::int64_t max_rid, std::vector<Param>& params) {
    params = {Param(tenant), Param(after_rid), Param(max_rid)};
    std::string sql = " WHERE r.tenant = $1 AND r.deleted = 0 AND r.rid > $2 AND r.rid <= $3";
    if (!types.empty()) {
      params.emplace_back(array_of(types));
      sql += " AND r.type = ANY($4::text[])";
    }
    return sql;
  }

  Result<IndexExtent> txn_index_extent(TenantId tenant, const std::vector<std::string>& types, std::int64_t after_rid,
                                       std::int64_t max_rid) {
    if (auto f = flush_versions(); !f) return std::unexpected(f.error());
    std::vector<Param> params;
    std::string sql = "SELECT COALESCE(MAX(r.rid), 0), COUNT(*) FROM resource r" +
                      targets_where(tenant, types, after_rid, max_rid, params);
    auto r = writer_->exec(sql, params);
    if (!r) return std::unexpected(pg::to_error(r.error(), "reindex"));
    return IndexExtent{r->i64(0, 0), r->i64(0, 1)};
  }

  Result<std::vector<IndexTarget>> txn_index_targets(TenantId tenant, const std::vector<std::string>& types,
                                                     std::int64_t after_rid, std::int64_t max_rid, std::size_t limit) {
    if (auto f = flush_versions(); !f) return std::unexpected(f.error());
    std::vector<Param> params;
    std::string sql =
        "SELECT r.rid, r.type, r.id, v.version, v.last_updated, v.body, v.seq FROM resource r "
        "JOIN resource_version v ON v.rid = r.rid AND v.version = r.version" +
        targets_where(tenant, types, after_rid, max_rid, params);
    params.emplace_back(static_cast<std::int64_t>(limit));
    sql += " ORDER BY r.rid LIMIT $" + std::to_string(params.size());
    auto r = writer_->exec(sql, params);
    if (!r) return std::unexpected(pg::to_error(r.error(), "reindex"));
    std::vector<IndexTarget> out;
    for (int i = 0; i < r->rows(); ++i) {
      IndexTarget t;
      t.rid = r->i64(i, 0);
      t.record.type = r->text(i, 1);
      t.record.id = r->text(i, 2);
      t.record.version = r->i64(i, 3);
      t.record.last_updated_ms = r->i64(i, 4);
      auto body = decode_body(r->view(i, 5));
      if (!body) return std::unexpected(body.error());
      t.record.body = std::move(*body);
      t.record.seq = r->i64(i, 6);
      out.push_back(std::move(t));
    }
    return out;
  }

  Result<void> txn_replace_index(TenantId tenant, std::int64_t rid, std::string_view type,
                                 const std::vector<std::string>& params, const IndexValues& values) {
    if (auto built = need_rid_indexes(); !built) return built;
    if (auto f = flush_index(); !f) return std::unexpected(f.error());
    static const std::string all = delete_index_sql(false), some = delete_index_sql(true);
    auto d = params.empty() ? writer_->run("delete_index", all.c_str(), {Param(rid)})
                            : writer_->run("delete_index_params", some.c_str(), {Param(rid), Param(array_of(params))});
    if (!d) return std::unexpected(pg::to_error(d.error(), "reindex"));
    // Every parameter's rows: idx_patient_token's are made with them. Some parameters': filled back from the
    // tables, which hold the other parameters' rows.
    pending_.add(rid, tenant, type, values, /*patient_tokens=*/params.empty());
    if (auto f = flush_index(/*on_conflict=*/true); !f) return std::unexpected(f.error());
    if (!params.empty())
      if (auto r = writer_->run("fill_patient_token", kPatientTokenFill.c_str(), {Param(rid)}); !r)
        return std::unexpected(pg::to_error(r.error(), "reindex"));
    return {};
  }

  Result<void> txn_save_reindex_job(TenantId tenant, const ReindexJobRecord& job) {
    auto r = writer_->exec(
        "INSERT INTO reindex_job VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
        "ON CONFLICT (tenant, id) DO UPDATE SET types = excluded.types, params = excluded.params, "
        "search_parameter = excluded.search_parameter, state = excluded.state, processed = excluded.processed, "
        "total = excluded.total, last_rid = excluded.last_rid, max_rid = excluded.max_rid, "
        "message = excluded.message, created = excluded.created, updated = excluded.updated",
        {Param(tenant), Param(job.id), Param(join_words(job.types)), Param(join_words(job.params)),
         Param(job.search_parameter), Param(job.state), Param(job.processed), Param(job.total), Param(job.last_rid),
         Param(job.max_rid), Param(job.message), Param(job.created_ms), Param(job.updated_ms)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "reindex"));
    return {};
  }

  Result<std::vector<ReindexJobRecord>> txn_reindex_jobs(TenantId tenant) {
    auto r = writer_->exec(
        "SELECT id, types, params, search_parameter, state, processed, total, last_rid, max_rid, message, created, "
        "updated FROM reindex_job WHERE tenant = $1 ORDER BY id",
        {Param(tenant)});
    if (!r) return std::unexpected(pg::to_error(r.error(), "reindex"));
    std::vector<ReindexJobRecord> out;
    for (int i = 0; i < r->rows(); ++i) {
      ReindexJobRecord j;
      j.id = r->i64(i, 0);
      j.types = split_words(r->view(i, 1));
      j.params = split_words(r->view(i, 2));
      j.search_parameter = r->text(i, 3);
      j.state = r->text(i, 4);
      j.processed = r->i64(i, 5);
      j.total = r->i64(i, 6);
      j.last_rid = r->i64(i, 7);
      j.max_rid = r->i64(i, 8);
      j.message = r->text(i, 9);
      j.created_ms = r->i64(i, 10);
      j.updated_ms = r->i64(i, 11);
      out.push_back(std::move(j));
    }
    return out;
  }

 private:
  static std::string history_where(TenantId tenant, const HistoryQuery& q, std::vector<Param>& params) {
    auto next = [&](Param p) {
      params.push_back(std::move(p));
      return "$" + std::to_string(params.size());
    };
    std::string w = "v.tenant = " + next(Param(tenant));
    if (!q.type.empty()) w += " AND v.type = " + next(Param(q.type));
    if (!q.id.empty()) w += " AND v.id = " + next(Param(q.id));
    if (q.since_ms) w += " AND v.last_updated >= " + next(Param(*q.since_ms));
    if (q.at_low_ms && q.at_high_ms) {
      w += " AND v.last_updated < " + next(Param(*q.at_high_ms));
      w += " AND NOT EXISTS (SELECT 1 FROM resource_version n WHERE n.rid = v.rid AND n.version = v.version + 1 "
           "AND n.last_updated <= " +
           next(Param(*q.at_low_ms)) + ")";
    }
    if (q.before_seq) w += " AND v.seq < " + next(Param(*q.before_seq));
    if (q.access) {  // only the versions of resources whose current version is visible
      auto cond = build_access_condition(tenant, *q.access, q.type);
      if (!cond) return w + " AND 1 = 0";
      auto pg = to_postgres(*cond);
      if (!pg) return w + " AND 1 = 0";
      // to_postgres numbers from $1: shift past the parameters already there.
      const std::size_t offset = params.size();
      std::string shifted;
      for (std::size_t i = 0; i < pg->first.size(); ++i) {
        if (pg->first[i] == '$') {
          std::size_t j = i + 1;
          while (j < pg->first.size() && std::isdigit(static_cast<unsigned char>(pg->first[j]))) ++j;
          shifted += "$" + std::to_string(std::stoul(pg->first.substr(i + 1, j - i - 1)) + offset);
          i = j - 1;
        } else {
          shifted += pg->first[i];
        }
      }
      w += " AND " + shifted;
      params.insert(params.end(), pg->second.begin(), pg->second.end());
    }
    return w;
  }

  // Runs f on a connection of the primary's pool (reconnecting a broken one first). A lost connection is
  // kUnavailable.
  template <class F>
  auto with_conn(F&& f) -> decltype(f(std::declval<pg::Connection&>())) {
    return with_conn_of(primary_, std::forward<F>(f));
  }
  // The same for a read that may be a little behind (StoreOptions::read_url): on the read pool when there is one.
  template <class F>
  auto with_read_conn(F&& f) -> decltype(f(std::declval<pg::Connection&>())) {
    return with_conn_of(options_.read_url.empty() ? primary_ : stale_, std::forward<F>(f));
  }
  template <class F>
  auto with_conn_of(Pool& pool, F&& f) -> decltype(f(std::declval<pg::Connection&>())) {
    pg::Connection* c = nullptr;
    {
      std::unique_lock lock(pool.mutex);
      pool.cv.wait(lock, [&] { return !pool.free.empty(); });
      c = pool.free.back();
      pool.free.pop_back();
    }
    struct Release {
      Pool& pool;
      pg::Connection* c;
      ~Release() {
        {
          std::lock_guard lock(pool.mutex);
          pool.free.push_back(c);
        }
        pool.cv.notify_one();
      }
    } release{pool, c};
    if (!c->ok() && !c->reset())
      return fhir::fail(ErrorKind::kUnavailable, "transient",
                        std::string("the database cannot be reached: ") + PQerrorMessage(c->raw()));
    auto result = f(*c);
    // A connection that died while idle (the database restarted, or dropped it) is only found out on use: reads
    // are idempotent, so reconnect and try once more.
    if (!result && !c->ok() && c->reset()) return f(*c);
    return result;
  }

  void read_loop() {
    std::vector<ReadJob> batch;
    std::vector<Result<VersionRecord>> results;
    for (;;) {
      if (!take_batch(reads_mutex_, reads_cv_, reads_, reads_stopping_, kMaxReadBatch, batch)) return;
      read_batch(batch, results);
      deliver(batch, results);
    }
  }

  // The current versions of the batch's resources, in its order (kNotFound for those that never existed).
  void read_batch(const std::vector<ReadJob>& batch, std::vector<Result<VersionRecord>>& results) {
    if (batch.size() == 1) {
      results.push_back(read(batch[0].tenant, batch[0].type, batch[0].id));
      return;
    }
    std::string tenants = "{", types = "{", ids = "{";
    for (const ReadJob& j : batch) {
      append_element(tenants, std::to_string(j.tenant));
      append_element(types, j.type);
      append_element(ids, j.id);
    }
    tenants += '}', types += '}', ids += '}';
    auto rows = with_read_conn([&](pg::Connection& c) -> Result<pg::Result> {
      auto r = c.run("read_current_batch", kReadCurrentBatch, {Param(tenants), Param(types), Param(ids)});
      if (!r) return std::unexpected(pg::to_error(r.error(), "read"));
      return std::move(*r);
    });
    if (!rows) {
      results.assign(batch.size(), std::unexpected(rows.error()));
      return;
    }
    std::vector<int> row_of(batch.size(), -1);
    for (int row = 0; row < rows->rows(); ++row) {
      std::int64_t ord = rows->i64(row, 0);
      if (ord >= 1 && static_cast<std::size_t>(ord) <= batch.size()) row_of[ord - 1] = row;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const ReadJob& j = batch[i];
      if (row_of[i] < 0)
        results.push_back(
            fhir::fail(ErrorKind::kNotFound, "not-found", "Resource " + j.type + "/" + j.id + " is not known"));
      else
        results.push_back(record_of(*rows, row_of[i], 1, j.type, j.id));
    }
  }

  void writer_loop() {
    std::vector<WriteJob> batch;
    std::vector<Result<void>> results;
    for (;;) {
      if (!take_batch(queue_mutex_, queue_cv_, queue_, stopping_, options_.max_group, batch)) return;
      if (!run_jobs(batch, results, /*savepoints=*/false) && batch.size() > 1) {
        results.clear();
        run_jobs(batch, results, /*savepoints=*/true);
      }
      deliver(batch, results);
    }
  }

  // One attempt at a group in one transaction, as SqliteStore::run_jobs: without savepoints first (returns false
  // when a job failed and everything was rolled back), then with a savepoint per job.
  bool run_jobs(std::vector<WriteJob>& batch, std::vector<Result<void>>& results, bool savepoints) {
    auto fail_all = [&](const fhir::Error& e) {
      results.clear();
      for (std::size_t i = 0; i < batch.size(); ++i) results.push_back(std::unexpected(e));
      return true;
    };
    if (!writer_->ok() && !writer_->reset())
      return fail_all(
          fhir::Error::make(ErrorKind::kUnavailable, "transient",
                            std::string("the database cannot be reached: ") + PQerrorMessage(writer_->raw())));
    if (auto b = writer_->exec("BEGIN"); !b) {
      // The connection died while idle (found out only now): reconnect once, nothing has run yet.
      if (writer_->ok() || !writer_->reset()) return fail_all(pg::to_error(b.error(), "write"));
      if (auto again = writer_->exec("BEGIN"); !again) return fail_all(pg::to_error(again.error(), "write"));
    }
    if (options_.bulk_load)  // (sync() waits for these commits)
      if (auto off = writer_->exec("SET LOCAL synchronous_commit = off"); !off) {
        (void)writer_->exec("ROLLBACK");
        return fail_all(pg::to_error(off.error(), "write"));
      }
    // Waits for the writers of other processes, then reads the store's clock.
    auto clock = writer_->run("lock_clock", lock_clock_sql_.c_str(), {});
    if (!clock || clock->rows() != 1) {
      fhir::Error e = clock ? fhir::Error::make(ErrorKind::kInternal, "exception", "store_clock has no row")
                            : pg::to_error(clock.error(), "write");
      (void)writer_->exec("ROLLBACK");
      return fail_all(e);
    }
    const std::int64_t stored_clock = clock->i64(0, 0);
    clock_ms_ = std::max(committed_ms_, stored_clock);
    const std::int64_t first_rid = next_rid_ = clock->i64(0, 1), first_seq = next_seq_ = clock->i64(0, 2);
    // A job or the group's rows (sent ahead, or in the last flush) failed: everything is rolled back, and every job
    // run so far is answered with that failure (a group of several runs again, job by job).
    auto abandon = [&](const fhir::Error& e) {
      (void)writer_->exec("ROLLBACK");
      pending_.clear();
      rid_indexes_built_ = false;
      for (auto& r : results) r = std::unexpected(e);
      return false;
    };
    PostgresTransaction txn(*this);
    for (WriteJob& job : batch) {
      Result<void> r;
      if (!savepoints) {
        try {
          r = job.work(txn);
        } catch (const std::exception& e) {
          r = fhir::fail(ErrorKind::kInternal, "exception", e.what());
        }
        if (!r) {
          const fhir::Error e = r.error();
          results.push_back(std::move(r));
          return abandon(e);
        }
        results.push_back(std::move(r));
        // Enough rows waiting (a Bundle's): PostgreSQL writes them while the next jobs run here. Every later
        // statement on the connection waits for them first; a failure among them fails the group's next
        // statement, at the latest the last flush, and the group runs again job by job.
        if (!writer_->busy() && pending_.resources() >= kSendRows) {
          auto params = pending_.take();
          if (auto sent = writer_->send("insert_index", pending_.sql(false).c_str(), params); !sent)
            return abandon(pg::to_error(sent.error(), "write"));
        }
        continue;
      }
      if (auto s = writer_->exec("SAVEPOINT job"); !s) {
        results.push_back(std::unexpected(pg::to_error(s.error(), "write")));
        continue;
      }
      try {
        r = job.work(txn);
      } catch (const std::exception& e) {
        r = fhir::fail(ErrorKind::kInternal, "exception", e.what());
      }
      if (r) r = flush_index();  // (inside the job's savepoint)
      pending_.clear();          // (written, or rolled back with the job)
      if (!r) (void)writer_->exec("ROLLBACK TO SAVEPOINT job");
      if (auto s = writer_->exec("RELEASE SAVEPOINT job"); !s && r)
        r = std::unexpected(pg::to_error(s.error(), "write"));
      results.push_back(std::move(r));
    }
    if (!savepoints) {
      // The rows sent ahead, then the rest: if any of them failed, each job on its own.
      Result<void> f;
      if (auto w = writer_->wait(); !w)
        f = std::unexpected(pg::to_error(w.error(), "write"));
      else
        f = flush_index();
      if (!f) return abandon(f.error());
    }
    std::optional<pg::Failure> failed;
    if (clock_ms_ > stored_clock || next_rid_ > first_rid || next_seq_ > first_seq) {
      // (A sequence is set only when this transaction took from it: setval cannot go below 1.)
      if (auto u = writer_->run("advance_clock", advance_clock_sql_.c_str(),
                                {Param(clock_ms_), Param(next_rid_ > first_rid ? next_rid_ - 1 : 0),
                                 Param(next_seq_ > first_seq ? next_seq_ - 1 : 0)});
          !u)
        failed = u.error();
    }
    if (!failed) {
      if (auto c = writer_->exec("COMMIT"); !c) failed = c.error();
    }
    if (failed) {
      (void)writer_->exec("ROLLBACK");
      rid_indexes_built_ = false;
      for (auto& r : results)
        if (r) r = std::unexpected(pg::to_error(*failed, "commit"));
      return true;
    }
    committed_ms_ = clock_ms_;
    if (std::exchange(rid_indexes_built_, false)) {  // (unless a job that built them was rolled back to its savepoint)
      auto waiting = deferred_indexes(*writer_);
      rid_indexes_waiting_ = !waiting || std::ranges::any_of(*waiting, [](const auto& w) { return on_rid(w.second); });
    }
    return true;
  }

  std::string url_;
  StoreOptions options_;

  std::unique_ptr<pg::Connection> writer_;
  std::unique_ptr<PgUserRows> users_;               // on writer_
  std::unique_ptr<PgOAuthTables> oauth_;            // on writer_
  IndexBatch pending_;                              // index rows of the writer's transaction, not yet written
  std::int64_t clock_ms_ = 0;                       // the clock within the writer's transaction
  std::int64_t next_rid_ = 0, next_seq_ = 0;        // the next rid and seq the writer's transaction gives
  std::string lock_clock_sql_, advance_clock_sql_;  // (prepare_clock_statements)
  std::int64_t committed_ms_ = 0;                   // the clock as of this process's last commit
  std::atomic<bool> rid_indexes_waiting_{false};    // (need_rid_indexes)
  bool rid_indexes_built_ = false;                  // in the writer's transaction

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<WriteJob> queue_;
  bool stopping_ = false;
  std::thread writer_thread_;

  static constexpr std::size_t kSendRows = 64;  // resources whose rows a group sends ahead (run_jobs)
  static constexpr std::size_t kMaxReadBatch = 256;
  std::mutex reads_mutex_;
  std::condition_variable reads_cv_;
  std::deque<ReadJob> reads_;
  bool reads_stopping_ = false;
  std::vector<std::thread> read_threads_;

  Pool primary_;  // the database of url_ (the primary)
  Pool stale_;    // options_.read_url's, when set

  friend class PostgresTransaction;
  friend class ForwardingTransaction<PostgresStore>;
};

Result<UserRows*> PostgresTransaction::users() {
  return store_.txn_users();
}

}  // namespace

Result<std::unique_ptr<Store>> open_postgres_store(std::string_view url, const StoreOptions& options) {
  auto store = std::make_unique<PostgresStore>(std::string(url), options);
  if (auto opened = store->open(); !opened) return std::unexpected(opened.error());
  return store;
}

}  // namespace caduceus::resources
