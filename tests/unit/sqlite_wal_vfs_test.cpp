// The VFS that writes a commit's WAL frames in one piece (resources/src/store/sqlite_wal_vfs.hpp).
#include "../../resources/src/store/sqlite_wal_vfs.hpp"

#include <gtest/gtest.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <filesystem>
#include <string>

#include "test_server.hpp"

namespace caduceus::resources {
namespace {

using namespace sqlite_api;

void exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  ASSERT_EQ(rc, SQLITE_OK) << sql << ": " << message;
}

std::int64_t scalar(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  std::int64_t n = -1;
  if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

// What PRAGMA integrity_check says ("ok" for a whole database).
std::string integrity(sqlite3* db) {
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr), SQLITE_OK);
  std::string out = sqlite3_step(st) == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(st, 0)) : "";
  sqlite3_finalize(st);
  return out;
}

sqlite3* open_db(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr), SQLITE_OK);
  return db;
}

// A connection that writes in WAL mode without an xSync at commit (the store's writer's settings): the commit
// frame alone must make the VFS write.
sqlite3* open_writer(const std::string& path) {
  sqlite3* db = open_db(path);
  exec(db, "PRAGMA journal_mode=WAL");
  exec(db, "PRAGMA synchronous=NORMAL");
  return db;
}

// A writer (no checkpoints of its own) of a new table t (id, v BLOB, k TEXT).
sqlite3* open_writer_of_t(const std::string& path) {
  sqlite3* db = open_writer(path);
  exec(db, "PRAGMA wal_autocheckpoint=0");
  exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB, k TEXT)");
  return db;
}

