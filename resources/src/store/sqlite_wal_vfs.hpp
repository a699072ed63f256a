// A thin SQLite VFS over the default one that gathers the writes of a commit to the WAL into one write.
//
// SQLite writes each WAL frame with two pwrite(2) calls (its 24-byte header, then the page), so a group commit of
// a few hundred dirty pages made some five hundred system calls, each page-cache page touched by two or three of
// them (a frame is 24 bytes off the page boundary): a fifth of the writer thread's time in a profile of indexed
// creates. Here the frames of a WAL file that follow each other are kept in memory and written with one call when
// the commit frame is complete (its header carries the database size, "nTruncate", non-zero: the WAL format,
// https://www.sqlite.org/fileformat2.html#walformat), and before anything that reads, syncs, truncates or sizes
// the file. So the commit's frames are in the file before SQLite publishes them to readers in the wal-index, just
// as before, only in one piece. A frame header written again right after its frame was read (SQLite filling in
// the checksums of a transaction that wrote a spilled page twice, the commit frame's last) is written at once. Every
// other file (the database, the shared memory) goes straight to the default VFS.
#pragma once

#include <cstdint>

namespace caduceus::resources {

// Registers the VFS once per process, as the default one (so that every connection opened afterwards uses it).
// Returns false if SQLite refused it (the connections then use SQLite's own default, unchanged).
bool install_wal_coalescing_vfs();

// Counts since the process started, for tests and measurements: WAL writes asked for by SQLite, and writes
// actually made to WAL files.
struct WalWriteCounts {
  std::uint64_t asked = 0, made = 0;
};
WalWriteCounts wal_write_counts();

}  // namespace caduceus::resources
