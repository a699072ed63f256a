// new_ordered_resource_id (repository.hpp): RFC 9562 version 7 UUIDs, which sort by the time they were made.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <regex>
#include <set>
#include <string>

#include "caduceus/resources/repository.hpp"

namespace caduceus::resources {
namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The Unix milliseconds of a version 7 UUID: its first 12 hex digits (the first group and the second).
std::int64_t time_of(const std::string& id) {
  return static_cast<std::int64_t>(std::stoull(id.substr(0, 8) + id.substr(9, 4), nullptr, 16));
}

TEST(OrderedResourceIdTest, IsAVersion7UuidCarryingTheTimeItWasMade) {
  const std::regex v7("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  std::int64_t before = now_ms();
  std::string id = new_ordered_resource_id();
  std::int64_t after = now_ms();
  EXPECT_TRUE(std::regex_match(id, v7)) << id;
  EXPECT_TRUE(is_valid_id(id));
  EXPECT_GE(time_of(id), before);
  EXPECT_LE(time_of(id), after);
}

TEST(OrderedResourceIdTest, LaterIdsSortAfterEarlierOnesAndNoneRepeats) {
  // Ids of different milliseconds sort by them; within one millisecond the 74 random bits order them.
  std::set<std::string> seen;
  std::string first = new_ordered_resource_id();
  std::string last = first;
  while (time_of(last) == time_of(first)) {
    last = new_ordered_resource_id();
    EXPECT_TRUE(seen.insert(last).second) << last;
  }
  EXPECT_GT(time_of(last), time_of(first));
  EXPECT_GT(last, first);
  EXPECT_FALSE(seen.contains(first));
}

}  // namespace
}  // namespace caduceus::resources
