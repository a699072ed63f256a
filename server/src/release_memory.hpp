// Handing freed memory back to the system after a rare, large piece of work.
#pragma once

// tcmalloc's C interface (the server links libtcmalloc_minimal; the tests' binaries may not): weak, so that it is
// null where another allocator serves.
extern "C" void MallocExtension_ReleaseFreeMemory(void) __attribute__((weak));

namespace caduceus::server {

// tcmalloc keeps freed pages for reuse; after a large, rare allocation (an Argon2id hash's 19 MiB, the JSON tree
// behind the CapabilityStatement) they would stay with the process for good. This returns them to the system.
// (Without tcmalloc: nothing.)
inline void release_free_memory() {
  if (MallocExtension_ReleaseFreeMemory != nullptr) MallocExtension_ReleaseFreeMemory();
}

}  // namespace caduceus::server
