// HL7 v2 out against the real server (--hl7-out NAME=HOST:PORT:orm): a lab ServiceRequest created over REST
// reaches a test MLLP receiver in this process as ORM^O01 with the right content; with the receiver down, the
// message waits and is delivered after a retry once it is up; the counters show in /metrics.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "caduceus/adapters/hl7v2/ack.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/mllp.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using namespace std::chrono_literals;
namespace hl7 = adapters::hl7v2;

// Acknowledges every message with AA and keeps them.
struct Receiver {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::string> messages;
  std::unique_ptr<adapters::MllpServer> server;

  std::uint16_t start(std::uint16_t port = 0) {
    adapters::MllpOptions o;
    o.port = port;
    server = std::make_unique<adapters::MllpServer>(
        o, [this](std::string message, bool, std::function<void(std::string)> send, std::function<void()> done) {
          if (auto m = hl7::parse(message)) {
            send(hl7::build_ack(hl7::AckTarget::of(*m), "AA", "ACK" + m->control_id, "20240101000000+0000", {}));
            std::lock_guard lock(mutex);
            messages.push_back(message);
          }
          cv.notify_all();
          done();
        });
    auto p = server->start();
    EXPECT_TRUE(p.has_value());
    return p ? *p : 0;
  }
  // Waits for n messages (a deadline against a hang, not a timing).
  std::vector<std::string> wait(std::size_t n) {
    std::unique_lock lock(mutex);
    cv.wait_for(lock, 60s, [&] { return messages.size() >= n; });
    return messages;
  }
};

// The value of a counter in /metrics, or -1.
long long counter(HttpClient& http, const std::string& name) {
  auto r = http.get("/metrics");
  auto at = r.body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stoll(r.body.substr(at + name.size() + 2));
}

// Polls /metrics until the counter reaches `value` (deadline 60 s: a guard against a hang).
bool counter_reaches(HttpClient& http, const std::string& name, long long value) {
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (counter(http, name) >= value) return true;
    std::this_thread::sleep_for(20ms);  // between polls of a condition, not a synchronization
  }
  return false;
}

std::string create(HttpClient& http, const std::string& type, const std::string& body) {
  auto r = http.post("/fhir/" + type, body);
  EXPECT_EQ(r.status, 201) << r.summary();
  auto v = r.json();
  return v ? std::string(v->find("id") ? v->find("id")->text() : "") : "";
}

std::string lab_order(const std::string& patient_id) {
  return R"({"resourceType":"ServiceRequest","status":"active","intent":"order",)"
         R"("category":[{"coding":[{"system":"http://snomed.info/sct","code":"108252007"}]}],)"
         R"("code":{"coding":[{"system":"http://loinc.org","code":"2345-7","display":"Glucose"}]},)"
         R"("subject":{"reference":"Patient/)" +
         patient_id + R"("},"authoredOn":"2024-03-07T10:30:00+01:00"})";
}

constexpr const char* kPatient =
    R"({"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"MRN42"}],)"
    R"("name":[{"family":"Doe","given":["Jane"]}],"gender":"female","birthDate":"1980-02-03"})";

