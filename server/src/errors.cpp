#include "caduceus/server/errors.hpp"

#include "caduceus/fhir/outcome.hpp"

namespace caduceus::server {

int http_status(fhir::ErrorKind kind) noexcept {
  using K = fhir::ErrorKind;
  switch (kind) {
    case K::kInvalid: return 400;
    case K::kUnprocessable: return 422;
    case K::kNotFound: return 404;
    case K::kGone: return 410;
    case K::kConflict: return 409;
    case K::kPreconditionFailed: return 412;
    case K::kMethodNotAllowed: return 405;
    case K::kNotAcceptable: return 406;
    case K::kUnsupportedMediaType: return 415;
    case K::kTooLarge: return 413;
    case K::kUnavailable: return 503;
    case K::kNotSupported: return 501;
    case K::kInternal: return 500;
    case K::kForbidden: return 403;
  }
  return 500;
}

Response error_response(const fhir::Error& error) {
  Response r;
  r.status = http_status(error.kind);
  r.headers.emplace_back("Content-Type", "application/fhir+json; charset=utf-8");
  if (error.kind == fhir::ErrorKind::kUnavailable) r.headers.emplace_back("Retry-After", "1");
  r.body = fhir::operation_outcome_json(error.issues);
  return r;
}

Response error_response(fhir::ErrorKind kind, std::string code, std::string diagnostics, std::string expression) {
  return error_response(fhir::Error::make(kind, std::move(code), std::move(diagnostics), std::move(expression)));
}

}  // namespace caduceus::server
