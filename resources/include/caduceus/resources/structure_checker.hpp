#pragma once

#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"

namespace caduceus::resources {

// Checks a resource's JSON against the structure the R4 definitions give it, in one pass over the JSON: a known
// concrete resourceType, no unknown elements, arrays exactly where the element repeats, one type per choice, the
// JSON type and lexical form of every primitive (fhir::check_primitive), primitive extensions (`_birthDate`)
// aligned with their values, no empty objects or arrays, elements with min > 0 present, contained resources and
// resources inside Bundle and Parameters checked by their own type. Invariants, bindings and profiles are not
// checked here.
//
// Holds a reference to the definitions, which must outlive it. Stateless otherwise: one checker can serve any
// number of threads.
class StructureChecker {
 public:
  explicit StructureChecker(const Definitions& definitions);

  // Every violation found, each with a FHIRPath `expression` such as `Patient.name[0].given[1]` and a code
  // from issue-type ("structure", "value", "required", "invalid"). Empty when the resource is well-formed.
  std::vector<fhir::Issue> check(const fhir::json::Value& resource) const;

 private:
  const Definitions& definitions_;
};

}  // namespace caduceus::resources
