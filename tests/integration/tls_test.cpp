// HTTPS: `caduceus serve --tls-cert --tls-key` with a certificate made in the test (OpenSSL 3, EVP and X509).
#include <openssl/ssl.h>

#include "http_client.hpp"
#include "test_server.hpp"
#include "tls_client.hpp"

namespace caduceus::test {
namespace {

ServerOptions tls_options(const CertFiles& files) {
  ServerOptions options;
  options.extra_args = {"--tls-cert", files.cert.string(), "--tls-key", files.key.string()};
  return options;
}

TEST(TlsTest, ServesTheApiOverTls12And13WithHsts) {
  TempDir dir("caduceus-tls");
  const CertFiles files = make_self_signed_cert(dir.path());
  TestServer server(tls_options(files));
  EXPECT_EQ(server.base_url(), "https://127.0.0.1:" + std::to_string(server.port()) + "/fhir");

  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    TlsClientOptions client;
    client.min_version = client.max_version = version;
    client.trust = files.cert;
    TlsExchange x = tls_get(server.host(), server.port(), "/fhir/metadata", client);
    ASSERT_TRUE(x.handshake) << x.error;
    EXPECT_EQ(x.protocol, version == TLS1_2_VERSION ? "TLSv1.2" : "TLSv1.3");
    if (version == TLS1_2_VERSION) EXPECT_TRUE(x.cipher.starts_with("ECDHE-ECDSA-")) << x.cipher;
    ASSERT_EQ(x.response.status, 200) << x.error << x.response.summary();
    auto json = x.response.json();
    ASSERT_TRUE(json.has_value()) << x.response.summary();
    EXPECT_EQ(string_at(*json, "resourceType"), "CapabilityStatement");
    EXPECT_EQ(string_at(*json, "fhirVersion"), "4.0.1");
    EXPECT_EQ(x.response.header("Strict-Transport-Security"), "max-age=31536000");
    EXPECT_TRUE(x.error.empty()) << x.error;
  }
}

TEST(TlsTest, RefusesTls11AndPlainHttp) {
  TempDir dir("caduceus-tls");
  const CertFiles files = make_self_signed_cert(dir.path());
  TestServer server(tls_options(files));

  TlsClientOptions old;
  old.legacy = true;  // the client may offer TLS 1.1: the refusal must come from the server
  old.min_version = old.max_version = TLS1_1_VERSION;
  old.trust = files.cert;
  TlsExchange x = tls_get(server.host(), server.port(), "/fhir/metadata", old);
  EXPECT_FALSE(x.handshake);
  EXPECT_EQ(x.response.status, 0);
  EXPECT_EQ(x.ssl_reason, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
      << "the server answers a TLS 1.1 hello with a protocol_version alert: " << x.error;

  HttpClient plain(server.host(), server.port(), std::chrono::seconds(5));
  Response r = plain.get("/fhir/metadata");
  EXPECT_EQ(r.status, 0) << "no HTTP answer on the HTTPS port: " << r.summary();

  // The server is unharmed by both.
  TlsClientOptions good;
  good.trust = files.cert;
  EXPECT_EQ(tls_get(server.host(), server.port(), "/fhir/metadata", good).response.status, 200);
}

TEST(TlsTest, KeepAliveAndPipeliningOverTls) {
  TempDir dir("caduceus-tls");
  const CertFiles files = make_self_signed_cert(dir.path());
  TestServer server(tls_options(files));
  TlsClientOptions client;
  client.trust = files.cert;
  // Three requests written at once on one connection: answered in order, the last closes it (with close_notify).
  TlsRaw raw = tls_raw(server.host(), server.port(),
                       "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /fhir/Patient/nope HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /fhir/metadata?_summary=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       client);
  EXPECT_TRUE(raw.error.empty()) << raw.error;
  std::vector<std::string> statuses;
  for (std::size_t at = raw.received.find("HTTP/1.1 "); at != std::string::npos;
       at = raw.received.find("HTTP/1.1 ", at + 1))
    statuses.push_back(raw.received.substr(at + 9, 3));
  EXPECT_EQ(statuses, (std::vector<std::string>{"200", "404", "200"})) << raw.received.substr(0, 2000);
  EXPECT_NE(raw.received.find("CapabilityStatement"), std::string::npos);
}

void expect_start_failure(const ServerOptions& options, const std::string& message) {
  try {
    TestServer server(options);
    ADD_FAILURE() << "the server started; expected: " << message;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("first start"), std::string::npos)
        << "a start that fails creates no administrator (and prints no password): " << e.what();
  }
}

TEST(TlsTest, ClearErrorsForUnreadableOrMismatchedFiles) {
  TempDir dir("caduceus-tls");
  const CertFiles a = make_self_signed_cert(dir.path(), "a");
  const CertFiles b = make_self_signed_cert(dir.path(), "b");
  const std::string missing = (dir.path() / "missing.crt").string();

  expect_start_failure(tls_options({missing, a.key}), "--tls-cert: cannot read '" + missing + "'");
  expect_start_failure(tls_options({a.cert, dir.path() / "missing.key"}), "--tls-key: cannot read");
  expect_start_failure(tls_options({a.key, a.key}), "--tls-cert: '" + a.key.string() + "' is not a PEM certificate");
  expect_start_failure(tls_options({a.cert, a.cert}),
                       "--tls-key: '" + a.cert.string() + "' is not an unencrypted PEM private key");
  expect_start_failure(
      tls_options({a.cert, b.key}),
      "--tls-key: the key in '" + b.key.string() + "' does not match the certificate in '" + a.cert.string() + "'");
  ServerOptions only_cert;
  only_cert.extra_args = {"--tls-cert", a.cert.string()};
  expect_start_failure(only_cert, "--tls-cert and --tls-key go together");
}

}  // namespace
}  // namespace caduceus::test
