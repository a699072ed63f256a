#include "caduceus/fhir/outcome.hpp"

namespace caduceus::fhir {

std::string_view to_string(Severity severity) noexcept {
  switch (severity) {
    case Severity::kFatal: return "fatal";
    case Severity::kError: return "error";
    case Severity::kWarning: return "warning";
    case Severity::kInformation: return "information";
  }
  return "error";
}

json::Value operation_outcome(const std::vector<Issue>& issues) {
  json::Value oo = json::Value::object();
  oo.set("resourceType", json::Value::string("OperationOutcome"));
  json::Value& list = oo.set("issue", json::Value::array());
  for (const Issue& issue : issues) {
    json::Value i = json::Value::object();
    i.set("severity", json::Value::string(std::string(to_string(issue.severity))));
    i.set("code", json::Value::string(issue.code.empty() ? "processing" : issue.code));
    if (!issue.diagnostics.empty()) i.set("diagnostics", json::Value::string(issue.diagnostics));
    if (!issue.expression.empty()) {
      json::Value expr = json::Value::array();
      expr.push_back(json::Value::string(issue.expression));
      i.set("expression", std::move(expr));
    }
    list.push_back(std::move(i));
  }
  if (issues.empty()) {
    // An OperationOutcome needs at least one issue.
    json::Value i = json::Value::object();
    i.set("severity", json::Value::string("information"));
    i.set("code", json::Value::string("informational"));
    list.push_back(std::move(i));
  }
  return oo;
}

std::string operation_outcome_json(const std::vector<Issue>& issues) {
  return json::write(operation_outcome(issues));
}

std::string information_outcome_json(std::string_view diagnostics) {
  return operation_outcome_json({Issue{Severity::kInformation, "informational", std::string(diagnostics), {}}});
}

}  // namespace caduceus::fhir
