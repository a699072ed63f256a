// Users: Argon2id hashes, TOTP (RFC 6238's own test vectors), and the UserDirectory's sign-in rules with an
// injected clock.
#include "caduceus/server/auth/users.hpp"

#include <gtest/gtest.h>

#include "caduceus/server/auth/credentials.hpp"

namespace caduceus::server::auth {
namespace {

using namespace std::chrono_literals;

// ---- TOTP ----

// RFC 6238, Appendix B: the seeds are the ASCII digits "1234567890" repeated to 20, 32 and 64 bytes; 8-digit codes
// with a 30 s step from T0 = 0.
struct Vector {
  std::time_t time;
  const char* sha1;
  const char* sha256;
  const char* sha512;
};
constexpr Vector kRfc6238[] = {
    {59, "94287082", "46119246", "90693936"},         {1111111109, "07081804", "68084774", "25091201"},
    {1111111111, "14050471", "67062674", "99943326"}, {1234567890, "89005924", "91819424", "93441116"},
    {2000000000, "69279037", "90698825", "38618901"}, {20000000000, "65353130", "77737706", "47863826"},
};
const std::string kSeed20 = "12345678901234567890";
const std::string kSeed32 = "12345678901234567890123456789012";
const std::string kSeed64 = "1234567890123456789012345678901234567890123456789012345678901234";

TEST(TotpTest, Rfc6238AppendixBVectors) {
  for (const Vector& v : kRfc6238) {
    EXPECT_EQ(totp_code(kSeed20, v.time, {8, 30, TotpAlgorithm::kSha1}).value_or("?"), v.sha1) << v.time;
    EXPECT_EQ(totp_code(kSeed32, v.time, {8, 30, TotpAlgorithm::kSha256}).value_or("?"), v.sha256) << v.time;
    EXPECT_EQ(totp_code(kSeed64, v.time, {8, 30, TotpAlgorithm::kSha512}).value_or("?"), v.sha512) << v.time;
  }
}

TEST(TotpTest, SixDigitsAreTheLastSixOfTheRfcCodes) {
  // Dynamic truncation modulo 10^6 instead of 10^8: the same number's last six digits.
  EXPECT_EQ(totp_code(kSeed20, 59).value_or("?"), "287082");
  EXPECT_EQ(totp_code(kSeed20, 1111111109).value_or("?"), "081804");
}

TEST(TotpTest, MatchAcceptsTheStepsJustBeforeAndAfterOnly) {
  const TotpParams p{8, 30, TotpAlgorithm::kSha1};
  // 1111111109 is in step 37037036; 1111111111 in step 37037037 (the RFC's T column: 0x23523EC and 0x23523ED).
  EXPECT_EQ(totp_match(kSeed20, "07081804", 1111111109, 1, p), std::optional<std::int64_t>(0x23523EC));
  EXPECT_EQ(totp_match(kSeed20, "07081804", 1111111109 + 30, 1, p), std::optional<std::int64_t>(0x23523EC));
  EXPECT_EQ(totp_match(kSeed20, "07081804", 1111111109 - 30, 1, p), std::optional<std::int64_t>(0x23523EC));
  EXPECT_EQ(totp_match(kSeed20, "07081804", 1111111109 + 60, 1, p), std::nullopt) << "two steps late";
  EXPECT_EQ(totp_match(kSeed20, "07081804", 1111111109 - 60, 1, p), std::nullopt) << "two steps early";
  EXPECT_EQ(totp_match(kSeed20, "07081805", 1111111109, 1, p), std::nullopt) << "wrong code";
  EXPECT_EQ(totp_match(kSeed20, "0708180", 1111111109, 1, p), std::nullopt) << "too short";
  EXPECT_EQ(totp_match(kSeed20, "0708180x", 1111111109, 1, p), std::nullopt) << "not digits";
}

TEST(TotpTest, Base32IsRfc4648) {
  EXPECT_EQ(base32_encode("foobar"), "MZXW6YTBOI");  // RFC 4648 section 10, padding dropped
  EXPECT_EQ(base32_encode(kSeed20), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
  EXPECT_EQ(base32_decode("mzxw6ytboi"), std::optional<std::string>("foobar"));
  EXPECT_EQ(base32_decode("MZXW 6YTB OI"), std::optional<std::string>("foobar"));
  EXPECT_EQ(base32_decode("MZXW6YTBO1"), std::nullopt) << "1 is not a base32 digit";
  std::string secret = generate_totp_secret();
  EXPECT_EQ(secret.size(), 20u);
  EXPECT_EQ(base32_decode(base32_encode(secret)), std::optional<std::string>(secret));
}

TEST(TotpTest, OtpauthUriCarriesTheSecretAndParameters) {
  EXPECT_EQ(otpauth_uri("Caduceus", "dr.house@example.org", kSeed20),
            "otpauth://totp/Caduceus:dr.house%40example.org?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
            "&issuer=Caduceus&algorithm=SHA1&digits=6&period=30");
}

// ---- Argon2id ----

constexpr Argon2Params kFast{1, 1024, 1};  // cheap parameters for tests (the defaults are checked once below)

TEST(PasswordTest, Argon2idHashVerifiesTheRightPasswordOnly) {
  auto hash = hash_password("correct horse battery staple", kFast);
  ASSERT_TRUE(hash.has_value());
  EXPECT_TRUE(hash->starts_with("$argon2id$v=19$m=1024,t=1,p=1$")) << *hash;
  EXPECT_TRUE(verify_password(*hash, "correct horse battery staple"));
  EXPECT_FALSE(verify_password(*hash, "correct horse battery stapler"));
  EXPECT_FALSE(verify_password(*hash, ""));
  auto again = hash_password("correct horse battery staple", kFast);
  ASSERT_TRUE(again.has_value());
  EXPECT_NE(*hash, *again) << "a fresh salt each time";
  EXPECT_TRUE(verify_password(*again, "correct horse battery staple"));
  EXPECT_FALSE(verify_password("$argon2id$v=19$m=1024,t=1,p=1$broken", "correct horse battery staple"));
  std::string argon2i = *hash;
  argon2i.replace(0, 9, "$argon2i");
  EXPECT_FALSE(verify_password(argon2i, "correct horse battery staple")) << "only Argon2id is accepted";
  EXPECT_FALSE(hash_needs_update(*hash, kFast));
  EXPECT_TRUE(hash_needs_update(*hash, Argon2Params{}));
}

TEST(PasswordTest, DefaultParametersAreOwasps) {
  auto hash = hash_password("a long enough password");
  ASSERT_TRUE(hash.has_value());
  EXPECT_TRUE(hash->starts_with("$argon2id$v=19$m=19456,t=2,p=1$")) << *hash;
  EXPECT_TRUE(verify_password(*hash, "a long enough password"));
}

TEST(PasswordTest, GeneratedPasswordsAreLongAndDiffer) {
  std::string a = generate_password(), b = generate_password();
  EXPECT_EQ(a.size(), 24u);
  EXPECT_EQ(a[4], '-');
  EXPECT_NE(a, b);
  for (char c : a) EXPECT_TRUE(c == '-' || std::isalnum(static_cast<unsigned char>(c))) << a;
}

// ---- UserDirectory ----

const TimePoint kT0 = TimePoint(std::chrono::seconds(1'700'000'000));

class UserDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = resources::open_store("sqlite::memory:");
    ASSERT_TRUE(store.has_value());
    store_ = std::move(*store);
    // The resources users are linked to.
    auto written = store_->write([](resources::Transaction& txn) -> fhir::Result<void> {
      for (auto [type, id] :
           {std::pair{"Practitioner", "doc"}, std::pair{"Practitioner", "nurse"}, std::pair{"Patient", "pat"}}) {
        resources::VersionRecord v;
        v.type = type;
        v.id = id;
        v.version = 1;
        v.last_updated_ms = 1;
        v.body = std::string(R"({"resourceType":")") + type + R"(","id":")" + id + R"("})";
        if (auto r = txn.append(resources::kDefaultTenant, v); !r) return std::unexpected(r.error());
      }
      return {};
    });
    ASSERT_TRUE(written.has_value());
    options_.argon2 = kFast;
    options_.slow_after = 3;
    options_.slow_base = 1s;
    options_.slow_max = 30s;
    options_.lock_after = 5;
    options_.lock_duration = 600s;
    users_ = std::make_unique<UserDirectory>(*store_, options_);
  }

  void add(const std::string& name, Role role, const std::string& fhir_user, const std::string& password) {
    auto added = users_->add(NewUser{name, role, fhir_user, password, false}, kT0);
    ASSERT_TRUE(added.has_value()) << added.error().issues[0].diagnostics;
  }

  SignInStatus sign_in(const std::string& name, const std::string& password, TimePoint at,
                       const std::string& code = "") {
    auto r = users_->authenticate(name, password, code, at);
    EXPECT_TRUE(r.has_value());
    last_ = r ? *r : SignInResult{};
    return last_.status;
  }

  static std::string code_at(const std::string& base32_secret, TimePoint at) {
    auto secret = base32_decode(base32_secret);
    EXPECT_TRUE(secret.has_value());
    return totp_code(secret.value_or(""), std::chrono::system_clock::to_time_t(at)).value_or("");
  }

  std::unique_ptr<resources::Store> store_;
  UserDirectoryOptions options_;
  std::unique_ptr<UserDirectory> users_;
  SignInResult last_;
};

TEST_F(UserDirectoryTest, AddChecksNameRolePasswordAndFhirUser) {
  auto bad = [&](NewUser u, fhir::ErrorKind kind, const std::string& expression) {
    auto r = users_->add(u, kT0);
    ASSERT_FALSE(r.has_value()) << u.username;
    EXPECT_EQ(r.error().kind, kind) << r.error().issues[0].diagnostics;
    EXPECT_EQ(r.error().issues[0].expression, expression) << r.error().issues[0].diagnostics;
  };
  bad({"Bad Name", Role::kPatient, "Patient/pat", "long enough password"}, fhir::ErrorKind::kInvalid, "username");
  bad({"pat", Role::kPatient, "Patient/pat", "short"}, fhir::ErrorKind::kInvalid, "password");
  bad({"pat", Role::kPatient, "Practitioner/doc", "long enough password"}, fhir::ErrorKind::kInvalid, "fhir-user");
  bad({"pat", Role::kPatient, "", "long enough password"}, fhir::ErrorKind::kInvalid, "fhir-user");
  bad({"doc", Role::kPhysician, "Patient/pat", "long enough password"}, fhir::ErrorKind::kInvalid, "fhir-user");
  bad({"doc", Role::kPhysician, "Practitioner/nobody", "long enough password"}, fhir::ErrorKind::kNotFound,
      "fhir-user");

  auto added = users_->add({"Dr.House", Role::kPhysician, "Practitioner/doc", "long enough password"}, kT0);
  ASSERT_TRUE(added.has_value());
  EXPECT_EQ(added->username, "dr.house") << "folded to lower case";
  EXPECT_EQ(added->fhir_user, "Practitioner/doc");
  EXPECT_TRUE(added->mfa_required) << "physicians need a second factor by default";
  EXPECT_FALSE(added->totp_enrolled);
  auto again = users_->add({"dr.house", Role::kNurse, "Practitioner/nurse", "long enough password"}, kT0);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().kind, fhir::ErrorKind::kConflict);
  add("admin2", Role::kAdmin, "", "long enough password");  // an admin needs no fhirUser

  auto listed = users_->list(kT0);
  ASSERT_TRUE(listed.has_value());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].username, "admin2");
  EXPECT_EQ((*listed)[0].role, Role::kAdmin);
  EXPECT_EQ((*listed)[1].username, "dr.house");
}

TEST_F(UserDirectoryTest, PasswordSignInWithoutSecondFactorForPatients) {
  add("pat", Role::kPatient, "Patient/pat", "my patient password");
  EXPECT_EQ(sign_in("pat", "my patient password", kT0), SignInStatus::kOk);
  ASSERT_TRUE(last_.user.has_value());
  EXPECT_EQ(last_.user->fhir_user, "Patient/pat");
  EXPECT_EQ(last_.user->role, Role::kPatient);
  EXPECT_FALSE(last_.must_change_password);
  EXPECT_EQ(sign_in("PAT", "my patient password", kT0), SignInStatus::kOk) << "usernames ignore case";
  EXPECT_EQ(sign_in("pat", "my patient passwore", kT0), SignInStatus::kBadCredentials);
  EXPECT_EQ(sign_in("nobody", "my patient password", kT0), SignInStatus::kBadCredentials)
      << "an unknown user gets the same answer as a wrong password";
  EXPECT_EQ(sign_in("not a name!", "x", kT0), SignInStatus::kBadCredentials);
}

TEST_F(UserDirectoryTest, FailuresSlowDownThenLockForTheConfiguredTime) {
  add("pat", Role::kPatient, "Patient/pat", "my patient password");
  TimePoint t = kT0;
  EXPECT_EQ(sign_in("pat", "wrong 1", t), SignInStatus::kBadCredentials);
  EXPECT_EQ(sign_in("pat", "wrong 2", t), SignInStatus::kBadCredentials);
  EXPECT_EQ(sign_in("pat", "wrong 3", t), SignInStatus::kBadCredentials);  // 3rd failure: slow down from now on
  // 1 s to wait (slow_base * 2^0): even the right password is refused unchecked meanwhile.
  EXPECT_EQ(sign_in("pat", "my patient password", t + 500ms), SignInStatus::kThrottled);
  EXPECT_EQ(last_.retry_after, 1s);
  EXPECT_EQ(sign_in("pat", "wrong 4", t + 1s), SignInStatus::kBadCredentials);  // 4th: 2 s now
  EXPECT_EQ(sign_in("pat", "wrong", t + 2s), SignInStatus::kThrottled);
  EXPECT_EQ(last_.retry_after, 1s);
  // The 5th failure locks for 600 s.
  EXPECT_EQ(sign_in("pat", "wrong 5", t + 3s), SignInStatus::kLocked);
  EXPECT_EQ(last_.retry_after, 600s);
  EXPECT_EQ(sign_in("pat", "my patient password", t + 300s), SignInStatus::kLocked);
  EXPECT_EQ(last_.retry_after, 303s);
  auto info = users_->get("pat", t + 300s);
  ASSERT_TRUE(info.has_value());
  EXPECT_TRUE(info->locked_until.has_value());
  // Once the lock is over, the right password works, and the count starts again.
  EXPECT_EQ(sign_in("pat", "my patient password", t + 603s), SignInStatus::kOk);
  EXPECT_EQ(sign_in("pat", "wrong again", t + 604s), SignInStatus::kBadCredentials);
  EXPECT_EQ(sign_in("pat", "my patient password", t + 604s), SignInStatus::kOk) << "one failure does not slow";
}

TEST_F(UserDirectoryTest, SecondFactorRequiredByRoleEnrolledOnceAndCodesNeverReused) {
  add("nurse", Role::kNurse, "Practitioner/nurse", "my nurse password!");
  EXPECT_EQ(sign_in("nurse", "my nurse password!", kT0), SignInStatus::kMfaEnrolmentRequired);

  auto enrolment = users_->begin_totp_enrolment("nurse", kT0);
  ASSERT_TRUE(enrolment.has_value());
  EXPECT_EQ(enrolment->uri, "otpauth://totp/Caduceus:nurse?secret=" + enrolment->secret_base32 +
                                "&issuer=Caduceus&algorithm=SHA1&digits=6&period=30");
  EXPECT_EQ(base32_decode(enrolment->secret_base32).value_or("").size(), 20u);
  // Still pending: not required at sign-in yet.
  EXPECT_EQ(sign_in("nurse", "my nurse password!", kT0), SignInStatus::kMfaEnrolmentRequired);
  std::string wrong = code_at(enrolment->secret_base32, kT0) == "000000" ? "000001" : "000000";
  auto refused = users_->confirm_totp_enrolment("nurse", wrong, kT0);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().kind, fhir::ErrorKind::kInvalid);
  const std::string first = code_at(enrolment->secret_base32, kT0);
  ASSERT_TRUE(users_->confirm_totp_enrolment("nurse", first, kT0).has_value());

