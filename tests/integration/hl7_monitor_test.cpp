// The HL7 v2 message monitor (/admin/hl7/messages) against the real server: messages sent over a real MLLP
// socket, then listed with each filter (the exact messages expected), shown with their ACK and the resources they
// produced, and replayed (an errored one after its cause is fixed; a processed one again: same resources, no
// duplicates, no new version of what does not change); outbound dead letters queued again; and who may use it
// with --auth smart (401 without a token, 403 for anyone but an administrator or a system/*.* token).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "caduceus/adapters/hl7v2/ack.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/mllp.hpp"
#include "caduceus/server/auth/keys.hpp"
#include "client_keys.hpp"
#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "mllp_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using namespace std::chrono_literals;
using adapters::MllpFramer;
using fhir::json::Value;
namespace hl7 = adapters::hl7v2;

std::string msa1(const std::string& ack) {
  auto m = hl7::parse(ack);
  if (!m) return "<unparsable>";
  const hl7::Segment* s = m->first("MSA");
  return s ? s->get(1) : std::string();
}
// PV1 with PV1-2 (class) and PV1-19 (visit number).
std::string pv1(const std::string& visit) {
  return "PV1|1|I" + std::string(17, '|') + visit + "\r";
}

std::string adt(const std::string& event, const std::string& control, const std::string& mrn, const std::string& visit,
                const std::string& birth = "19800203") {
  return "MSH|^~\\&|LegacyADT|WARD7|CADUCEUS|HOSP|20240301101500||ADT^" + event + "^ADT_A01|" + control +
         "|P|2.5.1\rEVN|" + event + "|20240301101500\rPID|1||" + mrn + "^^^CityHosp&1.2.840.999.1&ISO^MR||Doe^Jane||" +
         birth + "|F\r" + pv1(visit);
}

// The vendored ORU sample with its own control id.
std::string oru(const std::string& control) {
  std::ifstream in(std::filesystem::path(CADUCEUS_TEST_DATA) / "hl7v2" / "LAB-ORU-1.hl7", std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  std::string raw = text.str();
  raw.replace(raw.find("|182|"), 5, "|" + control + "|");
  return raw;
}

// The ids of a list answer's messages, in order ("<error>" when it is not one).
std::vector<std::string> ids_of(const Response& r) {
  auto v = r.json();
  if (r.status != 200 || !v || v->find("messages") == nullptr) return {"<error " + r.summary() + ">"};
  std::vector<std::string> out;
  for (const Value& m : v->find("messages")->items()) out.push_back(m.find("id")->text());
  return out;
}

// The reference ("Patient/1") of the first resource of `type` a message produced, and its version.
std::pair<std::string, std::string> produced(const Value& message, const std::string& type) {
  if (const Value* list = message.find("resources"))
    for (const Value& r : list->items())
      if (string_at(r, "reference").starts_with(type + "/"))
        return {string_at(r, "reference"), string_at(r, "version")};
  return {};
}

using V = std::vector<std::string>;
constexpr std::string_view kList = "/admin/hl7/messages";

class Hl7MonitorTest : public ServerTest {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_args = {"--mllp", "127.0.0.1:0", "--log-requests", "false"};
    start_server(options);
  }
  std::string send(const std::string& message) {
    MllpClient mllp(mllp_port_of(server()));
    return msa1(mllp.exchange(message));
  }
  V list(const std::string& query) { return ids_of(client().get(std::string(kList) + "?" + query)); }
  std::optional<Value> show(const std::string& id) {
    Response r = client().get(std::string(kList) + "/" + id);
    EXPECT_EQ(r.status, 200) << r.summary();
    EXPECT_EQ(r.header("Content-Type"), "application/json");
    return r.status == 200 ? r.json() : std::nullopt;
  }
  std::optional<Value> replay(const std::string& id) {
    Response r = client().post(std::string(kList) + "/" + id + "/$replay", "");
    EXPECT_EQ(r.status, 200) << r.summary();
    return r.status == 200 ? r.json() : std::nullopt;
  }
  // The id of the one message with that control id.
  std::string id_of(const std::string& control) {
    V ids = list("control-id=" + url_encode(control));
    EXPECT_EQ(ids.size(), 1u) << control;
    return ids.empty() ? std::string() : ids.front();
  }
  // The ids of the Patients/Encounters an identifier search finds.
  V search_ids(const std::string& type, const std::string& query) {
    Response r = client().get(path(type + "?" + query));
    EXPECT_EQ(r.status, 200) << r.summary();
    return entry_order(r);
  }
};

