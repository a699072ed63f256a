#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"
#include "caduceus/fhir/json.hpp"

namespace caduceus::fhir {

// Builds an OperationOutcome resource from issues.
json::Value operation_outcome(const std::vector<Issue>& issues);
// The same, serialized.
std::string operation_outcome_json(const std::vector<Issue>& issues);
// An OperationOutcome with one informational issue (for successful deletes, Prefer: return=OperationOutcome).
std::string information_outcome_json(std::string_view diagnostics);

}  // namespace caduceus::fhir
