#pragma once

// The people who sign in: accounts with a role, a password (Argon2id), an optional second factor (TOTP), a
// slow-down and then a lock after failed sign-ins. The sign-in pages call authenticate(); `caduceus admin user`
// and the first start of `caduceus serve` manage the accounts.

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/resources/store/users.hpp"
#include "caduceus/server/auth/credentials.hpp"

namespace caduceus::server::auth {

enum class Role { kPhysician, kNurse, kTechnician, kAdmin, kPatient };

std::string_view to_string(Role role) noexcept;
// "physician", "nurse", "technician", "admin", "patient"; nullopt for anything else.
std::optional<Role> parse_role(std::string_view text);
// A comma-separated list of roles ("" = none). Errors: kInvalid naming the unknown role.
fhir::Result<std::set<Role>> parse_roles(std::string_view text);

using TimePoint = std::chrono::system_clock::time_point;

struct UserDirectoryOptions {
  resources::TenantId tenant = resources::kDefaultTenant;
  std::set<Role> mfa_roles = {Role::kPhysician, Role::kNurse, Role::kTechnician, Role::kAdmin};
  // After `slow_after` consecutive failures, each further attempt must wait slow_base * 2^(failures - slow_after),
  // at most slow_max; the `lock_after`th consecutive failure locks the account for lock_duration (the count then
  // starts again).
  std::int64_t slow_after = 3;
  std::chrono::seconds slow_base{1};
  std::chrono::seconds slow_max{30};
  std::int64_t lock_after = 10;
  std::chrono::seconds lock_duration{15 * 60};
  std::size_t min_password_length = 12;
  Argon2Params argon2;
  TotpParams totp;
  unsigned totp_window = 1;         // codes of the steps just before and after now are accepted too
  std::string issuer = "Caduceus";  // shown by authenticator apps
};

// What the directory tells about a user (never the hash or the secret).
struct UserInfo {
  std::string username;
  Role role = Role::kPatient;
  std::string fhir_user;  // "Practitioner/123", "Patient/456" or ""
  bool disabled = false;
  bool must_change_password = false;
  bool totp_enrolled = false;
  bool mfa_required = false;  // by the role (mfa_roles) or because a second factor is enrolled
  std::int64_t failed_count = 0;
  std::optional<TimePoint> locked_until;  // set while locked
  std::optional<TimePoint> last_sign_in;
};

struct NewUser {
  std::string username;  // 1 to 64 of a-z 0-9 . _ - @ (upper case is folded)
  Role role = Role::kPatient;
  // A patient is linked to a Patient ("Patient/ID"), a physician, nurse or technician to a Practitioner
  // ("Practitioner/ID"), an admin to a Practitioner or nothing. The resource must exist in the store.
  std::string fhir_user;
  std::string password;
  bool must_change_password = false;
};

enum class SignInStatus {
  kOk,                    // signed in (user set; see must_change_password)
  kBadCredentials,        // unknown user or wrong password (the same answer for both)
  kMfaRequired,           // the password is right; a TOTP code is needed: ask for it
  kMfaEnrolmentRequired,  // the password is right; the role needs a second factor and none is enrolled yet
  kBadCode,               // the password is right, the TOTP code is wrong or was used already
  kThrottled,             // too soon after failures: retry_after says when to try again
  kLocked,                // locked after too many failures: retry_after says for how long still
  kDisabled,              // the password is right but the account is disabled
};
std::string_view to_string(SignInStatus status) noexcept;

struct SignInResult {
  SignInStatus status = SignInStatus::kBadCredentials;
  std::optional<UserInfo> user;         // with kOk
  bool must_change_password = false;    // with kOk: send the user to change it before anything else
  std::chrono::seconds retry_after{0};  // with kThrottled and kLocked
};

struct TotpEnrolment {
  std::string secret_base32;  // to type in by hand
  std::string uri;            // otpauth://totp/... to show as a QR code
};

// Thread-safe; every change goes through the store's write transactions (Transaction::users()), so that the
// failure count and the last accepted TOTP step are updated atomically. Password hashing is done outside them.
class UserDirectory {
 public:
  UserDirectory(resources::Store& store, UserDirectoryOptions options = {});

  const UserDirectoryOptions& options() const noexcept { return options_; }
  bool mfa_required(Role role) const { return options_.mfa_roles.contains(role); }