// An ADT^A01, one with a date that is not one (AE), an unsupported type (AR), an ORU^R01 and an ADT^A08: each
// filter lists exactly the messages expected, newest first; pages follow a cursor; one message shows its raw text,
// segments, ACK with ERR details, and the resources it produced.
TEST_F(Hl7MonitorTest, ListsEveryFilterAndShowsAMessageWithItsAckAndResources) {
  const std::string a01 = adt("A01", "MON-1", "P-100", "V-100");
  ASSERT_EQ(send(a01), "AA");
  ASSERT_EQ(send(adt("A01", "MON-2", "P-200", "V-200", "31.12.1990")), "AE");
  ASSERT_EQ(send("MSH|^~\\&|LegacyADT|WARD7|CADUCEUS|HOSP|20240301||ZZZ^Z01|MON-3|P|2.5.1\rPID|1||P-300\r"), "AR");
  ASSERT_EQ(send(oru("MON-4")), "AA");
  ASSERT_EQ(send(adt("A08", "MON-5", "P-100", "V-100")), "AA");

  EXPECT_EQ(list(""), (V{"in-5", "in-4", "in-3", "in-2", "in-1"}));
  EXPECT_EQ(list("direction=in"), (V{"in-5", "in-4", "in-3", "in-2", "in-1"}));
  EXPECT_EQ(list("direction=out"), V{});
  EXPECT_EQ(list("type=" + url_encode("ADT^A01")), (V{"in-2", "in-1"}));
  EXPECT_EQ(list("type=ADT"), (V{"in-5", "in-2", "in-1"}));
  EXPECT_EQ(list("type=" + url_encode("ORU^R01")), V{"in-4"});
  EXPECT_EQ(list("status=error"), V{"in-2"});
  EXPECT_EQ(list("status=rejected"), V{"in-3"});
  EXPECT_EQ(list("status=error,rejected"), (V{"in-3", "in-2"}));
  EXPECT_EQ(list("status=processed"), (V{"in-5", "in-4", "in-1"}));
  EXPECT_EQ(list("control-id=MON-4"), V{"in-4"});
  EXPECT_EQ(list("control-id=NOPE"), V{});

  // One message in full: the A01.
  auto first = show("in-1");
  ASSERT_TRUE(first);
  EXPECT_EQ(string_at(*first, "id"), "in-1");
  EXPECT_EQ(string_at(*first, "direction"), "in");
  EXPECT_EQ(string_at(*first, "type"), "ADT^A01^ADT_A01");
  EXPECT_EQ(string_at(*first, "controlId"), "MON-1");
  EXPECT_EQ(string_at(*first, "sendingApplication"), "LegacyADT");
  EXPECT_EQ(string_at(*first, "sendingFacility"), "WARD7");
  EXPECT_EQ(string_at(*first, "status"), "processed");
  EXPECT_EQ(find_path(*first, "error"), nullptr);
  EXPECT_EQ(string_at(*first, "raw"), a01);
  EXPECT_EQ(size_at(*first, "segments"), 4u);
  EXPECT_EQ(string_at(*first, "segments[0].name"), "MSH");
  EXPECT_EQ(string_at(*first, "segments[0].fields[0]"), "|");
  EXPECT_EQ(string_at(*first, "segments[0].fields[8]"), "ADT^A01^ADT_A01");  // MSH-9
  EXPECT_EQ(string_at(*first, "segments[2].name"), "PID");
  EXPECT_EQ(string_at(*first, "segments[2].fields[2]"), "P-100^^^CityHosp&1.2.840.999.1&ISO^MR");  // PID-3
  EXPECT_EQ(string_at(*first, "ack.code"), "AA");
  EXPECT_EQ(size_at(*first, "ack.errors"), 0u);
  EXPECT_NE(string_at(*first, "ack.raw").find("MSA|AA|MON-1"), std::string::npos);
  // Patient, Encounter and the Provenance, each at version 1.
  ASSERT_EQ(size_at(*first, "resources"), 3u);
  auto [patient, patient_version] = produced(*first, "Patient");
  auto [encounter, encounter_version] = produced(*first, "Encounter");
  EXPECT_EQ(patient_version, "1");
  EXPECT_EQ(encounter_version, "1");
  EXPECT_EQ(string_at(*first, "resources[2].versioned"), "Provenance/hl7v2-1/_history/1");
  EXPECT_EQ(string_at(*first, "provenance"), "Provenance/hl7v2-1");
  // They are the ones the message is about.
  ASSERT_TRUE(patient.starts_with("Patient/"));
  EXPECT_EQ(search_ids("Patient", "identifier=" + url_encode("urn:oid:1.2.840.999.1|P-100")), V{patient.substr(8)});
  EXPECT_EQ(search_ids("Encounter", "identifier=V-100"), V{encounter.substr(10)});
  auto enc = read(encounter);
  ASSERT_TRUE(enc);
  EXPECT_EQ(string_at(*enc, "subject.reference"), patient);

  // By patient: the messages whose Provenance targets it (the A01 and the A08 about P-100; the ORU's own).
  EXPECT_EQ(list("patient=" + patient.substr(8)), (V{"in-5", "in-1"}));
  EXPECT_EQ(list("patient=" + url_encode(patient)), (V{"in-5", "in-1"}));
  auto result = show("in-4");
  ASSERT_TRUE(result);
  std::string oru_patient = produced(*result, "Patient").first;
  ASSERT_FALSE(oru_patient.empty());
  EXPECT_EQ(list("patient=" + oru_patient.substr(8)), V{"in-4"});
  EXPECT_EQ(list("patient=" + patient.substr(8) + "&type=" + url_encode("ADT^A08")), V{"in-5"});

  // The AE: kept raw with its error and the ERR segments that say where.
  auto bad = show("in-2");
  ASSERT_TRUE(bad);
  EXPECT_EQ(string_at(*bad, "status"), "error");
  EXPECT_NE(string_at(*bad, "error").find("PID-7"), std::string::npos) << string_at(*bad, "error");
  EXPECT_EQ(string_at(*bad, "raw"), adt("A01", "MON-2", "P-200", "V-200", "31.12.1990"));
  EXPECT_EQ(string_at(*bad, "ack.code"), "AE");
  ASSERT_GE(size_at(*bad, "ack.errors"), 1u);
  EXPECT_TRUE(string_at(*bad, "ack.errors[0].location").starts_with("PID^1^7")) << string_at(*bad, "ack.errors[0]");
  EXPECT_TRUE(string_at(*bad, "ack.errors[0].code").starts_with("102^")) << string_at(*bad, "ack.errors[0].code");
  EXPECT_EQ(string_at(*bad, "ack.errors[0].severity"), "E");
  EXPECT_EQ(size_at(*bad, "resources"), 0u);
  auto rejected = show("in-3");
  ASSERT_TRUE(rejected);
  EXPECT_EQ(string_at(*rejected, "status"), "rejected");
  EXPECT_EQ(string_at(*rejected, "ack.code"), "AR");
  EXPECT_NE(string_at(*rejected, "error").find("ZZZ"), std::string::npos);

  // Time: since the A08's received time, and until the AE's (its millisecond included). Each lists exactly the
  // messages received then (instants of one format compare as text).
  std::map<std::string, std::string> received;
  for (const std::string& id : list("")) received[id] = string_at(*show(id), "received");
  const std::string a08_time = received["in-5"], ae_time = received["in-2"];
  V since, until;
  for (auto it = received.rbegin(); it != received.rend(); ++it) {
    if (it->second >= a08_time) since.push_back(it->first);
    if (it->second <= ae_time) until.push_back(it->first);
  }
  EXPECT_EQ(since.front(), "in-5");
  EXPECT_EQ(until.back(), "in-1");
  EXPECT_EQ(list("since=" + url_encode(a08_time)), since);
  EXPECT_EQ(list("until=" + url_encode(ae_time)), until);
  EXPECT_EQ(list("since=" + url_encode(ae_time) + "&until=" + url_encode(ae_time) + "&status=error"), V{"in-2"});

  // Pages of two, following `next` (which keeps the filters).
  Response page = client().get(std::string(kList) + "?_count=2");
  EXPECT_EQ(ids_of(page), (V{"in-5", "in-4"}));
  std::string next = string_at(*page.json(), "next");
  ASSERT_TRUE(next.starts_with("/admin/hl7/messages?_count=2&cursor=")) << next;
  page = client().get(next);
  EXPECT_EQ(ids_of(page), (V{"in-3", "in-2"}));
  page = client().get(string_at(*page.json(), "next"));
  EXPECT_EQ(ids_of(page), V{"in-1"});
  EXPECT_EQ(find_path(*page.json(), "next"), nullptr);
  page = client().get(std::string(kList) + "?type=ADT&_count=2");
  EXPECT_EQ(ids_of(page), (V{"in-5", "in-2"}));
  page = client().get(string_at(*page.json(), "next"));
  EXPECT_EQ(ids_of(page), V{"in-1"});

  // Bad input: 400 naming the parameter; unknown messages 404.
  for (const auto& [query, param] : std::vector<std::pair<std::string, std::string>>{{"status=lost", "status"},
                                                                                     {"since=yesterday", "since"},
                                                                                     {"cursor=zz", "cursor"},
                                                                                     {"_count=0", "_count"},
                                                                                     {"direction=up", "direction"},
                                                                                     {"sender=x", "sender"}}) {
    Response r = client().get(std::string(kList) + "?" + query);
    EXPECT_EQ(r.status, 400) << query << " " << r.summary();
    EXPECT_TRUE(NamesElement(r, {param})) << query << " " << r.summary();
  }
  EXPECT_EQ(client().get(std::string(kList) + "/in-99").status, 404);
  EXPECT_EQ(client().get(std::string(kList) + "/out-1").status, 404);
  EXPECT_EQ(client().get(std::string(kList) + "/nonsense").status, 404);
  EXPECT_EQ(client().post(std::string(kList), "{}").status, 405);
  EXPECT_EQ(client().get(std::string(kList) + "/in-1/$replay").status, 405);
}

