#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"

// A FHIRPath (http://hl7.org/fhirpath/N1/) engine: an expression is compiled once into an immutable AST, then
// evaluated against JSON resources as often as needed, from any number of threads.
//
// Where the engine chooses among readings of the spec (as the R4 search parameters need, and as other servers do):
// - `x as T` and `x.as(T)` on several items keep those of type T, like ofType(T) (the spec wants one item, but
//   `(ActivityDefinition.useContext.value as Quantity)` is evaluated on many); `is` still wants one item.
// - Type tests follow the R4 model: `T` or `FHIR.T` matches nodes whose type is T or derives from it (`code` is a
//   `string`, `Patient` a `DomainResource`); `System.T` matches only computed values (literals, results).
// - Two complex elements are equal (`=`, and so for `|`, union() and distinct()) when their JSON trees are, members
//   in any order and numbers to 8 decimal places, as in the reference JavaScript engine.
// - `.value` on a primitive is the primitive itself; getValue() gives its System value.
// - Decimals are computed in double precision and written with their operands' precision (0.1 + 0.2 = 0.3).
// - Positions and lengths in strings count characters (UTF-8 code points); upper() and lower() change ASCII
//   letters only. matches() searches (true when the pattern matches a part), with ECMAScript regular expressions
//   (std::regex, bytes), on strings up to 10,000 bytes.
// - memberOf() and conformsTo() are errors (ErrorKind::kNotSupported): they need terminology and profiles.

namespace caduceus::resources::fhirpath {

// One item of a collection: either a node of the input JSON (with its FHIR type when known), or a value computed
// by the expression (a System type: Boolean, String, Integer, Decimal, Date, DateTime, Time, Quantity).
struct Item {
  enum class Kind : std::uint8_t { kNode, kBoolean, kString, kInteger, kDecimal, kDate, kDateTime, kTime, kQuantity };

  Kind kind = Kind::kNode;
  bool boolean = false;
  std::int64_t integer = 0;
  // kNode: the JSON value; nullptr for a primitive that has only its `_x` sibling, or for the typed target of a
  // resolve() whose resource is not at hand.
  const fhir::json::Value* node = nullptr;
  // kNode of a primitive type: the `_x` sibling object (id, extension), or nullptr.
  const fhir::json::Value* extension = nullptr;
  // kNode: the FHIR type ("HumanName", "string", "Patient", "Patient.contact"), or nullptr when unknown.
  const TypeDefinition* type = nullptr;
  std::string text;  // kString content; kDecimal, kDate, kDateTime, kTime literal text; kQuantity value
  std::string unit;  // kQuantity unit (UCUM code, or a calendar duration keyword such as "year")

  static Item of_node(const fhir::json::Value* node, const TypeDefinition* type,
                      const fhir::json::Value* extension = nullptr) {
    Item item;
    item.node = node;
    item.type = type;
    item.extension = extension;
    return item;
  }
  static Item of_bool(bool b) {
    Item item;
    item.kind = Kind::kBoolean;
    item.boolean = b;
    return item;
  }
  static Item of_integer(std::int64_t i) {
    Item item;
    item.kind = Kind::kInteger;
    item.integer = i;
    return item;
  }
  static Item of_text(Kind kind, std::string text, std::string unit = {}) {
    Item item;
    item.kind = kind;
    item.text = std::move(text);
    item.unit = std::move(unit);
    return item;
  }

  // "HumanName", "string", "Patient" for nodes (empty when unknown); "System.String" and the like otherwise.
  std::string_view type_name() const noexcept;
};

using Collection = std::vector<Item>;

struct EvalContext {
  // The R4 model, for element types, choice elements and type tests. Without it navigation still works by JSON
  // property names, but items carry no types, choices (`value` for `valueQuantity`) are not found and `is`/`as`
  // only know resource types.
  const Definitions* definitions = nullptr;
  // Optional: the resource a reference ("Patient/123", an absolute URL) points to, or nullptr. resolve() always
  // tries contained resources (`#id`) first; when this is absent or gives nullptr it yields an item typed by the
  // reference (`Patient`) with no content, enough for `resolve() is Patient`.
  std::function<const fhir::json::Value*(std::string_view reference)> resolver;
};

class FhirPath {
 public:
  // Parses an expression. On a syntax error, an unknown function or a wrong number of arguments returns
  // ErrorKind::kInvalid whose diagnostics give the offset and what was expected.
  static fhir::Result<FhirPath> compile(std::string_view expression);

  // Evaluates against a resource (%resource, %context and the initial $this). On a type error at run time
  // (e.g. a function that wants one item given several) returns ErrorKind::kInvalid. The returned items may
  // point into `resource`, which must outlive them.
  fhir::Result<Collection> evaluate(const fhir::json::Value& resource, const EvalContext& ctx) const;
  // The same with `focus` as the input and $this, and `resource` as %resource (e.g. a composite search parameter's
  // component expression on each item its main expression gave).
  fhir::Result<Collection> evaluate(const Item& focus, const fhir::json::Value& resource, const EvalContext& ctx) const;
  // The same with the resource as an item of its type (Item::of_node), for a caller that evaluates many expressions
  // on one resource: its type is not looked up again by each.
  fhir::Result<Collection> evaluate(const Item& focus, const Item& resource, const EvalContext& ctx) const;

  const std::string& text() const noexcept { return text_; }

  struct Node;

 private:
  FhirPath(std::string text, std::shared_ptr<const Node> root) : text_(std::move(text)), root_(std::move(root)) {}

  std::string text_;
  std::shared_ptr<const Node> root_;
};

// One step down a JSON tree: member `key` of an object and, when that member is an array, item `index` of it.
struct PathStep {
  std::string key;
  std::optional<std::size_t> index;
};

// Where a node item of a collection evaluated against `root` is in root's JSON tree: the steps from root to the
// item's node (for a primitive present only as its `_x` sibling, to that sibling: the last key starts with '_'),
// empty for root itself. nullopt for a computed item, or a node outside root (a resolve() of another resource).
// For editing what an expression selects (FHIRPath Patch); the tree must not have changed since the evaluation.
std::optional<std::vector<PathStep>> locate(const fhir::json::Value& root, const Item& item);

// Whether a collection is the single Boolean true (after FHIRPath's singleton evaluation of collections).
bool is_true(const Collection& c) noexcept;

}  // namespace caduceus::resources::fhirpath
