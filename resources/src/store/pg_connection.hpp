#pragma once

// A thin RAII layer over libpq for the PostgreSQL store: one connection, statements with parameters sent as
// text (bytea as binary), results in binary format, and errors turned into fhir::Error with the SQLSTATE kept.
#include <endian.h>
#include <libpq-fe.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::resources::pg {

// The type OIDs of the binary values the store sends (its array parameters' elements).
inline constexpr std::uint32_t kByteaOid = 17, kInt8Oid = 20, kTextOid = 25, kFloat8Oid = 701, kTsvectorOid = 3614;

// PostgreSQL's binary formats are big-endian: appends v's 2, 4 or 8 bytes so (Result reads them back).
inline void put_be16(std::string& out, std::uint16_t v) {
  v = htobe16(v);
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
inline void put_be32(std::string& out, std::uint32_t v) {
  v = htobe32(v);
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
inline void put_be64(std::string& out, std::uint64_t v) {
  v = htobe64(v);
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// One parameter of a statement: NULL, text, or binary (bytea).
struct Param {
  std::optional<std::string> value;
  bool binary = false;

  Param() = default;
  Param(std::int64_t v) : value(std::to_string(v)) {}
  Param(int v) : value(std::to_string(v)) {}
  Param(std::string v) : value(std::move(v)) {}
  Param(std::string_view v) : value(std::string(v)) {}
  Param(const char* v) : value(std::string(v)) {}
  static Param bytes(std::string v) {
    Param p(std::move(v));
    p.binary = true;
    return p;
  }
  static Param null() { return Param(); }
};

// A result (binary format): typed getters by row and column.
class Result {
 public:
  explicit Result(PGresult* r) : r_(r, &PQclear) {}
  int rows() const { return PQntuples(r_.get()); }
  bool null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  // The column's type OID (20 int8, 23 int4, 21 int2, 701 float8, 25 text, ...).
  unsigned type(int col) const { return PQftype(r_.get(), col); }
  // An integer column of any width (int2, int4, int8) or a bool.
  std::int64_t i64(int row, int col) const;
  double f64(int row, int col) const;
  // text, varchar or bytea: the bytes as they are.
  std::string text(int row, int col) const;
  std::string_view view(int row, int col) const;

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> r_;
};

// A statement failed: the server's SQLSTATE (or "08006" for a lost connection) and message.
struct Failure {
  std::string sqlstate;
  std::string message;
  bool connection_lost = false;
  // Serialization failure, deadlock: running the transaction again may succeed.
  bool retryable() const { return sqlstate == "40001" || sqlstate == "40P01"; }
};

class Connection {
 public:
  // Connects (libpq URI or key=value string). connect_timeout defaults to 5 seconds unless the URL sets it.
  static std::expected<std::unique_ptr<Connection>, Failure> open(const std::string& url);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }
  // Reconnects a broken connection (prepared statements are prepared again on use). Returns whether it is up.
  bool reset();
  PGconn* raw() { return conn_; }

  // Runs a statement (no parameters: the simple protocol, several statements allowed; results as text, so use
  // it for statements whose rows are not read).
  std::expected<Result, Failure> exec(const std::string& sql);
  std::expected<Result, Failure> exec(const std::string& sql, const std::vector<Param>& params);
  // Runs a named statement, preparing it with `sql` on first use on this connection.
  std::expected<Result, Failure> run(const char* name, const char* sql, const std::vector<Param>& params);
  // Runs `sql` (built at run time: a search), prepared on its first use on this connection under a name of its
  // own, so that the same text with other values is not parsed and planned again. At most kMaxCached texts are
  // kept per connection; beyond, statements run unprepared.
  std::expected<Result, Failure> run_cached(const std::string& sql, const std::vector<Param>& params);
  static constexpr std::size_t kMaxCached = 512;

  // Sends a named statement (prepared with `sql` on first use) without waiting for its result, so that the caller
  // can go on with other work while the server runs it. The connection is busy until wait(): every other call on it
  // waits first, and fails with the sent statement's failure if it failed (the transaction is aborted then), but
  // for a ROLLBACK, which runs.
  std::expected<void, Failure> send(const char* name, const char* sql, const std::vector<Param>& params);
  // The end of the statement sent (OK when none is out).
  std::expected<void, Failure> wait();
  bool busy() const { return in_flight_; }

 private:
  explicit Connection(PGconn* c) : conn_(c) {}
  std::expected<Result, Failure> finish(PGresult* r);
  std::expected<void, Failure> prepare(const char* name, const char* sql, int params);

  PGconn* conn_;
  bool in_flight_ = false;  // (send)
  std::vector<std::string> prepared_;
  std::unordered_map<std::string, std::string> cached_;  // SQL text -> statement name (run_cached)
};

// An error as the store reports it: kUnavailable for a lost connection or an unreachable server, else
// kUnavailable with code "transient" too (the caller cannot fix a database error), message included.
fhir::Error to_error(const Failure& f, std::string_view what);

}  // namespace caduceus::resources::pg
