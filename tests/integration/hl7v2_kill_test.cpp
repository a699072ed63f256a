// The HL7 v2 kill test: a sender streams ADT^A01 messages over MLLP (pipelined on one connection) and the server is
// killed with SIGKILL mid-stream, then restarted on the same SQLite file. Every message that got an AA before the
// kill is stored and was processed exactly once (its Patient exists once, at version 1); sending every message
// again (the unacknowledged ones for the first time, the others as duplicates) leaves exactly one Patient per
// message, none processed twice (still version 1).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/mllp.hpp"
#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "mllp_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using adapters::MllpFramer;

constexpr int kMessages = 300;
constexpr std::size_t kKillAfter = 25;  // acknowledgements read before the kill

std::string control_id(int i) {
  return "KILL-" + std::to_string(i);
}

std::string message(int i) {
  return "MSH|^~\\&|KillSender|WARD9|CADUCEUS|HOSP|20240301101500||ADT^A01|" + control_id(i) +
         "|P|2.5.1\rEVN|A01|20240301101500\rPID|1||K-" + std::to_string(i) +
         "^^^KillHosp&1.2.840.999.77&ISO^MR||Stream^Kill||19800101|F\rPV1|1|I\r";
}
// (MSA-1, MSA-2) of an acknowledgement.
std::pair<std::string, std::string> msa(const std::string& ack) {
  auto m = adapters::hl7v2::parse(ack);
  if (!m) return {"<unparsable>", ""};
  const adapters::hl7v2::Segment* s = m->first("MSA");
  return s ? std::pair{s->get(1), s->get(2)} : std::pair{std::string(), std::string()};
}

// The Patients with identifier K-i, as (id, versionId).
std::vector<std::pair<std::string, std::string>> patients(HttpClient& client, const std::string& base, int i) {
  Response r = client.get(base + "/Patient?identifier=" + url_encode("urn:oid:1.2.840.999.77|K-" + std::to_string(i)));
  EXPECT_EQ(r.status, 200) << r.summary();
  std::vector<std::pair<std::string, std::string>> out;
  auto v = r.json();
  if (v)
    if (const fhir::json::Value* entries = v->find("entry"))
      for (const fhir::json::Value& e : entries->items())
        if (const fhir::json::Value* res = e.find("resource"))
          out.emplace_back(string_at(*res, "id"), string_at(*res, "meta.versionId"));
  return out;
}

TEST(Hl7v2KillTest, AcknowledgedMessagesAreStoredAndProcessedExactlyOnce) {
  ServerOptions options;
  options.extra_args = {"--mllp", "127.0.0.1:0", "--log-requests", "false"};
  std::unique_ptr<TestServer> server;
  try {
    server = std::make_unique<TestServer>(options);
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }

  // Stream every message at once, read the acknowledgements in order; kill once kKillAfter have come back, then
  // read what the server had sent before it died.
  std::set<int> acked;
  {
    MllpClient s(mllp_port_of(*server), 60);
    std::string all;
    for (int i = 0; i < kMessages; ++i) all += MllpFramer::wrap(message(i));
    ASSERT_TRUE(s.write(all));
    int next = 0;
    bool killed = false;
    while (auto ack = s.frame()) {
      auto [code, id] = msa(*ack);
      ASSERT_EQ(id, control_id(next)) << "answers come in order";
      ASSERT_EQ(code, "AA") << *ack;
      acked.insert(next++);
      if (!killed && acked.size() >= kKillAfter) {
        server->kill9();
        killed = true;
      }
    }
    ASSERT_TRUE(killed);
  }
  ASSERT_GE(acked.size(), kKillAfter);
  std::printf("acknowledged before the kill: %zu of %d\n", acked.size(), kMessages);
  EXPECT_FALSE(server->running());
  ASSERT_NO_THROW(server->restart()) << server->stderr_text();

  HttpClient client(server->host(), server->port());
  const std::string base = server->base_path();
  // Every acknowledged message: its Patient, once, written once.
  for (int i : acked) {
    auto found = patients(client, base, i);
    ASSERT_EQ(found.size(), 1u) << "message " << i << " was acknowledged";
    EXPECT_EQ(found[0].second, "1") << "message " << i;
  }

  // Send everything again: the acknowledged ones are duplicates (answered from the store, not processed), the
  // others are processed now. Every one is answered AA.
  {
    MllpClient s(mllp_port_of(*server), 60);
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_TRUE(s.write(MllpFramer::wrap(message(i))));
      auto ack = s.frame();
      ASSERT_TRUE(ack.has_value()) << "no answer to message " << i;
      auto [code, id] = msa(*ack);
      EXPECT_EQ(code, "AA") << *ack;
      EXPECT_EQ(id, control_id(i));
    }
  }
  // Exactly one Patient per message, none processed twice.
  for (int i = 0; i < kMessages; ++i) {
    auto found = patients(client, base, i);
    ASSERT_EQ(found.size(), 1u) << "message " << i;
    EXPECT_EQ(found[0].second, "1") << "message " << i << (acked.count(i) ? " (acknowledged before the kill)" : "");
  }
  Response count = client.get(base + "/Patient?_summary=count");
  ASSERT_EQ(count.status, 200) << count.summary();
  auto body = count.json();
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(fhir::json::write(*body->find("total")), std::to_string(kMessages));
}

}  // namespace
}  // namespace caduceus::test
