// Durability: several clients create and update resources while the server is killed with SIGKILL (from another
// thread, once enough writes were acknowledged). After a restart on the same SQLite file, every write that was
// acknowledged (201/200) is there, intact; a write in flight at the kill is either there completely or not at all.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using fhir::json::Value;

constexpr int kThreads = 4;
constexpr int kKillAfter = 300;  // acknowledged writes per round before the SIGKILL
constexpr int kRounds = 2;

// One resource written by one client thread.
struct Record {
  std::string type;
  std::string id;
  bool posted = false;     // created by POST (the id is the server's)
  std::string acked_body;  // the last body the server acknowledged
  int acked_version = 0;
  std::string pending_body;  // an update in flight when the server died (may or may not have committed)
};

std::string patient_body(int round, int thread, int n, std::string_view id = {}) {
  const std::string tag = std::to_string(round) + "-" + std::to_string(thread) + "-" + std::to_string(n);
  std::string s = R"({"resourceType":"Patient",)";
  if (!id.empty()) s += R"("id":")" + std::string(id) + R"(",)";
  s += R"("identifier":[{"system":"urn:caduceus:crash-test","value":")" + tag + R"("}],)";
  s += R"("name":[{"family":"Crash-)" + tag + R"(","given":["Żółć","名"]}],)";
  s += R"("birthDate":"19)" + std::to_string(10 + n % 90) + R"(-0)" + std::to_string(1 + n % 9) + R"(-1)" +
       std::to_string(n % 10) + R"(",)";
  s += R"("extension":[{"url":"http://example.org/weight","valueDecimal":)" + std::to_string(n) + R"(.50}]})";
  return s;
}

std::string observation_body(int round, int thread, int n, std::string_view id) {
  std::string s = R"({"resourceType":"Observation","id":")" + std::string(id) + R"(","status":"final",)";
  s += R"("code":{"text":"crash )" + std::to_string(round) + "-" + std::to_string(thread) + R"("},)";
  s += R"("valueQuantity":{"value":)" + std::to_string(n) + R"(.250,"unit":"mg"}})";
  return s;
}

int version_of(const Response& r) {
  const std::string etag = r.header("ETag");  // W/"n"
  if (etag.size() < 5) return 0;
  return std::atoi(etag.substr(3, etag.size() - 4).c_str());
}

// Writes until the server dies; returns the thread's records. Failures other than a dead server go to `errors`.
std::vector<Record> client_loop(const std::string& host, std::uint16_t port, const std::string& base, int round,
                                int thread, std::atomic<int>& acked, std::condition_variable& cv, std::mutex& mutex,
                                std::vector<std::string>& errors) {
  HttpClient client(host, port, std::chrono::seconds(20));
  std::vector<Record> records;
  auto note_ack = [&] {
    {
      std::lock_guard lock(mutex);
      ++acked;
    }
    cv.notify_all();
  };
  for (int n = 0;; ++n) {
    Response r;
    if (n % 3 == 2 && !records.empty()) {
      // Update one of ours.
      Record& rec = records[static_cast<std::size_t>(n) % records.size()];
      const std::string body =
          rec.type == "Patient" ? patient_body(round, thread, n, rec.id) : observation_body(round, thread, n, rec.id);
      rec.pending_body = body;
      r = client.put(base + "/" + rec.type + "/" + rec.id, body);
      if (r.status == 0) break;
      if (r.status != 200) {
        std::lock_guard lock(mutex);
        errors.push_back("update " + rec.type + "/" + rec.id + ": " + r.summary(300));
        break;
      }
      rec.acked_body = body;
      rec.acked_version = version_of(r);
      rec.pending_body.clear();
      note_ack();
      continue;
    }
    Record rec;
    if (thread % 2 == 0) {
      // Create with POST: the id comes back in Location.
      rec.type = "Patient";
      rec.posted = true;
      const std::string body = patient_body(round, thread, n);
      r = client.post(base + "/Patient", body, {{"Prefer", "return=minimal"}});
      if (r.status == 0) break;
      const std::string location = r.header("Location");
      const std::string prefix = "/Patient/";
      const auto at = location.find(prefix);
      const auto hist = location.find("/_history/");
      if (r.status != 201 || at == std::string::npos || hist == std::string::npos) {
        std::lock_guard lock(mutex);
        errors.push_back("POST Patient: " + r.summary(300) + " Location: " + location);
        break;
      }
      rec.id = location.substr(at + prefix.size(), hist - at - prefix.size());
      rec.acked_body = body;
    } else {
      // Create with PUT and a client-chosen id (update as create).
      rec.type = "Observation";
      rec.id = "crash-" + std::to_string(round) + "-" + std::to_string(thread) + "-" + std::to_string(n);
      const std::string body = observation_body(round, thread, n, rec.id);
      r = client.put(base + "/Observation/" + rec.id, body, {{"Prefer", "return=minimal"}});
      if (r.status == 0) break;
      if (r.status != 201) {
        std::lock_guard lock(mutex);
        errors.push_back("PUT Observation/" + rec.id + ": " + r.summary(300));
        break;
      }
      rec.acked_body = body;
    }
    rec.acked_version = version_of(r);
    records.push_back(std::move(rec));
    note_ack();
  }
  return records;
}

