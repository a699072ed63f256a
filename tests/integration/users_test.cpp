// `caduceus admin user ...` on a temporary database, and the administrator created by the first start of
// `caduceus serve`. The outcome is checked through the UserDirectory on the same database afterwards.
#include "caduceus/server/auth/users.hpp"

#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "caduceus/resources/store/store.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using server::auth::SignInStatus;

struct CliRun {
  int exit = -1;
  std::string out, err;
};

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs the caduceus binary with `args` (each single-quoted for the shell; none of ours holds a quote), `input` on
// its standard input.
CliRun caduceus(const TempDir& dir, const std::vector<std::string>& args, const std::string& input = "") {
  const auto in = dir.path() / "stdin.txt", out = dir.path() / "stdout.txt", err = dir.path() / "stderr.txt";
  {
    std::ofstream f(in);
    f << input;
  }
  std::string command = "'" + ServerOptions::default_binary() + "'";
  for (const auto& a : args) command += " '" + a + "'";
  command += " < '" + in.string() + "' > '" + out.string() + "' 2> '" + err.string() + "'";
  const int status = std::system(command.c_str());
  CliRun r;
  r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_all(out);
  r.err = read_all(err);
  return r;
}

// Signs in through a UserDirectory on the database (no second factor asked, to check the password alone).
server::auth::SignInResult sign_in(const std::string& db, const std::string& user, const std::string& password) {
  auto store = resources::open_store(db);
  EXPECT_TRUE(store.has_value()) << (store ? "" : store.error().issues[0].diagnostics);
  if (!store) return {};
  server::auth::UserDirectoryOptions options;
  options.mfa_roles = {};
  server::auth::UserDirectory users(**store, options);
  auto r = users.authenticate(user, password, "", std::chrono::system_clock::now());
  EXPECT_TRUE(r.has_value());
  return r.value_or(server::auth::SignInResult{});
}

TEST(AdminUserCliTest, AddListDisableOnATemporaryDatabase) {
  TempDir dir("caduceus-users");
  const std::string db = "sqlite:" + (dir.path() / "users.db").string();
  {
    std::ofstream ndjson(dir.path() / "people.ndjson");
    ndjson << R"({"resourceType":"Practitioner","id":"house","name":[{"family":"House"}]})"
           << "\n"
           << R"({"resourceType":"Patient","id":"p1","name":[{"family":"Doe"}]})"
           << "\n";
  }
  CliRun imported = caduceus(dir, {"import", "--db", db, (dir.path() / "people.ndjson").string()});
  ASSERT_EQ(imported.exit, 0) << imported.out << imported.err;

  const std::string doctor_password = "Vicodin-and-lupus-2026";
  CliRun add = caduceus(
      dir, {"admin", "user", "add", "House", "--role", "physician", "--fhir-user", "Practitioner/house", "--db", db},
      doctor_password + "\n");
  ASSERT_EQ(add.exit, 0) << add.out << add.err;
  EXPECT_EQ(add.out,
            "User 'house' added (role physician, fhirUser Practitioner/house).\n"
            "The role needs a second factor: enrol it with `caduceus admin user totp house` or at first sign-in.\n");
  EXPECT_EQ(add.out.find(doctor_password), std::string::npos) << "the password is never echoed";
  EXPECT_EQ(add.err.find(doctor_password), std::string::npos) << "the password is never echoed";

  const auto password_file = dir.path() / "patient-password.txt";
  {
    std::ofstream f(password_file);
    f << "a patient's long password\n";
  }
  CliRun patient = caduceus(dir, {"admin", "user", "add", "jdoe", "--role", "patient", "--fhir-user", "Patient/p1",
                                  "--password-file", password_file.string(), "--db", db});
  ASSERT_EQ(patient.exit, 0) << patient.out << patient.err;
  EXPECT_EQ(patient.out, "User 'jdoe' added (role patient, fhirUser Patient/p1).\n");

  CliRun generated =
      caduceus(dir, {"admin", "user", "add", "ops", "--role", "admin", "--generate-password", "--db", db});
  ASSERT_EQ(generated.exit, 0) << generated.out << generated.err;
  const std::string marker = "One-time password (shown once; to be changed at first sign-in): ";
  auto at = generated.out.find(marker);
  ASSERT_NE(at, std::string::npos) << generated.out;
  const std::string ops_password = generated.out.substr(at + marker.size(), 24);

  // Refusals: unknown role (usage, 2), a missing Patient, a taken name, a short password (1).
  CliRun bad_role = caduceus(dir, {"admin", "user", "add", "x", "--role", "surgeon", "--db", db}, "long enough pw\n");
  EXPECT_EQ(bad_role.exit, 2) << bad_role.err;
  CliRun missing =
      caduceus(dir, {"admin", "user", "add", "x", "--role", "patient", "--fhir-user", "Patient/p2", "--db", db},
               "long enough pw\n");
  EXPECT_EQ(missing.exit, 1);
  EXPECT_EQ(missing.err, "caduceus admin user add: Patient/p2 does not exist in the store\n");
  CliRun taken =
      caduceus(dir, {"admin", "user", "add", "jdoe", "--role", "patient", "--fhir-user", "Patient/p1", "--db", db},
               "long enough pw\n");
  EXPECT_EQ(taken.exit, 1);
  EXPECT_EQ(taken.err, "caduceus admin user add: the user 'jdoe' exists already\n");
  CliRun short_password = caduceus(
      dir, {"admin", "user", "add", "y", "--role", "patient", "--fhir-user", "Patient/p1", "--db", db}, "short\n");
  EXPECT_EQ(short_password.exit, 1);
  EXPECT_EQ(short_password.err, "caduceus admin user add: the password must have at least 12 characters\n");

  CliRun disable = caduceus(dir, {"admin", "user", "disable", "jdoe", "--db", db});
  ASSERT_EQ(disable.exit, 0) << disable.err;
  EXPECT_EQ(disable.out, "User 'jdoe' disabled.\n");
  CliRun disable_missing = caduceus(dir, {"admin", "user", "disable", "nobody", "--db", db});
  EXPECT_EQ(disable_missing.exit, 1);

  // Enrolment prints the URI to scan and waits for a code from it; a wrong one leaves the enrolment pending.
  CliRun totp = caduceus(dir, {"admin", "user", "totp", "house", "--db", db}, "abcdef\n");
  EXPECT_EQ(totp.exit, 1);
  EXPECT_TRUE(
      totp.out.starts_with("Scan this URI (as a QR code) with an authenticator app, or type the secret in by "
                           "hand:\n  otpauth://totp/Caduceus:house?secret="))
      << totp.out;
  EXPECT_EQ(totp.err, "caduceus admin user totp: the code does not match the secret being enrolled\n");

  CliRun list = caduceus(dir, {"admin", "user", "list", "--db", db});
  ASSERT_EQ(list.exit, 0) << list.err;
  EXPECT_EQ(list.out,
            "USERNAME              ROLE        FHIR USER                     STATUS    SECOND FACTOR\n"
            "house                 physician   Practitioner/house            active    required, not enrolled\n"
            "jdoe                  patient     Patient/p1                    disabled  off\n"
            "ops                   admin       -                             active    required, not enrolled"
            "  (must change password)\n");

  // The passwords as stored: each one's own, hashed with Argon2id.
  EXPECT_EQ(sign_in(db, "house", doctor_password).status, SignInStatus::kOk);
  EXPECT_EQ(sign_in(db, "house", "Vicodin-and-lupus-2027").status, SignInStatus::kBadCredentials);
  EXPECT_EQ(sign_in(db, "jdoe", "a patient's long password").status, SignInStatus::kDisabled);
  auto ops = sign_in(db, "ops", ops_password);
  EXPECT_EQ(ops.status, SignInStatus::kOk);
  EXPECT_TRUE(ops.must_change_password);

  CliRun enable = caduceus(dir, {"admin", "user", "enable", "jdoe", "--db", db});
  ASSERT_EQ(enable.exit, 0) << enable.err;
  EXPECT_EQ(sign_in(db, "jdoe", "a patient's long password").status, SignInStatus::kOk);
}

