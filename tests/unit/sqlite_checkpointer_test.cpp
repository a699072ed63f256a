// SqliteCheckpointer: WAL checkpoints off the writer's thread (resources/src/store/sqlite_checkpointer.hpp).
#include "../../resources/src/store/sqlite_checkpointer.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "test_server.hpp"

namespace caduceus::resources {
namespace {

using namespace sqlite_api;

void exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
  std::string message = error != nullptr ? error : "";
  sqlite3_free(error);
  ASSERT_EQ(rc, SQLITE_OK) << sql << ": " << message;
}

sqlite3* open_wal(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr), SQLITE_OK);
  exec(db, "PRAGMA journal_mode=WAL");
  exec(db, "PRAGMA synchronous=NORMAL");
  return db;
}

// Writes `commits` transactions of one row with a 3,000-byte value each: one new table page per commit (plus
// the pages on its way), so the WAL grows by at least one frame per commit.
void write_rows(sqlite3* db, int commits) {
  sqlite3_stmt* insert = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO t(v) VALUES (zeroblob(3000))", -1, &insert, nullptr), SQLITE_OK);
  for (int i = 0; i < commits; ++i) {
    ASSERT_EQ(sqlite3_step(insert), SQLITE_DONE);
    sqlite3_reset(insert);
  }
  sqlite3_finalize(insert);
}

std::int64_t count_rows(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM t", -1, &st, nullptr), SQLITE_OK);
  EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
  std::int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close_v2(db);
  return n;
}

TEST(SqliteCheckpointerTest, TheWalIsCheckpointedAndStartsOverWhileTheWriterWrites) {
  test::TempDir dir;
  const std::string path = (dir.path() / "db").string();
  sqlite3* writer = open_wal(path);
  exec(writer, "PRAGMA wal_autocheckpoint=0");  // only the checkpointer can keep the WAL short
  exec(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
  {
    // The writer's own checkpoint at the hard limit, which lets the WAL start over. (The background thread is
    // left out here: while one of its passes copies and fsyncs the database, the writer's passive checkpoint
    // yields to it, and how far the WAL then grows past the limit depends on the disk: on a busy machine a
    // single pass outlasted all 4,000 commits. TheBackgroundThreadCopiesTheWalIntoTheDatabase tests it.)
    SqliteCheckpointer checkpointer(path, /*soft_pages=*/2000000, /*hard_pages=*/200);
    checkpointer.attach(writer);
    // 4,000 commits of at least one 4 KiB frame each: 16 MiB or more through the WAL. Without checkpoints it
    // would hold them all; with them it starts over whenever a checkpoint has caught up.
    write_rows(writer, 4000);
    checkpointer.stop();  // waits for a checkpoint under way, so that the counts are final
    EXPECT_GE(checkpointer.writer_checkpoints(), 1u);
    EXPECT_EQ(checkpointer.background_checkpoints(), 0u);
  }
  const auto wal_bytes = std::filesystem::file_size(path + "-wal");
  EXPECT_LT(wal_bytes, 4000u * 4096u / 2) << "the WAL did not start over";
  // Every row is there, for another connection too.
  EXPECT_EQ(count_rows(path), 4000);
  sqlite3_close_v2(writer);
}

TEST(SqliteCheckpointerTest, TheBackgroundThreadCopiesTheWalIntoTheDatabase) {
  test::TempDir dir;
  const std::string path = (dir.path() / "db").string();
  sqlite3* writer = open_wal(path);
  exec(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
  exec(writer, "PRAGMA wal_checkpoint(TRUNCATE)");
  const auto empty_bytes = std::filesystem::file_size(path);
  {
    // The writer's limit is beyond what is written: only the background thread checkpoints.
    SqliteCheckpointer checkpointer(path, /*soft_pages=*/40, /*hard_pages=*/2000000);
    checkpointer.attach(writer);
    write_rows(writer, 400);
    checkpointer.stop();  // runs a checkpoint that was asked for
    EXPECT_EQ(checkpointer.writer_checkpoints(), 0u);
    EXPECT_GE(checkpointer.background_checkpoints(), 1u);
  }
  // The first pass, woken at 40 pages of WAL, copied at least those into the database file.
  EXPECT_GE(std::filesystem::file_size(path), empty_bytes + 30u * 4096u);
  EXPECT_EQ(count_rows(path), 400);
  sqlite3_close_v2(writer);
}

TEST(SqliteCheckpointerTest, SqliteOwnAutomaticCheckpointIsReplaced) {
  test::TempDir dir;
  const std::string path = (dir.path() / "db").string();
  sqlite3* writer = open_wal(path);
  exec(writer, "PRAGMA wal_autocheckpoint=10");
  exec(writer, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)");
  {
    // Limits beyond what is written: nobody checkpoints, not even SQLite at its 10 pages.
    SqliteCheckpointer checkpointer(path, /*soft_pages=*/1000000, /*hard_pages=*/2000000);
    checkpointer.attach(writer);
    write_rows(writer, 100);
    checkpointer.stop();
    EXPECT_EQ(checkpointer.background_checkpoints(), 0u);
    EXPECT_EQ(checkpointer.writer_checkpoints(), 0u);
  }
  // 100 commits of at least one frame each (4 KiB + a 24-byte header) are all still in the WAL.
  EXPECT_GE(std::filesystem::file_size(path + "-wal"), 100u * 4096u);
  EXPECT_EQ(count_rows(path), 100);
  sqlite3_close_v2(writer);
}

}  // namespace
}  // namespace caduceus::resources
