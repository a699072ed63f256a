// WAL checkpoints of the SQLite store, off the writer thread.
//
// SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, on the committing thread: the
// single writer then copies every page of the WAL into the database file and fsyncs it while every queued
// write waits (a fifth to a third of the writer's time with the search index on, and its p99). Instead, the
// writer's WAL hook wakes a thread of our own, which checkpoints (PASSIVE: it never blocks the writer or the
// readers) on a connection of its own while the writer goes on. A passive checkpoint that runs beside a
// writer rarely catches the very last frame, and SQLite only starts the WAL over after a checkpoint that did:
// so when the WAL reaches a hard limit, the writer's hook runs one passive checkpoint itself, between two
// commits, which copies only what the background thread has not copied yet; the next write then starts the
// WAL file over. (The file's size is journal_size_limit's business, as before.)
#pragma once

#include <soci/sqlite3/soci-sqlite3.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace caduceus::resources {

class SqliteCheckpointer {
 public:
  // `soft_pages`: WAL size (in pages) from which the background thread is woken; `hard_pages`: from which the
  // writer checkpoints itself. Opens its own connection to `path` when started.
  SqliteCheckpointer(std::string path, int soft_pages, int hard_pages);
  ~SqliteCheckpointer();  // stops the thread
  SqliteCheckpointer(const SqliteCheckpointer&) = delete;
  SqliteCheckpointer& operator=(const SqliteCheckpointer&) = delete;

  // Turns SQLite's automatic checkpoints off on the writer's connection and installs the WAL hook there; starts
  // the thread. Throws std::runtime_error when the thread's connection cannot be opened.
  void attach(sqlite_api::sqlite3* writer_db);
  // Stops the thread (waiting for a checkpoint under way) and removes the hook. Idempotent.
  void stop();
  // Wakes the thread for a checkpoint now, whatever the WAL's size (before the writer starts a long job, such as
  // building deferred indexes, so that the copy runs beside it).
  void checkpoint_now();

  // Checkpoints that copied frames into the database, run by the background thread, and checkpoints run by the
  // writer at the hard limit (for tests and metrics).
  std::uint64_t background_checkpoints() const;
  std::uint64_t writer_checkpoints() const;

 private:
  static int on_commit(void* self, sqlite_api::sqlite3* db, const char* name, int pages);
  void run();

  std::string path_;
  int soft_pages_, hard_pages_;
  int next_wake_, last_pages_ = 0;  // (writer thread only)
  sqlite_api::sqlite3* writer_db_ = nullptr;
  sqlite_api::sqlite3* own_db_ = nullptr;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool wanted_ = false, stopping_ = false;
  std::uint64_t background_ = 0, by_writer_ = 0;
  std::thread thread_;
};

}  // namespace caduceus::resources