TEST(Hl7v2OutboundServer, LabServiceRequestOverRestReachesTheReceiverAsOrm) {
  Receiver rx;
  std::uint16_t port = rx.start();
  ServerOptions options;
  options.extra_args = {"--hl7-out", "lab=127.0.0.1:" + std::to_string(port) + ":orm:LABAPP:LABFAC"};
  TestServer server(options);
  HttpClient http(server.host(), server.port());
  std::string patient = create(http, "Patient", kPatient);
  std::string order = create(http, "ServiceRequest", lab_order(patient));
  ASSERT_FALSE(order.empty());
  // Not a lab order: nothing goes out for it.
  create(http, "ServiceRequest",
         R"({"resourceType":"ServiceRequest","status":"active","intent":"order","code":{"text":"X-ray"},)"
         R"("subject":{"reference":"Patient/)" +
             patient + R"("}})");

  auto got = rx.wait(1);
  ASSERT_EQ(got.size(), 1u);
  auto m = hl7::parse(got[0]);
  ASSERT_TRUE(m.has_value());
  const hl7::Segment* msh = m->first("MSH");
  EXPECT_EQ(msh->get(9, 1), "ORM");
  EXPECT_EQ(msh->get(9, 2), "O01");
  EXPECT_EQ(msh->get(5), "LABAPP");
  EXPECT_EQ(msh->get(6), "LABFAC");
  EXPECT_FALSE(m->control_id.empty());
  EXPECT_EQ(m->first("PID")->get(3, 1), "MRN42");
  EXPECT_EQ(m->first("PID")->get(5, 1), "Doe");
  EXPECT_EQ(m->first("PID")->get(5, 2), "Jane");
  EXPECT_EQ(m->first("ORC")->get(1), "NW");
  EXPECT_EQ(m->first("ORC")->get(2), order);
  EXPECT_EQ(m->first("ORC")->get(9), "20240307103000+0100");
  EXPECT_EQ(m->first("OBR")->get(4, 1), "2345-7");
  EXPECT_EQ(m->first("OBR")->get(4, 2), "Glucose");
  ASSERT_TRUE(counter_reaches(http, "caduceus_hl7_outbound_sent_total", 1));
  EXPECT_EQ(counter(http, "caduceus_hl7_outbound_queued_total"), 1);
  EXPECT_EQ(counter(http, "caduceus_hl7_outbound_retried_total"), 0);
  EXPECT_EQ(counter(http, "caduceus_hl7_outbound_dead_total"), 0);
  EXPECT_EQ(rx.wait(1).size(), 1u);  // delivered once
}

// A transaction Bundle: the order's Patient is an entry of the same Bundle, read inside the transaction.
TEST(Hl7v2OutboundServer, TransactionBundleOrderGoesOutWithItsBundledPatient) {
  Receiver rx;
  std::uint16_t port = rx.start();
  ServerOptions options;
  options.extra_args = {"--hl7-out", "lab=127.0.0.1:" + std::to_string(port) + ":oml"};
  TestServer server(options);
  HttpClient http(server.host(), server.port());
  std::string order = lab_order("x");
  order.replace(order.find("Patient/x"), 9, "urn:uuid:4f1b2c3d-0000-4000-8000-000000000001");
  auto r = http.post("/fhir", std::string(R"({"resourceType":"Bundle","type":"transaction","entry":[)") +
                                  R"({"fullUrl":"urn:uuid:4f1b2c3d-0000-4000-8000-000000000001","resource":)" +
                                  kPatient + R"(,"request":{"method":"POST","url":"Patient"}},)" + R"({"resource":)" +
                                  order + R"(,"request":{"method":"POST","url":"ServiceRequest"}}]})");
  ASSERT_EQ(r.status, 200) << r.summary();
  auto got = rx.wait(1);
  ASSERT_EQ(got.size(), 1u);
  auto m = hl7::parse(got[0]);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->first("MSH")->get(9, 1), "OML");
  EXPECT_EQ(m->first("MSH")->get(9, 2), "O21");
  EXPECT_EQ(m->first("PID")->get(3, 1), "MRN42");
  EXPECT_EQ(m->first("OBR")->get(4, 1), "2345-7");
}

TEST(Hl7v2OutboundServer, ReceiverDownThenUpIsDeliveredAfterARetry) {
  // A port nobody listens on: a receiver started for its port and stopped.
  std::uint16_t port = 0;
  {
    Receiver probe;
    port = probe.start();
    probe.server->stop();
  }
  ServerOptions options;
  options.extra_args = {"--hl7-out", "lab=127.0.0.1:" + std::to_string(port) + ":orm", "--hl7-out-backoff-ms", "50"};
  TestServer server(options);
  HttpClient http(server.host(), server.port());
  std::string patient = create(http, "Patient", kPatient);
  std::string order = create(http, "ServiceRequest", lab_order(patient));
  ASSERT_TRUE(counter_reaches(http, "caduceus_hl7_outbound_retried_total", 1));
  EXPECT_EQ(counter(http, "caduceus_hl7_outbound_sent_total"), 0);

  Receiver rx;
  ASSERT_EQ(rx.start(port), port);
  auto got = rx.wait(1);
  ASSERT_EQ(got.size(), 1u);
  auto m = hl7::parse(got[0]);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->first("ORC")->get(2), order);
  EXPECT_EQ(m->first("PID")->get(3, 1), "MRN42");
  ASSERT_TRUE(counter_reaches(http, "caduceus_hl7_outbound_sent_total", 1));
  EXPECT_EQ(counter(http, "caduceus_hl7_outbound_dead_total"), 0);
}

}  // namespace
}  // namespace caduceus::test
