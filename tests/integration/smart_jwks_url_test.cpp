// Backend Services clients registered with --jwks-url: the server fetches their JWK Set over HTTPS (verified with
// SSL_CERT_FILE, here the certificate of a tiny HTTPS server of the test), caches it, refetches it for a new kid
// (key rotation) no sooner than --jwks-refetch-interval, and refuses an assertion it cannot verify (unreachable
// URL, untrusted certificate, redirect, no matching key, a jku header that is not the registered URL) with 401
// invalid_client.
#include <gtest/gtest.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "client_keys.hpp"
#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"
#include "tls_client.hpp"

namespace caduceus::test {
namespace {

namespace asio = boost::asio;
namespace json = fhir::json;
using tcp = asio::ip::tcp;

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A client assertion for `client_id` (iss and sub) to `aud`, valid 4 minutes; `jku`, when not empty, in its header.
std::string sign_assertion(const ClientKey& key, const std::string& client_id, const std::string& aud,
                           const std::string& jku = {}) {
  return caduceus::test::sign_assertion(key, {client_id, client_id, aud, random_jti(), now_s() + 240, jku});
}

// A tiny HTTPS server on 127.0.0.1 (port 0) that answers GET PATH with what the test set for PATH (404 else), one
// connection at a time, and counts the requests per path.
class JwksHost {
 public:
  explicit JwksHost(const CertFiles& cert) : ssl_(asio::ssl::context::tls_server) {
    ssl_.use_certificate_chain_file(cert.cert.string());
    ssl_.use_private_key_file(cert.key.string(), asio::ssl::context::pem);
    acceptor_.open(tcp::v4());
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~JwksHost() {
    asio::post(io_, [this] { acceptor_.close(); });
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string url(const std::string& path) const { return "https://127.0.0.1:" + std::to_string(port()) + path; }

  void serve(const std::string& path, int status, std::string body, std::string extra_headers = {}) {
    std::lock_guard lock(mutex_);
    answers_[path] = {status, std::move(body), std::move(extra_headers)};
  }
  int requests(const std::string& path) {
    std::lock_guard lock(mutex_);
    return counts_[path];
  }

 private:
  struct Answer {
    int status = 404;
    std::string body, headers;
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) return;
      answer(std::move(socket));
      accept();
    });
  }

  // Synchronous: one connection at a time is all the tests need.
  void answer(tcp::socket socket) {
    try {
      asio::ssl::stream<tcp::socket> stream(std::move(socket), ssl_);
      stream.handshake(asio::ssl::stream_base::server);
      asio::streambuf buf;
      asio::read_until(stream, buf, "\r\n\r\n");
      std::string head(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
      auto sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
      std::string path = head.substr(sp1 + 1, sp2 - sp1 - 1);
      Answer a;
      {
        std::lock_guard lock(mutex_);
        ++counts_[path];
        if (auto it = answers_.find(path); it != answers_.end()) a = it->second;
      }
      std::string response =
          "HTTP/1.1 " + std::to_string(a.status) +
          " X\r\nContent-Type: application/jwk-set+json\r\nContent-Length: " + std::to_string(a.body.size()) +
          "\r\nConnection: close\r\n" + a.headers + "\r\n" + a.body;
      asio::write(stream, asio::buffer(response));
      boost::system::error_code ignored;
      stream.shutdown(ignored);
    } catch (const std::exception&) {
      // a client that gave up (e.g. it did not trust the certificate)
    }
  }

  asio::io_context io_;
  asio::ssl::context ssl_;
  tcp::acceptor acceptor_{io_};
  std::thread thread_;
  std::mutex mutex_;
  std::map<std::string, Answer> answers_;
  std::map<std::string, int> counts_;
};

// A port on 127.0.0.1 where nothing listens (bound, read, closed).
std::uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

class SmartJwksUrlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>("smart-jwks-url");
    db_ = "sqlite:" + (dir_->path() / "smart.db").string();
    trusted_ = make_self_signed_cert(dir_->path(), "jwks-host");
    host_ = std::make_unique<JwksHost>(trusted_);
  }

  void add_client(const std::string& id, const std::string& url) {
    auto added = run_caduceus({"admin", "client", "add", "--db", db_, "--id", id, "--type", "confidential-asymmetric",
                               "--jwks-url", url, "--scope", "system/Patient.rs"});
    ASSERT_EQ(added.first, 0) << added.second;
  }

