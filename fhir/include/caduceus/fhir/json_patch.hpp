#pragma once

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"

namespace caduceus::fhir::json {

// Applies a JSON Patch (RFC 6902: add, remove, replace, move, copy, test; paths are JSON Pointers, RFC 6901, with
// the ~0 and ~1 escapes) to `document`, all or nothing: on error `document` is left as it was.
// Errors: kInvalid for a malformed patch document (not an array of operation objects, an unknown op, a member
// missing or of the wrong kind); kUnprocessable for a well-formed patch that cannot be applied (a path that does
// not exist, a failed test, a move into its own child). Each issue's expression names the operation ("/2/path").
Result<void> apply_patch(Value& document, const Value& patch);

// RFC 6902 equality (for `test`): numbers by value, objects regardless of member order, arrays in order.
bool patch_equal(const Value& a, const Value& b);

}  // namespace caduceus::fhir::json
