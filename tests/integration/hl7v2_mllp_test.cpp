// HL7 v2 over MLLP against the real server (--mllp 127.0.0.1:0): framing across and within reads, AA once the
// Patient is committed (then found over HTTP), duplicates, AR, AE with ERR positions, enhanced mode, the cap.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
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
using fhir::json::Value;

std::string adt(const std::string& event, const std::string& control, const std::string& pid_rest,
                const std::string& msh_tail = "") {
  return "MSH|^~\\&|LegacyADT|WARD7|CADUCEUS|HOSP|20240301101500||ADT^" + event + "|" + control + "|P|2.5.1" +
         msh_tail + "\rEVN|" + event + "|20240301101500\rPID|1||" + pid_rest + "\rPV1|1|I\r";
}

class Hl7v2MllpTest : public ServerTest {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_args = {"--mllp", "127.0.0.1:0", "--mllp-max-frame", "65536", "--log-requests", "false"};
    start_server(options);
  }

  static std::uint16_t mllp_port() { return mllp_port_of(server()); }

  // A line of /metrics ("name{labels}") as a number; -1 when it is not there.
  long long metric(const std::string& series) {
    Response r = client().get("/metrics");
    EXPECT_EQ(r.status, 200) << r.summary();
    auto at = r.body.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stoll(r.body.substr(at + series.size() + 2));
  }

  // The Patients an identifier search finds.
  std::vector<Value> patients(const std::string& identifier) {
    Response r = client().get(path("Patient?identifier=" + url_encode(identifier)));
    EXPECT_EQ(r.status, 200) << r.summary();
    std::vector<Value> out;
    auto v = r.json();
    if (v)
      if (const Value* entries = v->find("entry"))
        for (const Value& e : entries->items())
          if (const Value* res = e.find("resource")) out.push_back(*res);
    return out;
  }
};

TEST_F(Hl7v2MllpTest, AdtInSplitFramesIsAcknowledgedAndTheMappedPatientIsSearchable) {
  MllpClient mllp(mllp_port());
  std::string msg = adt("A01", "INT-A01-1",
                        "P-1001^^^CityHosp&1.2.840.999.1&ISO^MR||Lovelace^Ada^Augusta^^Lady^^L||197512|F|||"
                        "12 St James Sq^^London^^SW1Y 4JH^GBR^H||^PRN^PH^^44^20^79460000");
  std::string wire = MllpFramer::wrap(msg);
  // Three reads' worth: the start byte alone, the middle, and the end block split between 0x1C and 0x0D.
  mllp.write(wire.substr(0, 1));
  mllp.write(wire.substr(1, 40));
  mllp.write(wire.substr(41, wire.size() - 42));
  mllp.write(wire.substr(wire.size() - 1));
  auto acks = mllp.read(1);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(ack_field(acks[0], "MSA", 1), "AA") << acks[0];
  EXPECT_EQ(ack_field(acks[0], "MSA", 2), "INT-A01-1");
  EXPECT_EQ(ack_field(acks[0], "MSH", 5), "LegacyADT");
  EXPECT_EQ(ack_field(acks[0], "MSH", 9, 1), "ACK");
  EXPECT_EQ(ack_field(acks[0], "MSH", 9, 2), "A01");

  // Acknowledged means committed: the Patient is there, mapped by hand-worked rules.
  auto found = patients("urn:oid:1.2.840.999.1|P-1001");
  ASSERT_EQ(found.size(), 1u);
  const Value& p = found[0];
  EXPECT_EQ(string_at(p, "identifier[0].system"), "urn:oid:1.2.840.999.1");
  EXPECT_EQ(string_at(p, "identifier[0].value"), "P-1001");
  EXPECT_EQ(string_at(p, "identifier[0].type.coding[0].code"), "MR");
  EXPECT_EQ(string_at(p, "name[0].use"), "official");
  EXPECT_EQ(string_at(p, "name[0].family"), "Lovelace");
  EXPECT_EQ(string_at(p, "name[0].given[0]"), "Ada");
  EXPECT_EQ(string_at(p, "name[0].given[1]"), "Augusta");
  EXPECT_EQ(string_at(p, "name[0].prefix[0]"), "Lady");
  EXPECT_EQ(string_at(p, "birthDate"), "1975-12");  // partial precision kept
  EXPECT_EQ(string_at(p, "gender"), "female");
  EXPECT_EQ(string_at(p, "address[0].line[0]"), "12 St James Sq");
  EXPECT_EQ(string_at(p, "address[0].city"), "London");
  EXPECT_EQ(string_at(p, "address[0].postalCode"), "SW1Y 4JH");
  EXPECT_EQ(string_at(p, "address[0].use"), "home");
  EXPECT_EQ(string_at(p, "telecom[0].value"), "+44 (20) 79460000");
  EXPECT_EQ(string_at(p, "telecom[0].use"), "home");
  EXPECT_EQ(string_at(p, "meta.versionId"), "1");
}