  // The server, trusting the JWKS host's certificate (and nothing else) through SSL_CERT_FILE.
  void start(std::vector<std::string> args = {}) {
    ServerOptions options;
    options.db = db_;
    options.extra_args = {"--auth", "smart", "--data-dir", (dir_->path() / "data").string()};
    options.extra_args.insert(options.extra_args.end(), args.begin(), args.end());
    options.env["SSL_CERT_FILE"] = trusted_.cert.string();
    options.env["SSL_CERT_DIR"] = (dir_->path() / "no-such-dir").string();
    server_ = std::make_unique<TestServer>(options);
    client_ = std::make_unique<HttpClient>(server_->base_url());
    token_url_ = server_->base_url().substr(0, server_->base_url().size() - 5) + "/auth/token";
  }

  Response token_request(const std::string& assertion, const std::string& scope = "system/Patient.rs") {
    std::string form = "grant_type=client_credentials&scope=" + url_encode(scope) + "&client_assertion_type=" +
                       url_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") +
                       "&client_assertion=" + assertion;
    return client_->post("/auth/token", form, {{"Content-Type", "application/x-www-form-urlencoded"}});
  }

  // 401 invalid_client whose error_description contains `part`.
  void expect_invalid_client(const Response& r, const std::string& part) {
    EXPECT_EQ(r.status, 401) << r.summary();
    auto body = r.json();
    ASSERT_TRUE(body.has_value()) << r.summary();
    EXPECT_EQ(string_at(*body, "error"), "invalid_client");
    EXPECT_NE(string_at(*body, "error_description").find(part), std::string::npos) << r.body;
  }

  std::unique_ptr<TempDir> dir_;
  std::string db_, token_url_;
  CertFiles trusted_;
  std::unique_ptr<JwksHost> host_;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<HttpClient> client_;
};

TEST_F(SmartJwksUrlTest, AssertionsAreVerifiedWithTheFetchedJwksWhichIsCached) {
  ClientKey es = make_client_key("ES384", "es-1"), rs = make_client_key("RS384", "rs-1");
  host_->serve("/es.json", 200, jwks_of({&es}));
  host_->serve("/rs.json", 200, jwks_of({&rs}));
  add_client("es-backend", host_->url("/es.json"));
  add_client("rs-backend", host_->url("/rs.json"));
  start();

  auto r = token_request(sign_assertion(es, "es-backend", token_url_));
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(string_at(*r.json(), "scope"), "system/Patient.rs");
  EXPECT_EQ(host_->requests("/es.json"), 1);
  // The token opens what its scope allows.
  auto read = client_->get("/fhir/Patient", {{"Authorization", "Bearer " + string_at(*r.json(), "access_token")}});
  EXPECT_EQ(read.status, 200) << read.summary();

  // Cached: a second assertion with the same kid does not fetch again.
  r = token_request(sign_assertion(es, "es-backend", token_url_));
  EXPECT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(host_->requests("/es.json"), 1);

  r = token_request(sign_assertion(rs, "rs-backend", token_url_));
  EXPECT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(host_->requests("/rs.json"), 1);

  // A jku header equal to the registered URL is fine; another one is refused, before any fetch.
  r = token_request(sign_assertion(es, "es-backend", token_url_, host_->url("/es.json")));
  EXPECT_EQ(r.status, 200) << r.summary();
  expect_invalid_client(token_request(sign_assertion(es, "es-backend", token_url_, host_->url("/rs.json"))), "jku");
  expect_invalid_client(token_request(sign_assertion(es, "es-backend", token_url_, "https://evil.example/jwks")),
                        "jku");
  EXPECT_EQ(host_->requests("/rs.json"), 1);
  EXPECT_EQ(host_->requests("/es.json"), 1);

  // A key of another client does not open this one (its kid is unknown here: one refetch, then refused).
  expect_invalid_client(token_request(sign_assertion(rs, "es-backend", token_url_)), "kid 'rs-1'");
}

TEST_F(SmartJwksUrlTest, ARotatedKeyIsPickedUpByARefetch) {
  ClientKey k1 = make_client_key("ES384", "k1"), k2 = make_client_key("RS384", "k2");
  host_->serve("/jwks", 200, jwks_of({&k1}));
  add_client("rotating", host_->url("/jwks"));
  start({"--jwks-refetch-interval", "0"});

  auto r = token_request(sign_assertion(k1, "rotating", token_url_));
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(host_->requests("/jwks"), 1);

  // The client publishes k2 and withdraws k1: an assertion signed with k2 (a kid not cached) makes the server
  // fetch the set again.
  host_->serve("/jwks", 200, jwks_of({&k2}));
  r = token_request(sign_assertion(k2, "rotating", token_url_));
  EXPECT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(host_->requests("/jwks"), 2);
  // k1 is gone from the set now.
  expect_invalid_client(token_request(sign_assertion(k1, "rotating", token_url_)), "kid 'k1' is not in");
  EXPECT_EQ(host_->requests("/jwks"), 3);
  // k2 is cached.
  r = token_request(sign_assertion(k2, "rotating", token_url_));
  EXPECT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(host_->requests("/jwks"), 3);
}

