#include "pg_replicated.hpp"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "pg_tools.hpp"

namespace caduceus::test {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPort = "5432";  // names the socket file in each node's own folder

using pg_tools::bin_dir;
using pg_tools::give_to_postgres;
using pg_tools::run;
using pg_tools::slurp;

// A socket folder as the host part of a libpq URI: percent-encoded.
std::string uri_host(const fs::path& dir) {
  std::string out;
  for (char c : dir.string()) {
    if (c == '/')
      out += "%2F";
    else
      out += c;
  }
  return out;
}

std::string plain_url(const fs::path& node, const std::string& database) {
  return "postgresql://postgres@/" + database + "?host=" + node.string() + "&port=" + kPort;
}

}  // namespace

std::expected<std::string, std::string> PgReplicatedPair::query(const std::string& url, const std::string& statement) {
  return pg_tools::sql(url, statement);
}

std::expected<std::unique_ptr<PgReplicatedPair>, std::string> PgReplicatedPair::start(const std::string& database) {
  const fs::path bin = bin_dir();
  for (const char* tool : {"initdb", "pg_ctl", "pg_basebackup"})
    if (!fs::exists(bin / tool))
      return std::unexpected("PostgreSQL 15 is not installed: " + (bin / tool).string() +
                             " is missing (CADUCEUS_SKIP_POSTGRES=1 skips these tests)");
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/caduceus-pgha-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return std::unexpected("mkdtemp failed: " + std::string(strerror(errno)));
  std::unique_ptr<PgReplicatedPair> pair(new PgReplicatedPair(templ));
  pair->database_ = database;
  const fs::path dir = pair->dir_, a = dir / "a", b = dir / "b", log = dir / "tools.log";
  fs::create_directories(a / "data");
  fs::create_directories(b);
  { std::ofstream touch(log); }
  for (const fs::path& p : {dir, a, a / "data", b, log})
    if (!give_to_postgres(p)) return std::unexpected("cannot give " + p.string() + " to the postgres user");
  std::error_code ec;
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec, ec);
  pair->start_watchdog();

  if (run({(bin / "initdb").string(), "-D", (a / "data").string(), "-U", "postgres", "--auth=trust", "-E", "UTF8",
           "--locale=C", "--no-sync"},
          log) != 0)
    return std::unexpected("initdb failed:\n" + slurp(log));
  if (auto s = pair->start_server(a, ""); !s) return std::unexpected(s.error());
  // The standby: a base backup of the running primary (WAL streamed alongside), set up to follow it (-R), and
  // named `standby` (application_name) for synchronous_standby_names; the last setting in the file wins.
  if (run({(bin / "pg_basebackup").string(), "-D", (b / "data").string(), "-d",
           "host=" + a.string() + " port=" + kPort + " user=postgres", "-X", "stream", "-R", "--no-sync"},
          log) != 0)
    return std::unexpected("pg_basebackup failed:\n" + slurp(log));
  {
    std::ofstream conf(b / "data" / "postgresql.auto.conf", std::ios::app);
    conf << "primary_conninfo = 'host=" << a.string() << " port=" << kPort
         << " user=postgres application_name=standby'\n";
    if (!conf) return std::unexpected("cannot write the standby's postgresql.auto.conf");
  }
  if (auto s = pair->start_server(b, ""); !s) return std::unexpected(s.error());

  // Synchronous replication on the primary only (ALTER SYSTEM writes the primary's own postgresql.auto.conf, after
  // the backup was taken): the promoted standby then commits without waiting for a standby it does not have, as
  // Patroni does when the last standby is gone.
  const std::string primary = pair->primary_url();
  if (auto r = query(primary, "ALTER SYSTEM SET synchronous_standby_names = 'standby'"); !r)
    return std::unexpected(r.error());
  if (auto r = query(primary, "SELECT pg_reload_conf()"); !r) return std::unexpected(r.error());
  // Poll (bounded) until the primary counts the standby as synchronous.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::string state;
  for (;;) {
    auto r = query(primary, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'");
    state = r ? *r : r.error();
    if (state == "sync") break;
    if (std::chrono::steady_clock::now() > deadline)
      return std::unexpected("the standby did not become synchronous (state: '" + state + "')\n" + pair->logs());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling a condition, bounded by the deadline
  }
  if (auto r = query(primary, "CREATE DATABASE " + database); !r) return std::unexpected(r.error());
  return pair;
}

