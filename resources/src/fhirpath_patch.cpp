#include "caduceus/resources/fhirpath_patch.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>

#include "caduceus/resources/fhirpath.hpp"

namespace caduceus::resources {

using fhir::ErrorKind;
using fhir::Result;
using fhir::json::Value;
using fhirpath::PathStep;

enum class OpType { kAdd, kInsert, kDelete, kReplace, kMove };

struct FhirPathPatch::Operation {
  OpType type = OpType::kAdd;
  std::string type_name;  // "add"
  std::string where;      // "Parameters.parameter[2]"
  std::optional<fhirpath::FhirPath> path;
  std::string name;
  std::optional<Value> value;  // the `value` part as given (value[x] and _value[x], or its parts)
  std::int64_t index = 0, source = 0, destination = 0;
};

namespace {

constexpr int kMaxPartDepth = 32;

std::unexpected<fhir::Error> malformed(const std::string& where, std::string message) {
  return fhir::fail(ErrorKind::kInvalid, "invalid", "FHIRPath Patch: " + message, where);
}

std::unexpected<fhir::Error> cannot(const FhirPathPatch::Operation& op, std::string message) {
  return fhir::fail(ErrorKind::kUnprocessable, "processing",
                    "FHIRPath Patch: " + op.type_name + " '" + op.path->text() + "': " + message, op.where);
}

const std::string* string_member(const Value& v, std::string_view key) {
  const Value* m = v.is_object() ? v.find(key) : nullptr;
  return m != nullptr && m->is_string() ? &m->text() : nullptr;
}

// The value[x] member of a part ("valueString"), or nullptr.
const Value::Member* value_member(const Value& part) {
  for (const auto& m : part.members())
    if (m.first.size() > 5 && m.first.starts_with("value") && std::isupper(static_cast<unsigned char>(m.first[5])))
      return &m;
  return nullptr;
}

// Checks the form of a `value` part (or a part of its tree): a value[x] or parts, each part named.
Result<void> check_value_part(const Value& part, const std::string& where, const std::string& what, int depth) {
  if (depth > kMaxPartDepth) return malformed(where, what + " nests parts too deeply");
  const Value::Member* v = value_member(part);
  const Value* parts = part.find("part");
  if ((v != nullptr) == (parts != nullptr))
    return malformed(where, what + " needs either a value[x] or parts (one for each element of the value)");
  if (v != nullptr) return {};
  if (!parts->is_array() || parts->items().empty()) return malformed(where, what + " has no parts");
  for (const Value& sub : parts->items()) {
    const std::string* name = string_member(sub, "name");
    if (name == nullptr || name->empty()) return malformed(where, "a part of " + what + " has no name");
    if (auto ok = check_value_part(sub, where, "part '" + *name + "' of " + what, depth + 1); !ok) return ok;
  }
  return {};
}

std::optional<std::int64_t> integer_of(const Value& part) {
  for (std::string_view key : {"valueInteger", "valueUnsignedInt", "valuePositiveInt"}) {
    const Value* v = part.find(key);
    if (v == nullptr) continue;
    if (!v->is_number()) return std::nullopt;
    std::int64_t n = 0;
    const std::string& t = v->text();
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
    if (ec != std::errc() || ptr != t.data() + t.size()) return std::nullopt;
    return n;
  }
  return std::nullopt;
}

// ---- Locations and edits ----

std::string ext_key(std::string_view key) {
  return "_" + std::string(key);
}

// The node `count` steps from root, or nullptr.
Value* follow(Value& root, const std::vector<PathStep>& steps, std::size_t count) {
  Value* v = &root;
  for (std::size_t i = 0; i < count; ++i) {
    Value* m = v->is_object() ? v->find(steps[i].key) : nullptr;
    if (m == nullptr) return nullptr;
    if (steps[i].index) {
      if (!m->is_array() || *steps[i].index >= m->items().size()) return nullptr;
      m = &m->items()[*steps[i].index];
    }
    v = m;
  }
  return v;
}

const TypeDefinition* resource_type_of(const Value& v, const Definitions& defs) {
  const std::string* rt = string_member(v, "resourceType");
  return rt != nullptr ? defs.type(*rt) : nullptr;
}

// The model's type of the node `count` steps from root (a contained resource: its own type), or nullptr.
const TypeDefinition* type_at(const Value& root, const std::vector<PathStep>& steps, std::size_t count,
                              const Definitions& defs) {
  const Value* v = &root;
  const TypeDefinition* t = resource_type_of(root, defs);
  for (std::size_t i = 0; i < count && v != nullptr; ++i) {
    const std::string& key = steps[i].key;
    const Value* m = v->find(key);
    if (m == nullptr) return nullptr;
    if (steps[i].index) {
      if (!m->is_array() || *steps[i].index >= m->items().size()) return nullptr;
      m = &m->items()[*steps[i].index];
    }
    if (key.starts_with("_")) {
      t = defs.type("Element");
    } else {
      const ElementMatch* match = t != nullptr ? t->find(key) : nullptr;
      t = match != nullptr ? match->type : nullptr;
      if (t != nullptr && t->kind == TypeKind::kResource)
        if (const TypeDefinition* actual = resource_type_of(*m, defs)) t = actual;
    }
    v = m;
  }
  return t;
}

// A value to write: its JSON, the `_x` sibling of a primitive (id, extension), and the type suffix of its
// value[x] ("Quantity"; empty for a value built from parts).
struct NewValue {
  Value json;
  std::optional<Value> ext;
  std::string suffix;
};

// The JSON property for element `name` of type `t` holding a value with type suffix `suffix`, and its definition.
struct Property {
  std::string key;
  const ElementDefinition* element = nullptr;
};

std::optional<Property> property_of(const TypeDefinition& t, const std::string& name, const std::string& suffix) {
  const ElementMatch* m = t.find(name);
  if (m != nullptr && !m->element->choice) return Property{name, m->element};
  if (!suffix.empty()) {
    const ElementMatch* c = t.find(name + suffix);
    if (c != nullptr && c->element->choice && c->element->stem() == name) return Property{name + suffix, c->element};
  }
  if (m != nullptr) return Property{name, m->element};  // a choice named in full ("valueQuantity")
  return std::nullopt;
}

// Pads a primitive list's arrays (the values and their `_x`) to the same length with nulls; returns it.
std::size_t even_lists(Value& obj, const std::string& key) {
  Value* a = obj.find(key);
  Value* e = obj.find(ext_key(key));
  std::size_t n = std::max(a != nullptr && a->is_array() ? a->items().size() : 0,
                           e != nullptr && e->is_array() ? e->items().size() : 0);
  for (Value* list : {a, e})
    if (list != nullptr && list->is_array())
      while (list->items().size() < n) list->push_back(Value::null());
  return n;
}

// Drops an emptied list, and a `_x` list left with nulls only.
void tidy_lists(Value& obj, const std::string& key) {
  if (const Value* a = obj.find(key); a != nullptr && a->is_array() && a->items().empty()) obj.erase(key);
  const std::string ek = ext_key(key);
  if (const Value* e = obj.find(ek); e != nullptr && e->is_array())
    if (std::all_of(e->items().begin(), e->items().end(), [](const Value& x) { return x.is_null(); })) obj.erase(ek);
}

// Inserts a value in list `key` of `obj` at `index` (<= the list's size), keeping `_key` in step.
void insert_item(Value& obj, const std::string& key, std::size_t index, NewValue nv) {
  const std::string ek = ext_key(key);
  if (obj.find(key) == nullptr) obj.set(key, Value::array());
  if (nv.ext && obj.find(ek) == nullptr) obj.set(ek, Value::array());
  const std::size_t n = even_lists(obj, key);
  index = std::min(index, n);
  Value& a = *obj.find(key);
  a.items().insert(a.items().begin() + static_cast<std::ptrdiff_t>(index), std::move(nv.json));
  if (Value* e = obj.find(ek); e != nullptr && e->is_array())
    e->items().insert(e->items().begin() + static_cast<std::ptrdiff_t>(index),
                      nv.ext ? std::move(*nv.ext) : Value::null());
  tidy_lists(obj, key);
}

// Removes an element: property `key` of `obj`, or item `index` of that list (with its `_key` counterpart).
void remove_element(Value& obj, const std::string& key, std::optional<std::size_t> index) {
  if (!index) {
    obj.erase(key);
    obj.erase(ext_key(key));
    return;
  }
  even_lists(obj, key);
  for (const std::string& k : {key, ext_key(key)})
    if (Value* list = obj.find(k); list != nullptr && list->is_array() && *index < list->items().size())
      list->items().erase(list->items().begin() + static_cast<std::ptrdiff_t>(*index));
  tidy_lists(obj, key);
}

// Builds a value from a `value` part: its value[x], or an object of type `type` from its parts.
Result<NewValue> build_value(const FhirPathPatch::Operation& op, const Value& part, const TypeDefinition* type,
                             const Definitions& defs) {
  NewValue nv;
  if (const Value::Member* v = value_member(part)) {
    nv.json = v->second;
    nv.suffix = v->first.substr(5);
    if (const Value* x = part.find(ext_key(v->first))) nv.ext = *x;
    return nv;
  }
  if (type == nullptr || type->kind == TypeKind::kPrimitive)
    return cannot(op, "a value given as parts must go where the model expects an element with children");
  nv.json = Value::object();
  for (const Value& sub : part.find("part")->items()) {
    const std::string& name = sub.find("name")->text();
    const ElementMatch* m = type->find(name);
    auto child = build_value(op, sub, m != nullptr ? m->type : nullptr, defs);
    if (!child) return std::unexpected(child.error());
    auto prop = property_of(*type, name, child->suffix);
    if (!prop) return cannot(op, type->name + " has no element '" + name + "'");
    if (prop->element->many) {
      Value* list = nv.json.find(prop->key);
      insert_item(nv.json, prop->key, list != nullptr && list->is_array() ? list->items().size() : 0,
                  std::move(*child));
    } else {
      if (nv.json.find(prop->key) != nullptr)
        return cannot(op, "the parts of the value give '" + prop->key + "' of " + type->name +
                              " more than once; it does not repeat");
      nv.json.set(prop->key, std::move(child->json));
      if (child->ext) nv.json.set(ext_key(prop->key), std::move(*child->ext));
    }
  }
  return nv;
}

// A selected element: the steps to it, its node's model type, and whether it is an object.
struct Selected {
  std::vector<PathStep> steps;
  const TypeDefinition* type = nullptr;
  bool object = false;
};

// The list the selected items are of: the steps to its object and its key; an error unless they share one.
Result<std::pair<std::vector<PathStep>, std::string>> one_list(const FhirPathPatch::Operation& op,
                                                               const std::vector<Selected>& selected) {
  if (selected.empty()) return cannot(op, "the path selects nothing; it must select the items of a list");
  std::optional<std::pair<std::vector<PathStep>, std::string>> list;
  for (const Selected& s : selected) {
    if (s.steps.empty() || !s.steps.back().index)
      return cannot(op, "the path selects an element that is not in a list");
    std::vector<PathStep> parent(s.steps.begin(), s.steps.end() - 1);
    std::string key = s.steps.back().key;
    if (key.starts_with("_")) key.erase(0, 1);
    if (!list) {
      list.emplace(std::move(parent), std::move(key));
      continue;
    }
    bool same = list->second == key && list->first.size() == parent.size() &&
                std::equal(parent.begin(), parent.end(), list->first.begin(),
                           [](const PathStep& a, const PathStep& b) { return a.key == b.key && a.index == b.index; });
    if (!same) return cannot(op, "the path selects items of several lists; it must select those of one");
  }
  return std::move(*list);
}

Result<void> apply_one(Value& resource, const FhirPathPatch::Operation& op, const Definitions& defs) {
  fhirpath::EvalContext ctx;
  ctx.definitions = &defs;
  auto items = op.path->evaluate(resource, ctx);
  if (!items) {
    std::string why = items.error().issues.empty() ? std::string() : items.error().issues.front().diagnostics;
    return cannot(op, why);
  }
  std::vector<Selected> selected;
  for (const fhirpath::Item& item : *items) {
    auto steps = fhirpath::locate(resource, item);
    if (!steps)
      return cannot(op,
                    "the path selects something that is not an element of the resource patched (a computed "
                    "value, or another resource)");
    selected.push_back(Selected{std::move(*steps), item.type, item.node != nullptr && item.node->is_object()});
  }
  auto exactly_one = [&](std::string_view what) -> Result<void> {
    if (selected.size() == 1) return {};
    if (selected.empty()) return cannot(op, "the path selects nothing; " + std::string(what) + " needs one element");
    return cannot(op, "the path selects " + std::to_string(selected.size()) + " elements; " + std::string(what) +
                          " needs exactly one");
  };
  // The object holding a selected element, and the element's key (without '_') and list index.
  struct Place {
    Value* parent = nullptr;
    std::string key;
    std::optional<std::size_t> index;
  };
  auto place_of = [&](const Selected& s) -> Place {
    Place p;
    p.parent = follow(resource, s.steps, s.steps.size() - 1);
    p.key = s.steps.back().key;
    if (p.key.starts_with("_")) p.key.erase(0, 1);
    p.index = s.steps.back().index;
    return p;
  };

  switch (op.type) {
    case OpType::kDelete: {
      if (selected.empty()) return {};
      if (selected.size() > 1)
        return cannot(
            op, "the path selects " + std::to_string(selected.size()) + " elements; delete removes one at a time");
      if (selected[0].steps.empty()) return cannot(op, "the resource itself cannot be deleted by a patch");
      Place p = place_of(selected[0]);
      remove_element(*p.parent, p.key, p.index);
      return {};
    }
    case OpType::kReplace: {
      if (auto ok = exactly_one("replace"); !ok) return ok;
      const Selected& s = selected[0];
      if (s.steps.empty()) return cannot(op, "the resource itself cannot be replaced by a patch");
      Place p = place_of(s);
      const TypeDefinition* parent_type = type_at(resource, s.steps, s.steps.size() - 1, defs);
      const ElementMatch* m = parent_type != nullptr ? parent_type->find(p.key) : nullptr;
      auto nv = build_value(op, *op.value, m != nullptr ? m->type : s.type, defs);
      if (!nv) return std::unexpected(nv.error());
      std::string key = p.key;
      if (m != nullptr && m->element->choice && !nv->suffix.empty()) key = std::string(m->element->stem()) + nv->suffix;
      if (p.index) {
        even_lists(*p.parent, p.key);
        Value* list = p.parent->find(p.key);
        if (list == nullptr || !list->is_array()) {
          p.parent->set(p.key, Value::array());
          even_lists(*p.parent, p.key);
          list = p.parent->find(p.key);
        }
        list->items()[*p.index] = std::move(nv->json);
        if (nv->ext && p.parent->find(ext_key(p.key)) == nullptr) {
          p.parent->set(ext_key(p.key), Value::array());
          even_lists(*p.parent, p.key);
        }
        if (Value* e = p.parent->find(ext_key(p.key)); e != nullptr && e->is_array())
          e->items()[*p.index] = nv->ext ? std::move(*nv->ext) : Value::null();
        tidy_lists(*p.parent, p.key);
        return {};
      }
      if (key != p.key) {
        remove_element(*p.parent, p.key, std::nullopt);
        if (p.parent->find(key) != nullptr || p.parent->find(ext_key(key)) != nullptr)
          return cannot(op, "'" + key + "' already has a value");
      }
      p.parent->set(key, std::move(nv->json));
      if (nv->ext)
        p.parent->set(ext_key(key), std::move(*nv->ext));
      else
        p.parent->erase(ext_key(key));
      return {};
    }
    case OpType::kAdd: {
      if (auto ok = exactly_one("add"); !ok) return ok;
      const Selected& s = selected[0];
      Value* target = nullptr;
      const TypeDefinition* type = s.type;
      if (s.object) {
        target = follow(resource, s.steps, s.steps.size());
        if (type == nullptr) type = type_at(resource, s.steps, s.steps.size(), defs);
      } else {
        // A primitive: what is added goes to its id and extensions, the `_x` sibling.
        if (s.steps.empty()) return cannot(op, "the path selects no element to add to");
        Place p = place_of(s);
        const std::string ek = ext_key(p.key);
        if (!p.index) {
          if (Value* e = p.parent->find(ek); e == nullptr || !e->is_object()) p.parent->set(ek, Value::object());
          target = p.parent->find(ek);
        } else {
          if (p.parent->find(ek) == nullptr) p.parent->set(ek, Value::array());
          even_lists(*p.parent, p.key);
          Value& slot = p.parent->find(ek)->items()[*p.index];
          if (!slot.is_object()) slot = Value::object();
          target = &slot;
        }
        type = defs.type("Element");
      }
      if (target == nullptr || type == nullptr)
        return cannot(op, "the model does not tell the type of the element the path selects");
      const ElementMatch* m = type->find(op.name);
      auto nv = build_value(op, *op.value, m != nullptr ? m->type : nullptr, defs);
      if (!nv) return std::unexpected(nv.error());
      auto prop = property_of(*type, op.name, nv->suffix);
      if (!prop) return cannot(op, type->name + " has no element '" + op.name + "'");
      if (prop->element->many) {
        const std::string ek = ext_key(prop->key);
        if (const Value* list = target->find(prop->key); list != nullptr && !list->is_array())
          return cannot(op, "'" + prop->key + "' is not a list in the resource");
        insert_item(*target, prop->key, even_lists(*target, prop->key), std::move(*nv));
        return {};
      }
      if (target->find(prop->key) != nullptr)
        return cannot(op, "'" + prop->key + "' already has a value and does not repeat; use replace");
      target->set(prop->key, std::move(nv->json));
      if (nv->ext) target->set(ext_key(prop->key), std::move(*nv->ext));
      return {};
    }
    case OpType::kInsert: {
      auto list = one_list(op, selected);
      if (!list) return std::unexpected(list.error());
      Value* obj = follow(resource, list->first, list->first.size());
      const std::size_t n = even_lists(*obj, list->second);
      if (op.index < 0 || static_cast<std::size_t>(op.index) > n)
        return cannot(op,
                      "index " + std::to_string(op.index) + " is outside the list (0 to " + std::to_string(n) + ")");
      const TypeDefinition* parent_type = type_at(resource, list->first, list->first.size(), defs);
      const ElementMatch* m = parent_type != nullptr ? parent_type->find(list->second) : nullptr;
      auto nv = build_value(op, *op.value, m != nullptr ? m->type : selected[0].type, defs);
      if (!nv) return std::unexpected(nv.error());
      insert_item(*obj, list->second, static_cast<std::size_t>(op.index), std::move(*nv));
      return {};
    }
    case OpType::kMove: {
      auto list = one_list(op, selected);
      if (!list) return std::unexpected(list.error());
      Value* obj = follow(resource, list->first, list->first.size());
      const std::size_t n = even_lists(*obj, list->second);
      for (auto [what, at] : {std::pair{"source", op.source}, std::pair{"destination", op.destination}})
        if (at < 0 || static_cast<std::size_t>(at) >= n)
          return cannot(op, std::string(what) + " " + std::to_string(at) + " is outside the list (0 to " +
                                std::to_string(n - 1) + ")");
      for (const std::string& k : {list->second, ext_key(list->second)}) {
        Value* l = obj->find(k);
        if (l == nullptr || !l->is_array()) continue;
        auto& v = l->items();
        Value moved = std::move(v[static_cast<std::size_t>(op.source)]);
        v.erase(v.begin() + op.source);
        v.insert(v.begin() + op.destination, std::move(moved));
      }
      return {};
    }
  }
  return {};
}

}  // namespace

Result<FhirPathPatch> FhirPathPatch::parse(const Value& parameters) {
  const std::string* rt = string_member(parameters, "resourceType");
  if (rt == nullptr || *rt != "Parameters")
    return fhir::fail(ErrorKind::kInvalid, "invalid", "A FHIRPath Patch is a Parameters resource",
                      "Parameters.resourceType");
  auto ops = std::make_shared<std::vector<Operation>>();
  const Value* list = parameters.find("parameter");
  if (list != nullptr && !list->is_array())
    return malformed("Parameters.parameter", "Parameters.parameter must be an array");
  const std::size_t count = list != nullptr ? list->items().size() : 0;
  for (std::size_t i = 0; i < count; ++i) {
    const Value& p = list->items()[i];
    Operation op;
    op.where = "Parameters.parameter[" + std::to_string(i) + "]";
    const std::string* pname = string_member(p, "name");
    if (pname == nullptr || *pname != "operation")
      return malformed(op.where, "each parameter is an operation (name 'operation'), not '" +
                                     (pname != nullptr ? *pname : std::string()) + "'");
    const Value* parts = p.find("part");
    if (parts == nullptr || !parts->is_array() || parts->items().empty())
      return malformed(op.where, "the operation has no parts (type, path, ...)");
    const Value *type = nullptr, *path = nullptr, *name = nullptr, *index = nullptr, *source = nullptr,
                *destination = nullptr;
    for (const Value& part : parts->items()) {
      const std::string* n = string_member(part, "name");
      if (n == nullptr) return malformed(op.where, "a part of the operation has no name");
      const Value** slot = *n == "type"          ? &type
                           : *n == "path"        ? &path
                           : *n == "name"        ? &name
                           : *n == "value"       ? nullptr
                           : *n == "index"       ? &index
                           : *n == "source"      ? &source
                           : *n == "destination" ? &destination
                                                 : nullptr;
      if (*n == "value") {
        if (op.value) return malformed(op.where, "the part 'value' is given more than once");
        op.value = part;
        continue;
      }
      if (slot == nullptr) return malformed(op.where, "unknown part '" + *n + "'");
      if (*slot != nullptr) return malformed(op.where, "the part '" + *n + "' is given more than once");
      *slot = &part;
    }
    if (type == nullptr) return malformed(op.where, "the operation has no type");
    const std::string* t = string_member(*type, "valueCode");
    if (t == nullptr) t = string_member(*type, "valueString");
    if (t == nullptr) return malformed(op.where, "the part 'type' needs a valueCode");
    op.type_name = *t;
    if (*t == "add")
      op.type = OpType::kAdd;
    else if (*t == "insert")
      op.type = OpType::kInsert;
    else if (*t == "delete")
      op.type = OpType::kDelete;
    else if (*t == "replace")
      op.type = OpType::kReplace;
    else if (*t == "move")
      op.type = OpType::kMove;
    else
      return malformed(op.where, "unknown operation type '" + *t + "' (add, insert, delete, replace or move)");
    const std::string* path_text = path != nullptr ? string_member(*path, "valueString") : nullptr;
    if (path_text == nullptr || path_text->empty())
      return malformed(op.where, op.type_name + " needs a path (a part 'path' with a valueString)");
    auto compiled = fhirpath::FhirPath::compile(*path_text);
    if (!compiled) {
      std::string why = compiled.error().issues.empty() ? std::string() : compiled.error().issues.front().diagnostics;
      return malformed(op.where, "the path '" + *path_text + "' is not a FHIRPath expression: " + why);
    }
    op.path = std::move(*compiled);
    if (op.type == OpType::kAdd) {
      const std::string* n = name != nullptr ? string_member(*name, "valueString") : nullptr;
      if (n == nullptr || n->empty()) return malformed(op.where, "add needs a name (a part 'name' with a valueString)");
      op.name = *n;
    }
    if (op.type == OpType::kAdd || op.type == OpType::kInsert || op.type == OpType::kReplace) {
      if (!op.value) return malformed(op.where, op.type_name + " needs a value (a part 'value')");
      if (auto ok = check_value_part(*op.value, op.where, "the part 'value'", 0); !ok)
        return std::unexpected(ok.error());
    }
    auto integer = [&](const Value* part, const char* what, std::int64_t& out) -> Result<void> {
      auto v = part != nullptr ? integer_of(*part) : std::nullopt;
      if (!v || *v < 0)
        return malformed(op.where,
                         op.type_name + " needs " + what + " (a part '" + what + "' with a valueInteger of 0 or more)");
      out = *v;
      return {};
    };
    if (op.type == OpType::kInsert)
      if (auto ok = integer(index, "index", op.index); !ok) return std::unexpected(ok.error());
    if (op.type == OpType::kMove) {
      if (auto ok = integer(source, "source", op.source); !ok) return std::unexpected(ok.error());
      if (auto ok = integer(destination, "destination", op.destination); !ok) return std::unexpected(ok.error());
    }
    ops->push_back(std::move(op));
  }
  FhirPathPatch out;
  out.ops_ = std::move(ops);
  return out;
}

std::size_t FhirPathPatch::size() const noexcept {
  return ops_ ? ops_->size() : 0;
}

Result<void> FhirPathPatch::apply(Value& resource, const Definitions& definitions) const {
  if (!ops_ || ops_->empty()) return {};
  Value work = resource;
  for (const Operation& op : *ops_)
    if (auto ok = apply_one(work, op, definitions); !ok) return ok;
  resource = std::move(work);
  return {};
}

}  // namespace caduceus::resources
