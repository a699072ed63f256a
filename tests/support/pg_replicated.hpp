#pragma once

// A throwaway PostgreSQL primary with a streaming standby, for the fail-over tests: two clusters in one temporary
// folder (a/ and b/), each serving only on a unix socket in its own subfolder. The standby is a pg_basebackup of
// the primary, streaming from it as `standby`, and the primary waits for it at every commit
// (synchronous_standby_names = 'standby', synchronous_commit = on): a commit the primary acknowledged is on the
// standby. A watchdog process stops both and removes the folder when this process ends without doing so (as
// PgCluster's). Not the ctest fixture: these clusters are killed and promoted.
#include <expected>
#include <filesystem>
#include <memory>
#include <string>

namespace caduceus::test {

class PgReplicatedPair {
 public:
  // initdb and start the primary, pg_basebackup the standby and start it, turn on synchronous replication and
  // wait (bounded) until the primary reports the standby as `sync`; then create the database `database`.
  // Errors: what failed, with the tools' output and the servers' logs.
  static std::expected<std::unique_ptr<PgReplicatedPair>, std::string> start(const std::string& database);
  ~PgReplicatedPair();
  PgReplicatedPair(const PgReplicatedPair&) = delete;
  PgReplicatedPair& operator=(const PgReplicatedPair&) = delete;

  // What a server is given: both hosts in one libpq URI, primary first, with target_session_attrs=read-write (so
  // a connection goes to whichever of the two accepts writes).
  std::string url() const;
  // One of the two only (a plain connection, for checks).
  std::string primary_url(const std::string& database = "postgres") const;
  std::string standby_url(const std::string& database = "postgres") const;

  // SIGKILL to the primary's postmaster (no shutdown, no last WAL sent); its backends end by themselves when they
  // find their postmaster gone. Errors: no pid file, or kill failed.
  std::expected<void, std::string> kill_primary();
  // pg_ctl promote -w on the standby: it ends recovery and accepts writes.
  std::expected<void, std::string> promote_standby();
  // Runs SQL on a server (url); the first column of the first row as text, or the error.
  static std::expected<std::string, std::string> query(const std::string& url, const std::string& sql);
  // The servers' logs, for failure messages.
  std::string logs() const;

 private:
  explicit PgReplicatedPair(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::expected<void, std::string> start_server(const std::filesystem::path& node, const std::string& extra);
  void start_watchdog();
  std::filesystem::path dir_;
  std::string database_;
  int watchdog_fd_ = -1;
};

}  // namespace caduceus::test
