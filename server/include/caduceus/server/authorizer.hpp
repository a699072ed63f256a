#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caduceus/server/http_types.hpp"

namespace caduceus::resources {
struct AccessFilter;  // caduceus/resources/access_filter.hpp
}

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
  // Whether a request to the server's administration API outside /fhir (the HL7 v2 message monitor, /admin/...)
  // may be served: nullopt when it may, else the refusal (401 with WWW-Authenticate without a valid token, 403 when
  // the token is not an administrator's). The default: every request may (no authorization in force).
  virtual std::optional<Response> check_admin(const Request& request) const {
    (void)request;
    return std::nullopt;
  }
  // Once check() let the request through: which resources it may see for `permission` (a SMART v2 letter: 'c',
  // 'r' read/vread/instance history, 'u', 'd', 's' search/history/includes). The router puts the filter on every
  // query it makes for the request (nullptr: everything is visible).
  virtual std::shared_ptr<const resources::AccessFilter> access(const Request& request, char permission) const {
    (void)request;
    (void)permission;
    return nullptr;
  }
};

}  // namespace caduceus::server