  EXPECT_EQ(sign_in("nurse", "my nurse password!", kT0), SignInStatus::kMfaRequired);
  EXPECT_EQ(sign_in("nurse", "my nurse password!", kT0, first), SignInStatus::kBadCode)
      << "the code that confirmed the enrolment cannot sign in";
  const TimePoint t1 = kT0 + 30s;
  const std::string second = code_at(enrolment->secret_base32, t1);
  EXPECT_EQ(sign_in("nurse", "wrong password", t1, second), SignInStatus::kBadCredentials);
  EXPECT_EQ(sign_in("nurse", "my nurse password!", t1, second), SignInStatus::kOk);
  EXPECT_EQ(sign_in("nurse", "my nurse password!", t1 + 1s, second), SignInStatus::kBadCode) << "replayed";
  EXPECT_EQ(sign_in("nurse", "my nurse password!", t1 + 2s, first), SignInStatus::kBadCode)
      << "older than the last accepted code, though inside the window";
  const TimePoint t2 = kT0 + 60s;
  EXPECT_EQ(sign_in("nurse", "my nurse password!", t2, code_at(enrolment->secret_base32, t2 + 30s)), SignInStatus::kOk)
      << "the next step's code is inside the window";
  ASSERT_TRUE(last_.user.has_value());
  EXPECT_TRUE(last_.user->totp_enrolled);
}

