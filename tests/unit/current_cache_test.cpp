#include "../../resources/src/store/current_cache.hpp"

#include <gtest/gtest.h>

#include <string>

namespace caduceus::resources {
namespace {

VersionRecord record(std::string id, std::int64_t version, std::size_t body_bytes = 100) {
  VersionRecord r;
  r.type = "Patient";
  r.id = std::move(id);
  r.version = version;
  r.body = std::string(body_bytes, 'x');
  return r;
}

// A version read from the database before its shard was emptied must not come back after it: a newer version may
// have been cached and evicted in between.
TEST(CurrentCache, AReadFromBeforeAnEvictionIsNotKept) {
  CurrentCache cache(16 * 2000);                                    // about 2,000 bytes per shard
  const std::uint64_t before = cache.evictions(0, "Patient", "a");  // a reader starts reading version 1
  cache.put(0, record("a", 2));                                     // a writer commits version 2
  for (int i = 0; cache.evictions(0, "Patient", "a") == before; ++i)
    cache.put(0, record("x" + std::to_string(i), 1, 300));
  EXPECT_FALSE(cache.get(0, "Patient", "a").has_value()) << "version 2 was evicted";
  cache.put(0, record("a", 1), before);  // the reader offers version 1, read before the eviction
  EXPECT_FALSE(cache.get(0, "Patient", "a").has_value()) << "a stale version came back";
  // Without an eviction in between, what is read is kept, and a newer version wins by its number.
  const std::uint64_t now = cache.evictions(0, "Patient", "a");
  cache.put(0, record("a", 2));
  cache.put(0, record("a", 1), now);
  ASSERT_TRUE(cache.get(0, "Patient", "a").has_value());
  EXPECT_EQ(cache.get(0, "Patient", "a")->version, 2);
  cache.put(0, record("b", 3), cache.evictions(0, "Patient", "b"));
  ASSERT_TRUE(cache.get(0, "Patient", "b").has_value());
  EXPECT_EQ(cache.get(0, "Patient", "b")->version, 3);
}

}  // namespace
}  // namespace caduceus::resources
