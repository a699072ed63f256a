#pragma once
// Small helpers shared by the HL7 v2 mappers (not a public interface).

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "caduceus/fhir/json.hpp"

namespace caduceus::adapters::hl7v2::util {

using fhir::json::Value;

// A code map from the v2-to-FHIR IG's concept maps (codesystems/*.csv): a v2 code and the FHIR code.
struct CodeMap {
  const char* v2;
  const char* fhir;
};

template <std::size_t N>
std::string_view lookup(const CodeMap (&table)[N], std::string_view code) {
  for (const CodeMap& c : table)
    if (code == c.v2) return c.fhir;
  return {};
}

inline void set_string(Value& obj, std::string_view key, const std::string& v) {
  if (!v.empty()) obj.set(key, Value::string(v));
}

inline void push_string(Value& obj, std::string_view key, const std::string& v) {
  if (v.empty()) return;
  Value* arr = obj.find(key);
  if (arr == nullptr) arr = &obj.set(key, Value::array());
  arr->push_back(Value::string(v));
}

// Appends v to the array member `key` (created when absent).
inline void push(Value& obj, std::string_view key, Value v) {
  Value* arr = obj.find(key);
  if (arr == nullptr) arr = &obj.set(key, Value::array());
  arr->push_back(std::move(v));
}

// FHIR search escapes in a token part (\ , $ |).
inline std::string search_escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == ',' || c == '$' || c == '|') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// {"coding": [{"system": system, "code": code, "display": display}]}
inline Value codeable(std::string_view system, std::string_view code, std::string_view display = {}) {
  Value coding = Value::object();
  coding.set("system", Value::string(std::string(system)));
  coding.set("code", Value::string(std::string(code)));
  if (!display.empty()) coding.set("display", Value::string(std::string(display)));
  Value cc = Value::object();
  push(cc, "coding", std::move(coding));
  return cc;
}

// {"reference": ref}
inline Value reference(std::string_view ref) {
  Value r = Value::object();
  r.set("reference", Value::string(std::string(ref)));
  return r;
}

}  // namespace caduceus::adapters::hl7v2::util