TEST_F(Hl7v2MllpTest, SeveralFramesInOneWriteAreAnsweredInOrderAndDuplicatesNotProcessedTwice) {
  const char* kAnswered = "caduceus_hl7_inbound_answered_total{outcome=";
  auto counters = [&] {
    return std::vector<long long>{
        metric("caduceus_hl7_inbound_received_total"), metric(kAnswered + std::string("\"processed\"}")),
        metric(kAnswered + std::string("\"rejected\"}")), metric(kAnswered + std::string("\"duplicate\"}")),
        metric(kAnswered + std::string("\"error\"}"))};
  };
  const std::vector<long long> before = counters();
  ASSERT_GE(before[0], 0) << "the inbound counters are in /metrics";
  MllpClient mllp(mllp_port());
  std::string first = adt("A04", "INT-DUP-1", "P-2002^^^CityHosp&1.2.840.999.1&ISO^MR||Hopper^Grace||19061209|F");
  std::string ack1 = mllp.exchange(first);
  ASSERT_EQ(ack_field(ack1, "MSA", 1), "AA") << ack1;
  std::string mfn =  // (a type we do not take: master files)
      "MSH|^~\\&|LegacyLab|LAB|CADUCEUS|HOSP|20240301||MFN^M02|INT-MFN-1|P|2.5.1\rMFI|PRA\r";
  std::string a08 =
      adt("A08", "INT-DUP-2", "P-2002^^^CityHosp&1.2.840.999.1&ISO^MR||Hopper^Grace^Brewster||19061209|F");
  // The duplicate, an unsupported type and an update, in one write.
  mllp.write(MllpFramer::wrap(first) + MllpFramer::wrap(mfn) + MllpFramer::wrap(a08));
  auto acks = mllp.read(3);
  ASSERT_EQ(acks.size(), 3u);
  EXPECT_EQ(acks[0], ack1);  // the stored ACK, sent again
  EXPECT_EQ(ack_field(acks[1], "MSA", 1), "AR");
  EXPECT_EQ(ack_field(acks[1], "MSA", 2), "INT-MFN-1");
  EXPECT_EQ(ack_field(acks[1], "ERR", 3), "200");
  EXPECT_NE(ack_field(acks[1], "ERR", 8).find("not supported yet"), std::string::npos);
  EXPECT_EQ(ack_field(acks[2], "MSA", 1), "AA");
  EXPECT_EQ(ack_field(acks[2], "MSA", 2), "INT-DUP-2");
  // One Patient: version 1 from the A04, version 2 from the A08; the duplicate added nothing.
  auto found = patients("urn:oid:1.2.840.999.1|P-2002");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(string_at(found[0], "meta.versionId"), "2");
  EXPECT_EQ(string_at(found[0], "name[0].given[1]"), "Brewster");
  // Our control ids are unique.
  EXPECT_NE(ack_field(ack1, "MSH", 10), ack_field(acks[1], "MSH", 10));
  EXPECT_NE(ack_field(acks[1], "MSH", 10), ack_field(acks[2], "MSH", 10));
  // /metrics counted them: 4 received; 2 processed (the A04, the A08), 1 rejected (MFN), 1 duplicate, no error.
  // (A message is counted just after its last acknowledgement is sent: poll until the four are, 10 s at most.)
  std::vector<long long> after = counters();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto answered = [&] {
    return after[1] + after[2] + after[3] + after[4] - before[1] - before[2] - before[3] - before[4];
  };
  while (answered() < 4 && std::chrono::steady_clock::now() < deadline) after = counters();
  EXPECT_EQ(after[0] - before[0], 4);
  EXPECT_EQ(after[1] - before[1], 2);
  EXPECT_EQ(after[2] - before[2], 1);
  EXPECT_EQ(after[3] - before[3], 1);
  EXPECT_EQ(after[4] - before[4], 0);
}

