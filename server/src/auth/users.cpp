#include "caduceus/server/auth/users.hpp"

#include <algorithm>

namespace caduceus::server::auth {

namespace {

using fhir::ErrorKind;
using fhir::Result;
using resources::UserRecord;

constexpr std::string_view kSecretPrefix = "plain:";  // the stored secret's format: base32 of the raw key

std::int64_t to_ms(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
TimePoint from_ms(std::int64_t ms) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::milliseconds(ms)));
}
std::time_t to_seconds(TimePoint t) {
  return static_cast<std::time_t>(std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}
// Whole seconds from now until `until_ms`, rounded up (at least 1).
std::chrono::seconds seconds_until(std::int64_t until_ms, std::int64_t now_ms) {
  return std::chrono::seconds(std::max<std::int64_t>(1, (until_ms - now_ms + 999) / 1000));
}

// Whether the account takes no attempt now: locked, or throttled after failures. If so, `result` says which and
// when to try again.
bool refused_for_now(const UserRecord& r, std::int64_t now_ms, SignInResult& result) {
  if (r.locked_until_ms > now_ms) {
    result.status = SignInStatus::kLocked;
    result.retry_after = seconds_until(r.locked_until_ms, now_ms);
    return true;
  }
  if (r.next_attempt_ms > now_ms) {
    result.status = SignInStatus::kThrottled;
    result.retry_after = seconds_until(r.next_attempt_ms, now_ms);
    return true;
  }
  return false;
}

std::string store_secret(std::string_view raw) {
  return std::string(kSecretPrefix) + base32_encode(raw);
}
std::optional<std::string> load_secret(std::string_view stored) {
  if (!stored.starts_with(kSecretPrefix)) return std::nullopt;
  return base32_decode(stored.substr(kSecretPrefix.size()));
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

}  // namespace

std::string_view to_string(Role role) noexcept {
  switch (role) {
    case Role::kPhysician: return "physician";
    case Role::kNurse: return "nurse";
    case Role::kTechnician: return "technician";
    case Role::kAdmin: return "admin";
    case Role::kPatient: return "patient";
  }
  return "patient";
}

std::optional<Role> parse_role(std::string_view text) {
  for (Role r : {Role::kPhysician, Role::kNurse, Role::kTechnician, Role::kAdmin, Role::kPatient})
    if (to_string(r) == text) return r;
  return std::nullopt;
}

Result<std::set<Role>> parse_roles(std::string_view text) {
  std::set<Role> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(start, end - start);
    while (!word.empty() && word.front() == ' ') word.remove_prefix(1);
    while (!word.empty() && word.back() == ' ') word.remove_suffix(1);
    if (!word.empty()) {
      auto role = parse_role(word);
      if (!role)
        return fhir::fail(ErrorKind::kInvalid, "value",
                          "unknown role '" + std::string(word) + "' (physician, nurse, technician, admin, patient)");
      out.insert(*role);
    }
    start = end + 1;
  }
  return out;
}

std::string_view to_string(SignInStatus status) noexcept {
  switch (status) {
    case SignInStatus::kOk: return "ok";
    case SignInStatus::kBadCredentials: return "bad-credentials";
    case SignInStatus::kMfaRequired: return "mfa-required";
    case SignInStatus::kMfaEnrolmentRequired: return "mfa-enrolment-required";
    case SignInStatus::kBadCode: return "bad-code";
    case SignInStatus::kThrottled: return "throttled";
    case SignInStatus::kLocked: return "locked";
    case SignInStatus::kDisabled: return "disabled";
  }
  return "bad-credentials";
}

std::optional<std::string> normalize_username(std::string_view username) {
  if (username.empty() || username.size() > 64) return std::nullopt;
  std::string out;
  for (char c : username) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '@'))
      return std::nullopt;
    out.push_back(c);
  }
  return out;
}

UserDirectory::UserDirectory(resources::Store& store, UserDirectoryOptions options)
    : store_(store), options_(std::move(options)) {}

