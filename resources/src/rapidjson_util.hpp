#pragma once

// Small helpers for reading the embedded definition tables with RapidJSON (private to resources/).

#include <rapidjson/document.h>

#include <string_view>

namespace caduceus::resources::detail {

// A string value's text (the value must be a string).
inline std::string_view as_view(const rapidjson::Value& v) {
  return {v.GetString(), v.GetStringLength()};
}

// An object's member, or nullptr when absent.
inline const rapidjson::Value* member(const rapidjson::Value& object, const char* name) {
  const auto it = object.FindMember(name);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

}  // namespace caduceus::resources::detail