TEST(AdminUserCliTest, RefusesWhileTheServerHoldsTheDatabase) {
  TestServer server;
  TempDir dir("caduceus-users");
  CliRun list = caduceus(dir, {"admin", "user", "list", "--db", server.db_url()});
  EXPECT_EQ(list.exit, 1);
  EXPECT_NE(list.err.find("is in use by another Caduceus process"), std::string::npos) << list.err;
}

// The lines of the server's stdout before and around its URL line that announce the first administrator.
std::vector<std::string> admin_lines(const TestServer& server) {
  std::vector<std::string> out;
  for (const auto& line : server.log_lines())
    if (line.find("first start") != std::string::npos) out.push_back(line);
  return out;
}

TEST(FirstStartTest, PrintsTheOneTimeAdminPasswordExactlyOnce) {
  ServerOptions options;
  TestServer server(options);
  auto lines = admin_lines(server);
  ASSERT_EQ(lines.size(), 1u) << server.stderr_text();
  const std::string marker = "created the user 'admin' (role admin) with the one-time password ";
  auto at = lines[0].find(marker);
  ASSERT_NE(at, std::string::npos) << lines[0];
  const std::string password = lines[0].substr(at + marker.size(), 24);
  EXPECT_EQ(lines[0].substr(at + marker.size() + 24),
            " (shown only this once; it must be changed at the first sign-in).");

  server.restart();
  EXPECT_TRUE(admin_lines(server).empty()) << "the second start creates nothing and prints no password";
  ASSERT_EQ(server.stop(), 0);

  auto admin = sign_in(server.db_url(), "admin", password);
  EXPECT_EQ(admin.status, SignInStatus::kOk);
  EXPECT_TRUE(admin.must_change_password) << "the one-time password must be changed at the first sign-in";
  ASSERT_TRUE(admin.user.has_value());
  EXPECT_EQ(admin.user->role, server::auth::Role::kAdmin);
}

TEST(FirstStartTest, TakesTheAdminPasswordFromTheEnvironment) {
  ServerOptions options;
  options.env["CADUCEUS_ADMIN_PASSWORD"] = "set by the deployment";
  TestServer server(options);
  auto lines = admin_lines(server);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            "Caduceus: first start: created the user 'admin' (role admin) with the password from "
            "CADUCEUS_ADMIN_PASSWORD; it must be changed at the first sign-in.");
  ASSERT_EQ(server.stop(), 0);
  auto admin = sign_in(server.db_url(), "admin", "set by the deployment");
  EXPECT_EQ(admin.status, SignInStatus::kOk);
  EXPECT_TRUE(admin.must_change_password);
}

TEST(FirstStartTest, MfaRolesOptionIsChecked) {
  ServerOptions options;
  options.extra_args = {"--mfa-roles", "physician,surgeon"};
  try {
    TestServer server(options);
    ADD_FAILURE() << "the server started with an unknown role in --mfa-roles";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--mfa-roles: unknown role 'surgeon'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace caduceus::test
