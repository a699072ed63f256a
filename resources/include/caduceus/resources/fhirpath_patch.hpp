#pragma once

#include <memory>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"

namespace caduceus::resources {

// FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): a Parameters resource whose parameters are each an
// `operation` with the parts type (add | insert | delete | replace | move), path (a FHIRPath expression), name,
// value (a value[x], or for an element without a datatype of its own - a backbone element - a tree of parts named
// by its elements), index, source and destination. The operations apply in order, each path evaluated (with the
// FHIRPath engine and the R4 model) on the result of the ones before.
//
// - add: path selects exactly one element; `name` is added to it with `value` (appended when the element repeats;
//   an error when it does not and already has a value). A choice takes its type from the value (name `deceased`
//   with valueBoolean writes deceasedBoolean). On a primitive, add goes to its id/extension (`_x`).
// - insert: path selects the items of one list (Patient.identifier); `value` goes in at `index` (0 ..
//   size of the list).
// - delete: path selects nothing (no change) or one element, which goes (with its `_x` sibling or item).
// - replace: path selects exactly one element; it becomes `value` (for a primitive, value, id and extensions: the
//   `_value[x]` part gives the latter). A choice may change type (valueQuantity -> valueString).
// - move: path selects the items of one list; the item at `source` is taken out and put back at `destination`.
// The positions of insert and move are in the whole list, also when the path filters it (where()).
// Primitive lists keep their `_x` arrays in step.
class FhirPathPatch {
 public:
  struct Operation;

  // Reads a Parameters resource. Malformed (not a Parameters, a parameter that is not an operation, an unknown
  // type, a missing or ill-typed part, a path that does not compile): ErrorKind::kInvalid whose expression names
  // the operation, `Parameters.parameter[i]`.
  static fhir::Result<FhirPathPatch> parse(const fhir::json::Value& parameters);

  // Applies the operations to `resource`, all or nothing (on error it is left as it was). An operation that cannot
  // apply (its path selects nothing or several elements where one is needed, an add to an element that does not
  // exist or to a single element that has a value, an index out of its list, an element the type does not have):
  // ErrorKind::kUnprocessable naming the operation. The caller checks the result's structure.
  fhir::Result<void> apply(fhir::json::Value& resource, const Definitions& definitions) const;

  std::size_t size() const noexcept;  // operations

 private:
  std::shared_ptr<const std::vector<Operation>> ops_;  // immutable: copies share it, from any thread
};

}  // namespace caduceus::resources