TEST_F(Hl7v2MllpTest, MalformedMessagesGetErrorsWithTheirPositionAndTheConnectionStaysUsable) {
  MllpClient mllp(mllp_port());
  std::string bad_date =
      mllp.exchange(adt("A01", "INT-BAD-1", "P-3003^^^CityHosp&1.2.840.999.1&ISO^MR||Doe^J||31.12.1990"));
  EXPECT_EQ(ack_field(bad_date, "MSA", 1), "AE") << bad_date;
  EXPECT_EQ(ack_field(bad_date, "MSA", 2), "INT-BAD-1");
  EXPECT_EQ(ack_field(bad_date, "ERR", 2, 1), "PID");
  EXPECT_EQ(ack_field(bad_date, "ERR", 2, 3), "7");
  EXPECT_EQ(ack_field(bad_date, "ERR", 3), "102");
  EXPECT_TRUE(patients("urn:oid:1.2.840.999.1|P-3003").empty());

  std::string no_msh = mllp.exchange("PID|1||P-3004\rPV1|1\r");
  EXPECT_EQ(ack_field(no_msh, "MSA", 1), "AR") << no_msh;
  EXPECT_EQ(ack_field(no_msh, "ERR", 2), "MSH");

  std::string bad_encoding = mllp.exchange("MSH|^~|X|Y\r");
  EXPECT_EQ(ack_field(bad_encoding, "MSA", 1), "AR");
  EXPECT_EQ(ack_field(bad_encoding, "ERR", 2, 3), "2");  // MSH-2

  // Bytes that are not MLLP are dropped; a frame over the cap (64 KiB here) is answered AR.
  mllp.write("GET / HTTP/1.1\r\n\r\n");
  std::string big = adt("A01", "INT-BIG-1", "P-3005^^^CityHosp&1.2.840.999.1&ISO^MR||" + std::string(70000, 'x'));
  std::string over = mllp.exchange(big);
  EXPECT_EQ(ack_field(over, "MSA", 1), "AR") << over.substr(0, 300);
  EXPECT_EQ(ack_field(over, "MSA", 2), "INT-BIG-1");

  // Still usable.
  std::string ok = mllp.exchange(adt("A01", "INT-BAD-2", "P-3006^^^CityHosp&1.2.840.999.1&ISO^MR||Doe^J||1990"));
  EXPECT_EQ(ack_field(ok, "MSA", 1), "AA") << ok;
  EXPECT_EQ(patients("urn:oid:1.2.840.999.1|P-3006").size(), 1u);
}

TEST_F(Hl7v2MllpTest, EnhancedModeSendsCommitThenApplicationAck) {
  MllpClient mllp(mllp_port());
  mllp.write(MllpFramer::wrap(
      adt("A31", "INT-ENH-1", "P-4004^^^CityHosp&1.2.840.999.1&ISO^MR||Curie^Marie||18671107|F", "|||AL|AL")));
  auto acks = mllp.read(2);
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(ack_field(acks[0], "MSA", 1), "CA");
  EXPECT_EQ(ack_field(acks[0], "MSA", 2), "INT-ENH-1");
  EXPECT_EQ(ack_field(acks[1], "MSA", 1), "AA");
  EXPECT_EQ(ack_field(acks[1], "MSA", 2), "INT-ENH-1");
  EXPECT_EQ(patients("urn:oid:1.2.840.999.1|P-4004").size(), 1u);
}

