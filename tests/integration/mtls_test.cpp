// Mutual TLS (RFC 8705) with the real binary over HTTPS: `--tls-client-ca`, tls_client_auth clients and
// certificate-bound access tokens. A throwaway PKI is made in the test (tests/support/test_pki.hpp): a CA that the
// server trusts, client certificates it issues, and a rogue CA the server does not know.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <fstream>

#include "http_client.hpp"
#include "test_pki.hpp"
#include "test_server.hpp"
#include "tls_client.hpp"

namespace caduceus::test {
namespace {

namespace json = fhir::json;

constexpr const char* kSecret = "backend-secret-long-enough";

// The claims of a JWT, unverified (the test reads what the server put there).
json::Value jwt_claims(const std::string& token) {
  auto first = token.find('.'), second = token.find('.', first + 1);
  std::string text = token.substr(first + 1, second - first - 1);
  for (char& c : text) c = c == '-' ? '+' : c == '_' ? '/' : c;
  std::size_t pad = (4 - text.size() % 4) % 4;
  text.append(pad, '=');
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  out.resize(static_cast<std::size_t>(std::max(0, n)) - pad);
  auto parsed = parse_json(out);
  return parsed ? *parsed : json::Value();
}

std::string basic(const std::string& id, const std::string& secret) {
  std::string raw = id + ":" + secret, out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return "Basic " + out;
}

class MtlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("mtls-test");
    const auto& d = dir_->path();
    server_cert_ = new CertFiles(make_self_signed_cert(d, "server"));
    ca_ = new CertFiles(make_test_ca(d, "ca", "Caduceus test CA"));
    CertFiles rogue_ca = make_test_ca(d, "rogue-ca", "Rogue CA");
    // lab: the registered client's certificate. twin: the same subject from the same CA, another key. other:
    // another subject from the same CA. rogue: lab's subject from a CA the server does not trust. expired: lab's
    // subject, from the trusted CA, expired yesterday.
    lab_ = new CertFiles(issue_client_cert(d, "lab", *ca_, {{"O", "Lab"}, {"CN", "lab.example"}}, 2));
    twin_ = new CertFiles(issue_client_cert(d, "twin", *ca_, {{"O", "Lab"}, {"CN", "lab.example"}}, 3));
    other_ = new CertFiles(issue_client_cert(d, "other", *ca_, {{"O", "Lab"}, {"CN", "other.example"}}, 4));
    rogue_ = new CertFiles(issue_client_cert(d, "rogue", rogue_ca, {{"O", "Lab"}, {"CN", "lab.example"}}, 2));
    expired_ = new CertFiles(
        issue_client_cert(d, "expired", *ca_, {{"O", "Lab"}, {"CN", "lab.example"}}, 5, -2 * 86400, -86400));

    db_ = "sqlite:" + (d / "mtls.db").string();
    // The DN as an administrator may type it: spaces and lower-case types are fine.
    auto added = run_caduceus({"admin", "client", "add", "--db", db_, "--id", "lab", "--type", "tls-client-auth",
                               "--tls-subject", "cn=lab.example, o=Lab", "--scope", "system/Patient.rs"});
    ASSERT_EQ(added.first, 0) << added.second;
    added = run_caduceus({"admin", "client", "add", "--db", db_, "--id", "backend", "--type", "confidential-symmetric",
                          "--secret", kSecret, "--scope", "system/*.cruds"});
    ASSERT_EQ(added.first, 0) << added.second;
    // The subject is kept in its canonical form (as OpenSSL prints a certificate's subject).
    auto listed = run_caduceus({"admin", "client", "list", "--db", db_});
    ASSERT_EQ(listed.first, 0) << listed.second;
    EXPECT_NE(listed.second.find("lab\ttls-client-auth"), std::string::npos) << listed.second;
    EXPECT_NE(listed.second.find("tls_subject: CN=lab.example,O=Lab"), std::string::npos) << listed.second;

    ServerOptions options;
    options.db = db_;
    options.extra_args = {"--auth",          "smart",
                          "--data-dir",      (d / "data").string(),
                          "--tls-cert",      server_cert_->cert.string(),
                          "--tls-key",       server_cert_->key.string(),
                          "--tls-client-ca", ca_->cert.string()};
    server_ = new TestServer(options);
    origin_ = server_->base_url().substr(0, server_->base_url().size() - 5);

