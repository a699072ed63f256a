#include "caduceus/server/auth/admin_cli.hpp"

#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>

#include "caduceus/resources/store/store.hpp"
#include "caduceus/server/auth/users.hpp"
#include "caduceus/server/config.hpp"

namespace caduceus::server::auth {

namespace {

constexpr const char* kUsage =
    "Usage: caduceus admin user COMMAND [--db URL] ...\n"
    "\n"
    "Manages the accounts that sign in, in the database of --db (default $CADUCEUS_DB, else\n"
    "sqlite:var/caduceus.db). The server must be stopped (it holds the database).\n"
    "\n"
    "Commands:\n"
    "  add USERNAME --role ROLE [--fhir-user TYPE/ID] [--password-file FILE | --generate-password]\n"
    "              [--must-change-password]\n"
    "      ROLE: physician, nurse, technician (linked to --fhir-user Practitioner/ID), patient (linked to\n"
    "      --fhir-user Patient/ID), admin (Practitioner/ID or nothing). The resource must exist.\n"
    "      The password (12 characters at least) is read from standard input (typed twice, not echoed, on a\n"
    "      terminal; the first line otherwise), or from the first line of FILE; --generate-password makes one,\n"
    "      prints it once and sets --must-change-password.\n"
    "  list                      every user: role, fhirUser, status, second factor\n"
    "  disable USERNAME          the user can no longer sign in\n"
    "  enable USERNAME           undoes disable\n"
    "  totp USERNAME             enrols a second factor: prints the otpauth:// URI (and its secret) to scan, then\n"
    "                            reads a code from the app on standard input to confirm it\n";

// One line from `in`, without echo when it is a terminal.
std::optional<std::string> read_secret_line(std::istream& in, std::ostream& err, const char* prompt) {
  const bool terminal = &in == &std::cin && ::isatty(STDIN_FILENO);
  termios saved{};
  if (terminal) {
    err << prompt << std::flush;
    ::tcgetattr(STDIN_FILENO, &saved);
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::string line;
  bool got = static_cast<bool>(std::getline(in, line));
  if (terminal) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    err << "\n";
  }
  if (!got) return std::nullopt;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::string describe(const fhir::Error& e) {
  std::string text;
  for (const auto& issue : e.issues) text += (text.empty() ? "" : "; ") + issue.diagnostics;
  return text;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

}  // namespace

int run_admin_user(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? err : out) << kUsage;
    return args.empty() ? 2 : 0;
  }
  const std::string command = args[0];
  std::string db = ServeConfig{}.db;
  if (const char* env = std::getenv("CADUCEUS_DB"); env != nullptr && *env != '\0') db = env;
  std::string username, role_text, fhir_user, password_file;
  bool generate = false, must_change = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& target) {
      if (i + 1 >= args.size()) return false;
      target = args[++i];
      return true;
    };
    bool ok = true;
    if (a == "--help" || a == "-h") {
      out << kUsage;
      return 0;
    } else if (a == "--db") {
      ok = value(db);
    } else if (a == "--role") {
      ok = value(role_text);
    } else if (a == "--fhir-user") {
      ok = value(fhir_user);
    } else if (a == "--password-file") {
      ok = value(password_file);
    } else if (a == "--generate-password") {
      generate = true;
    } else if (a == "--must-change-password") {
      must_change = true;
    } else if (a.starts_with("-")) {
      err << "caduceus admin user: unknown option '" << a << "'\n\n" << kUsage;
      return 2;
    } else if (username.empty()) {
      username = a;
    } else {
      err << "caduceus admin user: unexpected argument '" << a << "'\n";
      return 2;
    }
    if (!ok) {
      err << "caduceus admin user: " << a << " needs a value\n";
      return 2;
    }
  }
  const bool needs_user = command == "add" || command == "disable" || command == "enable" || command == "totp";
  if (command != "list" && !needs_user) {
    err << "caduceus admin user: unknown command '" << command << "'\n\n" << kUsage;
    return 2;
  }
  if (needs_user && username.empty()) {
    err << "caduceus admin user " << command << ": which user? (caduceus admin user --help)\n";
    return 2;
  }
  std::optional<Role> role;
  if (command == "add") {
    role = parse_role(role_text);
    if (!role) {
      err << "caduceus admin user add: --role is one of physician, nurse, technician, admin, patient\n";
      return 2;
    }
    if (generate && !password_file.empty()) {
      err << "caduceus admin user add: --password-file or --generate-password, not both\n";
      return 2;
    }
  }

  resources::StoreOptions store_options;
  store_options.readers = 1;
  auto store = resources::open_store(db, store_options);
  if (!store) {
    err << "caduceus admin user: " << describe(store.error()) << "\n";
    return 1;
  }
  UserDirectory users(**store);
  const auto now = std::chrono::system_clock::now();

  if (command == "list") {
    auto listed = users.list(now);
    if (!listed) {
      err << "caduceus admin user list: " << describe(listed.error()) << "\n";
      return 1;
    }
    out << pad("USERNAME", 20) << "  " << pad("ROLE", 10) << "  " << pad("FHIR USER", 28) << "  " << pad("STATUS", 8)
        << "  SECOND FACTOR\n";
    for (const UserInfo& u : *listed) {
      std::string status = u.disabled ? "disabled" : u.locked_until ? "locked" : "active";
      std::string mfa = u.totp_enrolled ? "enrolled" : u.mfa_required ? "required, not enrolled" : "off";
      out << pad(u.username, 20) << "  " << pad(std::string(to_string(u.role)), 10) << "  "
          << pad(u.fhir_user.empty() ? "-" : u.fhir_user, 28) << "  " << pad(status, 8) << "  " << mfa
          << (u.must_change_password ? "  (must change password)" : "") << "\n";
    }
    return 0;
  }
  if (command == "disable" || command == "enable") {
    auto done = users.set_disabled(username, command == "disable", now);
    if (!done) {
      err << "caduceus admin user " << command << ": " << describe(done.error()) << "\n";
      return 1;
    }
    out << "User '" << *normalize_username(username) << "' " << command << "d.\n";
    return 0;
  }
  if (command == "totp") {
    auto enrolment = users.begin_totp_enrolment(username, now);
    if (!enrolment) {
      err << "caduceus admin user totp: " << describe(enrolment.error()) << "\n";
      return 1;
    }
    out << "Scan this URI (as a QR code) with an authenticator app, or type the secret in by hand:\n"
        << "  " << enrolment->uri << "\n  secret: " << enrolment->secret_base32 << "\n"
        << std::flush;
    auto code = read_secret_line(in, err, "Code shown by the app: ");
    if (!code) {
      err << "caduceus admin user totp: no code given; the enrolment stays pending\n";
      return 1;
    }
    auto confirmed = users.confirm_totp_enrolment(username, *code, std::chrono::system_clock::now());
    if (!confirmed) {
      err << "caduceus admin user totp: " << describe(confirmed.error()) << "\n";
      return 1;
    }
    out << "Second factor enrolled for '" << *normalize_username(username) << "'.\n";
    return 0;
  }

  // add
  NewUser user;
  user.username = username;
  user.role = *role;
  user.fhir_user = fhir_user;
  user.must_change_password = must_change || generate;
  if (generate) {
    user.password = generate_password();
  } else if (!password_file.empty()) {
    std::ifstream file(password_file);
    if (!file || !std::getline(file, user.password)) {
      err << "caduceus admin user add: cannot read a password from '" << password_file << "'\n";
      return 1;
    }
    if (!user.password.empty() && user.password.back() == '\r') user.password.pop_back();
  } else {
    auto first = read_secret_line(in, err, "Password: ");
    if (!first) {
      err << "caduceus admin user add: no password on standard input\n";
      return 1;
    }
    if (&in == &std::cin && ::isatty(STDIN_FILENO)) {
      auto again = read_secret_line(in, err, "Password again: ");
      if (!again || *again != *first) {
        err << "caduceus admin user add: the two passwords differ\n";
        return 1;
      }
    }
    user.password = std::move(*first);
  }
  auto added = users.add(user, now);
  if (!added) {
    err << "caduceus admin user add: " << describe(added.error()) << "\n";
    return 1;
  }
  out << "User '" << added->username << "' added (role " << to_string(added->role)
      << (added->fhir_user.empty() ? std::string() : ", fhirUser " + added->fhir_user) << ").\n";
  if (generate) out << "One-time password (shown once; to be changed at first sign-in): " << user.password << "\n";
  if (added->mfa_required)
    out << "The role needs a second factor: enrol it with `caduceus admin user totp " << added->username
        << "` or at first sign-in.\n";
  return 0;
}

}  // namespace caduceus::server::auth
