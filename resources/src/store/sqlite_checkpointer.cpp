#include "sqlite_checkpointer.hpp"

#include <algorithm>
#include <stdexcept>

#include "caduceus/fhir/thread_name.hpp"

namespace caduceus::resources {

SqliteCheckpointer::SqliteCheckpointer(std::string path, int soft_pages, int hard_pages)
    : path_(std::move(path)), soft_pages_(soft_pages), hard_pages_(hard_pages), next_wake_(soft_pages) {}

SqliteCheckpointer::~SqliteCheckpointer() {
  stop();
}

void SqliteCheckpointer::attach(sqlite_api::sqlite3* writer_db) {
  using namespace sqlite_api;
  // Closes the connection and throws, saying what failed.
  auto fail = [&](const char* what, int rc) {
    std::string message = own_db_ != nullptr ? sqlite3_errmsg(own_db_) : sqlite3_errstr(rc);
    sqlite3_close_v2(own_db_);
    own_db_ = nullptr;
    throw std::runtime_error(std::string(what) + message);
  };
  int rc = sqlite3_open_v2(path_.c_str(), &own_db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) fail("cannot open the checkpoint connection: ", rc);
  sqlite3_busy_timeout(own_db_, 10000);
  // A connection opens the WAL when it first reads the database. Until then (SQLite 3.40) a checkpoint on it
  // returns SQLITE_OK having done nothing: the log and checkpointed frame counts come back as -1, "not in WAL
  // mode". One read of the schema opens it, for as long as the connection lives.
  rc = sqlite3_exec(own_db_, "SELECT 1 FROM sqlite_schema LIMIT 1", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail("cannot read through the checkpoint connection: ", rc);
  writer_db_ = writer_db;
  // sqlite3_wal_hook replaces the hook of wal_autocheckpoint (and the other way round): one or the other.
  sqlite3_wal_hook(writer_db_, &SqliteCheckpointer::on_commit, this);
  thread_ = std::thread([this] {
    name_this_thread("cad-checkpoint");
    run();
  });
}

void SqliteCheckpointer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (writer_db_ != nullptr) sqlite_api::sqlite3_wal_hook(writer_db_, nullptr, nullptr);
  writer_db_ = nullptr;
  if (own_db_ != nullptr) sqlite_api::sqlite3_close_v2(own_db_);
  own_db_ = nullptr;
}

void SqliteCheckpointer::checkpoint_now() {
  {
    std::lock_guard lock(mutex_);
    wanted_ = true;
  }
  cv_.notify_one();
}

std::uint64_t SqliteCheckpointer::background_checkpoints() const {
  std::lock_guard lock(mutex_);
  return background_;
}

std::uint64_t SqliteCheckpointer::writer_checkpoints() const {
  std::lock_guard lock(mutex_);
  return by_writer_;
}

// Called by SQLite on the writer's thread after each commit, with the number of frames now in the WAL.
int SqliteCheckpointer::on_commit(void* arg, sqlite_api::sqlite3* db, const char* name, int pages) {
  auto* self = static_cast<SqliteCheckpointer*>(arg);
  if (pages >= self->hard_pages_) {
    // PASSIVE: when the background thread holds the checkpoint lock, this answers SQLITE_BUSY at once; the
    // next commit tries again.
    int log = -1, copied = -1;
    int rc = sqlite_api::sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    if (rc == SQLITE_OK && copied >= 0) {
      std::lock_guard lock(self->mutex_);
      ++self->by_writer_;
    }
    return SQLITE_OK;
  }
  // Woken at the soft limit, then again each time a quarter of it more has been written (each pass fsyncs the
  // database: not after every commit); from the start again once the WAL starts over.
  if (pages < self->last_pages_) self->next_wake_ = self->soft_pages_;
  self->last_pages_ = pages;
  if (pages >= self->next_wake_) {
    self->next_wake_ = pages + std::max(1, self->soft_pages_ / 4);
    {
      std::lock_guard lock(self->mutex_);
      self->wanted_ = true;
    }
    self->cv_.notify_one();
  }
  return SQLITE_OK;
}

void SqliteCheckpointer::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return wanted_ || stopping_; });
      if (!wanted_) return;  // (stopping: a checkpoint asked for before is still run)
    }
    int log = -1, copied = -1;
    int rc = sqlite_api::sqlite3_wal_checkpoint_v2(own_db_, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    std::lock_guard lock(mutex_);
    if (rc == SQLITE_OK && copied > 0) ++background_;  // (a pass that found the WAL copied already: not counted)
    wanted_ = false;                                   // a later commit over the soft limit wakes it again
  }
}

}  // namespace caduceus::resources
