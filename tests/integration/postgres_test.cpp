// Caduceus on PostgreSQL, as a user runs it: `caduceus serve --db postgresql://...`, several servers on one
// database. (The REST interactions themselves run on both backends: rest_test.cpp, see tests/CMakeLists.txt.)
#include <gtest/gtest.h>

#include <algorithm>
#include <latch>
#include <set>
#include <thread>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "pg_cluster.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

std::string patient(std::string_view id, std::string_view family) {
  return R"({"resourceType":"Patient","id":")" + std::string(id) + R"(","name":[{"family":")" + std::string(family) +
         R"("}]})";
}

class PostgresServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
    auto db = PgDatabase::create();
    ASSERT_TRUE(db.has_value()) << db.error();
    db_ = std::move(*db);
  }
  void TearDown() override {
    servers_.clear();
    db_.reset();
  }
  TestServer& start() {
    ServerOptions o;
    o.db = db_->url();
    servers_.push_back(std::make_unique<TestServer>(o));
    return *servers_.back();
  }

  std::unique_ptr<PgDatabase> db_;
  std::vector<std::unique_ptr<TestServer>> servers_;
};

// Two server processes on one database, two updates with the same If-Match at once, one to each: one 200 and
// one 412, round after round; both servers then read the winner's version.
TEST_F(PostgresServerTest, TwoServersSameIfMatchOneWinsOneGets412) {
  TestServer& a = start();
  TestServer& b = start();
  HttpClient ca(a.host(), a.port()), cb(b.host(), b.port());
  ASSERT_EQ(ca.put("/fhir/Patient/race", patient("race", "Start")).status, 201);
  for (int round = 1; round <= 10; ++round) {
    std::latch go(2);
    int status[2] = {0, 0};
    const HeaderList if_match = {{"If-Match", "W/\"" + std::to_string(round) + "\""}};
    std::thread ta([&] {
      go.arrive_and_wait();
      status[0] = ca.put("/fhir/Patient/race", patient("race", "A" + std::to_string(round)), if_match).status;
    });
    std::thread tb([&] {
      go.arrive_and_wait();
      status[1] = cb.put("/fhir/Patient/race", patient("race", "B" + std::to_string(round)), if_match).status;
    });
    ta.join();
    tb.join();
    ASSERT_TRUE((status[0] == 200 && status[1] == 412) || (status[0] == 412 && status[1] == 200))
        << "round " << round << ": " << status[0] << " and " << status[1];
    const std::string winner = (status[0] == 200 ? "A" : "B") + std::to_string(round);
    for (HttpClient* c : {&ca, &cb}) {
      Response r = c->get("/fhir/Patient/race");
      ASSERT_EQ(r.status, 200);
      auto body = r.json();
      ASSERT_TRUE(body.has_value());
      EXPECT_EQ(string_at(*body, "meta.versionId"), std::to_string(round + 1));
      EXPECT_EQ(string_at(*body, "name[0].family"), winner);
    }
  }
}

// What is written through one server is read, versioned, searched and listed in history through the other;
// full text included, and /readyz is ready.
TEST_F(PostgresServerTest, WritesThroughOneServerAreSeenByTheOther) {
  TestServer& a = start();
  TestServer& b = start();
  HttpClient ca(a.host(), a.port()), cb(b.host(), b.port());
  ASSERT_EQ(ca.put("/fhir/Patient/p1", patient("p1", "One")).status, 201);
  ASSERT_EQ(cb.put("/fhir/Patient/p1", patient("p1", "Two")).status, 200);
  ASSERT_EQ(cb.put("/fhir/Patient/p2", patient("p2", "Twofold")).status, 201);
  Response found = ca.get("/fhir/Patient?name=two&_total=accurate");
  ASSERT_EQ(found.status, 200) << found.summary();
  EXPECT_EQ(entry_ids(found), (std::set<std::string>{"p1", "p2"}));
  EXPECT_EQ(string_at(*found.json(), "total"), "2");
  Response one = ca.get("/fhir/Patient?name:exact=Two");
  EXPECT_EQ(entry_ids(one), (std::set<std::string>{"p1"}));
  ASSERT_EQ(ca.del("/fhir/Patient/p1").status, 200);
  EXPECT_EQ(cb.get("/fhir/Patient/p1").status, 410);
  EXPECT_EQ(entry_ids(cb.get("/fhir/Patient?name=two")), (std::set<std::string>{"p2"}));
  Response v2 = ca.get("/fhir/Patient/p1/_history/2");
  ASSERT_EQ(v2.status, 200);
  EXPECT_EQ(string_at(*v2.json(), "name[0].family"), "Two");
  History h = read_history(cb, "/fhir/Patient/p1/_history");
  ASSERT_TRUE(h.error.empty()) << h.error;
  ASSERT_EQ(h.entries.size(), 3u);
  // _include and _revinclude: an Observation written through one server, its patient through the other.
  ASSERT_EQ(ca.put("/fhir/Observation/o1", R"({"resourceType":"Observation","id":"o1","status":"final",)"
                                           R"("code":{"text":"x"},"subject":{"reference":"Patient/p2"}})")
                .status,
            201);
  Response inc = cb.get("/fhir/Observation?_id=o1&_include=Observation:subject");
  ASSERT_EQ(inc.status, 200) << inc.summary();
  EXPECT_EQ(entry_ids(inc), (std::set<std::string>{"o1", "p2"}));
  Response rev = ca.get("/fhir/Patient?_id=p2&_revinclude=Observation:subject");
  ASSERT_EQ(rev.status, 200) << rev.summary();
  EXPECT_EQ(entry_ids(rev), (std::set<std::string>{"o1", "p2"}));
  // Full text: p2's words (p1, which was "Two" too, is deleted); no narrative, so no _text match.
  Response text = cb.get("/fhir/Patient?_content=twofold");
  ASSERT_EQ(text.status, 200) << text.summary();
  EXPECT_EQ(entry_ids(text), (std::set<std::string>{"p2"}));
  EXPECT_EQ(entry_ids(ca.get("/fhir/Patient?_content=two")), (std::set<std::string>{}));
  EXPECT_EQ(entry_ids(ca.get("/fhir/Patient?_text=twofold")), (std::set<std::string>{}));
  EXPECT_EQ(ca.get("/readyz").status, 200);
}

