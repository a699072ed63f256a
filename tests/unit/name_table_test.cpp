// NameTable: the model's open-addressing map from names to values.
#include "caduceus/resources/name_table.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace caduceus::resources {
namespace {

// Names of every length around the hash's 8-byte words, many sharing prefixes (as valueQuantity, valueString do),
// through several doublings of the table: each is found with its own value, nothing else is, and a name added
// twice keeps its first value.
TEST(NameTable, FindsEveryNameItWasGivenAndNothingElse) {
  std::vector<std::string> names;
  for (int i = 0; i < 3000; ++i) {
    std::string name = "value";
    for (int k = 0; k < i % 23; ++k) name.push_back(static_cast<char>('a' + (i * 7 + k) % 26));
    name += std::to_string(i);
    names.push_back(std::move(name));
  }
  names.emplace_back("");  // the empty name is a name too
  NameTable<int> table;
  EXPECT_EQ(table.find("value"), nullptr);  // (empty table)
  for (std::size_t i = 0; i < names.size(); ++i) EXPECT_TRUE(table.emplace(names[i], static_cast<int>(i)));
  EXPECT_EQ(table.size(), names.size());
  EXPECT_FALSE(table.emplace(names[5], -1));
  for (std::size_t i = 0; i < names.size(); ++i) {
    const int* found = table.find(names[i]);
    ASSERT_NE(found, nullptr) << names[i];
    EXPECT_EQ(*found, static_cast<int>(i)) << names[i];
  }
  for (const std::string& missing : {std::string("value"), std::string("valu"), names[7] + "x", names[9].substr(1),
                                     std::string("value0 "), std::string(1, '\0')})
    EXPECT_EQ(table.find(missing), nullptr) << missing;
}

}  // namespace
}  // namespace caduceus::resources