  // Creates a user. Errors: kInvalid (bad username, password too short, wrong fhir_user for the role: the
  // message names the field), kNotFound (the fhir_user resource does not exist), kConflict (username taken).
  fhir::Result<UserInfo> add(const NewUser& user, TimePoint now);
  // Every user, by username. `now` decides who is locked.
  fhir::Result<std::vector<UserInfo>> list(TimePoint now);
  // One user; kNotFound when there is none.
  fhir::Result<UserInfo> get(std::string_view username, TimePoint now);
  // Disables (or enables again) an account: a disabled user cannot sign in. kNotFound.
  fhir::Result<void> set_disabled(std::string_view username, bool disabled, TimePoint now);

  // Checks a sign-in. `totp_code` may be empty (then kMfaRequired tells the caller to ask for it). Failed
  // attempts (wrong password, wrong or reused code) count towards the slow-down and the lock; a throttled or
  // locked attempt is refused before the password is even checked. Errors only for store failures.
  fhir::Result<SignInResult> authenticate(std::string_view username, std::string_view password,
                                          std::string_view totp_code, TimePoint now);

  // The second step of a sign-in whose password was accepted by authenticate() (kMfaRequired): checks the TOTP
  // code alone, with the same slow-down, lock and single use of a code. kOk (user set), kBadCode, kThrottled,
  // kLocked, kDisabled, or kBadCredentials for an unknown user or one without a second factor.
  fhir::Result<SignInResult> verify_second_factor(std::string_view username, std::string_view totp_code, TimePoint now);

  // Sets a new password after checking the current one (clears must_change_password). Errors: kInvalid (new
  // password too short, or the same as the current one), kUnprocessable (the current password is wrong; counts
  // as a failed sign-in), kNotFound.
  fhir::Result<void> change_password(std::string_view username, std::string_view current_password,
                                     std::string_view new_password, TimePoint now);

  // Starts (or restarts) enrolling a second factor: a new secret, kept pending until confirmed. The enrolled
  // one, if any, stays valid meanwhile. kNotFound.
  fhir::Result<TotpEnrolment> begin_totp_enrolment(std::string_view username, TimePoint now);
  // Confirms the pending secret with a code from it: it becomes the enrolled second factor. kInvalid when the
  // code is wrong (or there is no pending enrolment); kNotFound.
  fhir::Result<void> confirm_totp_enrolment(std::string_view username, std::string_view code, TimePoint now);

  // The first start: when the tenant has no user at all, creates `admin` (role admin, must change its password
  // at first sign-in) with `password`, or a generated one when that is empty, and returns the password used.
  // nullopt when there were users already. Errors: kInvalid (password too short), store errors.
  fhir::Result<std::optional<std::string>> ensure_admin(std::string_view password, TimePoint now);

 private:
  UserInfo info(const resources::UserRecord& record, TimePoint now) const;
  fhir::Result<void> check_fhir_user(Role role, const std::string& fhir_user);
  fhir::Result<std::optional<resources::UserRecord>> load(const std::string& username);
  // Runs `change` on the stored user in one write transaction; kNotFound when there is none.
  fhir::Result<void> modify(const std::string& username,
                            const std::function<fhir::Result<void>(resources::UserRecord&)>& change);
  void register_failure(resources::UserRecord& user, std::int64_t now_ms) const;
  // A failed attempt counted on `user`; `result` is kLocked (with retry_after) when it locked the account, else
  // `status`.
  void fail_attempt(resources::UserRecord& user, std::int64_t now_ms, SignInStatus status, SignInResult& result) const;
  // Whether `code` is a TOTP code of `user` not accepted before (then its step is kept); else the failure is
  // counted into `result` (fail_attempt with kBadCode).
  bool accept_totp(resources::UserRecord& user, std::string_view code, TimePoint now, SignInResult& result) const;
  // A successful sign-in: the failure counters cleared, the time kept, `result` kOk with the user.
  void signed_in(resources::UserRecord& user, TimePoint now, SignInResult& result) const;
  const std::string& dummy_hash();

  resources::Store& store_;
  UserDirectoryOptions options_;
  std::once_flag dummy_once_;
  std::string dummy_hash_;
};

// Folds a username to lower case; nullopt when it is not 1 to 64 of a-z 0-9 . _ - @.
std::optional<std::string> normalize_username(std::string_view username);

}  // namespace caduceus::server::auth