UserInfo UserDirectory::info(const UserRecord& r, TimePoint now) const {
  UserInfo u;
  u.username = r.username;
  u.role = parse_role(r.role).value_or(Role::kPatient);
  u.fhir_user = r.fhir_user;
  u.disabled = r.disabled;
  u.must_change_password = r.must_change_password;
  u.totp_enrolled = !r.totp_secret.empty();
  u.mfa_required = u.totp_enrolled || mfa_required(u.role);
  u.failed_count = r.failed_count;
  if (r.locked_until_ms > to_ms(now)) u.locked_until = from_ms(r.locked_until_ms);
  if (r.last_sign_in_ms > 0) u.last_sign_in = from_ms(r.last_sign_in_ms);
  return u;
}

Result<void> UserDirectory::check_fhir_user(Role role, const std::string& fhir_user) {
  std::string expected;
  switch (role) {
    case Role::kPatient: expected = "Patient"; break;
    case Role::kPhysician:
    case Role::kNurse:
    case Role::kTechnician: expected = "Practitioner"; break;
    case Role::kAdmin:
      if (fhir_user.empty()) return {};
      expected = "Practitioner";
      break;
  }
  auto slash = fhir_user.find('/');
  if (fhir_user.empty() || slash == std::string::npos || fhir_user.substr(0, slash) != expected ||
      !valid_id(std::string_view(fhir_user).substr(slash + 1)))
    return fhir::fail(ErrorKind::kInvalid, "value",
                      "a user with the role " + std::string(to_string(role)) + " is linked to " + expected +
                          "/ID (the fhirUser): got '" + fhir_user + "'",
                      "fhir-user");
  auto found = store_.read(options_.tenant, expected, fhir_user.substr(slash + 1));
  if (!found && found.error().kind == ErrorKind::kNotFound)
    return fhir::fail(ErrorKind::kNotFound, "not-found", fhir_user + " does not exist in the store", "fhir-user");
  if (!found) return std::unexpected(found.error());
  if (found->deleted)
    return fhir::fail(ErrorKind::kNotFound, "not-found", fhir_user + " has been deleted", "fhir-user");
  return {};
}

Result<std::optional<UserRecord>> UserDirectory::load(const std::string& username) {
  std::optional<UserRecord> out;
  auto done = store_.write([&](resources::Transaction& txn) -> Result<void> {
    auto rows = txn.users();
    if (!rows) return std::unexpected(rows.error());
    auto found = (*rows)->find(options_.tenant, username);
    if (!found) return std::unexpected(found.error());
    out = std::move(*found);
    return {};
  });
  if (!done) return std::unexpected(done.error());
  return out;
}

Result<void> UserDirectory::modify(const std::string& username,
                                   const std::function<Result<void>(UserRecord&)>& change) {
  return store_.write([&](resources::Transaction& txn) -> Result<void> {
    auto rows = txn.users();
    if (!rows) return std::unexpected(rows.error());
    auto found = (*rows)->find(options_.tenant, username);
    if (!found) return std::unexpected(found.error());
    if (!*found) return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + username + "'", "username");
    UserRecord record = std::move(**found);
    if (auto changed = change(record); !changed) return changed;
    return (*rows)->update(options_.tenant, record);
  });
}

const std::string& UserDirectory::dummy_hash() {
  std::call_once(dummy_once_, [this] {
    auto hash = hash_password(generate_password(), options_.argon2);
    dummy_hash_ = hash ? *hash : std::string();
  });
  return dummy_hash_;
}

Result<UserInfo> UserDirectory::add(const NewUser& user, TimePoint now) {
  auto username = normalize_username(user.username);
  if (!username)
    return fhir::fail(ErrorKind::kInvalid, "value",
                      "the username '" + user.username + "' is not 1 to 64 of a-z 0-9 . _ - @", "username");
  if (user.password.size() < options_.min_password_length)
    return fhir::fail(ErrorKind::kInvalid, "value",
                      "the password must have at least " + std::to_string(options_.min_password_length) + " characters",
                      "password");
  if (auto checked = check_fhir_user(user.role, user.fhir_user); !checked) return std::unexpected(checked.error());
  auto hash = hash_password(user.password, options_.argon2);
  if (!hash) return std::unexpected(hash.error());
  UserRecord record;
  record.username = *username;
  record.role = std::string(to_string(user.role));
  record.fhir_user = user.fhir_user;
  record.password_hash = std::move(*hash);
  record.must_change_password = user.must_change_password;
  record.created_ms = record.updated_ms = to_ms(now);
  auto done = store_.write([&](resources::Transaction& txn) -> Result<void> {
    auto rows = txn.users();
    if (!rows) return std::unexpected(rows.error());
    return (*rows)->insert(options_.tenant, record);
  });
  if (!done) return std::unexpected(done.error());
  return info(record, now);
}

