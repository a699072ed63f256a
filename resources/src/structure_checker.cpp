#include "caduceus/resources/structure_checker.hpp"

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace caduceus::resources {

namespace {

using fhir::json::Value;

// Past this many issues the checker stops recording (one more issue says so): a hostile body cannot make the
// outcome grow without bound.
constexpr std::size_t kMaxIssues = 500;

std::string_view json_kind(const Value& v) noexcept {
  switch (v.kind()) {
    case Value::Kind::kNull: return "null";
    case Value::Kind::kBool: return "a boolean";
    case Value::Kind::kNumber: return "a number";
    case Value::Kind::kString: return "a string";
    case Value::Kind::kArray: return "an array";
    case Value::Kind::kObject: return "an object";
  }
  return "unknown";
}

template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  out.reserve((std::string_view(parts).size() + ...));
  (out.append(std::string_view(parts)), ...);
  return out;
}

// One step of the FHIRPath to the element being checked: a name, and an array index when inside an array.
struct Segment {
  std::string_view name;
  std::int64_t index = -1;
};

// One check() call: the path so far (views into the JSON being checked and into the definitions; turned into a
// string only when an issue is reported) and the issues found.
class Walker {
 public:
  Walker(const Definitions& definitions, std::vector<fhir::Issue>& issues) : defs_(definitions), issues_(issues) {
    path_.reserve(32);
  }

  // `declared`: the type the element holding the resource allows (Resource for contained and Bundle entries);
  // `contained`: the resource is in a `contained` list, so must not contain resources itself.
  void resource(const Value& obj, const TypeDefinition* declared, bool contained) {
    const Value* resource_type = obj.find("resourceType");
    if (resource_type == nullptr) {
      report("required", "a resource must have a resourceType");
      return;
    }
    if (!resource_type->is_string()) {
      report("structure", cat("resourceType must be a string, not ", json_kind(*resource_type)), "resourceType");
      return;
    }
    const TypeDefinition* type = defs_.type(resource_type->text());
    if (type == nullptr || type->kind != TypeKind::kResource || type->is_abstract) {
      report("invalid", cat("unknown resource type '", resource_type->text(), "'"));
      return;
    }
    if (declared != nullptr && !type->derives_from(*declared)) {
      report("structure", cat("a ", type->name, " is not allowed here (expected a ", declared->name, ")"));
      return;
    }
    const bool root = path_.empty();
    if (root) path_.push_back(Segment{type->name});
    object(obj, *type, true, contained);
    if (root) path_.pop_back();
  }

  void report(std::string_view code, std::string diagnostics, std::string_view child = {}) {
    if (issues_.size() >= kMaxIssues) {
      if (issues_.size() == kMaxIssues) {
        issues_.push_back(
            fhir::Issue{fhir::Severity::kError, "too-costly", "too many issues: the rest are not reported", {}});
      }
      return;
    }
    issues_.push_back(fhir::Issue{fhir::Severity::kError, std::string(code), std::move(diagnostics), path(child)});
  }

 private:
  std::string path(std::string_view child) const {
    std::string out;
    for (const Segment& s : path_) {
      if (!out.empty()) out += '.';
      out += s.name;
      if (s.index >= 0) {
        out += '[';
        out += std::to_string(s.index);
        out += ']';
      }
    }
    if (!child.empty()) {
      if (!out.empty()) out += '.';
      out += child;
    }
    return out;
  }

  // The members of a JSON object of `type` (a resource when resource_root).
  void object(const Value& obj, const TypeDefinition& type, bool resource_root, bool contained) {
    const auto& members = obj.members();
    if (members.empty()) {
      report("structure", cat("an element of type ", type.name, " must not be an empty object"));
      return;
    }
    std::bitset<Definitions::kMaxElementsPerType> seen;
    for (std::size_t m = 0; m < members.size(); ++m) {
      const std::string& key = members[m].first;
      const Value& v = members[m].second;
      if (key == "resourceType") {
        if (resource_root) continue;
        // ExampleScenario.instance has an element of that name; anywhere else it is out of place.
        if (type.find(key) == nullptr) {
          report("structure", "resourceType is only allowed at the root of a resource", key);
          continue;
        }
      }
      if (key == "fhir_comments") continue;
      const bool extension = key.starts_with('_');
      const std::string_view name = extension ? std::string_view(key).substr(1) : std::string_view(key);
      const ElementMatch* match = type.find(name);
      if (match == nullptr) {
        report("structure", cat("unknown element '", key, "' in ", type.name), key);
        continue;
      }
      const ElementDefinition& element = *match->element;
      if (extension && match->type->kind != TypeKind::kPrimitive) {
        report("structure",
               cat("'", key, "' is not allowed: '", name, "' is of type ", match->type->name, ", not a primitive"),
               name);
        continue;
      }
      if (element.choice && seen[element.index]) {
        if (const std::string_view other = other_choice(obj, type, m, *match); !other.empty()) {
          report(
              "structure",
              cat("only one type is allowed for ", element.name, " but both '", other, "' and '", key, "' are given"),
              name);
          continue;
        }
      }
      seen.set(element.index);
      if (contained && resource_root && name == "contained") {
        report("structure", "a contained resource must not contain resources itself", name);
        continue;
      }
      path_.push_back(Segment{name});
      if (extension) {
        primitive_extension(obj, name, v, *match);
      } else {
        member(obj, name, v, *match, resource_root && name == "contained");
      }
      path_.pop_back();
    }
    for (const std::uint16_t index : type.required) {
      if (!seen[index]) {
        const ElementDefinition& element = type.elements[index];
        report("required",
               cat("missing required element '", element.name, "' (", type.name, " requires at least ",
                   std::to_string(element.min), ")"),
               element.stem());
      }
    }
  }

  // Among the members before `m`, the name of one that selects another type of the same choice element, or "".
  static std::string_view other_choice(const Value& obj, const TypeDefinition& type, std::size_t m,
                                       const ElementMatch& match) {
    const auto& members = obj.members();
    for (std::size_t i = 0; i < m; ++i) {
      std::string_view key = members[i].first;
      if (key.starts_with('_')) key.remove_prefix(1);
      const ElementMatch* earlier = type.find(key);
      if (earlier != nullptr && earlier->element == match.element && earlier->type != match.type) {
        return members[i].first;
      }
    }
    return {};
  }

  // The value of a property named `name` (not starting with '_'); the path already ends with `name`.
  void member(const Value& obj, std::string_view name, const Value& v, const ElementMatch& match, bool contained) {
    const TypeDefinition& type = *match.type;
    if (!match.element->many) {
      if (v.is_array()) {
        report("structure", cat("'", name, "' must not be an array: it has at most one value"));
      } else if (v.is_null()) {
        report("structure", cat("'", name, "' must not be null: leave it out instead"));
      } else {
        value(v, type, contained);
      }
      return;
    }
    if (!v.is_array()) {
      report("structure", cat("'", name, "' must be an array: it can repeat"));
      return;
    }
    const auto& items = v.items();
    if (items.empty()) {
      report("structure", cat("'", name, "' must not be an empty array: leave it out instead"));
      return;
    }
    const Value* extensions = nullptr;
    bool extensions_looked_up = false;
    for (std::size_t i = 0; i < items.size(); ++i) {
      path_.back().index = static_cast<std::int64_t>(i);
      const Value& item = items[i];
      if (!item.is_null()) {
        value(item, type, contained);
        continue;
      }
      if (type.kind != TypeKind::kPrimitive) {
        report("structure", cat("null is not allowed in '", name, "'"));
        continue;
      }
      if (!extensions_looked_up) {
        extensions = find_extension(obj, name);
        extensions_looked_up = true;
      }
      const bool has_extension = extensions != nullptr && extensions->is_array() && i < extensions->items().size() &&
                                 extensions->items()[i].is_object();
      if (!has_extension) {
        report("structure",
               cat("null in '", name, "' is only allowed where '_", name, "' has an extension at the same index"));
      }
    }
    path_.back().index = -1;
  }

  // The value of `_name`, the id and extensions of primitive element `name`.
  void primitive_extension(const Value& obj, std::string_view name, const Value& v, const ElementMatch& match) {
    const TypeDefinition& type = *match.type;
    if (!match.element->many) {
      if (!v.is_object()) {
        report("structure", cat("'_", name, "' must be an object (with id or extension), not ", json_kind(v)));
        return;
      }
      object(v, type, false, false);
      return;
    }
    if (!v.is_array()) {
      report("structure", cat("'_", name, "' must be an array aligned with '", name, "', not ", json_kind(v)));
      return;
    }
    const auto& items = v.items();
    if (items.empty()) {
      report("structure", cat("'_", name, "' must not be an empty array: leave it out instead"));
      return;
    }
    const Value* values = obj.find(name);
    const std::vector<Value>* value_items = values != nullptr && values->is_array() ? &values->items() : nullptr;
    if (value_items != nullptr && value_items->size() != items.size()) {
      report("structure", cat("'_", name, "' has ", std::to_string(items.size()), " entries but '", name, "' has ",
                              std::to_string(value_items->size()), ": they must align"));
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      path_.back().index = static_cast<std::int64_t>(i);
      const Value& item = items[i];
      if (item.is_object()) {
        object(item, type, false, false);
      } else if (item.is_null()) {
        // A null in both arrays at the same index is reported once, with the value.
        if (value_items == nullptr || i >= value_items->size()) {
          report("structure", cat("null in '_", name, "' is only allowed where '", name, "' has a value"));
        }
      } else {
        report("structure", cat("entries of '_", name, "' must be objects or null, not ", json_kind(item)));
      }
    }
    path_.back().index = -1;
  }

  // One value (not an array) of an element of `type`; the path ends with the element.
  void value(const Value& v, const TypeDefinition& type, bool contained) {
    switch (type.kind) {
      case TypeKind::kPrimitive:
        if (auto why = fhir::check_primitive(*type.primitive, v)) report("value", std::move(*why));
        return;
      case TypeKind::kResource:
        if (!v.is_object()) {
          report("structure", cat("a resource must be a JSON object, not ", json_kind(v)));
          return;
        }
        resource(v, &type, contained);
        return;
      case TypeKind::kComplex:
        if (!v.is_object()) {
          report("structure", cat("an element of type ", type.name, " must be a JSON object, not ", json_kind(v)));
          return;
        }
        object(v, type, false, false);
        return;
    }
  }

  static const Value* find_extension(const Value& obj, std::string_view name) {
    char buffer[128];
    if (name.size() + 1 > sizeof buffer) return obj.find(cat("_", name));
    buffer[0] = '_';
    name.copy(buffer + 1, name.size());
    return obj.find(std::string_view(buffer, name.size() + 1));
  }

  const Definitions& defs_;
  std::vector<fhir::Issue>& issues_;
  std::vector<Segment> path_;
};

}  // namespace

StructureChecker::StructureChecker(const Definitions& definitions) : definitions_(definitions) {}

std::vector<fhir::Issue> StructureChecker::check(const fhir::json::Value& resource) const {
  std::vector<fhir::Issue> issues;
  Walker walker(definitions_, issues);
  if (!resource.is_object()) {
    walker.report("structure", cat("a resource must be a JSON object, not ", json_kind(resource)));
  } else {
    walker.resource(resource, nullptr, false);
  }
  return issues;
}

}  // namespace caduceus::resources