// An A01 that matches two Patients is an error; once the duplicate is deleted, its replay processes it. Replayed
// again, it finds the same resources: nothing duplicated, no new version of what is unchanged.
TEST_F(Hl7MonitorTest, ReplayProcessesAnErroredMessageOnceItsCauseIsFixedAndIsIdempotent) {
  const std::string identifier = R"("identifier":[{"system":"urn:oid:1.2.840.999.1","value":"P-DUP"}])";
  auto keep = create("Patient", R"({"resourceType":"Patient",)" + identifier + "}");
  auto dup = create("Patient", R"({"resourceType":"Patient",)" + identifier + "}");
  ASSERT_TRUE(keep && dup);
  const std::string keep_id = string_at(*keep, "id"), dup_id = string_at(*dup, "id");
  ASSERT_EQ(send(adt("A01", "MON-DUP", "P-DUP", "V-DUP")), "AE");
  std::string id = id_of("MON-DUP");
  auto errored = show(id);
  ASSERT_TRUE(errored);
  EXPECT_EQ(string_at(*errored, "status"), "error");
  EXPECT_NE(string_at(*errored, "error").find("2 Patient resources match"), std::string::npos)
      << string_at(*errored, "error");
  EXPECT_EQ(search_ids("Encounter", "identifier=V-DUP"), V{});

  // Fixed: the duplicate goes.
  Response deleted = client().del(path("Patient/" + dup_id));
  ASSERT_TRUE(deleted.status == 200 || deleted.status == 204) << deleted.summary();
  auto replayed = replay(id);
  ASSERT_TRUE(replayed);
  EXPECT_EQ(string_at(*replayed, "id"), id);
  EXPECT_EQ(string_at(*replayed, "previousStatus"), "error");
  EXPECT_EQ(string_at(*replayed, "status"), "processed");
  EXPECT_EQ(find_path(*replayed, "error"), nullptr);
  EXPECT_EQ(string_at(*replayed, "replays"), "1");
  EXPECT_FALSE(string_at(*replayed, "replayed").empty());
  EXPECT_EQ(string_at(*replayed, "ack.code"), "AA");
  EXPECT_NE(string_at(*replayed, "ack.raw").find("MSA|AA|MON-DUP"), std::string::npos);
  auto [patient, patient_version] = produced(*replayed, "Patient");
  auto [encounter, encounter_version] = produced(*replayed, "Encounter");
  EXPECT_EQ(patient, "Patient/" + keep_id);
  EXPECT_EQ(patient_version, "2");  // the A01's name, birth date and gender merged into the stored one
  EXPECT_EQ(encounter_version, "1");
  std::string provenance = "Provenance/hl7v2-" + id.substr(3);
  EXPECT_EQ(produced(*replayed, "Provenance"), (std::pair{provenance, std::string("1")}));
  EXPECT_EQ(search_ids("Encounter", "identifier=V-DUP"), V{encounter.substr(10)});
  auto stored = read(patient);
  ASSERT_TRUE(stored);
  EXPECT_EQ(string_at(*stored, "name[0].family"), "Doe");
  EXPECT_EQ(string_at(*stored, "birthDate"), "1980-02-03");
  // The stored message says so too, and the status filter finds it among the processed.
  auto shown = show(id);
  ASSERT_TRUE(shown);
  EXPECT_EQ(string_at(*shown, "status"), "processed");
  EXPECT_EQ(string_at(*shown, "replays"), "1");
  EXPECT_EQ(list("status=processed&control-id=MON-DUP"), V{id});
  EXPECT_EQ(list("status=error&control-id=MON-DUP"), V{});
  EXPECT_EQ(list("patient=" + keep_id), V{id});

  // Again: the same Patient and Encounter, at the same versions; only the Provenance records the new processing.
  auto again = replay(id);
  ASSERT_TRUE(again);
  EXPECT_EQ(string_at(*again, "previousStatus"), "processed");
  EXPECT_EQ(string_at(*again, "status"), "processed");
  EXPECT_EQ(string_at(*again, "replays"), "2");
  EXPECT_EQ(produced(*again, "Patient"), (std::pair{patient, std::string("2")}));
  EXPECT_EQ(produced(*again, "Encounter"), (std::pair{encounter, std::string("1")}));
  EXPECT_EQ(produced(*again, "Provenance"), (std::pair{provenance, std::string("2")}));
  EXPECT_EQ(search_ids("Patient", "identifier=P-DUP"), V{keep_id});
  EXPECT_EQ(search_ids("Encounter", "identifier=V-DUP"), V{encounter.substr(10)});
  auto history = client().get(path(patient + "/_history"));
  ASSERT_TRUE(history.json());
  EXPECT_EQ(size_at(*history.json(), "entry"), 2u) << history.summary();

  // A rejected message stays rejected (its cause is in the message itself); unknown ids: 404.
  ASSERT_EQ(send("MSH|^~\\&|LegacyADT|WARD7|CADUCEUS|HOSP|20240301||ZZZ^Z01|MON-AR|P|2.5.1\rPID|1||P-300\r"), "AR");
  std::string ar = id_of("MON-AR");
  auto still = replay(ar);
  ASSERT_TRUE(still);
  EXPECT_EQ(string_at(*still, "previousStatus"), "rejected");
  EXPECT_EQ(string_at(*still, "status"), "rejected");
  EXPECT_EQ(string_at(*still, "replays"), "1");
  EXPECT_EQ(string_at(*still, "ack.code"), "AR");
  EXPECT_EQ(client().post(std::string(kList) + "/in-999/$replay", "").status, 404);
  // Outbound replays need --hl7-out.
  EXPECT_EQ(client().post(std::string(kList) + "/out-1/$replay", "").status, 501);
}

