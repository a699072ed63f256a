// Fail-over: a server on a PostgreSQL primary with a synchronous streaming standby (a multi-host URI with
// target_session_attrs=read-write), under a steady write load; the primary is killed (SIGKILL on its postmaster)
// and the standby promoted. Meanwhile requests get 503 with Retry-After (never a hang, never a 500) and /readyz is
// not ready; afterwards the server carries on against the new primary by itself, and every create it acknowledged
// (201) is there, read through it and through a second server. The clusters are this test's own
// (tests/support/pg_replicated.hpp), not the ctest fixture's.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "pg_cluster.hpp"
#include "pg_replicated.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using namespace std::chrono_literals;

// A client thread that creates Patients one after the other (POST) and records what each got: the id and family
// of every 201, and every answer that is neither a 201 nor a proper 503 (with Retry-After, an OperationOutcome).
class WriteLoad {
 public:
  WriteLoad(const std::string& host, std::uint16_t port) : thread_([this, host, port] { loop(host, port); }) {}
  ~WriteLoad() { stop(); }

  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Waits (bounded) until `n` creates in all have been acknowledged; false on timeout.
  bool wait_acknowledged(std::size_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return acknowledged_.size() >= n; });
  }
  std::size_t acknowledged_count() {
    std::lock_guard lock(mutex_);
    return acknowledged_.size();
  }
  std::vector<std::pair<std::string, std::string>> acknowledged() {
    std::lock_guard lock(mutex_);
    return acknowledged_;
  }
  std::vector<std::string> bad_answers() {
    std::lock_guard lock(mutex_);
    return bad_;
  }
  std::size_t unavailable() { return unavailable_; }

 private:
  void loop(const std::string& host, std::uint16_t port) {
    HttpClient client(host, port, 20s);  // a request that hangs shows as status 0 after 20 s
    for (int i = 0; !stopping_; ++i) {
      const std::string family = "Load" + std::to_string(i);
      Response r = client.post("/fhir/Patient", R"({"resourceType":"Patient","name":[{"family":")" + family + "\"}]}");
      if (r.status == 201) {
        // Location: <base>/Patient/<id>/_history/1
        const std::string loc = r.header("Location");
        const auto start = loc.find("/Patient/"), end = loc.find("/_history/");
        std::lock_guard lock(mutex_);
        if (start == std::string::npos || end == std::string::npos || end <= start + 9)
          bad_.push_back("201 without a proper Location: " + loc);
        else
          acknowledged_.emplace_back(loc.substr(start + 9, end - start - 9), family);
        cv_.notify_all();
        continue;
      }
      auto body = r.json();
      if (r.status == 503 && !r.header("Retry-After").empty() && body &&
          string_at(*body, "resourceType") == "OperationOutcome") {
        ++unavailable_;
        // A well-behaved client backs off a little before it tries again (not a synchronization: the loop
        // only keeps the load going).
        std::this_thread::sleep_for(20ms);
        continue;
      }
      std::lock_guard lock(mutex_);
      bad_.push_back(r.summary(300) + (r.error.empty() ? "" : " (" + r.error + ")"));
      cv_.notify_all();
    }
  }

  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> unavailable_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, std::string>> acknowledged_;  // id, family
  std::vector<std::string> bad_;
  std::thread thread_;
};

