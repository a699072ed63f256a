// Mutual TLS: a client certificate's identity (subject DN and x5t#S256 thumbprint) and the canonical form of a
// subject DN registered for a tls-client-auth client.
#include "caduceus/server/peer_certificate.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

namespace caduceus::server {
namespace {

// Made with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 -multivalue-rdn
// -subj "/C=FR/O=Lab, Inc./OU=Biology+UID=b7/CN=lab.example"`. `openssl x509 -noout -subject -nameopt RFC2253`
// prints its subject as kSubject; `openssl x509 -outform der | openssl dgst -sha256 -binary | basenc --base64url`
// gives kThumbprint (padding dropped).
constexpr const char* kCertificate = R"(-----BEGIN CERTIFICATE-----
MIICDTCCAbOgAwIBAgIUMcrnzJUeBsrZK9wQxpIdjjyggvMwCgYIKoZIzj0EAwIw
WzELMAkGA1UEBhMCRlIxEjAQBgNVBAoMCUxhYiwgSW5jLjEiMA4GA1UECwwHQmlv
bG9neTAQBgoJkiaJk/IsZAEBDAJiNzEUMBIGA1UEAwwLbGFiLmV4YW1wbGUwIBcN
MjYxMTI2MDIzNzM0WhgPMjEyNjExMDIwMjM3MzRaMFsxCzAJBgNVBAYTAkZSMRIw
EAYDVQQKDAlMYWIsIEluYy4xIjAOBgNVBAsMB0Jpb2xvZ3kwEAYKCZImiZPyLGQB
AQwCYjcxFDASBgNVBAMMC2xhYi5leGFtcGxlMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAETLNyuzObcBzI5K9e7hT+PaiuwDsB8P1DuvSBU6Tu7saL2mPeR3qocNf7
fYoDcMNoCXxr2CM+JJes1PPZtNqgm6NTMFEwHQYDVR0OBBYEFOkbDdqcfJ+qpQwE
xshwgdLWV9MqMB8GA1UdIwQYMBaAFOkbDdqcfJ+qpQwExshwgdLWV9MqMA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAN19h76NHboUo55K1LEjfML1
BsnpHnW2yvX88xNmRquyAiBpRpqC8OunytXCqXTUEY0wpvcgdF+J9hTzKeY7KT+o
fg==
-----END CERTIFICATE-----
)";
constexpr const char* kSubject = R"(CN=lab.example,UID=b7+OU=Biology,O=Lab\, Inc.,C=FR)";
constexpr const char* kThumbprint = "rsZQlsVRlQL6XGNM_7RSOTsfuIkudHGy7fOiP0NFVsI";

std::unique_ptr<X509, decltype(&X509_free)> certificate() {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(kCertificate, -1), &BIO_free);
  return {PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), &X509_free};
}

std::string canonical(std::string_view dn) {
  auto c = canonical_subject_dn(dn);
  return c ? *c : "error: " + c.error().issues.front().diagnostics;
}

TEST(PeerCertificate, SubjectAndThumbprintAsOpensslCliPrintsThem) {
  auto cert = certificate();
  ASSERT_TRUE(cert);
  auto described = describe_certificate(cert.get());
  ASSERT_TRUE(described);
  EXPECT_EQ(described->subject, kSubject);
  EXPECT_EQ(described->thumbprint, kThumbprint);
}

TEST(PeerCertificate, RegisteredDnMatchesTheCertificateWhateverItsSpacingAndCase) {
  EXPECT_EQ(canonical(kSubject), kSubject);
  EXPECT_EQ(canonical(R"(cn = lab.example, uid=b7 + ou=Biology, o=Lab\, Inc. , c=FR)"), kSubject);
  EXPECT_EQ(canonical(R"(commonName=lab.example,UID=b7+organizationalUnitName=Biology,O=Lab\2C Inc.,C=FR)"), kSubject);
  EXPECT_EQ(canonical("2.5.4.3=lab.example,2.5.4.10=Lab"), "CN=lab.example,O=Lab");
  // Another DN is another string: the order of the RDNs counts, and so does the case of a value.
  EXPECT_EQ(canonical("O=Lab,CN=lab.example"), "O=Lab,CN=lab.example");
  EXPECT_NE(canonical("CN=Lab.Example,O=Lab"), canonical("CN=lab.example,O=Lab"));
}

TEST(PeerCertificate, EscapesAndUtf8) {
  EXPECT_EQ(canonical("CN=M\\C3\\BCller,O=Lab"), "CN=Müller,O=Lab");
  EXPECT_EQ(canonical("CN=Müller,O=Lab"), "CN=Müller,O=Lab");
  EXPECT_EQ(canonical(R"(CN=a\+b\=c)"), R"(CN=a\+b=c)") << "RFC 4514 escapes + but not =";
  EXPECT_EQ(canonical(R"(CN=x\ )"), R"(CN=x\ )") << "an escaped trailing space is part of the value";
  EXPECT_EQ(canonical("CN=x   "), "CN=x") << "an unescaped one is not";
}

TEST(PeerCertificate, RefusesWhatIsNotADn) {
  for (const char* bad : {"", "   ", "CN", "=x", "CN=a,", "CN=a,O", "NOPE=1", "C=FRA", "CN=a\\"}) {
    auto c = canonical_subject_dn(bad);
    ASSERT_FALSE(c) << "'" << bad << "' gave " << *c;
    EXPECT_EQ(c.error().kind, fhir::ErrorKind::kInvalid) << bad;
  }
  auto hex = canonical_subject_dn("CN=#0403616263");
  ASSERT_FALSE(hex);
  EXPECT_EQ(hex.error().kind, fhir::ErrorKind::kNotSupported);
}

}  // namespace
}  // namespace caduceus::server