TEST_F(Hl7v2MllpTest, EverySampleMessageIsAnsweredOverOneConnection) {
  namespace fs = std::filesystem;
  MllpClient mllp(mllp_port());
  std::size_t aa = 0, ar = 0, files = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(CADUCEUS_TEST_DATA) / "hl7v2")) {
    if (entry.path().extension() != ".hl7") continue;
    ++files;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    std::string raw = text.str();
    auto m = adapters::hl7v2::parse(raw);
    ASSERT_TRUE(m.has_value()) << entry.path();
    // Each its own control id (several samples share one), and original mode, for exactly one answer each.
    std::string stem = "SAMPLE-" + entry.path().stem().string();
    raw.replace(raw.find("|" + m->control_id + "|"), m->control_id.size() + 2, "|" + stem + "|");
    if (!m->accept_ack.empty() || !m->application_ack.empty()) {  // MSH-15 and MSH-16 emptied
      std::size_t msh_end = raw.find_first_of("\r\n");
      std::vector<std::string> fields;
      std::stringstream line(raw.substr(0, msh_end));
      for (std::string f; std::getline(line, f, '|');) fields.push_back(f);
      for (std::size_t i : {std::size_t{14}, std::size_t{15}})
        if (i < fields.size()) fields[i].clear();
      std::string joined;
      for (std::size_t i = 0; i < fields.size(); ++i) joined += (i ? "|" : "") + fields[i];
      raw.replace(0, msh_end, joined);
    }
    std::string ack = mllp.exchange(raw);
    std::string code = ack_field(ack, "MSA", 1);
    EXPECT_EQ(ack_field(ack, "MSA", 2), stem);
    EXPECT_TRUE(code == "AA" || code == "AR") << entry.path() << "\n" << ack;
    ++(code == "AA" ? aa : ar);
  }
  EXPECT_EQ(files, 139u);
  EXPECT_EQ(aa, 26u + 30u);  // ADT (26); ORU, ORM, OML, RDE^O11, SIU S12-S15/S26 (30)
  EXPECT_EQ(ar, 139u - 26u - 30u);
}

TEST_F(Hl7v2MllpTest, ManyConnectionsAtOnce) {
  std::vector<std::unique_ptr<MllpClient>> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(std::make_unique<MllpClient>(mllp_port()));
  for (int i = 0; i < 8; ++i)
    clients[i]->write(MllpFramer::wrap(
        adt("A01", "INT-MANY-" + std::to_string(i),
            "M-" + std::to_string(i) + "^^^CityHosp&1.2.840.999.1&ISO^MR||Many^" + std::to_string(i))));
  for (int i = 0; i < 8; ++i) {
    auto acks = clients[i]->read(1);
    ASSERT_EQ(acks.size(), 1u);
    EXPECT_EQ(ack_field(acks[0], "MSA", 1), "AA");
    EXPECT_EQ(ack_field(acks[0], "MSA", 2), "INT-MANY-" + std::to_string(i));
  }
  EXPECT_EQ(patients("urn:oid:1.2.840.999.1|M-5").size(), 1u);
}