TEST_F(UserDirectoryTest, MfaRolesComeFromTheOptions) {
  UserDirectoryOptions o = options_;
  o.mfa_roles = {Role::kPatient};
  UserDirectory strict(*store_, o);
  add("pat", Role::kPatient, "Patient/pat", "my patient password");
  add("doc", Role::kPhysician, "Practitioner/doc", "my doctor password");
  auto r = strict.authenticate("pat", "my patient password", "", kT0);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, SignInStatus::kMfaEnrolmentRequired);
  r = strict.authenticate("doc", "my doctor password", "", kT0);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, SignInStatus::kOk) << "physicians are not in this configuration's list";
}

TEST_F(UserDirectoryTest, DisabledUserIsRefused) {
  add("pat", Role::kPatient, "Patient/pat", "my patient password");
  ASSERT_TRUE(users_->set_disabled("pat", true, kT0).has_value());
  EXPECT_EQ(sign_in("pat", "my patient password", kT0), SignInStatus::kDisabled);
  EXPECT_FALSE(last_.user.has_value());
  EXPECT_EQ(sign_in("pat", "not the password", kT0), SignInStatus::kBadCredentials)
      << "a wrong password does not learn that the account is disabled";
  ASSERT_TRUE(users_->set_disabled("pat", false, kT0).has_value());
  EXPECT_EQ(sign_in("pat", "my patient password", kT0), SignInStatus::kOk);
  auto missing = users_->set_disabled("nobody", true, kT0);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind, fhir::ErrorKind::kNotFound);
}

