// FHIR to HL7 v2, out: the typed segment builder (escaping), the ORM/OML, RDE and ORU messages built from
// resources, and the sender over real MLLP sockets to a test receiver in this process (delivered once, retried
// while the receiver is down, dead-lettered after N negative answers or silences, order kept per destination).
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>

#include "caduceus/adapters/hl7v2/ack.hpp"
#include "caduceus/adapters/hl7v2/builder.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/hl7v2/outbound.hpp"
#include "caduceus/adapters/mllp.hpp"
#include "caduceus/fhir/json.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

using namespace std::chrono_literals;

fhir::json::Value json(std::string_view text) {
  auto v = fhir::json::parse(text);
  EXPECT_TRUE(v.has_value());
  return v ? std::move(*v) : fhir::json::Value();
}

MessageHeader header(std::string control_id) {
  MessageHeader h;
  h.sending_facility = "HOSP";
  h.receiving_application = "LAB";
  h.receiving_facility = "LABFAC";
  h.timestamp = "20240102030405+0000";
  h.control_id = std::move(control_id);
  return h;
}

TEST(Hl7v2Builder, EscapesEveryDelimiter) {
  SegmentBuilder s("NTE");
  s.field(1, "1").field(3, "a|b^c~d\\e&f").components(4, {"x^y", "", "z", "", ""});
  EXPECT_EQ(s.str(), "NTE|1||a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f|x\\S\\y^^z");
  // What is built reads back as the text given.
  auto m = parse("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r" + s.str() + "\r");
  ASSERT_TRUE(m.has_value());
  const Segment* nte = m->first("NTE");
  ASSERT_NE(nte, nullptr);
  EXPECT_EQ(nte->get(3), "a|b^c~d\\e&f");
  EXPECT_EQ(nte->get(4, 1), "x^y");
  EXPECT_EQ(nte->get(4, 3), "z");
}

TEST(Hl7v2Builder, RepetitionsAndHeader) {
  MessageHeader h = header("42");
  h.type = "ORM";
  h.trigger = "O01";
  h.structure = "ORM_O01";
  h.sending_facility = "St. Mary|North";  // a delimiter in a header field is escaped too
  MessageBuilder mb(h);
  SegmentBuilder pid = mb.segment("PID");
  pid.repetitions(3, {{"1", "", "", "A"}, {"2"}});
  mb.add(pid);
  EXPECT_EQ(mb.str(),
            "MSH|^~\\&|CADUCEUS|St. Mary\\F\\North|LAB|LABFAC|20240102030405+0000||ORM^O01^ORM_O01|42|P|2.5.1\r"
            "PID|||1^^^A~2\r");
}

TEST(Hl7v2Builder, FhirDatesToDtm) {
  EXPECT_EQ(fhir_to_v2_datetime("2024"), "2024");
  EXPECT_EQ(fhir_to_v2_datetime("2024-03"), "202403");
  EXPECT_EQ(fhir_to_v2_datetime("2024-03-07"), "20240307");
  EXPECT_EQ(fhir_to_v2_datetime("2024-03-07T10:30:00+01:00"), "20240307103000+0100");
  EXPECT_EQ(fhir_to_v2_datetime("2024-03-07T10:30:00.123456Z"), "20240307103000.1234+0000");
  EXPECT_EQ(fhir_to_v2_datetime("2024-03-07T10:30:00-05:30"), "20240307103000-0530");
  EXPECT_EQ(fhir_to_v2_datetime("07/03/2024"), "");
  EXPECT_EQ(fhir_to_v2_datetime("2024-03-07T10"), "");
}

const char* kPatient =
    R"({"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:oid:1.2.3","value":"MRN7"}],)"
    R"("name":[{"family":"O'Brien^Smith","given":["Ann","Marie"]}],"gender":"female","birthDate":"1970-05-04"})";