// Polls `check` until it is true or the deadline passes (a readiness condition, not a sleep to synchronize).
template <class F>
bool eventually(F&& check, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!check()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

TEST(PostgresFailoverTest, PrimaryKilledStandbyPromotedEveryAcknowledgedCreateSurvives) {
  if (postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
  auto pair = PgReplicatedPair::start("caduceus");
  ASSERT_TRUE(pair.has_value()) << pair.error();
  PgReplicatedPair& pg = **pair;
  ASSERT_EQ(PgReplicatedPair::query(pg.standby_url(), "SELECT pg_is_in_recovery()").value_or("?"), "t");

  ServerOptions o;
  o.db = pg.url();
  o.start_timeout = 30s;
  TestServer server(o);
  TestServer other(o);  // a second server on the same pair, without load of its own
  HttpClient c(server.host(), server.port(), 20s), c2(other.host(), other.port(), 20s);
  ASSERT_EQ(c.get("/readyz").status, 200);
  ASSERT_EQ(c2.get("/readyz").status, 200);

  WriteLoad load(server.host(), server.port());
  ASSERT_TRUE(load.wait_acknowledged(20, 60s)) << "acknowledged: " << load.acknowledged_count() << "\n"
                                               << ::testing::PrintToString(load.bad_answers());

  // The primary goes away without a word.
  ASSERT_TRUE(pg.kill_primary().has_value());
  const std::size_t before_kill = load.acknowledged_count();
  // No primary: the standby answers but refuses writes, so target_session_attrs=read-write finds no host.
  ASSERT_TRUE(eventually([&] { return c.get("/readyz").status == 503; }, 30s)) << pg.logs();
  Response write = c.post("/fhir/Patient", R"({"resourceType":"Patient","name":[{"family":"During"}]})");
  EXPECT_EQ(write.status, 503) << write.summary();
  EXPECT_FALSE(write.header("Retry-After").empty()) << write.summary();
  ASSERT_TRUE(write.json().has_value()) << write.summary();
  EXPECT_EQ(string_at(*write.json(), "resourceType"), "OperationOutcome");
  Response read = c.get("/fhir/Patient?_count=1");
  EXPECT_EQ(read.status, 503) << read.summary();
  EXPECT_FALSE(read.header("Retry-After").empty()) << read.summary();
  EXPECT_EQ(c.get("/readyz").status, 503);
  EXPECT_EQ(c2.get("/readyz").status, 503);

  // The standby takes over; the server finds it by itself (no restart, no new URL).
  auto promoted = pg.promote_standby();
  ASSERT_TRUE(promoted.has_value()) << promoted.error();
  ASSERT_TRUE(eventually([&] { return c.get("/readyz").status == 200; }, 60s)) << pg.logs();
  ASSERT_TRUE(eventually([&] { return c2.get("/readyz").status == 200; }, 60s)) << pg.logs();
  const std::size_t at_promotion = load.acknowledged_count();
  ASSERT_TRUE(load.wait_acknowledged(at_promotion + 20, 60s))
      << "acknowledged after the promotion: " << load.acknowledged_count() - at_promotion << "\n"
      << ::testing::PrintToString(load.bad_answers());
  load.stop();

  EXPECT_TRUE(load.bad_answers().empty()) << ::testing::PrintToString(load.bad_answers());
  EXPECT_GT(load.unavailable(), 0u) << "the load never saw the database away";
  EXPECT_GE(before_kill, 20u);
  // Every create acknowledged, before the kill and after it, is on the new primary, as it was acknowledged.
  const auto acknowledged = load.acknowledged();
  for (std::size_t i = 0; i < acknowledged.size(); ++i) {
    const auto& [id, family] = acknowledged[i];
    Response r = (i % 2 ? c2 : c).get("/fhir/Patient/" + id);  // through both servers
    ASSERT_EQ(r.status, 200) << "acknowledged Patient/" << id << " (" << family << ") is lost: " << r.summary();
    EXPECT_EQ(string_at(*r.json(), "name[0].family"), family);
  }
  // And the new primary itself holds them (counted in the database, not through the server).
  auto stored = PgReplicatedPair::query(pg.standby_url("caduceus"),
                                        "SELECT count(*) FROM resource WHERE type = 'Patient' AND deleted = 0");
  ASSERT_TRUE(stored.has_value()) << stored.error();
  EXPECT_GE(std::stoll(*stored), static_cast<long long>(acknowledged.size()));
  EXPECT_FALSE(server.died().has_value());
  EXPECT_FALSE(other.died().has_value());
}

// Read routing (--db-read): reads by id and searches go to the standby, writes to the primary. With
// synchronous_commit = remote_apply the standby has applied a commit before the primary acknowledges it, so a
// create is read back at once; and with the primary gone, reads and searches are still answered (writes get 503).
TEST(PostgresFailoverTest, ReadsRoutedToTheStandbyAreAnsweredWithoutThePrimary) {
  if (postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
  auto pair = PgReplicatedPair::start("caduceus");
  ASSERT_TRUE(pair.has_value()) << pair.error();
  PgReplicatedPair& pg = **pair;
  ASSERT_TRUE(PgReplicatedPair::query(pg.primary_url(), "ALTER SYSTEM SET synchronous_commit = 'remote_apply'"));
  ASSERT_TRUE(PgReplicatedPair::query(pg.primary_url(), "SELECT pg_reload_conf()"));

  ServerOptions o;
  o.db = pg.url();
  o.extra_args = {"--db-read", pg.standby_url("caduceus")};
  o.start_timeout = 30s;
  TestServer server(o);
  HttpClient c(server.host(), server.port(), 20s);
  Response created = c.post("/fhir/Patient", R"({"resourceType":"Patient","name":[{"family":"Routed"}]})");
  ASSERT_EQ(created.status, 201) << created.summary();
  auto body = created.json();
  ASSERT_TRUE(body.has_value());
  const std::string id = string_at(*body, "id");
  EXPECT_EQ(c.get("/fhir/Patient/" + id).status, 200);
  EXPECT_EQ(entry_ids(c.get("/fhir/Patient?family=Routed")), std::set<std::string>{id});

  // Without the primary (the first test: reads too get 503 then), the standby answers them.
  ASSERT_TRUE(pg.kill_primary().has_value());
  ASSERT_TRUE(eventually([&] { return c.get("/readyz").status == 503; }, 30s)) << pg.logs();
  Response read = c.get("/fhir/Patient/" + id);
  EXPECT_EQ(read.status, 200) << read.summary();
  Response found = c.get("/fhir/Patient?family=Routed");
  EXPECT_EQ(found.status, 200) << found.summary();
  EXPECT_EQ(entry_ids(found), std::set<std::string>{id});
  Response write = c.post("/fhir/Patient", R"({"resourceType":"Patient","name":[{"family":"During"}]})");
  EXPECT_EQ(write.status, 503) << write.summary();
  EXPECT_FALSE(server.died().has_value());
}

}  // namespace
}  // namespace caduceus::test