// --hl7-out with one attempt: a lab order to a receiver that is down is dead-lettered; once the receiver is up,
// its replay queues it again and it is delivered; a delivered message is not sent twice.
TEST(Hl7MonitorOutboundTest, ReplayQueuesADeadLetterAgain) {
  // A port with nobody on it: the receiver's, stopped.
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::string> received;
  auto handler = [&](std::string message, bool, std::function<void(std::string)> send, std::function<void()> done) {
    if (auto m = hl7::parse(message)) {
      send(hl7::build_ack(hl7::AckTarget::of(*m), "AA", "ACK" + m->control_id, "20240101000000+0000", {}));
      std::lock_guard lock(mutex);
      received.push_back(message);
    }
    cv.notify_all();
    done();
  };
  auto receiver = std::make_unique<adapters::MllpServer>(adapters::MllpOptions{}, handler);
  auto port = receiver->start();
  ASSERT_TRUE(port);
  receiver->stop();
  receiver.reset();

  ServerOptions options;
  options.extra_args = {"--hl7-out", "lab=127.0.0.1:" + std::to_string(*port) + ":orm", "--hl7-out-attempts", "1"};
  TestServer server(options);
  HttpClient http(server.host(), server.port());
  auto patient = http.post("/fhir/Patient", R"({"resourceType":"Patient","name":[{"family":"Doe"}]})");
  ASSERT_EQ(patient.status, 201);
  auto order = http.post("/fhir/ServiceRequest",
                         R"({"resourceType":"ServiceRequest","status":"active","intent":"order",)"
                         R"("category":[{"coding":[{"system":"http://snomed.info/sct","code":"108252007"}]}],)"
                         R"("code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},)"
                         R"("subject":{"reference":"Patient/)" +
                             string_at(*patient.json(), "id") + R"("}})");
  ASSERT_EQ(order.status, 201);
  const std::string order_version = "ServiceRequest/" + string_at(*order.json(), "id") + "/_history/1";

  // Dead after its one attempt (polled: a deadline against a hang, not a timing).
  auto status_of = [&](const std::string& id) {
    return string_at(*http.get(std::string(kList) + "/" + id).json(), "status");
  };
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (status_of("out-1") != "dead" && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);  // between polls of a condition, not a synchronization
  auto dead = http.get(std::string(kList) + "/out-1");
  ASSERT_EQ(dead.status, 200) << dead.summary();
  EXPECT_EQ(string_at(*dead.json(), "status"), "dead");
  EXPECT_EQ(string_at(*dead.json(), "direction"), "out");
  EXPECT_EQ(string_at(*dead.json(), "type"), "ORM^O01");
  EXPECT_EQ(string_at(*dead.json(), "destination"), "lab");
  EXPECT_EQ(string_at(*dead.json(), "source"), order_version);
  EXPECT_EQ(string_at(*dead.json(), "attempts"), "1");
  EXPECT_FALSE(string_at(*dead.json(), "error").empty());
  EXPECT_EQ(string_at(*dead.json(), "segments[0].fields[8]"), "ORM^O01^ORM_O01");  // MSH-9
  EXPECT_EQ(ids_of(http.get(std::string(kList) + "?direction=out&status=dead")), V{"out-1"});
  EXPECT_EQ(ids_of(http.get(std::string(kList))), V{"out-1"});
  EXPECT_EQ(ids_of(http.get(std::string(kList) + "?direction=in")), V{});

  // The receiver is up again on that port; the replay queues the message, which is delivered.
  receiver = std::make_unique<adapters::MllpServer>(adapters::MllpOptions{.port = *port}, handler);
  ASSERT_TRUE(receiver->start());
  auto replayed = http.post(std::string(kList) + "/out-1/$replay", "");
  ASSERT_EQ(replayed.status, 200) << replayed.summary();
  EXPECT_EQ(string_at(*replayed.json(), "previousStatus"), "dead");
  EXPECT_EQ(string_at(*replayed.json(), "status"), "pending");
  EXPECT_EQ(string_at(*replayed.json(), "attempts"), "0");
  {
    std::unique_lock lock(mutex);
    cv.wait_for(lock, 60s, [&] { return !received.empty(); });
    ASSERT_EQ(received.size(), 1u);
  }
  deadline = std::chrono::steady_clock::now() + 60s;
  while (status_of("out-1") != "sent" && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);  // between polls of a condition, not a synchronization
  auto sent = http.get(std::string(kList) + "/out-1");
  EXPECT_EQ(string_at(*sent.json(), "status"), "sent");
  EXPECT_EQ(string_at(*sent.json(), "ack.code"), "AA");
  EXPECT_EQ(string_at(*sent.json(), "attempts"), "0");  // (the failed attempts since it was queued again)
  // Sent: not again.
  auto twice = http.post(std::string(kList) + "/out-1/$replay", "");
  EXPECT_EQ(twice.status, 409) << twice.summary();
  receiver->stop();
}