    // Data, written with the unbound token of the backend client (no client certificate).
    Response token = call("POST", "/auth/token", {{"Authorization", basic("backend", kSecret)}},
                          "grant_type=client_credentials&scope=" + url_encode("system/*.cruds"), nullptr);
    ASSERT_EQ(token.status, 200) << token.summary();
    backend_token_ = string_at(*token.json(), "access_token");
    Response put = call("PUT", "/fhir/Patient/p1", {{"Authorization", "Bearer " + backend_token_}},
                        R"({"resourceType":"Patient","id":"p1","name":[{"family":"Ames"}]})", nullptr);
    ASSERT_EQ(put.status, 201) << put.summary();
  }
  static void TearDownTestSuite() {
    delete server_;
    for (CertFiles* c : {server_cert_, ca_, lab_, twin_, other_, rogue_, expired_}) delete c;
    delete dir_;
  }

  // One HTTPS exchange with the suite's server, presenting `cert` (nullptr: no client certificate), with TLS
  // `version` (0: the highest). A form body gets its Content-Type.
  static TlsExchange exchange(const std::string& method, const std::string& target, HeaderList headers,
                              const std::string& body, const CertFiles* cert, int version = 0) {
    TlsClientOptions options;
    options.trust = server_cert_->cert;
    if (cert != nullptr) options.client = *cert;
    options.min_version = options.max_version = version;
    if (method == "POST" && target.starts_with("/auth/"))
      headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    else if (!body.empty())
      headers.emplace_back("Content-Type", "application/fhir+json");
    return tls_request(server_->host(), server_->port(), method, target, headers, body, options);
  }
  static Response call(const std::string& method, const std::string& target, HeaderList headers,
                       const std::string& body, const CertFiles* cert, int version = 0) {
    TlsExchange x = exchange(method, target, std::move(headers), body, cert, version);
    if (x.response.status == 0) x.response.error = x.error;
    return x.response;
  }
  static Response lab_token_request(const CertFiles* cert, const std::string& scope = "system/Patient.rs") {
    return call("POST", "/auth/token", {}, "grant_type=client_credentials&client_id=lab&scope=" + url_encode(scope),
                cert);
  }
  static Response read_p1(const std::string& token, const CertFiles* cert, int version = 0) {
    return call("GET", "/fhir/Patient/p1", {{"Authorization", "Bearer " + token}}, {}, cert, version);
  }

  static TempDir* dir_;
  static CertFiles *server_cert_, *ca_, *lab_, *twin_, *other_, *rogue_, *expired_;
  static std::string db_, origin_, backend_token_;
  static TestServer* server_;
};
TempDir* MtlsTest::dir_ = nullptr;
CertFiles* MtlsTest::server_cert_ = nullptr;
CertFiles* MtlsTest::ca_ = nullptr;
CertFiles* MtlsTest::lab_ = nullptr;
CertFiles* MtlsTest::twin_ = nullptr;
CertFiles* MtlsTest::other_ = nullptr;
CertFiles* MtlsTest::rogue_ = nullptr;
CertFiles* MtlsTest::expired_ = nullptr;
std::string MtlsTest::db_, MtlsTest::origin_, MtlsTest::backend_token_;
TestServer* MtlsTest::server_ = nullptr;

std::vector<std::string> strings_at(const json::Value& v, std::string_view path) {
  std::vector<std::string> out;
  if (const json::Value* a = find_path(v, path); a != nullptr && a->is_array())
    for (const json::Value& s : a->items()) out.push_back(s.text());
  return out;
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

TEST_F(MtlsTest, AConnectionWithoutACertificateStillServesMetadataAndDiscovery) {
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    TlsExchange x = exchange("GET", "/fhir/metadata", {}, {}, nullptr, version);
    ASSERT_TRUE(x.handshake) << x.error;
    ASSERT_EQ(x.response.status, 200) << x.error << x.response.summary();
    EXPECT_EQ(string_at(*x.response.json(), "resourceType"), "CapabilityStatement");
  }
  for (const char* path : {"/fhir/.well-known/smart-configuration", "/.well-known/openid-configuration"}) {
    Response r = call("GET", path, {}, {}, nullptr);
    ASSERT_EQ(r.status, 200) << path << r.summary();
    auto c = *r.json();
    const json::Value* bound = find_path(c, "tls_client_certificate_bound_access_tokens");
    ASSERT_NE(bound, nullptr) << path;
    EXPECT_TRUE(bound->is_bool() && bound->as_bool()) << path;
    auto methods = strings_at(c, "token_endpoint_auth_methods_supported");
    EXPECT_TRUE(contains(methods, "tls_client_auth")) << path;
    EXPECT_TRUE(contains(methods, "private_key_jwt")) << path;
    EXPECT_EQ(string_at(c, "token_endpoint"), origin_ + "/auth/token");
  }
}