TEST(Hl7v2Outbound, LabServiceRequestAsOrmAndOml) {
  auto patient = json(kPatient);
  auto sr = json(R"({"resourceType":"ServiceRequest","id":"sr9","status":"active","intent":"order",)"
                 R"("category":[{"coding":[{"system":"http://snomed.info/sct","code":"108252007"}]}],)"
                 R"("code":{"coding":[{"system":"http://loinc.org","code":"2345-7","display":"Glucose"}]},)"
                 R"("subject":{"reference":"Patient/p1"},"authoredOn":"2024-03-07T10:30:00+01:00",)"
                 R"("requester":{"reference":"Practitioner/dr1","display":"Dr Who"}})");
  Destination lab{.name = "lab", .orders = true};
  EXPECT_EQ(outbound_message_type(lab, sr), "ORM^O01");
  lab.order_message = "OML^O21";
  EXPECT_EQ(outbound_message_type(lab, sr), "OML^O21");
  EXPECT_EQ(outbound_message_type(Destination{.name = "pharmacy", .pharmacy = true}, sr), std::nullopt);

  auto orm = build_outbound("ORM^O01", sr, OutboundContext{header("C1"), &patient, {}});
  ASSERT_TRUE(orm.has_value());
  EXPECT_EQ(*orm,
            "MSH|^~\\&|CADUCEUS|HOSP|LAB|LABFAC|20240102030405+0000||ORM^O01^ORM_O01|C1|P|2.5.1\r"
            "PID|1||MRN7^^^urn:oid:1.2.3||O'Brien\\S\\Smith^Ann^Marie||19700504|F\r"
            "ORC|NW|sr9^CADUCEUS|||SC||||20240307103000+0100|||dr1^Dr Who\r"
            "OBR|1|sr9^CADUCEUS||2345-7^Glucose^http://loinc.org||||||||||||dr1^Dr Who\r");
  // The receiver reads it as it was meant: the family name with its ^, the structure known.
  auto m = parse(*orm);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->structure, "ORM_O01");
  EXPECT_EQ(m->first("PID")->get(5, 1), "O'Brien^Smith");

  auto oml = build_outbound("OML^O21", sr, OutboundContext{header("C2"), &patient, {}});
  ASSERT_TRUE(oml.has_value());
  EXPECT_TRUE(oml->find("|OML^O21^OML_O21|C2|") != std::string::npos) << *oml;

  // Not a lab request, or not active: nothing goes out.
  auto draft = sr;
  draft.set("status", fhir::json::Value::string("draft"));
  EXPECT_EQ(outbound_message_type(Destination{.name = "lab", .orders = true}, draft), std::nullopt);
  auto imaging =
      json(R"({"resourceType":"ServiceRequest","status":"active","category":[{"coding":[{"code":"363679005"}]}]})");
  EXPECT_EQ(outbound_message_type(Destination{.name = "lab", .orders = true}, imaging), std::nullopt);
  // No code: refused, naming the element.
  auto nocode = json(R"({"resourceType":"ServiceRequest","id":"x","status":"active"})");
  auto bad = build_outbound("ORM^O01", nocode, OutboundContext{header("C3"), nullptr, {}});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().kind, fhir::ErrorKind::kInvalid);
  EXPECT_EQ(bad.error().issues.front().expression, "ServiceRequest.code");
}

TEST(Hl7v2Outbound, ActiveMedicationRequestAsRde) {
  auto patient = json(kPatient);
  auto mr = json(R"({"resourceType":"MedicationRequest","id":"m5","status":"active","intent":"order",)"
                 R"("medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm",)"
                 R"("code":"197361","display":"Amlodipine 5 MG"}]},"subject":{"reference":"Patient/p1"},)"
                 R"("authoredOn":"2024-03-07","dosageInstruction":[{"text":"1 tablet daily",)"
                 R"("route":{"coding":[{"system":"http://snomed.info/sct","code":"26643006","display":"Oral"}]},)"
                 R"("doseAndRate":[{"doseQuantity":{"value":1,"unit":"tablet","system":"http://unitsofmeasure.org",)"
                 R"("code":"{tbl}"}}]}]})");
  EXPECT_EQ(outbound_message_type(Destination{.name = "rx", .pharmacy = true}, mr), "RDE^O11");
  auto stopped = mr;
  stopped.set("status", fhir::json::Value::string("stopped"));
  EXPECT_EQ(outbound_message_type(Destination{.name = "rx", .pharmacy = true}, stopped), std::nullopt);

  auto rde = build_outbound("RDE^O11", mr, OutboundContext{header("R1"), &patient, {}});
  ASSERT_TRUE(rde.has_value());
  EXPECT_EQ(*rde,
            "MSH|^~\\&|CADUCEUS|HOSP|LAB|LABFAC|20240102030405+0000||RDE^O11^RDE_O11|R1|P|2.5.1\r"
            "PID|1||MRN7^^^urn:oid:1.2.3||O'Brien\\S\\Smith^Ann^Marie||19700504|F\r"
            "ORC|NW|m5^CADUCEUS|||SC||||20240307\r"
            "RXE||197361^Amlodipine 5 MG^http://www.nlm.nih.gov/research/umls/rxnorm|1||{tbl}^tablet^"
            "http://unitsofmeasure.org||||||||||||||||^1 tablet daily\r"
            "RXR|26643006^Oral^http://snomed.info/sct\r");
}

