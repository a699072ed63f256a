#pragma once

// The identity of a TLS client certificate (mutual TLS, RFC 8705): what the transport computes once per connection
// and what the authorization server compares. OpenSSL does the parsing, printing and hashing.

#include <memory>
#include <string>
#include <string_view>

#include "caduceus/fhir/error.hpp"
#include "caduceus/server/http_types.hpp"

struct x509_st;  // OpenSSL's X509

namespace caduceus::server {

// The certificate's subject DN, canonical (see canonical_subject_dn), and its `x5t#S256` thumbprint: the base64url
// (no padding) SHA-256 of its DER encoding (RFC 8705 section 3.1). Errors: kInternal when OpenSSL fails.
fhir::Result<PeerCertificate> describe_certificate(x509_st* certificate);

// A subject DN written as RFC 4514 says ("CN=lab.example,O=Lab,C=FR": the most specific RDN first, `+` between the
// values of a multi-valued RDN, `\` escapes) in the one form that describe_certificate gives a certificate with that
// subject: built into an X509_NAME and printed back by OpenSSL (RFC 2253 style, UTF-8 kept as it is). So
// "cn = lab.example, o=Lab" and "CN=lab.example,O=Lab" are the same DN. Attribute types: OpenSSL's short or long
// names in any case, or dotted OIDs. Errors: kInvalid naming what is wrong (empty, no `=`, an unknown attribute
// type, a value OpenSSL refuses, e.g. C longer than two letters); kNotSupported for a `#` hex-encoded BER value.
fhir::Result<std::string> canonical_subject_dn(std::string_view rfc4514);

}  // namespace caduceus::server
