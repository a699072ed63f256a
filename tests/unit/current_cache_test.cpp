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

// find() hands out the cached record itself; keys differ by tenant, type and id (no key is a prefix of another).
TEST(CurrentCache, FindSharesTheCachedRecord) {
  CurrentCache cache(1 << 20);
  auto shared = std::make_shared<const VersionRecord>(record("a", 1));
  cache.put(0, shared);
  EXPECT_EQ(cache.find(0, "Patient", "a").get(), shared.get());
  EXPECT_EQ(cache.find(1, "Patient", "a"), nullptr);
  EXPECT_EQ(cache.find(0, "Patien", "ta"), nullptr);
  EXPECT_EQ(cache.find(0, "Observation", "a"), nullptr);
  EXPECT_EQ(cache.find(10, "Patient", "a"), nullptr);
  // A newer version replaces it; the record handed out before stays valid and unchanged.
  auto held = cache.find(0, "Patient", "a");
  cache.put(0, record("a", 2, 7));
  ASSERT_NE(cache.find(0, "Patient", "a"), nullptr);
  EXPECT_EQ(cache.find(0, "Patient", "a")->version, 2);
  EXPECT_EQ(cache.find(0, "Patient", "a")->body, std::string(7, 'x'));
  EXPECT_EQ(held->version, 1);
  EXPECT_EQ(held->body, std::string(100, 'x'));
  // An older version offered later does not win.
  cache.put(0, std::make_shared<const VersionRecord>(record("a", 1)));
  EXPECT_EQ(cache.find(0, "Patient", "a")->version, 2);
}

}  // namespace
}  // namespace caduceus::resources