TEST(CrashTest, AcknowledgedWritesSurviveSigkill) {
  std::unique_ptr<TestServer> server;
  try {
    server = std::make_unique<TestServer>();
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  std::vector<Record> all;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::atomic<int> acked{0};
    int finished = 0;  // client threads that stopped (guarded by mutex)
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::string> errors;
    std::vector<std::vector<Record>> per_thread(kThreads);
    const std::string host = server->host();
    const std::uint16_t port = server->port();
    const std::string base = server->base_path();

    std::thread killer([&] {
      std::unique_lock lock(mutex);
      cv.wait(lock, [&] { return acked.load() >= kKillAfter || !errors.empty() || finished == kThreads; });
      lock.unlock();
      server->kill9();
    });
    std::vector<std::thread> clients;
    for (int t = 0; t < kThreads; ++t)
      clients.emplace_back([&, t] {
        per_thread[static_cast<std::size_t>(t)] = client_loop(host, port, base, round, t, acked, cv, mutex, errors);
        // A client that stopped on an error must not leave the killer waiting.
        {
          std::lock_guard lock(mutex);
          ++finished;
        }
        cv.notify_all();
      });
    for (auto& c : clients) c.join();
    killer.join();

    EXPECT_TRUE(errors.empty()) << "unexpected answers before the kill: " << ::testing::PrintToString(errors);
    EXPECT_GE(acked.load(), kKillAfter);
    for (auto& v : per_thread)
      for (auto& r : v) all.push_back(std::move(r));
    EXPECT_FALSE(server->running());
    ASSERT_NO_THROW(server->restart()) << "restart after SIGKILL failed: " << server->stderr_text();
  }

  // Every acknowledged write is there, intact.
  HttpClient client(server->host(), server->port());
  std::vector<std::string> lost;
  for (const auto& rec : all) {
    const std::string target = server->base_path() + "/" + rec.type + "/" + rec.id;
    Response r = client.get(target);
    if (r.status != 200) {
      lost.push_back(target + " (acknowledged version " + std::to_string(rec.acked_version) + "): " + r.summary(200));
      continue;
    }
    auto back = r.json();
    const std::string vid = back ? string_at(*back, "meta.versionId") : "";
    const int version = std::atoi(vid.c_str());
    const std::string* expected_body = nullptr;
    if (version == rec.acked_version) {
      expected_body = &rec.acked_body;
    } else if (version == rec.acked_version + 1 && !rec.pending_body.empty()) {
      expected_body = &rec.pending_body;
    }
    if (!expected_body) {
      lost.push_back(target + ": version " + vid + " but version " + std::to_string(rec.acked_version) +
                     " was acknowledged" + (rec.pending_body.empty() ? "" : " (and the next one was in flight)"));
      continue;
    }
    auto expected = parse_json(*expected_body);
    auto diffs = json_diff(without_server_meta(*expected, rec.posted), without_server_meta(*back, rec.posted), 3);
    if (!diffs.empty()) lost.push_back(target + " v" + vid + " differs: " + ::testing::PrintToString(diffs));
  }
  std::cout << "[ crash ] " << kRounds << " SIGKILLs, " << all.size() << " acknowledged resources checked\n";
  std::string report;
  for (std::size_t i = 0; i < lost.size() && i < 30; ++i) report += "\n  " + lost[i];
  EXPECT_TRUE(lost.empty()) << lost.size() << " of " << all.size() << " acknowledged writes lost or damaged:" << report;
  client.close();
  EXPECT_EQ(server->stop(), 0) << server->stderr_text();
}

}  // namespace
}  // namespace caduceus::test
