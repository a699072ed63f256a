#include "caduceus/fhir/json_patch.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace caduceus::fhir::json {

namespace {

// A JSON Pointer (RFC 6901) split into its unescaped reference tokens; nullopt when malformed.
std::optional<std::vector<std::string>> parse_pointer(std::string_view pointer) {
  std::vector<std::string> tokens;
  if (pointer.empty()) return tokens;
  if (pointer.front() != '/') return std::nullopt;
  pointer.remove_prefix(1);
  for (;;) {
    auto slash = pointer.find('/');
    std::string_view raw = pointer.substr(0, slash);
    std::string token;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '~') {
        token.push_back(raw[i]);
        continue;
      }
      if (i + 1 >= raw.size() || (raw[i + 1] != '0' && raw[i + 1] != '1')) return std::nullopt;
      token.push_back(raw[i + 1] == '0' ? '~' : '/');
      ++i;
    }
    tokens.push_back(std::move(token));
    if (slash == std::string_view::npos) break;
    pointer.remove_prefix(slash + 1);
  }
  return tokens;
}

// An array index token: digits without a leading zero (RFC 6901 section 4).
std::optional<std::size_t> array_index(const std::string& token) {
  if (token.empty() || (token.size() > 1 && token[0] == '0')) return std::nullopt;
  std::size_t v = 0;
  auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
  if (ec != std::errc() || ptr != token.data() + token.size()) return std::nullopt;
  return v;
}

struct Failure {
  ErrorKind kind;
  std::string message;
};

using Step = std::expected<void, Failure>;

Failure unprocessable(std::string message) {
  return Failure{ErrorKind::kUnprocessable, std::move(message)};
}

// The value at tokens[0, n) of doc, or nullptr when there is none.
Value* resolve(Value& doc, const std::vector<std::string>& tokens, std::size_t n) {
  Value* at = &doc;
  for (std::size_t i = 0; i < n; ++i) {
    if (at->is_object()) {
      at = at->find(tokens[i]);
    } else if (at->is_array()) {
      auto index = array_index(tokens[i]);
      if (!index || *index >= at->items().size()) return nullptr;
      at = &at->items()[*index];
    } else {
      return nullptr;
    }
    if (at == nullptr) return nullptr;
  }
  return at;
}

std::string join(const std::vector<std::string>& tokens) {
  std::string out;
  for (const std::string& t : tokens) {
    out += '/';
    for (char c : t) {
      if (c == '~')
        out += "~0";
      else if (c == '/')
        out += "~1";
      else
        out += c;
    }
  }
  return out;
}

Step add(Value& doc, const std::vector<std::string>& path, Value value) {
  if (path.empty()) {
    doc = std::move(value);
    return {};
  }
  Value* parent = resolve(doc, path, path.size() - 1);
  if (parent == nullptr) return std::unexpected(unprocessable("the parent of '" + join(path) + "' does not exist"));
  const std::string& last = path.back();
  if (parent->is_object()) {
    parent->set(last, std::move(value));
    return {};
  }
  if (parent->is_array()) {
    auto& items = parent->items();
    if (last == "-") {
      items.push_back(std::move(value));
      return {};
    }
    auto index = array_index(last);
    if (!index || *index > items.size())
      return std::unexpected(
          unprocessable("'" + join(path) + "' is not a position in an array of " + std::to_string(items.size())));
    items.insert(items.begin() + static_cast<std::ptrdiff_t>(*index), std::move(value));
    return {};
  }
  return std::unexpected(unprocessable("the parent of '" + join(path) + "' is neither an object nor an array"));
}

// Removes the value at path and hands it back.
std::expected<Value, Failure> take(Value& doc, const std::vector<std::string>& path) {
  if (path.empty()) return std::unexpected(unprocessable("the whole document cannot be removed"));
  Value* parent = resolve(doc, path, path.size() - 1);
  const std::string& last = path.back();
  if (parent != nullptr && parent->is_object()) {
    auto& members = parent->members();
    auto it = std::find_if(members.begin(), members.end(), [&](const auto& m) { return m.first == last; });
    if (it != members.end()) {
      Value out = std::move(it->second);
      members.erase(it);
      return out;
    }
  } else if (parent != nullptr && parent->is_array()) {
    auto index = array_index(last);
    auto& items = parent->items();
    if (index && *index < items.size()) {
      Value out = std::move(items[*index]);
      items.erase(items.begin() + static_cast<std::ptrdiff_t>(*index));
      return out;
    }
  }
  return std::unexpected(unprocessable("there is no value at '" + join(path) + "'"));
}

bool number_equal(const std::string& a, const std::string& b) {
  if (a == b) return true;
  char* end_a = nullptr;
  char* end_b = nullptr;
  double x = std::strtod(a.c_str(), &end_a);
  double y = std::strtod(b.c_str(), &end_b);
  return *end_a == '\0' && *end_b == '\0' && x == y;
}

}  // namespace

