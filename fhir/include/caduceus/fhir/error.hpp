#pragma once

#include <expected>
#include <string>
#include <utility>
#include <vector>

namespace caduceus::fhir {

// What went wrong, in terms a caller can act on. server/ maps each kind to one HTTP status (one table there).
enum class ErrorKind {
  kInvalid,               // the input breaks a rule of FHIR (400)
  kUnprocessable,         // well-formed and structurally valid, but breaks a business rule (422)
  kNotFound,              // no such resource or type (404)
  kGone,                  // the resource was deleted (410)
  kConflict,              // a concurrent change got there first (409)
  kPreconditionFailed,    // If-Match and friends did not hold (412)
  kMethodNotAllowed,      // (405)
  kNotAcceptable,         // a response format we do not produce (406)
  kUnsupportedMediaType,  // a request format we do not read (415)
  kTooLarge,              // a body or bundle over the configured limit (413)
  kUnavailable,           // the database or another dependency is down (503)
  kNotSupported,          // a valid request for something this server does not do (yet) (501)
  kInternal,              // our bug or an unexpected failure (500)
  kForbidden,             // the request's credentials do not allow it (403)
};

enum class Severity { kFatal, kError, kWarning, kInformation };

// One issue of an OperationOutcome. `code` is from http://hl7.org/fhir/issue-type (e.g. "structure", "value",
// "invalid", "required", "not-found", "processing", "exception"). `expression` is a FHIRPath such as
// `Patient.name[0].given[1]`; empty when the issue concerns no element.
struct Issue {
  Severity severity = Severity::kError;
  std::string code = "invalid";
  std::string diagnostics;
  std::string expression;
};

struct Error {
  ErrorKind kind = ErrorKind::kInternal;
  std::vector<Issue> issues;

  // One error with one issue.
  static Error make(ErrorKind kind, std::string code, std::string diagnostics, std::string expression = {}) {
    Error e{kind, {}};
    e.issues.push_back(Issue{Severity::kError, std::move(code), std::move(diagnostics), std::move(expression)});
    return e;
  }
};

template <class T>
using Result = std::expected<T, Error>;

// Shorthand for returning an error from a function whose return type is Result<T>.
inline std::unexpected<Error> fail(ErrorKind kind, std::string code, std::string diagnostics,
                                   std::string expression = {}) {
  return std::unexpected(Error::make(kind, std::move(code), std::move(diagnostics), std::move(expression)));
}

std::string_view to_string(Severity severity) noexcept;

}  // namespace caduceus::fhir
