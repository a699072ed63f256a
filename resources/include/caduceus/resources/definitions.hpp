#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/primitives.hpp"
#include "caduceus/resources/name_table.hpp"

namespace caduceus::resources {

enum class TypeKind : std::uint8_t { kPrimitive, kComplex, kResource };

struct TypeDefinition;

// One element of a type, as the R4 snapshot defines it.
struct ElementDefinition {
  std::string name;  // the JSON property name; a choice keeps its suffix: "value[x]"
  std::uint32_t min = 0;
  bool many = false;                         // max is "*": the JSON property is an array
  bool choice = false;                       // a [x] element: one property per type, e.g. valueQuantity
  bool summary = false;                      // isSummary
  std::uint16_t index = 0;                   // position in its type's elements
  std::vector<const TypeDefinition*> types;  // one entry unless a choice

  // The name without "[x]": "value" for value[x], as FHIRPath names the element.
  std::string_view stem() const noexcept {
    return choice ? std::string_view(name).substr(0, name.size() - 3) : std::string_view(name);
  }
};

// What a JSON property name of an object of some type stands for.
struct ElementMatch {
  const ElementDefinition* element = nullptr;
  const TypeDefinition* type = nullptr;  // the property's type; for a choice, the one its name selects
};

// A primitive, complex or resource type, or the synthetic type of a backbone element (named by its path,
// e.g. "Patient.contact", kind kComplex, base BackboneElement or Element).
struct TypeDefinition {
  std::string name;
  TypeKind kind = TypeKind::kComplex;
  bool is_abstract = false;
  bool backbone = false;                     // synthetic type of an element with children
  const TypeDefinition* base = nullptr;      // nullptr for Element and Resource
  std::optional<fhir::Primitive> primitive;  // set for primitive types
  std::vector<ElementDefinition> elements;   // the snapshot's, in order (inherited ones included)
  std::vector<std::uint16_t> required;       // indexes of elements with min > 0

  // The element a JSON property name stands for ("valueQuantity" -> value[x] with Quantity), or nullptr.
  const ElementMatch* find(std::string_view json_name) const noexcept { return by_json_name.find(json_name); }
  // Whether this type is `other` or derives from it.
  bool derives_from(const TypeDefinition& other) const noexcept {
    for (const TypeDefinition* t = this; t != nullptr; t = t->base) {
      if (t == &other) return true;
    }
    return false;
  }

  NameTable<ElementMatch> by_json_name;  // every valid property name, choices expanded
};

// The R4 model: every type with its elements, loaded once from conformance/r4/model.json (see
// conformance/tools/gen_model.py). Immutable after load, so safe to share between threads.
class Definitions {
 public:
  // The most elements one type may have (the checker keeps one bit per element).
  static constexpr std::size_t kMaxElementsPerType = 256;

  // Parses the model text. On malformed text or a dangling type reference returns ErrorKind::kInternal.
  static fhir::Result<std::shared_ptr<const Definitions>> load(std::string_view model_json);

  // The type with that name ("Patient", "HumanName", "string", "Patient.contact"), or nullptr.
  const TypeDefinition* type(std::string_view name) const noexcept;
  // The element of type `type_name` that JSON property `json_name` stands for, or nullptr.
  const ElementMatch* element(std::string_view type_name, std::string_view json_name) const noexcept;
  // Whether `name` is a concrete (storable) resource type: "Patient" yes, "DomainResource" and "HumanName" no.
  bool is_resource_type(std::string_view name) const noexcept;
  // The concrete resource types, sorted.
  const std::vector<std::string>& resource_types() const noexcept { return resource_types_; }
  const std::string& fhir_version() const noexcept { return fhir_version_; }
  std::size_t type_count() const noexcept { return types_.size(); }

  Definitions(const Definitions&) = delete;
  Definitions& operator=(const Definitions&) = delete;

 private:
  Definitions() = default;

  std::string fhir_version_;
  std::deque<TypeDefinition> types_;      // a deque: addresses stay put while loading
  std::deque<std::string> choice_names_;  // storage for the expanded choice names ("valueQuantity")
  NameTable<const TypeDefinition*> by_name_;
  std::vector<std::string> resource_types_;
};

}  // namespace caduceus::resources
