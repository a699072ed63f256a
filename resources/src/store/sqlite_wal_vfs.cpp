#include "sqlite_wal_vfs.hpp"

#include <soci/sqlite3/soci-sqlite3.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>

namespace caduceus::resources {
namespace {

using namespace sqlite_api;

constexpr std::size_t kMaxPending = 8 << 20;  // written at once beyond this, commit or not
constexpr int kFrameHeaderBytes = 24;

sqlite3_vfs* base_vfs = nullptr;
sqlite3_vfs wal_vfs;
std::atomic<std::uint64_t> asked{0}, made{0};

// A WAL file: ours in front, the default VFS's file object after it (in the same allocation, szOsFile).
struct WalFile {
  sqlite3_file base;  // base.pMethods: kWalMethods
  sqlite3_file* real;
  std::string* pending;  // frames not written yet, from pending_offset on
  sqlite3_int64 pending_offset;
  bool commit_frame;               // the last header asked for was a commit frame's: its page completes the commit
  sqlite3_int64 last_read_offset;  // where the last read began (-1: none since the last write)
};
constexpr std::size_t kWalFileBytes = (sizeof(WalFile) + 15) / 16 * 16;

WalFile* wal(sqlite3_file* f) {
  return reinterpret_cast<WalFile*>(f);
}

// The default VFS writes at most 128 KiB per call (its pwrite takes the length modulo 2^17): larger pieces are
// passed on in chunks below that.
constexpr std::size_t kChunk = 120 << 10;

int flush(WalFile* w) {
  const std::string& p = *w->pending;
  int rc = SQLITE_OK;
  for (std::size_t at = 0; at < p.size() && rc == SQLITE_OK; at += kChunk) {
    const std::size_t n = std::min(kChunk, p.size() - at);
    rc = w->real->pMethods->xWrite(w->real, p.data() + at, static_cast<int>(n),
                                   w->pending_offset + static_cast<sqlite3_int64>(at));
    made.fetch_add(1, std::memory_order_relaxed);
  }
  w->pending->clear();
  return rc;
}

int wal_close(sqlite3_file* f) {
  WalFile* w = wal(f);
  int rc = flush(w);
  int rc2 = w->real->pMethods->xClose(w->real);
  delete w->pending;
  w->pending = nullptr;
  return rc != SQLITE_OK ? rc : rc2;
}

int wal_read(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  WalFile* w = wal(f);
  if (int rc = flush(w); rc != SQLITE_OK) return rc;
  w->last_read_offset = offset;
  return w->real->pMethods->xRead(w->real, out, amount, offset);
}

int wal_write(sqlite3_file* f, const void* data, int amount, sqlite3_int64 offset) {
  WalFile* w = wal(f);
  asked.fetch_add(1, std::memory_order_relaxed);
  std::string& p = *w->pending;
  const bool follows = !p.empty() && offset == w->pending_offset + static_cast<sqlite3_int64>(p.size());
  if (!follows || p.size() + static_cast<std::size_t>(amount) > kMaxPending) {
    if (int rc = flush(w); rc != SQLITE_OK) return rc;
    w->pending_offset = offset;
  }
  p.append(static_cast<const char*>(data), static_cast<std::size_t>(amount));
  const bool rewrite = offset == w->last_read_offset;
  w->last_read_offset = -1;
  if (rewrite) {
    // A frame read whole, then its header written again: SQLite filling in the salt and checksums of the frames
    // of a transaction that wrote some page twice (walRewriteChecksums, after the commit frame). The page is in
    // the file already, nothing follows the last header, and the commit counts only once it is there.
    w->commit_frame = false;
    return flush(w);
  }
  if (amount == kFrameHeaderBytes) {
    // A frame header: bytes 4-7 are the database size after a commit frame, 0 in any other frame.
    const auto* h = static_cast<const unsigned char*>(data);
    w->commit_frame = (h[4] | h[5] | h[6] | h[7]) != 0;
    return SQLITE_OK;
  }
  if (w->commit_frame) {
    w->commit_frame = false;
    return flush(w);  // the commit is whole: in the file before SQLite tells readers of it
  }
  return SQLITE_OK;
}

int wal_truncate(sqlite3_file* f, sqlite3_int64 size) {
  WalFile* w = wal(f);
  if (int rc = flush(w); rc != SQLITE_OK) return rc;
  return w->real->pMethods->xTruncate(w->real, size);
}

int wal_sync(sqlite3_file* f, int flags) {
  WalFile* w = wal(f);
  if (int rc = flush(w); rc != SQLITE_OK) return rc;
  return w->real->pMethods->xSync(w->real, flags);
}

int wal_file_size(sqlite3_file* f, sqlite3_int64* size) {
  WalFile* w = wal(f);
  if (int rc = flush(w); rc != SQLITE_OK) return rc;
  return w->real->pMethods->xFileSize(w->real, size);
}

int wal_lock(sqlite3_file* f, int level) {
  return wal(f)->real->pMethods->xLock(wal(f)->real, level);
}
int wal_unlock(sqlite3_file* f, int level) {
  return wal(f)->real->pMethods->xUnlock(wal(f)->real, level);
}
int wal_check_reserved(sqlite3_file* f, int* out) {
  return wal(f)->real->pMethods->xCheckReservedLock(wal(f)->real, out);
}
int wal_file_control(sqlite3_file* f, int op, void* arg) {
  WalFile* w = wal(f);
  if (int rc = flush(w); rc != SQLITE_OK) return rc;
  return w->real->pMethods->xFileControl(w->real, op, arg);
}
int wal_sector_size(sqlite3_file* f) {
  return wal(f)->real->pMethods->xSectorSize(wal(f)->real);
}
int wal_device_characteristics(sqlite3_file* f) {
  return wal(f)->real->pMethods->xDeviceCharacteristics(wal(f)->real);
}
// (SQLite maps neither shared memory nor pages of a WAL file; these pass on whatever the default VFS does.)
int wal_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return wal(f)->real->pMethods->xShmMap(wal(f)->real, region, size, extend, out);
}
int wal_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return wal(f)->real->pMethods->xShmLock(wal(f)->real, offset, n, flags);
}
void wal_shm_barrier(sqlite3_file* f) {
  wal(f)->real->pMethods->xShmBarrier(wal(f)->real);
}
int wal_shm_unmap(sqlite3_file* f, int remove) {
  return wal(f)->real->pMethods->xShmUnmap(wal(f)->real, remove);
}
int wal_fetch(sqlite3_file* f, sqlite3_int64 offset, int amount, void** out) {
  WalFile* w = wal(f);
  if (int rc = flush(w); rc != SQLITE_OK) return rc;
  return w->real->pMethods->xFetch(w->real, offset, amount, out);
}
int wal_unfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) {
  return wal(f)->real->pMethods->xUnfetch(wal(f)->real, offset, p);
}