std::expected<void, std::string> PgReplicatedPair::start_server(const fs::path& node, const std::string& extra) {
  // Throwaway clusters: no fsync (the machine does not crash in these tests; a killed postmaster loses nothing the
  // kernel has), unix socket only, in the node's folder. synchronous_commit stays on (the default).
  const std::string options = "-p " + std::string(kPort) + " -k " + node.string() +
                              " -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=100" +
                              extra;
  const fs::path log = dir_ / "tools.log";
  if (run({(bin_dir() / "pg_ctl").string(), "-D", (node / "data").string(), "-l", (node / "server.log").string(), "-o",
           options, "-w", "-t", "60", "start"},
          log) != 0)
    return std::unexpected("pg_ctl start failed:\n" + slurp(log) + "\n" + slurp(node / "server.log"));
  return {};
}

void PgReplicatedPair::start_watchdog() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return;
  const std::string pg_ctl = (geteuid() == 0 ? "runuser -u postgres -- " : "") + (bin_dir() / "pg_ctl").string();
  std::string script = "read _; ";
  for (const char* node : {"a", "b"})
    script += pg_ctl + " -D '" + (dir_ / node / "data").string() + "' -m immediate -w stop >/dev/null 2>&1; ";
  script += "rm -rf '" + dir_.string() + "'";
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[0], 0);
    int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    setsid();
    execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ::close(fds[0]);
  if (pid < 0) {
    ::close(fds[1]);
    return;
  }
  watchdog_fd_ = fds[1];
}

PgReplicatedPair::~PgReplicatedPair() {
  for (const char* node : {"b", "a"})
    if (fs::exists(dir_ / node / "data" / "postmaster.pid"))
      run({(bin_dir() / "pg_ctl").string(), "-D", (dir_ / node / "data").string(), "-m", "immediate", "-w", "stop"},
          "/dev/null");
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (watchdog_fd_ >= 0) ::close(watchdog_fd_);
}

std::string PgReplicatedPair::url() const {
  return "postgresql://postgres@" + uri_host(dir_ / "a") + ":" + kPort + "," + uri_host(dir_ / "b") + ":" + kPort +
         "/" + database_ + "?target_session_attrs=read-write";
}

std::string PgReplicatedPair::primary_url(const std::string& database) const {
  return plain_url(dir_ / "a", database);
}

std::string PgReplicatedPair::standby_url(const std::string& database) const {
  return plain_url(dir_ / "b", database);
}

std::expected<void, std::string> PgReplicatedPair::kill_primary() {
  std::ifstream pidfile(dir_ / "a" / "data" / "postmaster.pid");
  long pid = 0;
  if (!(pidfile >> pid) || pid <= 0) return std::unexpected("the primary has no postmaster.pid");
  if (::kill(static_cast<pid_t>(pid), SIGKILL) != 0)
    return std::unexpected("kill " + std::to_string(pid) + ": " + strerror(errno));
  return {};
}

std::expected<void, std::string> PgReplicatedPair::promote_standby() {
  const fs::path log = dir_ / "tools.log";
  if (run({(bin_dir() / "pg_ctl").string(), "-D", (dir_ / "b" / "data").string(), "-w", "-t", "60", "promote"}, log) !=
      0)
    return std::unexpected("pg_ctl promote failed:\n" + slurp(log) + "\n" + slurp(dir_ / "b" / "server.log"));
  return {};
}

std::string PgReplicatedPair::logs() const {
  return "--- tools\n" + slurp(dir_ / "tools.log") + "--- primary\n" + slurp(dir_ / "a" / "server.log") +
         "--- standby\n" + slurp(dir_ / "b" / "server.log");
}

}  // namespace caduceus::test
