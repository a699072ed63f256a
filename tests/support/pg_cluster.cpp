#include "pg_cluster.hpp"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "pg_tools.hpp"

namespace caduceus::test {

namespace fs = std::filesystem;

namespace pg_tools {

fs::path bin_dir() {
  const char* dir = std::getenv("CADUCEUS_PG_BIN");
  return dir != nullptr && *dir ? fs::path(dir) : fs::path("/usr/lib/postgresql/15/bin");
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a program (as the postgres user when we are root: initdb refuses root), its output appended to `log`.
// Returns the exit status (-1 when it could not run).
int run(std::vector<std::string> args, const fs::path& log) {
  if (geteuid() == 0) args.insert(args.begin(), {"runuser", "-u", "postgres", "--"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_t pid = fork();
  if (pid < 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  if (pid == 0) {
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  if (fd >= 0) ::close(fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Makes `path` belong to the postgres user (when we are root).
bool give_to_postgres(const fs::path& path) {
  if (geteuid() != 0) return true;
  struct passwd* pw = getpwnam("postgres");
  if (pw == nullptr) return false;
  return ::chown(path.c_str(), pw->pw_uid, pw->pw_gid) == 0;
}

// (pg_tools.hpp) Runs one statement on the database at `url`; the first value of the first row, or the error.
std::expected<std::string, std::string> sql(const std::string& url, const std::string& statement) {
  PGconn* c = PQconnectdb(url.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string e = PQerrorMessage(c);
    PQfinish(c);
    return std::unexpected("cannot connect to " + url + ": " + e);
  }
  PGresult* r = PQexec(c, statement.c_str());
  std::expected<std::string, std::string> out;
  if (PQresultStatus(r) == PGRES_TUPLES_OK)
    out = PQntuples(r) > 0 && PQnfields(r) > 0 ? std::string(PQgetvalue(r, 0, 0)) : std::string();
  else if (PQresultStatus(r) == PGRES_COMMAND_OK)
    out = std::string();
  else
    out = std::unexpected(statement + ": " + PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
  return out;
}

}  // namespace pg_tools

namespace {

using pg_tools::bin_dir;
using pg_tools::give_to_postgres;
using pg_tools::run;
using pg_tools::slurp;
using pg_tools::sql;

constexpr const char* kPort = "5432";  // only names the socket file in the cluster's own folder

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

std::string uri(const fs::path& dir, const std::string& database) {
  return "postgresql://postgres@/" + database + "?host=" + dir.string() + "&port=" + kPort;
}

// The cluster the tests of this process use: the ctest fixture's when $CADUCEUS_TEST_PG_STATE names a started
// one, else one of our own started on first use (removed at exit).
std::expected<PgCluster*, std::string> shared_cluster() {
  static std::mutex mutex;
  static std::unique_ptr<PgCluster> cluster;
  static std::string failure;
  std::lock_guard lock(mutex);
  if (cluster) return cluster.get();
  if (!failure.empty()) return std::unexpected(failure);
  std::string state = env("CADUCEUS_TEST_PG_STATE");
  if (state.empty()) state = CADUCEUS_TEST_PG_STATE_FILE;
  if (!state.empty() && fs::exists(state)) {
    std::string dir = slurp(state);
    while (!dir.empty() && (dir.back() == '\n' || dir.back() == ' ')) dir.pop_back();
    if (!dir.empty() && fs::exists(fs::path(dir) / "data" / "postmaster.pid")) {  // (else: left by a dead run)
      cluster = PgCluster::adopt(dir, /*owned=*/false);
      return cluster.get();
    }
  }
  auto started = PgCluster::start();
  if (!started) {
    failure = started.error();
    return std::unexpected(failure);
  }
  cluster = std::move(*started);
  return cluster.get();
}

}  // namespace

bool postgres_backend() {
  return env("CADUCEUS_TEST_BACKEND") == "postgresql";
}

bool postgres_skipped() {
  return env("CADUCEUS_SKIP_POSTGRES") == "1";
}

std::expected<std::unique_ptr<PgCluster>, std::string> PgCluster::start(bool watchdog) {
  const fs::path bin = bin_dir();
  for (const char* tool : {"initdb", "pg_ctl"})
    if (!fs::exists(bin / tool))
      return std::unexpected("PostgreSQL 15 is not installed: " + (bin / tool).string() +
                             " is missing (apt-get install postgresql-15, or set CADUCEUS_PG_BIN; "
                             "CADUCEUS_SKIP_POSTGRES=1 skips these tests)");
  std::string base = env("TMPDIR");
  std::string templ = (base.empty() ? std::string("/tmp") : base) + "/caduceus-pg-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return std::unexpected("mkdtemp failed: " + std::string(strerror(errno)));
  const fs::path dir = templ;
  std::unique_ptr<PgCluster> cluster(new PgCluster(dir, /*owned=*/true));
  const fs::path data = dir / "data", log = dir / "tools.log";
  fs::create_directories(data);
  if (!give_to_postgres(dir) || !give_to_postgres(data))
    return std::unexpected("cannot give " + dir.string() + " to the postgres user");
  std::error_code ec;
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec, ec);
  // (the log is written by the tools, run as postgres)
  { std::ofstream touch(log); }
  give_to_postgres(log);
  if (run({(bin / "initdb").string(), "-D", data.string(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C",
           "--no-sync"},
          log) != 0)
    return std::unexpected("initdb failed:\n" + slurp(log));
  if (watchdog) cluster->start_watchdog();
  if (auto started = cluster->start_server(); !started) return std::unexpected(started.error());
  // pg_ctl -w waited for the server to accept connections; check it does (bounded: a few tries).
  std::string last_error;
  for (int attempt = 0; attempt < 50; ++attempt) {
    auto ok = sql(cluster->url(), "SELECT 1");
    if (ok) return cluster;
    last_error = ok.error();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling a readiness check, bounded
  }
  return std::unexpected("the test cluster does not answer: " + last_error + "\n" + slurp(dir / "server.log"));
}

std::expected<void, std::string> PgCluster::start_server() {
  // A throwaway cluster for tests: no fsync (durability is PostgreSQL's own business, tested by its authors),
  // unix socket only, in the folder.
  const std::string options = "-p " + std::string(kPort) + " -k " + dir_.string() +
                              " -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
                              " -c full_page_writes=off -c max_connections=200";
  const fs::path log = dir_ / "tools.log";
  if (run({(bin_dir() / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-l", (dir_ / "server.log").string(), "-o",
           options, "-w", "-t", "60", "start"},
          log) != 0)
    return std::unexpected("pg_ctl start failed:\n" + slurp(log) + "\n" + slurp(dir_ / "server.log"));
  return {};
}

void PgCluster::start_watchdog() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return;
  const std::string pg_ctl = (bin_dir() / "pg_ctl").string(), data = (dir_ / "data").string();
  std::string script = "read _; ";
  script += (geteuid() == 0 ? "runuser -u postgres -- " : "") + pg_ctl + " -D '" + data +
            "' -m immediate -w stop >/dev/null 2>&1; rm -rf '" + dir_.string() + "'";
  pid_t pid = fork();
  if (pid == 0) {
    // The child: its stdin is the read end; only the parent holds the write end (close-on-exec everywhere else).
    dup2(fds[0], 0);
    int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    setsid();  // not in the test's process group: a ^C or a kill of the group leaves it to clean up
    execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  ::close(fds[0]);
  if (pid < 0) {
    ::close(fds[1]);
    return;
  }
  watchdog_fd_ = fds[1];
  // (the watchdog is reaped by init once it outlives us; while we run, a zombie at most)
}

std::expected<void, std::string> PgCluster::stop_server() {
  return stop_in_mode("fast");
}

std::expected<void, std::string> PgCluster::crash_server() {
  return stop_in_mode("immediate");
}

std::expected<void, std::string> PgCluster::stop_in_mode(const char* mode) {
  const fs::path log = dir_ / "tools.log";
  if (run({(bin_dir() / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-m", mode, "-w", "stop"}, log) != 0)
    return std::unexpected("pg_ctl stop failed:\n" + slurp(log));
  return {};
}

std::unique_ptr<PgCluster> PgCluster::adopt(fs::path dir, bool owned) {
  return std::unique_ptr<PgCluster>(new PgCluster(std::move(dir), owned));
}

PgCluster::~PgCluster() {
  if (owned_) stop();
}

void PgCluster::stop() {
  if (dir_.empty()) return;
  if (fs::exists(dir_ / "data" / "postmaster.pid"))
    run({(bin_dir() / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-m", "immediate", "-w", "stop"},
        "/dev/null");
  std::error_code ec;
  fs::remove_all(dir_, ec);
  dir_.clear();
  if (watchdog_fd_ >= 0) ::close(watchdog_fd_);  // the watchdog finds nothing left to do, and ends
  watchdog_fd_ = -1;
}

std::string PgCluster::url(const std::string& database) const {
  return uri(dir_, database);
}

std::expected<std::unique_ptr<PgDatabase>, std::string> PgDatabase::create() {
  auto cluster = shared_cluster();
  if (!cluster) return std::unexpected(cluster.error());
  static std::atomic<int> counter{0};
  std::random_device rd;
  const std::string name =
      "t_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + "_" + std::to_string(rd() % 100000);
  const std::string admin = (*cluster)->url();
  if (auto made = sql(admin, "CREATE DATABASE " + name); !made) return std::unexpected(made.error());
  return std::unique_ptr<PgDatabase>(new PgDatabase(admin, name, (*cluster)->url(name)));
}

PgDatabase::~PgDatabase() {
  (void)sql(admin_url_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
}

std::expected<std::string, std::string> PgDatabase::query(const std::string& statement) const {
  return sql(url_, statement);
}

}  // namespace caduceus::test