TEST_F(MtlsTest, TheRegisteredCertificateGetsATokenBoundToIt) {
  Response r = lab_token_request(lab_);
  ASSERT_EQ(r.status, 200) << r.summary();
  auto body = *r.json();
  EXPECT_EQ(string_at(body, "token_type"), "bearer");
  EXPECT_EQ(string_at(body, "scope"), "system/Patient.rs");
  const std::string token = string_at(body, "access_token");
  json::Value claims = jwt_claims(token);
  EXPECT_EQ(string_at(claims, "client_id"), "lab");
  EXPECT_EQ(string_at(claims, "cnf.x5t#S256"), certificate_thumbprint(lab_->cert));
  EXPECT_EQ(string_at(claims, "cnf.x5t#S256").size(), 43u) << "SHA-256, base64url without padding";

  // Used over a connection with that certificate: it works, over TLS 1.2 and 1.3.
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    Response read = read_p1(token, lab_, version);
    ASSERT_EQ(read.status, 200) << read.summary();
    EXPECT_EQ(string_at(*read.json(), "name[0].family"), "Ames");
  }
  Response search = call("GET", "/fhir/Patient?_id=p1", {{"Authorization", "Bearer " + token}}, {}, lab_);
  ASSERT_EQ(search.status, 200) << search.summary();
  EXPECT_EQ(size_at(*search.json(), "entry"), 1u) << search.summary();
  EXPECT_EQ(string_at(*search.json(), "entry[0].resource.id"), "p1");

  // Introspection returns the binding: asked by the token's own client (over its certificate), or by another one.
  using Caller = std::pair<std::string, const CertFiles*>;
  for (const auto& [who, cert] : {Caller{"Bearer " + token, lab_}, Caller{basic("backend", kSecret), nullptr}}) {
    Response i = call("POST", "/auth/introspect", {{"Authorization", who}}, "token=" + token, cert);
    ASSERT_EQ(i.status, 200) << i.summary();
    ASSERT_NE(find_path(*i.json(), "active"), nullptr);
    EXPECT_TRUE(find_path(*i.json(), "active")->as_bool()) << i.summary();
    EXPECT_EQ(string_at(*i.json(), "cnf.x5t#S256"), certificate_thumbprint(lab_->cert));
    EXPECT_EQ(string_at(*i.json(), "client_id"), "lab");
  }
}

TEST_F(MtlsTest, ABoundTokenIsRefusedWithoutItsCertificate) {
  Response r = lab_token_request(lab_);
  ASSERT_EQ(r.status, 200) << r.summary();
  const std::string token = string_at(*r.json(), "access_token");
  ASSERT_EQ(read_p1(token, lab_).status, 200);

  // No certificate; another subject; the same subject with another key (another thumbprint): 401 invalid_token.
  for (const CertFiles* cert : std::initializer_list<const CertFiles*>{nullptr, other_, twin_}) {
    for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
      Response read = read_p1(token, cert, version);
      std::string which = cert == nullptr ? "no certificate" : cert->cert.filename().string();
      ASSERT_EQ(read.status, 401) << which << ": " << read.summary();
      EXPECT_NE(read.header("WWW-Authenticate").find("error=\"invalid_token\""), std::string::npos)
          << which << ": " << read.header("WWW-Authenticate");
      EXPECT_EQ(read.body.find("Ames"), std::string::npos);
    }
  }
  Response search = call("GET", "/fhir/Patient", {{"Authorization", "Bearer " + token}}, {}, nullptr);
  EXPECT_EQ(search.status, 401) << search.summary();
  // Nor does it open introspection or revocation without its certificate.
  Response i = call("POST", "/auth/introspect", {{"Authorization", "Bearer " + token}}, "token=" + token, other_);
  EXPECT_EQ(i.status, 401) << i.summary();
  EXPECT_EQ(string_at(*i.json(), "error"), "invalid_client");
  // The refusals changed nothing: with its certificate it still works.
  EXPECT_EQ(read_p1(token, lab_).status, 200);
}

