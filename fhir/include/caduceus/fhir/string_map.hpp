#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace caduceus::fhir {

// A hash map keyed by std::string whose find() also takes a std::string_view or a const char* (heterogeneous
// lookup): no key string is built to look one up.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

}  // namespace caduceus::fhir