// Commits of one page and of a few hundred pages (more than the 128 KiB the default VFS writes per call), each
// read by a second connection right after its COMMIT returns: SQLite publishes a commit to readers only after
// writing its frames, and the VFS must have written them by then. The WAL writes are far fewer than SQLite's own.
TEST(SqliteWalVfsTest, EveryCommitIsWholeInTheFileWhenReadersHearOfIt) {
  ASSERT_TRUE(install_wal_coalescing_vfs());
  test::TempDir dir;
  const std::string path = (dir.path() / "db").string();
  sqlite3* writer = open_writer_of_t(path);
  exec(writer, "CREATE INDEX t_k ON t (k)");
  sqlite3* reader = open_db(path);
  const WalWriteCounts before = wal_write_counts();
  std::int64_t rows = 0, bytes = 0;
  for (int commit = 1; commit <= 60; ++commit) {
    const int n = commit % 10 == 0 ? 150 : 3;  // every tenth commit some 150 pages (3,000 bytes a row)
    exec(writer, "BEGIN");
    for (int i = 0; i < n; ++i) exec(writer, "INSERT INTO t(v, k) VALUES (randomblob(3000), hex(randomblob(8)))");
    exec(writer, "COMMIT");
    rows += n;
    bytes += 3000LL * n;
    ASSERT_EQ(scalar(reader, "SELECT COUNT(*) FROM t"), rows) << "commit " << commit;
    ASSERT_EQ(scalar(reader, "SELECT SUM(length(v)) FROM t"), bytes) << "commit " << commit;
    ASSERT_EQ(scalar(reader, "SELECT COUNT(*) FROM t INDEXED BY t_k WHERE k > ''"), rows) << "commit " << commit;
  }
  const WalWriteCounts after = wal_write_counts();
  const std::uint64_t asked = after.asked - before.asked, made = after.made - before.made;
  EXPECT_GT(asked, 2000u);      // two per frame: well over a thousand frames
  EXPECT_LT(made, asked / 10);  // about one per commit, plus a chunk per 120 KiB
  // After a checkpoint and a reopen the database is whole.
  exec(writer, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close_v2(reader);
  sqlite3_close_v2(writer);
  sqlite3* again = open_db(path);
  EXPECT_EQ(scalar(again, "SELECT COUNT(*) FROM t"), rows);
  EXPECT_EQ(integrity(again), "ok");
  sqlite3_close_v2(again);
}

// A transaction rolled back after SQLite spilled pages to the WAL, then a commit: readers see only the commit.
TEST(SqliteWalVfsTest, ASpilledTransactionThatRollsBackLeavesNothing) {
  ASSERT_TRUE(install_wal_coalescing_vfs());
  test::TempDir dir;
  const std::string path = (dir.path() / "db").string();
  sqlite3* writer = open_writer(path);
  exec(writer, "PRAGMA cache_size=20");  // a small cache: a large transaction spills frames before its commit
  exec(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
  sqlite3* reader = open_db(path);
  exec(writer, "BEGIN");
  for (int i = 0; i < 300; ++i) exec(writer, "INSERT INTO t(v) VALUES (randomblob(3000))");
  EXPECT_EQ(scalar(writer, "SELECT COUNT(*) FROM t"), 300);  // (read back through the spilled frames)
  exec(writer, "ROLLBACK");
  EXPECT_EQ(scalar(reader, "SELECT COUNT(*) FROM t"), 0);
  exec(writer, "INSERT INTO t(v) VALUES (randomblob(10))");
  EXPECT_EQ(scalar(reader, "SELECT COUNT(*) FROM t"), 1);
  EXPECT_EQ(scalar(writer, "SELECT COUNT(*) FROM t"), 1);
  sqlite3_close_v2(reader);
  sqlite3_close_v2(writer);
}

// What a crash leaves: the database and WAL files as they are while the writer is still open (copied; the
// shared memory is not, so the copy's first connection recovers the commits from the WAL file alone).
std::string copy_as_after_a_crash(const std::string& path, const std::filesystem::path& to) {
  std::filesystem::copy_file(path, to / "db");
  std::filesystem::copy_file(path + "-wal", to / "db-wal");
  return (to / "db").string();
}

// A transaction larger than the page cache that writes some pages again after SQLite spilled them: SQLite then
// writes its frames without checksums and fills them in after the commit frame (walRewriteChecksums), each frame
// read whole and its header written again. The last of those headers, the commit frame's, must reach the file
// then, not when something happens to come next: until it does, recovery ends at the commit before. (It did not:
// the index builds at the end of `caduceus import` were lost whenever the process ended before its next write.)
TEST(SqliteWalVfsTest, ATransactionWhoseSpilledPagesAreWrittenAgainIsWholeInTheFileAtItsCommit) {
  ASSERT_TRUE(install_wal_coalescing_vfs());
  test::TempDir dir;
  const std::string path = (dir.path() / "db").string();
  sqlite3* writer = open_writer_of_t(path);
  exec(writer, "INSERT INTO t(v, k) VALUES (randomblob(100), 'first')");
  exec(writer, "PRAGMA cache_size=20");
  exec(writer, "BEGIN");
  for (int i = 0; i < 400; ++i) exec(writer, "INSERT INTO t(v, k) VALUES (randomblob(500), hex(randomblob(8)))");
  exec(writer, "CREATE INDEX t_k ON t (k)");
  exec(writer, "UPDATE t SET k = 'changed' WHERE id % 7 = 0");
  exec(writer, "COMMIT");
  test::TempDir crash;
  sqlite3* copy = open_db(copy_as_after_a_crash(path, crash.path()));
  EXPECT_EQ(scalar(copy, "SELECT COUNT(*) FROM t"), 401);
  EXPECT_EQ(scalar(copy, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 't_k'"), 1);
  EXPECT_EQ(scalar(copy, "SELECT COUNT(*) FROM t INDEXED BY t_k WHERE k = 'changed'"), 57);
  EXPECT_EQ(integrity(copy), "ok");
  sqlite3_close_v2(copy);
  sqlite3_close_v2(writer);
}

}  // namespace
}  // namespace caduceus::resources
