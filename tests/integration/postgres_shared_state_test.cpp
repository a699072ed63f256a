// State that several servers on one PostgreSQL database must agree on, over the wire: a SMART access token revoked
// through one server is refused by the other (which had accepted it a moment before), without a restart.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "pg_cluster.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSecret = "shared-state-secret-long-enough";

std::string basic(const std::string& user, const std::string& password) {
  const std::string raw = user + ":" + password;
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return "Basic " + out;
}

// A token for client `id` (client_secret_basic) from the server behind `c`; empty on failure.
std::string token(HttpClient& c, const std::string& id, const std::string& scope) {
  Response r = c.post("/auth/token", "grant_type=client_credentials&scope=" + url_encode(scope),
                      {{"Content-Type", "application/x-www-form-urlencoded"}, {"Authorization", basic(id, kSecret)}});
  EXPECT_EQ(r.status, 200) << r.summary();
  auto body = r.json();
  return body ? string_at(*body, "access_token") : std::string();
}

HeaderList bearer(const std::string& t) {
  return {{"Authorization", "Bearer " + t}, {"Content-Type", "application/fhir+json"}};
}

// The port a server started with --base-url says it listens on (its stderr line), or 0.
std::uint16_t own_port(const TestServer& s) {
  const std::string text = s.stderr_text(), marker = "this server listens on http://127.0.0.1:";
  const auto at = text.find(marker);
  if (at == std::string::npos) return 0;
  return static_cast<std::uint16_t>(std::stoi(text.substr(at + marker.size())));
}

TEST(PostgresSharedStateTest, ATokenRevokedThroughOneServerIsRefusedByTheOther) {
  if (postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
  auto db = PgDatabase::create();
  ASSERT_TRUE(db.has_value()) << db.error();
  TempDir dir("pg-shared-state");
  const std::string data = (dir.path() / "data").string(), url = (*db)->url();
  for (auto [id, scope] : {std::pair{"reader", "system/Patient.rs"}, std::pair{"writer", "system/Patient.cruds"}}) {
    auto added = run_caduceus({"admin", "client", "add", "--db", url, "--id", id, "--type", "confidential-symmetric",
                               "--secret", kSecret, "--scope", scope});
    ASSERT_EQ(added.first, 0) << added.second;
  }
  // Two servers as behind a load balancer: one public base URL (the issuer and audience of the tokens), the same
  // signing keys (one data folder), one database. B serves A's base URL and tells its own port on stderr.
  ServerOptions oa;
  oa.db = url;
  oa.extra_args = {"--auth", "smart", "--data-dir", data};
  TestServer a(oa);
  ServerOptions ob = oa;
  ob.extra_args.insert(ob.extra_args.end(), {"--base-url", a.base_url()});
  TestServer b(ob);
  const std::uint16_t b_port = own_port(b);
  ASSERT_NE(b_port, 0) << b.stderr_text();
  ASSERT_NE(b_port, a.port());
  HttpClient ca(a.host(), a.port()), cb("127.0.0.1", b_port);

  const std::string writer = token(cb, "writer", "system/Patient.cruds");  // issued by B, used on A
  ASSERT_FALSE(writer.empty());
  Response put = ca.put("/fhir/Patient/p1", R"({"resourceType":"Patient","id":"p1","name":[{"family":"Shared"}]})",
                        bearer(writer));
  ASSERT_EQ(put.status, 201) << put.summary();

  const std::string t1 = token(ca, "reader", "system/Patient.rs"), t2 = token(ca, "reader", "system/Patient.rs");
  ASSERT_FALSE(t1.empty());
  ASSERT_NE(t1, t2);
  for (HttpClient* c : {&ca, &cb}) {
    Response r = c->get("/fhir/Patient/p1", bearer(t1));
    ASSERT_EQ(r.status, 200) << r.summary();
    EXPECT_EQ(string_at(*r.json(), "name[0].family"), "Shared");
  }

  // Revoked through A (the client authenticates with its secret): A refuses it at once.
  Response revoked =
      ca.post("/auth/revoke", "token=" + t1,
              {{"Content-Type", "application/x-www-form-urlencoded"}, {"Authorization", basic("reader", kSecret)}});
  ASSERT_EQ(revoked.status, 200) << revoked.summary();
  Response on_a = ca.get("/fhir/Patient/p1", bearer(t1));
  EXPECT_EQ(on_a.status, 401) << on_a.summary();
  // B, which accepted it just before, refuses it too once its one-second recheck runs (polled, bounded).
  Response on_b;
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  do {
    on_b = cb.get("/fhir/Patient/p1", bearer(t1));
    if (on_b.status != 200) break;
    std::this_thread::sleep_for(50ms);  // polling a condition, bounded by the deadline
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(on_b.status, 401) << on_b.summary();
  EXPECT_NE(on_b.header("WWW-Authenticate").find("revoked"), std::string::npos) << on_b.summary();
  // B's introspection says so too; the client's other token still works on both.
  Response introspected =
      cb.post("/auth/introspect", "token=" + t1,
              {{"Content-Type", "application/x-www-form-urlencoded"}, {"Authorization", basic("reader", kSecret)}});
  ASSERT_EQ(introspected.status, 200) << introspected.summary();
  EXPECT_EQ(introspected.body, R"({"active":false})");
  for (HttpClient* c : {&ca, &cb}) EXPECT_EQ(c->get("/fhir/Patient/p1", bearer(t2)).status, 200);
}

}  // namespace
}  // namespace caduceus::test