TEST(Hl7v2Outbound, FinalDiagnosticReportAsOruWithItsObservations) {
  auto patient = json(kPatient);
  auto report =
      json(R"({"resourceType":"DiagnosticReport","id":"d3","status":"final",)"
           R"("code":{"coding":[{"system":"http://loinc.org","code":"24323-8","display":"Metabolic panel"}]},)"
           R"("effectiveDateTime":"2024-03-07T08:00:00Z","issued":"2024-03-07T09:15:00Z",)"
           R"("result":[{"reference":"Observation/o1"},{"reference":"Observation/o2"}]})");
  std::vector<fhir::json::Value> obs{
      json(
          R"({"resourceType":"Observation","id":"o1","status":"final",)"
          R"("code":{"coding":[{"system":"http://loinc.org","code":"2345-7","display":"Glucose"}]},)"
          R"("valueQuantity":{"value":5.4,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"},)"
          R"("referenceRange":[{"low":{"value":3.9},"high":{"value":6.1}}],"effectiveDateTime":"2024-03-07T08:00:00Z"})"),
      json(R"({"resourceType":"Observation","id":"o2","status":"corrected",)"
           R"("code":{"coding":[{"system":"http://loinc.org","code":"8251-1","display":"Comment"}]},)"
           R"("valueString":"hemolysed & repeated"})")};
  EXPECT_EQ(outbound_message_type(Destination{.name = "res", .results = true}, report), "ORU^R01");
  auto prelim = report;
  prelim.set("status", fhir::json::Value::string("preliminary"));
  EXPECT_EQ(outbound_message_type(Destination{.name = "res", .results = true}, prelim), std::nullopt);

  auto oru = build_outbound("ORU^R01", report, OutboundContext{header("O1"), &patient, obs});
  ASSERT_TRUE(oru.has_value());
  EXPECT_EQ(*oru,
            "MSH|^~\\&|CADUCEUS|HOSP|LAB|LABFAC|20240102030405+0000||ORU^R01^ORU_R01|O1|P|2.5.1\r"
            "PID|1||MRN7^^^urn:oid:1.2.3||O'Brien\\S\\Smith^Ann^Marie||19700504|F\r"
            "OBR|1||d3^CADUCEUS|24323-8^Metabolic panel^http://loinc.org|||20240307080000+0000|||||||||||||||"
            "20240307091500+0000|||F\r"
            "OBX|1|NM|2345-7^Glucose^http://loinc.org||5.4|mmol/L^mmol/L^http://unitsofmeasure.org|3.9-6.1||||F|||"
            "20240307080000+0000\r"
            "OBX|2|ST|8251-1^Comment^http://loinc.org||hemolysed \\T\\ repeated||||||C\r");
  auto m = parse(*oru);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(std::count_if(m->segments.begin(), m->segments.end(), [](const Segment& x) { return x.name == "OBX"; }), 2);
}

