#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::resources {

using TenantId = std::int64_t;  // (also in store.hpp)

// One account that can sign in, as stored (table `users`). The meaning of the fields is the business of
// server/auth (UserDirectory); the store keeps them. Times are milliseconds since the Unix epoch (0: never).
struct UserRecord {
  std::string username;       // the key within a tenant: lower case
  std::string role;           // physician, nurse, technician, admin, patient
  std::string fhir_user;      // "Practitioner/123", "Patient/456" or "" (the fhirUser claim)
  std::string password_hash;  // Argon2id in its encoded form ($argon2id$v=19$m=...,t=...,p=...$salt$hash)
  bool must_change_password = false;
  bool disabled = false;
  // TOTP secrets as opaque text with a format prefix ("plain:" then the key in base32), like resource bodies'
  // header, so that they can be encrypted at rest later without a schema change. Empty: none.
  std::string totp_secret;           // the enrolled second factor
  std::string totp_pending;          // an enrolment begun but not confirmed yet
  std::int64_t totp_last_step = 0;   // the TOTP time step of the last accepted code (never accepted twice)
  std::int64_t failed_count = 0;     // consecutive failed sign-ins
  std::int64_t next_attempt_ms = 0;  // sign-in refused before this (slow-down)
  std::int64_t locked_until_ms = 0;  // sign-in refused before this (lock)
  std::int64_t created_ms = 0, updated_ms = 0, last_sign_in_ms = 0;
};

// The user table, seen from inside a write transaction (Transaction::users()). Every call names the tenant.
class UserRows {
 public:
  virtual ~UserRows() = default;
  // The user, or nullopt. Errors: kUnavailable.
  virtual fhir::Result<std::optional<UserRecord>> find(TenantId tenant, std::string_view username) = 0;
  // Inserts the user; kConflict when the username is taken.
  virtual fhir::Result<void> insert(TenantId tenant, const UserRecord& user) = 0;
  // Replaces every field of the user with that username; kNotFound when there is none.
  virtual fhir::Result<void> update(TenantId tenant, const UserRecord& user) = 0;
  // Every user of the tenant, by username.
  virtual fhir::Result<std::vector<UserRecord>> list(TenantId tenant) = 0;
  // How many users the tenant has.
  virtual fhir::Result<std::int64_t> count(TenantId tenant) = 0;
};

}  // namespace caduceus::resources
