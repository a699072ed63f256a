#pragma once

#include "caduceus/fhir/error.hpp"
#include "caduceus/server/http_types.hpp"

namespace caduceus::server {

// The one table from error kinds to HTTP statuses.
int http_status(fhir::ErrorKind kind) noexcept;

// An error as an HTTP response: its status and an OperationOutcome body (503 also carries Retry-After).
Response error_response(const fhir::Error& error);
Response error_response(fhir::ErrorKind kind, std::string code, std::string diagnostics, std::string expression = {});

}  // namespace caduceus::server