Result<std::vector<UserInfo>> UserDirectory::list(TimePoint now) {
  std::vector<UserRecord> records;
  auto done = store_.write([&](resources::Transaction& txn) -> Result<void> {
    auto rows = txn.users();
    if (!rows) return std::unexpected(rows.error());
    auto listed = (*rows)->list(options_.tenant);
    if (!listed) return std::unexpected(listed.error());
    records = std::move(*listed);
    return {};
  });
  if (!done) return std::unexpected(done.error());
  std::vector<UserInfo> out;
  for (const UserRecord& r : records) out.push_back(info(r, now));
  return out;
}

Result<UserInfo> UserDirectory::get(std::string_view username, TimePoint now) {
  auto name = normalize_username(username);
  if (!name) return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + std::string(username) + "'");
  auto record = load(*name);
  if (!record) return std::unexpected(record.error());
  if (!*record) return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + *name + "'", "username");
  return info(**record, now);
}

Result<void> UserDirectory::set_disabled(std::string_view username, bool disabled, TimePoint now) {
  auto name = normalize_username(username);
  if (!name) return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + std::string(username) + "'");
  return modify(*name, [&](UserRecord& r) -> Result<void> {
    r.disabled = disabled;
    r.updated_ms = to_ms(now);
    return {};
  });
}

void UserDirectory::fail_attempt(UserRecord& r, std::int64_t now_ms, SignInStatus status, SignInResult& result) const {
  register_failure(r, now_ms);
  result.status = r.locked_until_ms > now_ms ? SignInStatus::kLocked : status;
  if (result.status == SignInStatus::kLocked) result.retry_after = seconds_until(r.locked_until_ms, now_ms);
}

bool UserDirectory::accept_totp(UserRecord& r, std::string_view code, TimePoint now, SignInResult& result) const {
  auto secret = load_secret(r.totp_secret);
  auto step = secret ? totp_match(*secret, code, to_seconds(now), options_.totp_window, options_.totp) : std::nullopt;
  if (!step || *step <= r.totp_last_step) {  // wrong, or accepted once already (or older than the last)
    fail_attempt(r, to_ms(now), SignInStatus::kBadCode, result);
    return false;
  }
  r.totp_last_step = *step;
  return true;
}

void UserDirectory::signed_in(UserRecord& r, TimePoint now, SignInResult& result) const {
  const std::int64_t now_ms = to_ms(now);
  r.failed_count = 0;
  r.next_attempt_ms = 0;
  r.locked_until_ms = 0;
  r.last_sign_in_ms = now_ms;
  r.updated_ms = now_ms;
  result.status = SignInStatus::kOk;
  result.must_change_password = r.must_change_password;
  result.user = info(r, now);
}

void UserDirectory::register_failure(UserRecord& r, std::int64_t now_ms) const {
  r.failed_count += 1;
  r.updated_ms = now_ms;
  if (r.failed_count >= options_.lock_after) {
    r.locked_until_ms = now_ms + std::chrono::duration_cast<std::chrono::milliseconds>(options_.lock_duration).count();
    r.failed_count = 0;
    r.next_attempt_ms = 0;
    return;
  }
  if (r.failed_count >= options_.slow_after) {
    const std::int64_t doublings = std::min<std::int64_t>(r.failed_count - options_.slow_after, 30);
    const std::int64_t base_ms = std::chrono::duration_cast<std::chrono::milliseconds>(options_.slow_base).count();
    const std::int64_t max_ms = std::chrono::duration_cast<std::chrono::milliseconds>(options_.slow_max).count();
    r.next_attempt_ms = now_ms + std::min(max_ms, base_ms << doublings);
  }
}