TEST(Hl7v2Outbound, DispatchQueuesWhatEachDestinationWants) {
  MemoryOutboundQueue queue;
  OutboundSender sender({Destination{.name = "lab", .receiving_application = "LIS", .orders = true},
                         Destination{.name = "rx", .receiving_application = "PHARM", .pharmacy = true},
                         Destination{.name = "lab2", .orders = true, .order_message = "OML^O21"}},
                        queue);
  std::vector<std::string> asked;
  auto resolve = [&](std::string_view ref) -> std::optional<fhir::json::Value> {
    asked.emplace_back(ref);
    if (ref == "Patient/p1") return json(kPatient);
    return std::nullopt;
  };
  auto sr = json(R"({"resourceType":"ServiceRequest","id":"s1","status":"active","subject":{"reference":"Patient/p1"},)"
                 R"("category":[{"coding":[{"code":"108252007"}]}],"code":{"coding":[{"code":"2345-7"}]}})");
  auto ids = sender.dispatch(sr, "ServiceRequest/s1/_history/1", resolve);
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(ids->size(), 2u);
  ids = sender.dispatch(sr, "ServiceRequest/s1/_history/2", resolve);
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(asked, (std::vector<std::string>{"Patient/p1", "Patient/p1"}));  // once per dispatch
  auto items = *queue.list("");
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[0].destination, "lab");
  EXPECT_EQ(items[0].message_type, "ORM^O01");
  EXPECT_EQ(items[1].destination, "lab2");
  EXPECT_EQ(items[1].message_type, "OML^O21");
  EXPECT_EQ(items[3].source, "ServiceRequest/s1/_history/2");
  std::set<std::string> control_ids;
  for (const auto& item : items) {
    auto m = parse(item.message);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->control_id, item.control_id);
    control_ids.insert(item.control_id);
    EXPECT_EQ(m->first("PID")->get(3), "MRN7");
    // MSH-7: the time it was built, to the second, in UTC.
    std::string ts = m->msh().get(7);
    ASSERT_EQ(ts.size(), 19u) << ts;
    EXPECT_TRUE(ts.ends_with("+0000")) << ts;
    EXPECT_TRUE(ts.starts_with("20")) << ts;
  }
  EXPECT_EQ(control_ids.size(), 4u);  // unique
  EXPECT_EQ(parse(items[0].message)->msh().get(5), "LIS");
  // A MedicationRequest goes to the pharmacy only; a draft one nowhere.
  auto mr =
      json(R"({"resourceType":"MedicationRequest","id":"m1","status":"active","subject":{"reference":"Patient/p9"},)"
           R"("medicationCodeableConcept":{"text":"aspirin"}})");
  ids = sender.dispatch(mr, "MedicationRequest/m1/_history/1", resolve);
  ASSERT_TRUE(ids.has_value());
  ASSERT_EQ(ids->size(), 1u);
  EXPECT_EQ(queue.list("rx")->front().message_type, "RDE^O11");
  mr.set("status", fhir::json::Value::string("draft"));
  EXPECT_TRUE(sender.dispatch(mr, "MedicationRequest/m1/_history/2", resolve)->empty());
}

// --- the sender, against a receiver in this process

// A test MLLP receiver: answers each message with the code `script` picks (empty: no answer at all), and keeps
// the control ids it saw, in order.
struct Receiver {
  std::mutex mutex;
  std::vector<std::string> seen;
  std::function<std::string(const std::string& control_id, std::size_t nth)> script;
  std::unique_ptr<MllpServer> server;

  std::uint16_t start(std::uint16_t port = 0) {
    MllpOptions o;
    o.port = port;
    server = std::make_unique<MllpServer>(o, [this](std::string message, bool, std::function<void(std::string)> send,
                                                    std::function<void()> done) {
      auto m = parse(message);
      std::string code;
      if (m) {
        std::lock_guard lock(mutex);
        seen.push_back(m->control_id);
        std::size_t nth = std::count(seen.begin(), seen.end(), m->control_id);
        code = script ? script(m->control_id, nth) : "AA";
      }
      if (m && !code.empty())
        send(build_ack(AckTarget::of(*m), code, "ACK" + m->control_id, "20240101000000+0000",
                       code == "AA" ? std::vector<Problem>{}
                                    : std::vector<Problem>{{ErrorCode::kApplicationInternal, {}, "lab is closed"}}));
      done();
    });
    auto p = server->start();
    EXPECT_TRUE(p.has_value());
    return p ? *p : 0;
  }
  std::vector<std::string> received() {
    std::lock_guard lock(mutex);
    return seen;
  }
};

