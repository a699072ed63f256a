#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace caduceus::server {

// The client certificate of a mutual-TLS connection, verified by the handshake against --tls-client-ca
// (caduceus/server/peer_certificate.hpp makes it, once per connection).
struct PeerCertificate {
  std::string subject;     // the subject DN, canonical (RFC 4514 as OpenSSL prints it: "CN=lab.example,O=Lab")
  std::string thumbprint;  // x5t#S256: base64url SHA-256 of the certificate's DER encoding
};

// A request as a plain value: what the router sees. No socket, no Beast type.
struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query exactly as received, e.g. "/fhir/Patient?name=x"
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string remote;  // peer address, for logs
  // Over TLS, when the client presented a certificate that the handshake verified; else null. Shared by every
  // request of the connection.
  std::shared_ptr<const PeerCertificate> peer_certificate;
  // Set by the transport when it refused the request before reading it whole (413 for a body over the
  // limit); the router then only answers with an OperationOutcome for that status.
  int rejected_status = 0;

  // The first header of that (lower-case) name, or empty.
  std::string_view header(std::string_view lower_name) const noexcept {
    for (const auto& [k, v] : headers)
      if (k == lower_name) return v;
    return {};
  }
  bool has_header(std::string_view lower_name) const noexcept {
    for (const auto& [k, v] : headers)
      if (k == lower_name) return true;
    return false;
  }
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. {"Content-Type", "application/fhir+json"}
  std::string body;
  // A label for metrics and logs ("read", "create", "search-type", "metadata", ...); not sent.
  std::string interaction;
  // Ask the transport to close the connection after this response.
  bool close = false;
};

using Handler = std::function<Response(const Request&)>;

}  // namespace caduceus::server