// Orders, results, prescriptions and appointments over MLLP: each message answered AA once its resources are
// committed, found over HTTP by their identifiers, references resolved to the stored resources, later messages
// about the same order or appointment updating instead of adding.
class Hl7v2ClinicalMllpTest : public Hl7v2MllpTest {
 protected:
  // A vendored sample with its own control id.
  static std::string sample(const std::string& name, const std::string& control) {
    std::ifstream in(std::filesystem::path(CADUCEUS_TEST_DATA) / "hl7v2" / name, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    std::string raw = text.str();
    auto m = adapters::hl7v2::parse(raw);
    if (!m) throw std::runtime_error("unparsable sample " + name);
    raw.replace(raw.find("|" + m->control_id + "|"), m->control_id.size() + 2, "|" + control + "|");
    return raw;
  }
  std::vector<Value> search(const std::string& type, const std::string& query) {
    Response r = client().get(path(type + "?" + query));
    EXPECT_EQ(r.status, 200) << r.summary();
    std::vector<Value> out;
    if (auto v = r.json())
      if (const Value* entries = v->find("entry"))
        for (const Value& e : entries->items())
          if (const Value* res = e.find("resource")) out.push_back(*res);
    return out;
  }
};

TEST_F(Hl7v2ClinicalMllpTest, OrderThenResultsAreStoredLinkedAndSearchable) {
  MllpClient mllp(mllp_port());
  std::string ack = mllp.exchange(sample("LAB-ORM-1.hl7", "INT-ORM-1"));
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  auto patients_found = search("Patient", "identifier=10006579");
  ASSERT_EQ(patients_found.size(), 1u);
  std::string patient = "Patient/" + string_at(patients_found[0], "id");
  auto orders = search("ServiceRequest", "identifier=88502218");
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_EQ(string_at(orders[0], "status"), "active");
  EXPECT_EQ(string_at(orders[0], "subject.reference"), patient);
  EXPECT_EQ(string_at(orders[0], "code.coding[0].code"), "24317-0");
  EXPECT_EQ(string_at(orders[0], "occurrenceDateTime"),
            "2014-10-06T06:44:00+00:00");  // no offset: the interface zone, UTC by default
  std::string order = "ServiceRequest/" + string_at(orders[0], "id");

  // The results of that order (and of another), in one message: one transaction.
  ack = mllp.exchange(sample("LAB-ORU-1.hl7", "INT-ORU-1"));
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  EXPECT_EQ(search("Patient", "identifier=10006579").size(), 1u);
  orders = search("ServiceRequest", "identifier=88502218");
  ASSERT_EQ(orders.size(), 1u);  // the same order, updated by the result
  EXPECT_EQ("ServiceRequest/" + string_at(orders[0], "id"), order);
  EXPECT_EQ(string_at(orders[0], "meta.versionId"), "2");
  EXPECT_EQ(string_at(orders[0], "status"), "completed");  // OBR-25 F
  auto reports = search("DiagnosticReport", "identifier=82503246");
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(string_at(reports[0], "status"), "final");
  EXPECT_EQ(string_at(reports[0], "basedOn[0].reference"), order);
  EXPECT_EQ(string_at(reports[0], "subject.reference"), patient);
  EXPECT_EQ(size_at(reports[0], "result"), 5u);
  auto rbc = search("Observation", "code=" + url_encode("http://loinc.org|11273-0"));
  ASSERT_EQ(rbc.size(), 1u);
  EXPECT_EQ(string_at(rbc[0], "valueQuantity.value"), "4.06");
  EXPECT_EQ(string_at(rbc[0], "valueQuantity.unit"), "tera.l-1");
  EXPECT_EQ(string_at(rbc[0], "status"), "preliminary");
  EXPECT_EQ(string_at(rbc[0], "effectiveDateTime"), "2014-10-06T06:27:00+07:00");
  EXPECT_EQ(string_at(rbc[0], "basedOn[0].reference"), order);
  auto specimens = search("Specimen", "identifier=SpecimenID");
  ASSERT_EQ(specimens.size(), 1u);
  EXPECT_EQ(string_at(rbc[0], "specimen.reference"), "Specimen/" + string_at(specimens[0], "id"));
  // The report lists the observation, by its stored id.
  bool listed = false;
  for (std::size_t i = 0; i < 5; ++i)
    listed = listed || string_at(reports[0], "result[" + std::to_string(i) + "].reference") ==
                           "Observation/" + string_at(rbc[0], "id");
  EXPECT_TRUE(listed);
  EXPECT_EQ(search("Observation", "subject=" + url_encode(patient) + "&_count=100").size(), 10u);
  // A result for a field that does not fit: AE naming it, nothing stored.
  ack = mllp.exchange(
      "MSH|^~\\&|Lab|L|C|D|20240301||ORU^R01|INT-ORU-BAD|P|2.5.1\rPID|1||MRN-X\rOBR|1||F-X|1^X^L\r"
      "OBX|1|NM|2^Y^L||12,5||||||F\r");
  EXPECT_EQ(ack_field(ack, "MSA", 1), "AE") << ack;
  EXPECT_EQ(ack_field(ack, "ERR", 2, 1), "OBX");
  EXPECT_EQ(ack_field(ack, "ERR", 2, 3), "5");
  EXPECT_EQ(ack_field(ack, "ERR", 3), "102");
  EXPECT_TRUE(search("Patient", "identifier=MRN-X").empty());
}

TEST_F(Hl7v2ClinicalMllpTest, PrescriptionAndAppointmentLifecycle) {
  MllpClient mllp(mllp_port());
  std::string ack = mllp.exchange(sample("RDE-O11-01.hl7", "INT-RDE-1"));
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  auto prescriptions = search("MedicationRequest", "identifier=1163422591");
  ASSERT_EQ(prescriptions.size(), 1u);
  const Value& rx = prescriptions[0];
  EXPECT_EQ(string_at(rx, "status"), "active");
  EXPECT_EQ(string_at(rx, "medicationCodeableConcept.coding[0].system"), "http://hl7.org/fhir/sid/ndc");
  EXPECT_EQ(string_at(rx, "medicationCodeableConcept.coding[0].code"), "0143963401");
  EXPECT_EQ(string_at(rx, "dosageInstruction[0].route.coding[0].code"), "IV");
  EXPECT_EQ(string_at(rx, "dosageInstruction[0].doseAndRate[0].doseQuantity.value"), "5");
  EXPECT_EQ(string_at(rx, "dispenseRequest.quantity.value"), "3");
  EXPECT_EQ(string_at(rx, "dispenseRequest.numberOfRepeatsAllowed"), "12");
  auto patients_found = search("Patient", "identifier=PATID1234");
  ASSERT_EQ(patients_found.size(), 1u);
  EXPECT_EQ(string_at(rx, "subject.reference"), "Patient/" + string_at(patients_found[0], "id"));

  // Booked, rescheduled (a new start), cancelled: one Appointment, three versions.
  ack = mllp.exchange(sample("SIU-S12-01.hl7", "INT-SIU-12"));
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  auto appointments = search("Appointment", "identifier=36996");
  ASSERT_EQ(appointments.size(), 1u);
  EXPECT_EQ(string_at(appointments[0], "status"), "booked");
  EXPECT_EQ(string_at(appointments[0], "start"), "2021-09-24T09:30:00+02:15");
  EXPECT_EQ(string_at(appointments[0], "participant[0].actor.reference"),
            "Patient/" + string_at(patients_found[0], "id"));
  EXPECT_EQ(string_at(appointments[0], "participant[3].actor.display"), "Robert C GE");
  std::string s13 = sample("SIU-S13-01.hl7", "INT-SIU-13");
  std::string old_start = "TQ1|||||||20210924093000+0215|20210924102000+0215";
  ASSERT_NE(s13.find(old_start), std::string::npos);
  s13.replace(s13.find(old_start), old_start.size(), "TQ1|||||||20210925140000+0215|20210925145000+0215");
  ack = mllp.exchange(s13);
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  appointments = search("Appointment", "identifier=36996");
  ASSERT_EQ(appointments.size(), 1u);
  EXPECT_EQ(string_at(appointments[0], "start"), "2021-09-25T14:00:00+02:15");
  EXPECT_EQ(string_at(appointments[0], "meta.versionId"), "2");
  ack = mllp.exchange(sample("SIU-S15-01.hl7", "INT-SIU-15"));
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  appointments = search("Appointment", "identifier=36996");
  ASSERT_EQ(appointments.size(), 1u);
  EXPECT_EQ(string_at(appointments[0], "status"), "cancelled");
  EXPECT_EQ(string_at(appointments[0], "meta.versionId"), "3");
  EXPECT_EQ(search("Appointment", "status=cancelled").size(), 1u);
}

}  // namespace
}  // namespace caduceus::test
