#pragma once

// A throwaway PKI for mutual-TLS tests, made with OpenSSL 3 (EVP, X509): certificate authorities and the client
// certificates they issue, written as PEM files.

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "tls_client.hpp"

namespace caduceus::test {

// A subject, its entries in certificate order (the most general first): {{"O", "Lab"}, {"CN", "lab.example"}} is
// the DN that RFC 4514 writes "CN=lab.example,O=Lab".
using SubjectEntries = std::vector<std::pair<std::string, std::string>>;

// A CA: an EC P-256 key and a self-signed CA certificate (basicConstraints CA:TRUE, keyCertSign) named
// CN=common_name, valid from a minute ago for a day, as dir/NAME.crt and dir/NAME.key. Throws std::runtime_error
// when OpenSSL fails.
CertFiles make_test_ca(const std::filesystem::path& dir, const std::string& name, const std::string& common_name);

// A client certificate (CA:FALSE, digitalSignature, extendedKeyUsage clientAuth) for a fresh EC P-256 key, issued
// by `ca` to `subject`, valid from now + not_before_s to now + not_after_s (seconds), with serial `serial`, as
// dir/NAME.crt and dir/NAME.key. Throws std::runtime_error when OpenSSL fails.
CertFiles issue_client_cert(const std::filesystem::path& dir, const std::string& name, const CertFiles& ca,
                            const SubjectEntries& subject, long serial, long not_before_s = -60,
                            long not_after_s = 24 * 3600);

// The RFC 8705 x5t#S256 of the PEM certificate in `cert`: base64url (no padding) of the SHA-256 of its DER bytes,
// computed here from i2d_X509 and EVP_Digest. Throws std::runtime_error when the file is not a PEM certificate.
std::string certificate_thumbprint(const std::filesystem::path& cert);

}  // namespace caduceus::test