// Conditional creates of one identifier through two servers at once create one resource (the writers of every
// server are serialized on the database, and the match is searched inside the write transaction).
TEST_F(PostgresServerTest, ConcurrentConditionalCreatesThroughTwoServersCreateOne) {
  TestServer& a = start();
  TestServer& b = start();
  for (int round = 0; round < 5; ++round) {
    const std::string mrn = "mrn-" + std::to_string(round);
    const std::string body =
        R"({"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":")" + mrn + R"("}]})";
    constexpr int kClients = 6;
    std::latch go(kClients);
    std::vector<int> status(kClients);
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i)
      threads.emplace_back([&, i] {
        TestServer& s = i % 2 ? b : a;
        HttpClient c(s.host(), s.port());
        go.arrive_and_wait();
        status[i] = c.post("/fhir/Patient", body, {{"If-None-Exist", "identifier=urn:mrn|" + mrn}}).status;
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(std::count(status.begin(), status.end(), 201), 1) << ::testing::PrintToString(status);
    EXPECT_EQ(std::count(status.begin(), status.end(), 200), kClients - 1) << ::testing::PrintToString(status);
    HttpClient c(a.host(), a.port());
    Response found = c.get("/fhir/Patient?identifier=urn:mrn|" + mrn + "&_total=accurate");
    ASSERT_EQ(found.status, 200) << found.summary();
    EXPECT_EQ(string_at(*found.json(), "total"), "1");
  }
}

// The database restarts under a running server: meanwhile reads and writes get 503 with Retry-After (an
// OperationOutcome, no hang) and /readyz is not ready; when it is back the server carries on by itself.
TEST(PostgresRestartServerTest, WhileTheDatabaseIsAwayRequestsGet503AndTheServerRecovers) {
  if (postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
  auto cluster = PgCluster::start();  // its own: the shared one must stay up for the other tests
  ASSERT_TRUE(cluster.has_value()) << cluster.error();
  ServerOptions o;
  o.db = (*cluster)->url();
  TestServer server(o);
  HttpClient c(server.host(), server.port());
  ASSERT_EQ(c.put("/fhir/Patient/r", patient("r", "Before")).status, 201);
  ASSERT_EQ(c.get("/readyz").status, 200);

  auto stopped = (*cluster)->stop_server();
  ASSERT_TRUE(stopped.has_value()) << stopped.error();
  EXPECT_EQ(c.get("/readyz").status, 503);
  for (int i = 0; i < 3; ++i) {
    Response read = c.get("/fhir/Patient/r");
    EXPECT_EQ(read.status, 503) << read.summary();
    EXPECT_FALSE(read.header("Retry-After").empty()) << read.summary();
  }
  Response write = c.put("/fhir/Patient/r", patient("r", "During"));
  EXPECT_EQ(write.status, 503) << write.summary();
  EXPECT_EQ(string_at(*write.json(), "resourceType"), "OperationOutcome");
  EXPECT_FALSE(write.header("Retry-After").empty());

  auto started = (*cluster)->start_server();
  ASSERT_TRUE(started.has_value()) << started.error();
  Response after = c.put("/fhir/Patient/r", patient("r", "After"), {{"Prefer", "return=representation"}});
  ASSERT_EQ(after.status, 200) << after.summary();
  EXPECT_EQ(string_at(*after.json(), "meta.versionId"), "2");
  EXPECT_EQ(c.get("/readyz").status, 200);
  Response read = c.get("/fhir/Patient/r");
  ASSERT_EQ(read.status, 200);
  EXPECT_EQ(string_at(*read.json(), "name[0].family"), "After");
  EXPECT_FALSE(server.died().has_value());
}

// A database that cannot be reached: the server does not start, and says why.
TEST(PostgresServerStartTest, AnUnreachableDatabaseStopsTheStartWithItsReason) {
  ServerOptions o;
  o.db = "postgresql://postgres@/nowhere?host=/nonexistent-caduceus-dir&port=1";
  o.start_timeout = std::chrono::seconds(20);
  try {
    TestServer server(o);
    ADD_FAILURE() << "the server started without its database";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open the PostgreSQL database"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace caduceus::test