TEST_F(SmartJwksUrlTest, AnUnknownKidRefetchesAtMostOncePerInterval) {
  ClientKey k1 = make_client_key("ES384", "k1"), k2 = make_client_key("ES384", "k2");
  host_->serve("/jwks", 200, jwks_of({&k1}));
  add_client("backend", host_->url("/jwks"));
  start();  // the default --jwks-refetch-interval: 30 s

  ASSERT_EQ(token_request(sign_assertion(k1, "backend", token_url_)).status, 200);
  EXPECT_EQ(host_->requests("/jwks"), 1);
  host_->serve("/jwks", 200, jwks_of({&k1, &k2}));
  // Fetched less than 30 s ago: k2 is not looked for yet, however often it is presented.
  for (int i = 0; i < 3; ++i)
    expect_invalid_client(token_request(sign_assertion(k2, "backend", token_url_)), "kid 'k2' is not in");
  EXPECT_EQ(host_->requests("/jwks"), 1);
  ASSERT_EQ(token_request(sign_assertion(k1, "backend", token_url_)).status, 200);
  EXPECT_EQ(host_->requests("/jwks"), 1);
}

TEST_F(SmartJwksUrlTest, AFetchThatFailsIsInvalidClient) {
  ClientKey key = make_client_key("ES384", "k1"), other = make_client_key("ES384", "other");
  CertFiles untrusted = make_self_signed_cert(dir_->path(), "untrusted");
  JwksHost stranger(untrusted);
  stranger.serve("/jwks", 200, jwks_of({&key}));
  host_->serve("/moved", 302, "", "Location: " + host_->url("/jwks") + "\r\n");
  host_->serve("/jwks", 200, jwks_of({&key}));
  host_->serve("/other", 200, jwks_of({&other}));
  host_->serve("/html", 200, "<html>not a key set</html>");
  host_->serve("/big", 200, R"({"keys":[],"pad":")" + std::string(300 * 1024, 'x') + R"("})");

  add_client("unreachable", "https://127.0.0.1:" + std::to_string(closed_port()) + "/jwks");
  add_client("untrusted", stranger.url("/jwks"));
  add_client("redirected", host_->url("/moved"));
  add_client("missing", host_->url("/gone"));
  add_client("other-key", host_->url("/other"));
  add_client("not-a-jwks", host_->url("/html"));
  add_client("too-big", host_->url("/big"));
  add_client("by-name", "https://localhost:" + std::to_string(host_->port()) + "/jwks");
  start();

  expect_invalid_client(token_request(sign_assertion(key, "unreachable", token_url_)), "cannot connect");
  expect_invalid_client(token_request(sign_assertion(key, "untrusted", token_url_)), "certificate not trusted");
  EXPECT_EQ(stranger.requests("/jwks"), 0) << "nothing is asked of a server that is not trusted";
  expect_invalid_client(token_request(sign_assertion(key, "redirected", token_url_)), "redirect, not followed");
  EXPECT_EQ(host_->requests("/jwks"), 0) << "the redirect is not followed";
  expect_invalid_client(token_request(sign_assertion(key, "missing", token_url_)), "answered 404");
  expect_invalid_client(token_request(sign_assertion(key, "other-key", token_url_)), "kid 'k1' is not in");
  expect_invalid_client(token_request(sign_assertion(key, "not-a-jwks", token_url_)), "is not a JWK Set");
  expect_invalid_client(token_request(sign_assertion(key, "too-big", token_url_)), "larger than 262144 bytes");
  // The host name is checked too: the certificate names localhost (and 127.0.0.1).
  auto r = token_request(sign_assertion(key, "by-name", token_url_));
  EXPECT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(host_->requests("/jwks"), 1);
  // A failure is not retried within the refetch interval.
  expect_invalid_client(token_request(sign_assertion(key, "missing", token_url_)), "answered 404");
  EXPECT_EQ(host_->requests("/gone"), 1);
}

}  // namespace
}  // namespace caduceus::test
