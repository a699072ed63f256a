#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
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

  Kind kind() const noexcept { return kind_; }
  bool is_null() const noexcept { return kind_ == Kind::kNull; }
  bool is_bool() const noexcept { return kind_ == Kind::kBool; }
  bool is_number() const noexcept { return kind_ == Kind::kNumber; }
  bool is_string() const noexcept { return kind_ == Kind::kString; }
  bool is_array() const noexcept { return kind_ == Kind::kArray; }
  bool is_object() const noexcept { return kind_ == Kind::kObject; }

  bool as_bool() const noexcept { return bool_; }
  // The string's content, or a number's literal text.
  const std::string& text() const noexcept { return text_; }

  const std::vector<Value>& items() const noexcept { return items_; }
  std::vector<Value>& items() noexcept { return items_; }
  const std::vector<Member>& members() const noexcept { return members_; }
  std::vector<Member>& members() noexcept { return members_; }

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
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  std::string text_;
  std::vector<Value> items_;
  std::vector<Member> members_;
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