// With --auth smart: no token 401; a valid token that is not an administrator's 403 (list, show and replay); an
// administrator's user token or a system/*.* token may use it.
TEST(Hl7MonitorAuthTest, OnlyAdministratorsAndFullSystemTokensMayUseTheMonitor) {
  TempDir dir("hl7-monitor-auth");
  ServerOptions options;
  options.extra_args = {"--auth", "smart", "--data-dir", dir.path().string(), "--mllp", "127.0.0.1:0"};
  TestServer server(options);
  auto ring = server::auth::KeyRing::open(dir.path());
  ASSERT_TRUE(ring) << ring.error().issues.front().diagnostics;
  const std::string base = server.base_url();
  auto mint = [&](const std::string& scope, const std::string& role, const std::string& fhir_user) {
    return HeaderList{{"Authorization", "Bearer " + mint_access_token(ring->current(), base, "monitor-app",
                                                                      {scope, role, fhir_user, ""})}};
  };

  {
    MllpClient mllp(mllp_port_of(server));
    ASSERT_EQ(msa1(mllp.exchange(adt("A01", "AUTH-1", "P-900", "V-900"))), "AA");
  }
  HttpClient http(server.host(), server.port());
  const std::string list = std::string(kList), one = list + "/in-1", again = one + "/$replay";

  Response none = http.get(list);
  EXPECT_EQ(none.status, 401) << none.summary();
  EXPECT_TRUE(none.header("WWW-Authenticate").starts_with("Bearer")) << none.summary();
  EXPECT_EQ(http.get(list, {{"Authorization", "Bearer not-a-token"}}).status, 401);
  EXPECT_EQ(http.post(again, "").status, 401);

  for (const auto& [scope, role, who] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"user/*.*", "physician", "Practitioner/dr1"},
           {"user/*.cruds", "nurse", "Practitioner/n1"},
           {"patient/*.*", "patient", "Patient/p1"},
           {"system/*.rs", "", ""},
           {"system/Patient.* system/Encounter.*", "", ""}}) {
    HeaderList h = mint(scope, role, who);
    EXPECT_EQ(http.get(list, h).status, 403) << scope << " " << role;
    EXPECT_EQ(http.get(one, h).status, 403) << scope << " " << role;
    EXPECT_EQ(http.request("POST", again, "", h).status, 403) << scope << " " << role;
  }
  // Nothing was replayed by the refused requests.
  HeaderList admin = mint("openid fhirUser user/*.rs", "admin", "Practitioner/admin");
  Response shown = http.get(one, admin);
  ASSERT_EQ(shown.status, 200) << shown.summary();
  EXPECT_EQ(string_at(*shown.json(), "controlId"), "AUTH-1");
  EXPECT_EQ(find_path(*shown.json(), "replays"), nullptr);
  EXPECT_EQ(ids_of(http.get(list, admin)), V{"in-1"});
  HeaderList system = mint("system/*.*", "", "");
  EXPECT_EQ(ids_of(http.get(list, system)), V{"in-1"});
  Response replayed = http.request("POST", again, "", system);
  ASSERT_EQ(replayed.status, 200) << replayed.summary();
  EXPECT_EQ(string_at(*replayed.json(), "replays"), "1");
  EXPECT_EQ(string_at(*replayed.json(), "status"), "processed");
}

}  // namespace
}  // namespace caduceus::test