TEST_F(MtlsTest, TheTokenEndpointWantsTheRegisteredSubjectOverAVerifiedCertificate) {
  // Without a certificate, or with one of another subject: 401 invalid_client, no token.
  for (const CertFiles* cert : std::initializer_list<const CertFiles*>{nullptr, other_}) {
    Response r = lab_token_request(cert);
    ASSERT_EQ(r.status, 401) << r.summary();
    EXPECT_EQ(string_at(*r.json(), "error"), "invalid_client");
    EXPECT_EQ(string_at(*r.json(), "access_token"), "");
  }
  // tls_client_auth is PKI-bound: any certificate of the trusted CA with the registered subject is the client;
  // the token is then bound to that certificate, not to another one of the same subject.
  Response twin = lab_token_request(twin_);
  ASSERT_EQ(twin.status, 200) << twin.summary();
  const std::string token = string_at(*twin.json(), "access_token");
  EXPECT_EQ(string_at(jwt_claims(token), "cnf.x5t#S256"), certificate_thumbprint(twin_->cert));
  EXPECT_NE(certificate_thumbprint(twin_->cert), certificate_thumbprint(lab_->cert));
  EXPECT_EQ(read_p1(token, twin_).status, 200);
  EXPECT_EQ(read_p1(token, lab_).status, 401);

  // A scope the client is not registered for is not granted.
  Response wider = lab_token_request(lab_, "system/Observation.rs");
  EXPECT_EQ(wider.status, 400) << wider.summary();
  EXPECT_EQ(string_at(*wider.json(), "error"), "invalid_scope");
  // A confidential-symmetric client does not become a tls_client_auth one by presenting a certificate.
  Response pretend =
      call("POST", "/auth/token", {},
           "grant_type=client_credentials&client_id=backend&scope=" + url_encode("system/Patient.rs"), lab_);
  EXPECT_EQ(pretend.status, 401) << pretend.summary();
  EXPECT_EQ(string_at(*pretend.json(), "error"), "invalid_client");
}

TEST_F(MtlsTest, UnboundTokensWorkAsBefore) {
  Response r = call("POST", "/auth/token", {{"Authorization", basic("backend", kSecret)}},
                    "grant_type=client_credentials&scope=" + url_encode("system/Patient.rs"), nullptr);
  ASSERT_EQ(r.status, 200) << r.summary();
  const std::string token = string_at(*r.json(), "access_token");
  EXPECT_EQ(find_path(jwt_claims(token), "cnf"), nullptr) << "no binding without tls_client_auth";
  for (const CertFiles* cert : std::initializer_list<const CertFiles*>{nullptr, lab_, other_}) {
    Response read = read_p1(token, cert);
    ASSERT_EQ(read.status, 200) << read.summary();
    EXPECT_EQ(string_at(*read.json(), "name[0].family"), "Ames");
  }
  Response i =
      call("POST", "/auth/introspect", {{"Authorization", basic("backend", kSecret)}}, "token=" + token, nullptr);
  ASSERT_EQ(i.status, 200) << i.summary();
  EXPECT_TRUE(find_path(*i.json(), "active")->as_bool());
  EXPECT_EQ(find_path(*i.json(), "cnf"), nullptr);
}

TEST_F(MtlsTest, AnUntrustedOrExpiredCertificateFailsTheHandshake) {
  // TLS 1.2: the server's alert ends the handshake. unknown_ca for the rogue CA, certificate_expired.
  TlsExchange rogue12 = exchange("GET", "/fhir/metadata", {}, {}, rogue_, TLS1_2_VERSION);
  EXPECT_FALSE(rogue12.handshake);
  EXPECT_EQ(rogue12.response.status, 0);
  EXPECT_EQ(rogue12.ssl_reason, SSL_R_TLSV1_ALERT_UNKNOWN_CA) << rogue12.error;
  TlsExchange expired12 = exchange("GET", "/fhir/metadata", {}, {}, expired_, TLS1_2_VERSION);
  EXPECT_FALSE(expired12.handshake);
  EXPECT_EQ(expired12.response.status, 0);
  EXPECT_EQ(expired12.ssl_reason, SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED) << expired12.error;
  // TLS 1.3: the client's certificate comes last, so the client hears the alert on its first read; no response.
  TlsExchange rogue13 = exchange("GET", "/fhir/metadata", {}, {}, rogue_, TLS1_3_VERSION);
  EXPECT_EQ(rogue13.response.status, 0);
  EXPECT_EQ(rogue13.ssl_reason, SSL_R_TLSV1_ALERT_UNKNOWN_CA) << rogue13.error;
  // Not even the token endpoint hears a request over such a connection.
  Response token = lab_token_request(rogue_);
  EXPECT_EQ(token.status, 0) << token.summary();
  // The server is unharmed.
  EXPECT_EQ(call("GET", "/fhir/metadata", {}, {}, lab_).status, 200);
}