bool patch_equal(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kNull: return true;
    case Value::Kind::kBool: return a.as_bool() == b.as_bool();
    case Value::Kind::kNumber: return number_equal(a.text(), b.text());
    case Value::Kind::kString: return a.text() == b.text();
    case Value::Kind::kArray:
      return std::equal(a.items().begin(), a.items().end(), b.items().begin(), b.items().end(), patch_equal);
    case Value::Kind::kObject: {
      if (a.members().size() != b.members().size()) return false;
      for (const auto& [key, value] : a.members()) {
        const Value* other = b.find(key);
        if (other == nullptr || !patch_equal(value, *other)) return false;
      }
      return true;
    }
  }
  return false;
}

Result<void> apply_patch(Value& document, const Value& patch) {
  if (!patch.is_array())
    return fail(ErrorKind::kInvalid, "structure", "A JSON Patch document is an array of operations (RFC 6902)");
  Value work = document;
  for (std::size_t i = 0; i < patch.items().size(); ++i) {
    const Value& op = patch.items()[i];
    const std::string where = "/" + std::to_string(i);
    auto malformed = [&](std::string member, std::string message) {
      return fail(ErrorKind::kInvalid, "structure", "JSON Patch operation " + std::to_string(i) + ": " + message,
                  where + (member.empty() ? "" : "/" + member));
    };
    if (!op.is_object()) return malformed("", "an operation is an object");
    const Value* name = op.find("op");
    if (name == nullptr || !name->is_string()) return malformed("op", "'op' is required and is a string");
    const std::string& kind = name->text();
    const Value* path_value = op.find("path");
    if (path_value == nullptr || !path_value->is_string())
      return malformed("path", "'path' is required and is a string (a JSON Pointer)");
    auto path = parse_pointer(path_value->text());
    if (!path) return malformed("path", "'" + path_value->text() + "' is not a JSON Pointer");
    std::optional<std::vector<std::string>> from;
    if (kind == "move" || kind == "copy") {
      const Value* from_value = op.find("from");
      if (from_value == nullptr || !from_value->is_string())
        return malformed("from", "'from' is required for " + kind + " and is a string (a JSON Pointer)");
      from = parse_pointer(from_value->text());
      if (!from) return malformed("from", "'" + from_value->text() + "' is not a JSON Pointer");
    }
    const Value* value = op.find("value");
    if ((kind == "add" || kind == "replace" || kind == "test") && value == nullptr)
      return malformed("value", "'value' is required for " + kind);

    Step step;
    if (kind == "add") {
      step = add(work, *path, *value);
    } else if (kind == "remove") {
      auto removed = take(work, *path);
      if (!removed) step = std::unexpected(removed.error());
    } else if (kind == "replace") {
      Value* target = resolve(work, *path, path->size());
      if (target == nullptr)
        step = std::unexpected(unprocessable("there is no value at '" + path_value->text() + "' to replace"));
      else
        *target = *value;
    } else if (kind == "move") {
      bool into_itself = path->size() > from->size() && std::equal(from->begin(), from->end(), path->begin());
      if (into_itself) {
        step = std::unexpected(unprocessable("a value cannot be moved into one of its own children"));
      } else if (*path != *from) {
        auto moved = take(work, *from);
        if (!moved)
          step = std::unexpected(moved.error());
        else
          step = add(work, *path, std::move(*moved));
      } else if (resolve(work, *from, from->size()) == nullptr) {
        step = std::unexpected(unprocessable("there is no value at '" + join(*from) + "'"));
      }
    } else if (kind == "copy") {
      Value* source = resolve(work, *from, from->size());
      if (source == nullptr)
        step = std::unexpected(unprocessable("there is no value at '" + join(*from) + "'"));
      else
        step = add(work, *path, Value(*source));
    } else if (kind == "test") {
      Value* target = resolve(work, *path, path->size());
      if (target == nullptr)
        step = std::unexpected(unprocessable("test failed: there is no value at '" + path_value->text() + "'"));
      else if (!patch_equal(*target, *value))
        step = std::unexpected(unprocessable("test failed: the value at '" + path_value->text() +
                                             "' is not the one given (" + write(*value) + ")"));
    } else {
      return malformed("op", "'" + kind + "' is not a JSON Patch operation (add, remove, replace, move, copy, test)");
    }
    if (!step)
      return fail(step.error().kind, step.error().kind == ErrorKind::kUnprocessable ? "processing" : "structure",
                  "JSON Patch operation " + std::to_string(i) + " (" + kind + "): " + step.error().message, where);
  }
  document = std::move(work);
  return {};
}

}  // namespace caduceus::fhir::json