// Collects the sender's item changes; waits for a condition on them (a deadline against a hang, not a timing).
struct Watch {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<OutboundItem> changes;

  OutboundSender::Observer observer() {
    return [this](const OutboundItem& item) {
      {
        std::lock_guard lock(mutex);
        changes.push_back(item);
      }
      cv.notify_all();
    };
  }
  bool wait(const std::function<bool(const std::vector<OutboundItem>&)>& done) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, 60s, [&] { return done(changes); });
  }
  static std::function<bool(const std::vector<OutboundItem>&)> finished(std::size_t n) {
    return [n](const std::vector<OutboundItem>& c) {
      return std::count_if(c.begin(), c.end(), [](const OutboundItem& i) { return i.status != "pending"; }) >=
             static_cast<std::ptrdiff_t>(n);
    };
  }
};

std::string order(const std::string& control_id) {
  auto sr =
      json(R"({"resourceType":"ServiceRequest","id":"s1","status":"active","code":{"coding":[{"code":"2345-7"}]}})");
  return *build_outbound("ORM^O01", sr, OutboundContext{header(control_id), nullptr, {}});
}

SenderOptions fast() {
  SenderOptions o;
  o.backoff_initial = 20ms;
  o.backoff_max = 100ms;
  o.ack_timeout = 2s;
  o.max_attempts = 3;
  return o;
}

TEST(Hl7v2Sender, DeliversOnceWithItsContent) {
  Receiver rx;
  std::uint16_t port = rx.start();
  MemoryOutboundQueue queue;
  Watch watch;
  OutboundSender sender({Destination{.name = "lab", .port = port}}, queue, fast(), watch.observer());
  sender.start();
  std::string message = order("M1");
  auto id = sender.submit("lab", "ORM^O01", "M1", message, "ServiceRequest/s1/_history/1");
  ASSERT_TRUE(id.has_value());
  ASSERT_TRUE(watch.wait(Watch::finished(1)));
  sender.stop();
  auto items = *queue.list("lab");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].status, "sent");
  EXPECT_EQ(items[0].attempts, 0);
  auto ack = parse(items[0].ack);
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->first("MSA")->get(1), "AA");
  EXPECT_EQ(ack->first("MSA")->get(2), "M1");
  EXPECT_EQ(rx.received(), std::vector<std::string>{"M1"});
  // The receiver got exactly the message built.
  EXPECT_EQ(items[0].message, message);
}

TEST(Hl7v2Sender, RetriesWhileTheReceiverIsDownThenDelivers) {
  // A port nobody listens on (a receiver started and stopped), then a receiver on it.
  std::uint16_t port;
  {
    Receiver gone;
    port = gone.start();
    gone.server->stop();
  }
  MemoryOutboundQueue queue;
  Watch watch;
  SenderOptions o = fast();
  o.max_attempts = 1000;
  OutboundSender sender({Destination{.name = "lab", .port = port}}, queue, o, watch.observer());
  sender.start();
  ASSERT_TRUE(sender.submit("lab", "ORM^O01", "M1", order("M1")).has_value());
  // Two failed attempts (refused), then the receiver comes up.
  ASSERT_TRUE(watch.wait([](const auto& c) { return c.size() >= 2; }));
  {
    std::lock_guard lock(watch.mutex);
    EXPECT_EQ(watch.changes[0].status, "pending");
    EXPECT_EQ(watch.changes[0].attempts, 1);
    EXPECT_NE(watch.changes[0].last_error.find("cannot connect"), std::string::npos) << watch.changes[0].last_error;
  }
  Receiver rx;
  ASSERT_EQ(rx.start(port), port);
  ASSERT_TRUE(watch.wait(Watch::finished(1)));
  sender.stop();
  auto items = *queue.list("lab");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].status, "sent");
  EXPECT_GE(items[0].attempts, 2);
  EXPECT_EQ(rx.received(), std::vector<std::string>{"M1"});  // delivered once
}

