#include "user_rows.hpp"

#include <soci/soci.h>

namespace caduceus::resources {
namespace {

using fhir::ErrorKind;
using fhir::Result;

constexpr const char* kColumns =
    "username, role, fhir_user, password_hash, must_change_password, disabled, totp_secret, totp_pending, "
    "totp_last_step, failed_count, next_attempt, locked_until, created, updated, last_sign_in";

fhir::Error db_error(const std::exception& e) {
  return fhir::Error::make(ErrorKind::kUnavailable, "transient", std::string("database error (users): ") + e.what());
}

UserRecord from_row(const soci::row& r) {
  UserRecord u;
  u.username = r.get<std::string>(0);
  u.role = r.get<std::string>(1);
  u.fhir_user = r.get<std::string>(2);
  u.password_hash = r.get<std::string>(3);
  u.must_change_password = r.get<int>(4) != 0;
  u.disabled = r.get<int>(5) != 0;
  u.totp_secret = r.get<std::string>(6);
  u.totp_pending = r.get<std::string>(7);
  auto integer = [&r](std::size_t i) -> std::int64_t {
    // SQLite hands back small integers as int, large ones as long long.
    if (r.get_properties(i).get_data_type() == soci::dt_integer) return r.get<int>(i);
    return r.get<long long>(i);
  };
  u.totp_last_step = integer(8);
  u.failed_count = integer(9);
  u.next_attempt_ms = integer(10);
  u.locked_until_ms = integer(11);
  u.created_ms = integer(12);
  u.updated_ms = integer(13);
  u.last_sign_in_ms = integer(14);
  return u;
}

class SociUserRows final : public UserRows {
 public:
  explicit SociUserRows(soci::session& sql) : sql_(sql) {}

  Result<std::optional<UserRecord>> find(TenantId tenant, std::string_view username) override {
    try {
      long long t = tenant;
      std::string name(username);
      soci::rowset<soci::row> rows =
          (sql_.prepare << "SELECT " << kColumns << " FROM users WHERE tenant = :t AND username = :u", soci::use(t),
           soci::use(name));
      for (const soci::row& r : rows) return std::optional<UserRecord>(from_row(r));
      return std::optional<UserRecord>();
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

  Result<void> insert(TenantId tenant, const UserRecord& u) override {
    try {
      if (auto existing = find(tenant, u.username); !existing)
        return std::unexpected(existing.error());
      else if (*existing)
        return fhir::fail(ErrorKind::kConflict, "duplicate", "the user '" + u.username + "' exists already");
      Bound b(tenant, u);
      sql_ << "INSERT INTO users (tenant, " << kColumns
           << ") VALUES (:t, :u, :r, :f, :p, :m, :d, :s, :sp, :ls, :fc, :na, :lu, :c, :up, :si)",
          soci::use(b.tenant), soci::use(b.u.username), soci::use(b.u.role), soci::use(b.u.fhir_user),
          soci::use(b.u.password_hash), soci::use(b.must_change), soci::use(b.disabled), soci::use(b.u.totp_secret),
          soci::use(b.u.totp_pending), soci::use(b.last_step), soci::use(b.failed), soci::use(b.next_attempt),
          soci::use(b.locked_until), soci::use(b.created), soci::use(b.updated), soci::use(b.last_sign_in);
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return {};
  }

  Result<void> update(TenantId tenant, const UserRecord& u) override {
    try {
      Bound b(tenant, u);
      soci::statement st =
          (sql_.prepare << "UPDATE users SET role = :r, fhir_user = :f, password_hash = :p, "
                           "must_change_password = :m, disabled = :d, totp_secret = :s, totp_pending = :sp, "
                           "totp_last_step = :ls, failed_count = :fc, next_attempt = :na, locked_until = :lu, "
                           "created = :c, updated = :up, last_sign_in = :si WHERE tenant = :t AND username = :u",
           soci::use(b.u.role), soci::use(b.u.fhir_user), soci::use(b.u.password_hash), soci::use(b.must_change),
           soci::use(b.disabled), soci::use(b.u.totp_secret), soci::use(b.u.totp_pending), soci::use(b.last_step),
           soci::use(b.failed), soci::use(b.next_attempt), soci::use(b.locked_until), soci::use(b.created),
           soci::use(b.updated), soci::use(b.last_sign_in), soci::use(b.tenant), soci::use(b.u.username));
      st.execute(true);
      if (st.get_affected_rows() == 0)
        return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + u.username + "'");
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return {};
  }

  Result<std::vector<UserRecord>> list(TenantId tenant) override {
    std::vector<UserRecord> out;
    try {
      long long t = tenant;
      soci::rowset<soci::row> rows =
          (sql_.prepare << "SELECT " << kColumns << " FROM users WHERE tenant = :t ORDER BY username", soci::use(t));
      for (const soci::row& r : rows) out.push_back(from_row(r));
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
    return out;
  }

  Result<std::int64_t> count(TenantId tenant) override {
    try {
      long long t = tenant, n = 0;
      sql_ << "SELECT COUNT(*) FROM users WHERE tenant = :t", soci::use(t), soci::into(n);
      return n;
    } catch (const std::exception& e) {
      return std::unexpected(db_error(e));
    }
  }

 private:
  // The record's values in the types SOCI binds.
  struct Bound {
    Bound(TenantId t, const UserRecord& record)
        : tenant(t),
          u(record),
          must_change(record.must_change_password ? 1 : 0),
          disabled(record.disabled ? 1 : 0),
          last_step(record.totp_last_step),
          failed(record.failed_count),
          next_attempt(record.next_attempt_ms),
          locked_until(record.locked_until_ms),
          created(record.created_ms),
          updated(record.updated_ms),
          last_sign_in(record.last_sign_in_ms) {}
    long long tenant;
    UserRecord u;
    int must_change, disabled;
    long long last_step, failed, next_attempt, locked_until, created, updated, last_sign_in;
  };

  soci::session& sql_;
};

}  // namespace

std::unique_ptr<UserRows> make_user_rows(soci::session& sql) {
  return std::make_unique<SociUserRows>(sql);
}

}  // namespace caduceus::resources