const sqlite3_io_methods kWalMethods = {
    3,
    wal_close,
    wal_read,
    wal_write,
    wal_truncate,
    wal_sync,
    wal_file_size,
    wal_lock,
    wal_unlock,
    wal_check_reserved,
    wal_file_control,
    wal_sector_size,
    wal_device_characteristics,
    wal_shm_map,
    wal_shm_lock,
    wal_shm_barrier,
    wal_shm_unmap,
    wal_fetch,
    wal_unfetch,
};

int open_file(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  if ((flags & SQLITE_OPEN_WAL) == 0)
    return base_vfs->xOpen(base_vfs, name, f, flags, out_flags);  // the default VFS's file, as it is
  WalFile* w = wal(f);
  w->base.pMethods = nullptr;
  w->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kWalFileBytes);
  int rc = base_vfs->xOpen(base_vfs, name, w->real, flags, out_flags);
  if (rc != SQLITE_OK) return rc;  // (pMethods null: SQLite does not close it)
  if (w->real->pMethods == nullptr || w->real->pMethods->iVersion < 3) {
    // Not the methods we know how to pass on: the default VFS's file, opened again in place (a live file object
    // is not moved).
    if (w->real->pMethods != nullptr) w->real->pMethods->xClose(w->real);
    return base_vfs->xOpen(base_vfs, name, f, flags, out_flags);
  }
  w->pending = new std::string();
  w->pending_offset = 0;
  w->commit_frame = false;
  w->last_read_offset = -1;
  w->base.pMethods = &kWalMethods;
  return SQLITE_OK;
}

}  // namespace

bool install_wal_coalescing_vfs() {
  static std::once_flag once;
  static bool installed = false;
  std::call_once(once, [] {
    if (sqlite3_initialize() != SQLITE_OK) return;
    base_vfs = sqlite3_vfs_find(nullptr);
    if (base_vfs == nullptr || base_vfs->iVersion < 1) return;
    wal_vfs = *base_vfs;  // every other method is the default VFS's own, with its pAppData
    wal_vfs.zName = "caduceus-wal";
    wal_vfs.szOsFile = static_cast<int>(kWalFileBytes) + base_vfs->szOsFile;
    wal_vfs.pNext = nullptr;
    wal_vfs.xOpen = open_file;
    installed = sqlite3_vfs_register(&wal_vfs, 1) == SQLITE_OK;
  });
  return installed;
}

WalWriteCounts wal_write_counts() {
  return {asked.load(std::memory_order_relaxed), made.load(std::memory_order_relaxed)};
}

}  // namespace caduceus::resources