Result<SignInResult> UserDirectory::authenticate(std::string_view username, std::string_view password,
                                                 std::string_view totp_code, TimePoint now) {
  const std::int64_t now_ms = to_ms(now);
  SignInResult result;
  auto name = normalize_username(username);
  std::optional<UserRecord> before;
  if (name) {
    auto loaded = load(*name);
    if (!loaded) return std::unexpected(loaded.error());
    before = std::move(*loaded);
  }
  if (!before) {
    // The same work as for a known user, so that the time taken does not tell which usernames exist.
    verify_password(dummy_hash(), password);
    result.status = SignInStatus::kBadCredentials;
    return result;
  }
  // Refused before any password check: a locked or throttled account gives a guesser nothing.
  if (refused_for_now(*before, now_ms, result)) return result;
  const bool password_ok = verify_password(before->password_hash, password);
  std::string rehashed;
  if (password_ok && hash_needs_update(before->password_hash, options_.argon2)) {
    if (auto hash = hash_password(password, options_.argon2)) rehashed = std::move(*hash);
  }

  // The outcome is decided on the row as it is now, in one transaction: concurrent attempts each count, and a
  // code is accepted once.
  auto done = modify(*name, [&](UserRecord& r) -> Result<void> {
    result = SignInResult{};
    if (refused_for_now(r, now_ms, result)) return {};
    if (r.password_hash != before->password_hash) {
      // The password changed meanwhile: the check above was against the old one.
      result.status = SignInStatus::kBadCredentials;
      return {};
    }
    if (!password_ok) {
      fail_attempt(r, now_ms, SignInStatus::kBadCredentials, result);
      return {};
    }
    if (r.disabled) {
      result.status = SignInStatus::kDisabled;
      return {};
    }
    const Role role = parse_role(r.role).value_or(Role::kPatient);
    if (!r.totp_secret.empty() || mfa_required(role)) {
      if (r.totp_secret.empty()) {
        result.status = SignInStatus::kMfaEnrolmentRequired;
        return {};
      }
      if (totp_code.empty()) {
        result.status = SignInStatus::kMfaRequired;
        return {};
      }
      if (!accept_totp(r, totp_code, now, result)) return {};
    }
    if (!rehashed.empty()) r.password_hash = rehashed;
    signed_in(r, now, result);
    return {};
  });
  if (!done) return std::unexpected(done.error());
  return result;
}

Result<SignInResult> UserDirectory::verify_second_factor(std::string_view username, std::string_view totp_code,
                                                         TimePoint now) {
  const std::int64_t now_ms = to_ms(now);
  SignInResult result;
  auto name = normalize_username(username);
  if (!name) return result;
  auto done = modify(*name, [&](UserRecord& r) -> Result<void> {
    result = SignInResult{};
    if (refused_for_now(r, now_ms, result)) return {};
    if (r.disabled) {
      result.status = SignInStatus::kDisabled;
      return {};
    }
    if (r.totp_secret.empty()) return {};  // kBadCredentials
    if (!accept_totp(r, totp_code, now, result)) return {};
    signed_in(r, now, result);
    return {};
  });
  if (!done && done.error().kind == ErrorKind::kNotFound) return SignInResult{};
  if (!done) return std::unexpected(done.error());
  return result;
}

Result<void> UserDirectory::change_password(std::string_view username, std::string_view current_password,
                                            std::string_view new_password, TimePoint now) {
  auto name = normalize_username(username);
  if (!name) return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + std::string(username) + "'");
  if (new_password.size() < options_.min_password_length)
    return fhir::fail(
        ErrorKind::kInvalid, "value",
        "the new password must have at least " + std::to_string(options_.min_password_length) + " characters",
        "password");
  if (new_password == current_password)
    return fhir::fail(ErrorKind::kInvalid, "value", "the new password must differ from the current one", "password");
  auto before = load(*name);
  if (!before) return std::unexpected(before.error());
  if (!*before) return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + *name + "'", "username");
  const std::int64_t now_ms = to_ms(now);
  if ((*before)->locked_until_ms > now_ms || (*before)->next_attempt_ms > now_ms)
    return fhir::fail(ErrorKind::kUnprocessable, "lock-error", "too many failed sign-ins: try again later");
  const bool ok = verify_password((*before)->password_hash, current_password);
  std::string hash;
  if (ok) {
    auto made = hash_password(new_password, options_.argon2);
    if (!made) return std::unexpected(made.error());
    hash = std::move(*made);
  }
  bool refused = false;
  auto done = modify(*name, [&](UserRecord& r) -> Result<void> {
    refused = !ok || r.password_hash != (*before)->password_hash;
    if (refused) {
      register_failure(r, now_ms);
      return {};
    }
    r.password_hash = hash;
    r.must_change_password = false;
    r.updated_ms = now_ms;
    return {};
  });
  if (!done) return done;
  if (refused)
    return fhir::fail(ErrorKind::kUnprocessable, "security", "the current password is wrong", "current-password");
  return {};
}