TEST(MtlsAdminTest, ClientAddChecksTheSubject) {
  TempDir dir("mtls-admin");
  std::string db = "sqlite:" + (dir.path() / "a.db").string();
  auto missing = run_caduceus(
      {"admin", "client", "add", "--db", db, "--id", "x", "--type", "tls-client-auth", "--scope", "system/*.rs"});
  EXPECT_EQ(missing.first, 2) << missing.second;
  EXPECT_NE(missing.second.find("--tls-subject"), std::string::npos) << missing.second;
  auto bad = run_caduceus({"admin", "client", "add", "--db", db, "--id", "x", "--type", "tls-client-auth",
                           "--tls-subject", "C=FRANCE", "--scope", "system/*.rs"});
  EXPECT_EQ(bad.first, 1) << bad.second;
  EXPECT_NE(bad.second.find("--tls-subject"), std::string::npos) << bad.second;
  auto misplaced = run_caduceus({"admin", "client", "add", "--db", db, "--id", "x", "--type", "public", "--tls-subject",
                                 "CN=x", "--scope", "system/*.rs"});
  EXPECT_EQ(misplaced.first, 2) << misplaced.second;
}

TEST(MtlsOptionsTest, HelpEnvironmentAndRefusals) {
  auto help = run_caduceus({"serve", "--help"});
  EXPECT_EQ(help.first, 0);
  EXPECT_NE(help.second.find("--tls-client-ca"), std::string::npos) << help.second;

  TempDir dir("mtls-options");
  CertFiles server_cert = make_self_signed_cert(dir.path(), "server");
  CertFiles ca = make_test_ca(dir.path(), "ca", "Options CA");
  // Without HTTPS it means nothing: refused at start.
  auto no_tls = run_caduceus(
      {"serve", "--listen", "127.0.0.1:0", "--db", "sqlite::memory:", "--tls-client-ca", ca.cert.string()});
  EXPECT_NE(no_tls.first, 0);
  EXPECT_NE(no_tls.second.find("--tls-client-ca needs HTTPS"), std::string::npos) << no_tls.second;
  // A file that is not a CA bundle: refused, naming the option.
  std::ofstream(dir.path() / "junk.pem") << "not a certificate\n";
  auto junk = run_caduceus({"serve", "--listen", "127.0.0.1:0", "--db", "sqlite::memory:", "--data-dir",
                            (dir.path() / "data").string(), "--tls-cert", server_cert.cert.string(), "--tls-key",
                            server_cert.key.string(), "--tls-client-ca", (dir.path() / "junk.pem").string()});
  EXPECT_NE(junk.first, 0);
  EXPECT_NE(junk.second.find("--tls-client-ca"), std::string::npos) << junk.second;

  // From the environment, like every option: a client of that CA is verified, one of another CA is not.
  ServerOptions options;
  options.extra_args = {"--auth",     "smart",
                        "--data-dir", (dir.path() / "data").string(),
                        "--tls-cert", server_cert.cert.string(),
                        "--tls-key",  server_cert.key.string()};
  options.env["CADUCEUS_TLS_CLIENT_CA"] = ca.cert.string();
  TestServer server(options);
  CertFiles good = issue_client_cert(dir.path(), "good", ca, {{"CN", "good"}}, 2);
  CertFiles foreign_ca = make_test_ca(dir.path(), "foreign-ca", "Foreign CA");
  CertFiles foreign = issue_client_cert(dir.path(), "foreign", foreign_ca, {{"CN", "good"}}, 2);
  TlsClientOptions client;
  client.trust = server_cert.cert;
  client.min_version = client.max_version = TLS1_2_VERSION;
  client.client = good;
  EXPECT_EQ(tls_get(server.host(), server.port(), "/fhir/.well-known/smart-configuration", client).response.status,
            200);
  client.client = foreign;
  TlsExchange x = tls_get(server.host(), server.port(), "/fhir/metadata", client);
  EXPECT_FALSE(x.handshake);
  EXPECT_EQ(x.ssl_reason, SSL_R_TLSV1_ALERT_UNKNOWN_CA) << x.error;
}

}  // namespace
}  // namespace caduceus::test