TEST(Hl7v2Sender, NegativeAnswersOrSilenceNTimesDeadLetter) {
  Receiver rx;
  rx.script = [](const std::string& id, std::size_t) { return id == "AE1" ? "AE" : id == "AR1" ? "AR" : ""; };
  std::uint16_t port = rx.start();
  MemoryOutboundQueue queue;
  Watch watch;
  SenderOptions o = fast();
  o.ack_timeout = 300ms;  // the silent one: no answer within it counts as a failure
  OutboundSender sender({Destination{.name = "lab", .port = port}}, queue, o, watch.observer());
  sender.start();
  for (std::string id : {"AE1", "AR1", "SILENT1"}) ASSERT_TRUE(sender.submit("lab", "ORM^O01", id, order(id)));
  ASSERT_TRUE(watch.wait(Watch::finished(3)));
  sender.stop();
  auto items = *queue.list("lab");
  ASSERT_EQ(items.size(), 3u);
  for (const auto& item : items) {
    EXPECT_EQ(item.status, "dead") << item.control_id;
    EXPECT_EQ(item.attempts, 3) << item.control_id;
  }
  EXPECT_EQ(items[0].last_error, "answered AE: lab is closed");
  EXPECT_EQ(items[1].last_error, "answered AR: lab is closed");
  EXPECT_NE(items[2].last_error.find("no answer"), std::string::npos) << items[2].last_error;
  // Each was tried exactly max_attempts times, one after the other (order kept: all of AE1 before AR1 ...).
  EXPECT_EQ(rx.received(),
            (std::vector<std::string>{"AE1", "AE1", "AE1", "AR1", "AR1", "AR1", "SILENT1", "SILENT1", "SILENT1"}));
}

TEST(Hl7v2Sender, KeepsOrderPerDestinationAcrossRetries) {
  Receiver rx;
  // The first message is refused twice before it is taken: the others must wait for it.
  rx.script = [](const std::string& id, std::size_t nth) { return id == "A" && nth <= 2 ? "AE" : "AA"; };
  std::uint16_t port = rx.start();
  MemoryOutboundQueue queue;
  Watch watch;
  SenderOptions o = fast();
  o.max_attempts = 5;
  OutboundSender sender({Destination{.name = "lab", .port = port}}, queue, o, watch.observer());
  for (std::string id : {"A", "B", "C", "D"}) ASSERT_TRUE(sender.submit("lab", "ORM^O01", id, order(id)));
  sender.start();
  ASSERT_TRUE(watch.wait(Watch::finished(4)));
  sender.stop();
  EXPECT_EQ(rx.received(), (std::vector<std::string>{"A", "A", "A", "B", "C", "D"}));
  auto items = *queue.list("lab");
  for (const auto& item : items) EXPECT_EQ(item.status, "sent") << item.control_id;
  // An unknown destination is refused.
  EXPECT_FALSE(sender.submit("nowhere", "ORM^O01", "X", order("X")).has_value());
}

TEST(Hl7v2Sender, AnAckForAnotherControlIdIsAFailure) {
  // A receiver that answers every message as if it were "OTHER".
  MllpOptions opts;
  MllpServer server(opts,
                    [](std::string message, bool, std::function<void(std::string)> send, std::function<void()> done) {
                      auto m = parse(message);
                      AckTarget t = AckTarget::of(*m);
                      t.control_id = "OTHER";
                      send(build_ack(t, "AA", "Z", "20240101000000+0000", {}));
                      done();
                    });
  auto port = server.start();
  ASSERT_TRUE(port.has_value());
  MemoryOutboundQueue queue;
  Watch watch;
  SenderOptions o = fast();
  o.max_attempts = 2;
  OutboundSender sender({Destination{.name = "lab", .port = *port}}, queue, o, watch.observer());
  sender.start();
  ASSERT_TRUE(sender.submit("lab", "ORM^O01", "MINE", order("MINE")));
  ASSERT_TRUE(watch.wait(Watch::finished(1)));
  sender.stop();
  auto items = *queue.list("lab");
  EXPECT_EQ(items[0].status, "dead");
  EXPECT_EQ(items[0].last_error, "the acknowledgement is for control id 'OTHER', not 'MINE'");
}

}  // namespace
}  // namespace caduceus::adapters::hl7v2
