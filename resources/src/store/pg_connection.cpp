#include "pg_connection.hpp"

#include <endian.h>

#include <algorithm>
#include <cstring>

namespace caduceus::resources::pg {

std::int64_t Result::i64(int row, int col) const {
  const char* p = PQgetvalue(r_.get(), row, col);
  switch (PQgetlength(r_.get(), row, col)) {
    case 8: {
      std::uint64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<std::int64_t>(be64toh(v));
    }
    case 4: {
      std::uint32_t v;
      std::memcpy(&v, p, 4);
      return static_cast<std::int32_t>(be32toh(v));
    }
    case 2: {
      std::uint16_t v;
      std::memcpy(&v, p, 2);
      return static_cast<std::int16_t>(be16toh(v));
    }
    case 1: return static_cast<unsigned char>(*p);  // bool
    default: return 0;                              // NULL
  }
}

double Result::f64(int row, int col) const {
  if (PQgetlength(r_.get(), row, col) != 8) return 0;
  std::uint64_t v;
  std::memcpy(&v, PQgetvalue(r_.get(), row, col), 8);
  v = be64toh(v);
  double d;
  std::memcpy(&d, &v, 8);
  return d;
}

std::string_view Result::view(int row, int col) const {
  return std::string_view(PQgetvalue(r_.get(), row, col), static_cast<std::size_t>(PQgetlength(r_.get(), row, col)));
}

std::string Result::text(int row, int col) const {
  return std::string(view(row, col));
}

namespace {

Failure failure_of(PGconn* conn, const PGresult* r) {
  Failure f;
  const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  f.sqlstate = state != nullptr ? state : "";
  f.message = r != nullptr && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(conn);
  while (!f.message.empty() && (f.message.back() == '\n' || f.message.back() == ' ')) f.message.pop_back();
  f.connection_lost = PQstatus(conn) != CONNECTION_OK || f.sqlstate.starts_with("08") ||
                      f.sqlstate.starts_with("57P");  // admin shutdown, crash shutdown, cannot connect now
  if (f.connection_lost && f.sqlstate.empty()) f.sqlstate = "08006";
  return f;
}

}  // namespace

std::expected<std::unique_ptr<Connection>, Failure> Connection::open(const std::string& url) {
  // The URL's own settings override these defaults (expand_dbname: later keywords win).
  const char* keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* values[] = {"5", "caduceus", url.c_str(), nullptr};
  PGconn* c = PQconnectdbParams(keywords, values, 1);
  if (c == nullptr) return std::unexpected(Failure{"08006", "out of memory", true});
  if (PQstatus(c) != CONNECTION_OK) {
    Failure f{"08006", PQerrorMessage(c), true};
    while (!f.message.empty() && f.message.back() == '\n') f.message.pop_back();
    PQfinish(c);
    return std::unexpected(std::move(f));
  }
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);  // ("relation ... already exists, skipping")
  return std::unique_ptr<Connection>(new Connection(c));
}

Connection::~Connection() {
  PQfinish(conn_);
}

bool Connection::reset() {
  in_flight_ = false;
  prepared_.clear();
  cached_.clear();
  PQreset(conn_);
  return ok();
}

std::expected<Result, Failure> Connection::finish(PGresult* r) {
  ExecStatusType st = r != nullptr ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Result(r);
  Failure f = failure_of(conn_, r);
  if (r != nullptr) PQclear(r);
  return std::unexpected(std::move(f));
}

std::expected<Result, Failure> Connection::exec(const std::string& sql) {
  // (A ROLLBACK runs whatever became of a statement sent: it is how the caller gives up after that failure.)
  if (auto w = wait(); !w && !sql.starts_with("ROLLBACK")) return std::unexpected(w.error());
  return finish(PQexec(conn_, sql.c_str()));
}

std::expected<void, Failure> Connection::wait() {
  if (!in_flight_) return {};
  in_flight_ = false;
  std::optional<Failure> failed;
  for (PGresult* r; (r = PQgetResult(conn_)) != nullptr;) {
    auto done = finish(r);  // (takes r)
    if (!done && !failed) failed = done.error();
  }
  if (failed) return std::unexpected(std::move(*failed));
  return {};
}

std::expected<void, Failure> Connection::prepare(const char* name, const char* sql, int params) {
  if (std::find(prepared_.begin(), prepared_.end(), name) != prepared_.end()) return {};
  auto prepared = finish(PQprepare(conn_, name, sql, params, nullptr));
  if (!prepared) return std::unexpected(prepared.error());
  prepared_.emplace_back(name);
  return {};
}

namespace {
struct Arrays {
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  explicit Arrays(const std::vector<Param>& params) {
    for (const Param& p : params) {
      values.push_back(p.value ? p.value->data() : nullptr);
      lengths.push_back(p.value ? static_cast<int>(p.value->size()) : 0);
      formats.push_back(p.binary ? 1 : 0);
    }
  }
};
}  // namespace

std::expected<Result, Failure> Connection::exec(const std::string& sql, const std::vector<Param>& params) {
  if (auto w = wait(); !w) return std::unexpected(w.error());
  Arrays a(params);
  return finish(PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr, a.values.data(),
                             a.lengths.data(), a.formats.data(), 1));
}

std::expected<Result, Failure> Connection::run(const char* name, const char* sql, const std::vector<Param>& params) {
  if (auto w = wait(); !w) return std::unexpected(w.error());
  if (auto p = prepare(name, sql, static_cast<int>(params.size())); !p) return std::unexpected(p.error());
  Arrays a(params);
  return finish(PQexecPrepared(conn_, name, static_cast<int>(params.size()), a.values.data(), a.lengths.data(),
                               a.formats.data(), 1));
}

std::expected<void, Failure> Connection::send(const char* name, const char* sql, const std::vector<Param>& params) {
  if (auto w = wait(); !w) return std::unexpected(w.error());
  if (auto p = prepare(name, sql, static_cast<int>(params.size())); !p) return std::unexpected(p.error());
  Arrays a(params);
  if (PQsendQueryPrepared(conn_, name, static_cast<int>(params.size()), a.values.data(), a.lengths.data(),
                          a.formats.data(), 1) != 1)
    return std::unexpected(failure_of(conn_, nullptr));
  in_flight_ = true;
  return {};
}

std::expected<Result, Failure> Connection::run_cached(const std::string& sql, const std::vector<Param>& params) {
  if (auto w = wait(); !w) return std::unexpected(w.error());
  auto it = cached_.find(sql);
  if (it == cached_.end()) {
    if (cached_.size() >= kMaxCached) return exec(sql, params);
    std::string name = "c" + std::to_string(cached_.size());
    auto prepared = finish(PQprepare(conn_, name.c_str(), sql.c_str(), static_cast<int>(params.size()), nullptr));
    if (!prepared) return std::unexpected(prepared.error());
    it = cached_.emplace(sql, std::move(name)).first;
  }
  Arrays a(params);
  return finish(PQexecPrepared(conn_, it->second.c_str(), static_cast<int>(params.size()), a.values.data(),
                               a.lengths.data(), a.formats.data(), 1));
}

fhir::Error to_error(const Failure& f, std::string_view what) {
  std::string msg = std::string(what) + ": " + (f.connection_lost ? "the database cannot be reached: " : "") +
                    f.message + (f.sqlstate.empty() ? "" : " (SQLSTATE " + f.sqlstate + ")");
  return fhir::Error::make(fhir::ErrorKind::kUnavailable, "transient", std::move(msg));
}

}  // namespace caduceus::resources::pg