Result<TotpEnrolment> UserDirectory::begin_totp_enrolment(std::string_view username, TimePoint now) {
  auto name = normalize_username(username);
  if (!name) return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + std::string(username) + "'");
  std::string secret = generate_totp_secret();
  auto done = modify(*name, [&](UserRecord& r) -> Result<void> {
    r.totp_pending = store_secret(secret);
    r.updated_ms = to_ms(now);
    return {};
  });
  if (!done) return std::unexpected(done.error());
  return TotpEnrolment{base32_encode(secret), otpauth_uri(options_.issuer, *name, secret, options_.totp)};
}

Result<void> UserDirectory::confirm_totp_enrolment(std::string_view username, std::string_view code, TimePoint now) {
  auto name = normalize_username(username);
  if (!name) return fhir::fail(ErrorKind::kNotFound, "not-found", "no user '" + std::string(username) + "'");
  bool wrong = false;
  auto done = modify(*name, [&](UserRecord& r) -> Result<void> {
    auto secret = load_secret(r.totp_pending);
    auto step = secret ? totp_match(*secret, code, to_seconds(now), options_.totp_window, options_.totp) : std::nullopt;
    wrong = !step.has_value();
    if (wrong) return {};
    r.totp_secret = r.totp_pending;
    r.totp_pending.clear();
    r.totp_last_step = *step;  // this code cannot sign in afterwards
    r.updated_ms = to_ms(now);
    return {};
  });
  if (!done) return done;
  if (wrong)
    return fhir::fail(ErrorKind::kInvalid, "value", "the code does not match the secret being enrolled", "code");
  return {};
}

Result<std::optional<std::string>> UserDirectory::ensure_admin(std::string_view password, TimePoint now) {
  // Cheap check first: hashing is not free, and most starts find users.
  bool any = false;
  auto counted = store_.write([&](resources::Transaction& txn) -> Result<void> {
    auto rows = txn.users();
    if (!rows) return std::unexpected(rows.error());
    auto n = (*rows)->count(options_.tenant);
    if (!n) return std::unexpected(n.error());
    any = *n > 0;
    return {};
  });
  if (!counted) return std::unexpected(counted.error());
  if (any) return std::optional<std::string>();
  std::string chosen = password.empty() ? generate_password() : std::string(password);
  if (chosen.size() < options_.min_password_length)
    return fhir::fail(ErrorKind::kInvalid, "value",
                      "the administrator's password must have at least " +
                          std::to_string(options_.min_password_length) + " characters",
                      "CADUCEUS_ADMIN_PASSWORD");
  auto hash = hash_password(chosen, options_.argon2);
  if (!hash) return std::unexpected(hash.error());
  UserRecord record;
  record.username = "admin";
  record.role = std::string(to_string(Role::kAdmin));
  record.password_hash = std::move(*hash);
  record.must_change_password = true;
  record.created_ms = record.updated_ms = to_ms(now);
  bool created = false;
  auto done = store_.write([&](resources::Transaction& txn) -> Result<void> {
    auto rows = txn.users();
    if (!rows) return std::unexpected(rows.error());
    auto n = (*rows)->count(options_.tenant);
    if (!n) return std::unexpected(n.error());
    created = *n == 0;
    if (!created) return {};  // another process got there first
    return (*rows)->insert(options_.tenant, record);
  });
  if (!done) return std::unexpected(done.error());
  if (!created) return std::optional<std::string>();
  return std::optional<std::string>(std::move(chosen));
}

}  // namespace caduceus::server::auth
