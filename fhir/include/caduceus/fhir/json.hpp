#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::fhir::json {

// A JSON value that keeps what FHIR needs and a generic DOM loses: numbers as the exact text that was written
// (`1.50` stays `1.50`), and object members in their original order. Values are plain data: copyable, movable,
// safe to share between threads when not mutated.
class Value {
 public:
  enum class Kind : std::uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
  using Member = std::pair<std::string, Value>;

  Value() = default;
  static Value null() { return Value(); }
  static Value boolean(bool b);
  static Value number(std::string literal);  // the literal must be valid JSON number syntax
  static Value string(std::string s);
  static Value array();
  static Value object();

  Kind kind() const noexcept { return static_cast<Kind>(v_.index()); }
  bool is_null() const noexcept { return kind() == Kind::kNull; }
  bool is_bool() const noexcept { return kind() == Kind::kBool; }
  bool is_number() const noexcept { return kind() == Kind::kNumber; }
  bool is_string() const noexcept { return kind() == Kind::kString; }
  bool is_array() const noexcept { return kind() == Kind::kArray; }
  bool is_object() const noexcept { return kind() == Kind::kObject; }

  bool as_bool() const noexcept {
    const bool* b = std::get_if<1>(&v_);
    return b != nullptr && *b;
  }
  // The string's content, or a number's literal text (empty for any other kind).
  const std::string& text() const noexcept {
    if (const std::string* s = std::get_if<3>(&v_)) return *s;
    if (const std::string* s = std::get_if<2>(&v_)) return *s;
    return empty_text();
  }

  // An array's items and an object's members; for any other kind, none (and what is added to them there is lost).
  const std::vector<Value>& items() const noexcept {
    const auto* p = std::get_if<4>(&v_);
    return p != nullptr ? *p : empty_items();
  }
  std::vector<Value>& items() noexcept {
    auto* p = std::get_if<4>(&v_);
    return p != nullptr ? *p : scratch_items();
  }
  const std::vector<Member>& members() const noexcept {
    const auto* p = std::get_if<5>(&v_);
    return p != nullptr ? *p : empty_members();
  }
  std::vector<Member>& members() noexcept {
    auto* p = std::get_if<5>(&v_);
    return p != nullptr ? *p : scratch_members();
  }

  // Object access. find() returns nullptr when absent (or when this is not an object).
  const Value* find(std::string_view key) const noexcept;
  Value* find(std::string_view key) noexcept;
  // Sets (replacing in place, or appending) a member; this must be an object.
  Value& set(std::string_view key, Value v);
  // Removes a member if present; returns whether it was.
  bool erase(std::string_view key);
  // Appends to an array.
  Value& push_back(Value v);

  friend bool operator==(const Value& a, const Value& b) noexcept;

 private:
  static const std::string& empty_text() noexcept;
  static const std::vector<Value>& empty_items() noexcept;
  static const std::vector<Member>& empty_members() noexcept;
  static std::vector<Value>& scratch_items() noexcept;  // (emptied at each call: a kind that has none)
  static std::vector<Member>& scratch_members() noexcept;

  // One alternative per Kind, in Kind's order (a number's literal and a string's content are both strings): 40
  // bytes a value, where a string and two vectors side by side took 88, for a DOM walked by every write.
  std::variant<std::monostate, bool, std::string, std::string, std::vector<Value>, std::vector<Member>> v_;
};

struct ParseOptions {
  std::size_t max_depth = 128;  // deeper documents are rejected
  bool reject_duplicate_keys = true;
};

// Parses UTF-8 JSON text. On error returns ErrorKind::kInvalid with an issue of code "invalid" whose diagnostics
// say what and at which byte offset. Never throws on bad input.
Result<Value> parse(std::string_view text, const ParseOptions& options = {});

// Writes compact JSON (or indented with pretty). Numbers are written exactly as their literal.
std::string write(const Value& value, bool pretty = false);
void write_to(std::string& out, const Value& value, bool pretty = false);

// Appends text as a quoted, escaped JSON string.
void append_quoted(std::string& out, std::string_view text);

// Re-indents (pretty) or compacts already valid JSON text without building a DOM; numbers are kept verbatim.
// Returns the input unchanged if it does not parse.
std::string reformat(std::string_view text, bool pretty);

}  // namespace caduceus::fhir::json