TEST_F(UserDirectoryTest, FirstAdminIsCreatedOnceAndMustChangeItsPassword) {
  UserDirectoryOptions o = options_;
  o.mfa_roles = {};
  UserDirectory users(*store_, o);
  auto created = users.ensure_admin("", kT0);
  ASSERT_TRUE(created.has_value());
  ASSERT_TRUE(created->has_value());
  const std::string password = **created;
  EXPECT_EQ(password.size(), 24u);
  auto second = users.ensure_admin("", kT0);
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->has_value()) << "users exist: nothing created";

  auto r = users.authenticate("admin", password, "", kT0);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, SignInStatus::kOk);
  EXPECT_TRUE(r->must_change_password);
  EXPECT_EQ(r->user->role, Role::kAdmin);

  auto same = users.change_password("admin", password, password, kT0);
  ASSERT_FALSE(same.has_value());
  EXPECT_EQ(same.error().kind, fhir::ErrorKind::kInvalid);
  auto wrong = users.change_password("admin", "not the password", "a brand new password", kT0);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().kind, fhir::ErrorKind::kUnprocessable);
  ASSERT_TRUE(users.change_password("admin", password, "a brand new password", kT0).has_value());
  r = users.authenticate("admin", "a brand new password", "", kT0);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, SignInStatus::kOk);
  EXPECT_FALSE(r->must_change_password);
  EXPECT_EQ(users.authenticate("admin", password, "", kT0)->status, SignInStatus::kBadCredentials);
}

TEST_F(UserDirectoryTest, FirstAdminTakesAGivenPasswordAndRefusesAShortOne) {
  auto short_one = users_->ensure_admin("short", kT0);
  ASSERT_FALSE(short_one.has_value());
  EXPECT_EQ(short_one.error().kind, fhir::ErrorKind::kInvalid);
  auto created = users_->ensure_admin("from the environment", kT0);
  ASSERT_TRUE(created.has_value());
  EXPECT_EQ(created->value_or(""), "from the environment");
  // The admin role needs a second factor by default: the password is right, enrolment comes next.
  EXPECT_EQ(sign_in("admin", "from the environment", kT0), SignInStatus::kMfaEnrolmentRequired);
}

TEST(RoleTest, ParsesRoleLists) {
  auto roles = parse_roles("physician, nurse,admin");
  ASSERT_TRUE(roles.has_value());
  EXPECT_EQ(*roles, (std::set<Role>{Role::kPhysician, Role::kNurse, Role::kAdmin}));
  EXPECT_TRUE(parse_roles("")->empty());
  auto bad = parse_roles("physician,surgeon");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().issues[0].diagnostics.find("surgeon"), std::string::npos);
}

}  // namespace
}  // namespace caduceus::server::auth
