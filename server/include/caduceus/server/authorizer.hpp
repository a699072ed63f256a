#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caduceus/server/http_types.hpp"

namespace caduceus::server {

// Decides whether a request to the FHIR API may be served. The router asks it about every request under /fhir
// before serving it, so that access is decided in one place.
class Authorizer {
 public:
  virtual ~Authorizer() = default;
  // `path`: the part of the target after "/fhir" ("/Patient/1", "" for the base); `params`: its query, decoded.
  // Returns nullopt when the request may proceed, else the response that refuses it (401 with WWW-Authenticate
  // without a valid token, 403 with an OperationOutcome when the token's scopes do not cover the interaction, or
  // 400 when the request cannot be understood well enough to decide).
  virtual std::optional<Response> check(const Request& request, std::string_view path,
                                        const std::vector<std::pair<std::string, std::string>>& params) const = 0;
};

}  // namespace caduceus::server
