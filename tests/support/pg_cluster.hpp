#pragma once

// Throwaway PostgreSQL for the tests: a cluster made with initdb in a temporary folder, serving only on a unix
// socket in that folder, stopped and removed afterwards (no system service is used or touched).
//
// Under ctest the cluster is a fixture: the test `postgres.cluster.start` starts it (tests/pg_cluster_main.cpp)
// and writes where it is to build/tests/pg-test-cluster.state ($CADUCEUS_TEST_PG_STATE overrides),
// `postgres.cluster.stop` stops and removes it (ctest runs it even when tests failed). A test binary run by hand
// without that file starts a cluster of its own on first use and removes it at exit. Each test takes a fresh database
// in the cluster (PgDatabase).
//
// CADUCEUS_SKIP_POSTGRES=1 skips the PostgreSQL tests (they say so); without it, missing PostgreSQL binaries
// make them fail. CADUCEUS_PG_BIN overrides the folder of initdb and pg_ctl (default /usr/lib/postgresql/15/bin).
#include <expected>
#include <filesystem>
#include <memory>
#include <string>

namespace caduceus::test {

// Whether CADUCEUS_SKIP_POSTGRES=1 asks to skip the PostgreSQL tests.
bool postgres_skipped();
// Whether the tests that run on both backends run on PostgreSQL: CADUCEUS_TEST_BACKEND=postgresql (else SQLite).
bool postgres_backend();

class PgCluster {
 public:
  // initdb + pg_ctl start in a fresh folder under $TMPDIR (as the postgres user when run as root). Waits until
  // the server accepts connections. With `watchdog`, the cluster is stopped and removed when this process ends
  // even without a clean exit (killed); the ctest fixture, whose cluster outlives it, starts it without.
  // Errors: what failed, with the tool's output.
  static std::expected<std::unique_ptr<PgCluster>, std::string> start(bool watchdog = true);
  // A cluster started by another process (the ctest fixture): not stopped by this object.
  static std::unique_ptr<PgCluster> adopt(std::filesystem::path dir, bool owned);
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // Stops the server (immediate mode) and removes the folder.
  void stop();
  // Stops the server (fast mode: clients are disconnected) and keeps the data; start_server() starts it again.
  // For tests of a database that goes away. Errors: the tool's output.
  std::expected<void, std::string> stop_server();
  // Stops the server as a crash would (immediate mode: no shutdown checkpoint, what its memory held is lost) and
  // keeps the data; start_server() starts it again (recovering from its WAL).
  std::expected<void, std::string> crash_server();
  std::expected<void, std::string> start_server();
  const std::filesystem::path& dir() const { return dir_; }
  // libpq URI of a database of the cluster (user postgres, the unix socket in dir()).
  std::string url(const std::string& database = "postgres") const;

 private:
  PgCluster(std::filesystem::path dir, bool owned) : dir_(std::move(dir)), owned_(owned) {}
  // pg_ctl stop -m MODE, keeping the data.
  std::expected<void, std::string> stop_in_mode(const char* mode);
  // A watchdog process that stops and removes the cluster when this process ends without doing so itself (killed,
  // or a broken pipe): it waits for the end of a pipe whose other end only this process holds.
  void start_watchdog();
  std::filesystem::path dir_;
  bool owned_;
  int watchdog_fd_ = -1;
};

// A fresh, empty database in the test cluster (the fixture's, or this process's own), dropped when destroyed
// (after every connection to it is closed: WITH (FORCE)).
class PgDatabase {
 public:
  static std::expected<std::unique_ptr<PgDatabase>, std::string> create();
  ~PgDatabase();
  PgDatabase(const PgDatabase&) = delete;
  PgDatabase& operator=(const PgDatabase&) = delete;
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  // Runs SQL on the database (for checks); the first column of the first row as text, or an error message.
  std::expected<std::string, std::string> query(const std::string& sql) const;

 private:
  PgDatabase(std::string admin_url, std::string name, std::string url)
      : admin_url_(std::move(admin_url)), name_(std::move(name)), url_(std::move(url)) {}
  std::string admin_url_, name_, url_;
};

}  // namespace caduceus::test
