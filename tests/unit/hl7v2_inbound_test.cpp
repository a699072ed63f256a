// HL7 v2 to FHIR (PID -> Patient), and the inbound processor over a real SQLite store: stored before acknowledged,
// duplicates answered from the store, AR for what is not supported, every sample message answered.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "caduceus/adapters/hl7v2/inbound.hpp"
#include "caduceus/adapters/hl7v2/mapping.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/custom_search.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/search_query.hpp"
#include "test_server.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

namespace fs = std::filesystem;

const char* kAdt =
    "MSH|^~\\&|SendApp|SendFac|RecvApp|RecvFac|20240102030405||ADT^A04|CTRL1|P|2.5.1\r"
    "EVN|A04|20240102\r"
    "PID|1||123^^^Hosp&1.2.3&ISO^MR~456^^^SSA^SS||Doe^John^Q^Jr^Dr^^L||19800115|M|||"
    "1 Main St^Apt 2^Springfield^IL^62701^USA^H||^PRN^PH^^1^217^5551234~^NET^Internet^john@example.org|"
    "^WPN^PH^^^217^5550000^12\r"
    "PV1|1|O\r";

TEST(Hl7v2Mapping, PidToPatient) {
  auto m = parse(kAdt);
  ASSERT_TRUE(m.has_value());
  Mapping out = map_adt_patient(*m);
  ASSERT_TRUE(out.problems.empty()) << out.problems[0].message;
  ASSERT_EQ(out.resources.size(), 1u);
  EXPECT_EQ(out.resources[0].type, "Patient");
  EXPECT_EQ(out.resources[0].criteria,
            (std::vector<std::pair<std::string, std::string>>{{"identifier", "urn:oid:1.2.3|123"}}));
  EXPECT_EQ(fhir::json::write(out.resources[0].resource),
            R"({"resourceType":"Patient","identifier":[)"
            R"({"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},)"
            R"("system":"urn:oid:1.2.3","value":"123","assigner":{"display":"Hosp"}},)"
            R"({"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS"}]},)"
            R"("value":"456","assigner":{"display":"SSA"}}],"active":true,)"
            R"("name":[{"use":"official","family":"Doe","given":["John","Q"],"prefix":["Dr"],"suffix":["Jr"]}],)"
            R"("telecom":[{"system":"phone","value":"+1 (217) 5551234","use":"home"},)"
            R"({"system":"email","value":"john@example.org","use":"home"},)"
            R"({"system":"phone","value":"(217) 5550000 ext. 12","use":"work"}],)"
            R"("gender":"male","birthDate":"1980-01-15",)"
            R"("address":[{"use":"home","line":["1 Main St","Apt 2"],"city":"Springfield","state":"IL",)"
            R"("postalCode":"62701","country":"USA"}]})");
}

TEST(Hl7v2Mapping, DatesKeepTheirPrecision) {
  EXPECT_EQ(v2_date_to_fhir_date("1980"), "1980");
  EXPECT_EQ(v2_date_to_fhir_date("198002"), "1980-02");
  EXPECT_EQ(v2_date_to_fhir_date("19800229"), "1980-02-29");
  EXPECT_EQ(v2_date_to_fhir_date("198001151030+0100"), "1980-01-15");
  EXPECT_EQ(v2_date_to_fhir_date("20240101120000.1234-0500"), "2024-01-01");
  EXPECT_FALSE(v2_date_to_fhir_date("19810229").has_value());  // not a leap year
  EXPECT_FALSE(v2_date_to_fhir_date("19801301").has_value());
  EXPECT_FALSE(v2_date_to_fhir_date("1980011").has_value());
  EXPECT_FALSE(v2_date_to_fhir_date("19800115+01").has_value());
  EXPECT_FALSE(v2_date_to_fhir_date("yesterday").has_value());
  EXPECT_FALSE(v2_date_to_fhir_date("198001152500").has_value());
}

TEST(Hl7v2Mapping, ProblemsNameTheirField) {
  auto no_id = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\rPID|1||\rPV1|1\r");
  ASSERT_TRUE(no_id.has_value());
  Mapping a = map_adt_patient(*no_id);
  ASSERT_EQ(a.problems.size(), 1u);
  EXPECT_EQ(a.problems[0].where.text(), "PID-3.1");
  EXPECT_EQ(a.problems[0].code, ErrorCode::kRequiredFieldMissing);
  auto bad_date = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\rPID|1||9||X||19801341\rPV1|1\r");
  Mapping b = map_adt_patient(*bad_date);
  ASSERT_EQ(b.problems.size(), 1u);
  EXPECT_EQ(b.problems[0].where.text(), "PID-7");
  EXPECT_EQ(b.problems[0].code, ErrorCode::kDataType);
  EXPECT_TRUE(b.resources.empty());
  // A sex outside table 0001 is left out with a warning; the patient is still written.
  auto odd_sex = parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\rPID|1||9||X|||Q\rPV1|1\r");
  Mapping c = map_adt_patient(*odd_sex);
  ASSERT_EQ(c.problems.size(), 1u);
  EXPECT_TRUE(c.problems[0].warning);
  ASSERT_EQ(c.resources.size(), 1u);
  EXPECT_EQ(c.resources[0].resource.find("gender"), nullptr);
}

using caduceus::test::read_file;

fs::path samples_dir() {
  return fs::path(CADUCEUS_TEST_DATA) / "hl7v2";
}

TEST(Hl7v2Samples, EveryVendoredSampleParses) {
  std::size_t count = 0;
  for (const auto& entry : fs::directory_iterator(samples_dir())) {
    if (entry.path().extension() != ".hl7") continue;
    ++count;
    auto m = parse(read_file(entry.path()));
    ASSERT_TRUE(m.has_value()) << entry.path().filename() << ": " << m.error().message;
    EXPECT_FALSE(m->type.empty()) << entry.path().filename();
    EXPECT_FALSE(m->control_id.empty()) << entry.path().filename();
    // The messages we process fit their structure.
    if (find_mapper(m->type, m->trigger) != nullptr) {
      EXPECT_TRUE(m->structure_known) << entry.path().filename();
      for (const Problem& p : m->problems) EXPECT_TRUE(p.warning) << entry.path().filename() << ": " << p.message;
    }
  }
  EXPECT_EQ(count, 139u);
}

// A processor over a throwaway SQLite store, with the R4 search parameters.
class InboundTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto defs = resources::Definitions::load(conformance::r4_model_json());
    ASSERT_TRUE(defs.has_value());
    defs_ = *defs;
    checker_ = std::make_unique<resources::StructureChecker>(*defs_);
    auto registry = resources::SearchParameterRegistry::load(conformance::r4_search_parameters_json(),
                                                             conformance::r4_compartments_json());
    ASSERT_TRUE(registry.has_value());
    auto active = resources::ActiveSearchParameters::create(*defs_, *registry);
    ASSERT_TRUE(active.has_value());
    active_ = std::move(*active);
    dir_ = fs::temp_directory_path() / ("caduceus-hl7-test-" + resources::new_resource_id());
    fs::create_directories(dir_);
    resources::StoreOptions options;
    options.synchronous_full = false;
    auto s = resources::open_store("sqlite:" + (dir_ / "test.db").string(), options);
    ASSERT_TRUE(s.has_value());
    store_ = std::move(*s);
    repo_ = std::make_unique<resources::Repository>(*store_, *defs_, *checker_, *active_);
    processor_ = std::make_unique<InboundProcessor>(*repo_, active_.get());
  }
  void TearDown() override {
    processor_.reset();
    repo_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // The acknowledgements sent for one message, once it is done.
  std::vector<std::string> send(std::string raw, bool oversize = false) {
    auto acks = std::make_shared<std::vector<std::string>>();
    std::promise<void> finished;
    processor_->handle(
        std::move(raw), [acks](std::string a) { acks->push_back(std::move(a)); }, [&] { finished.set_value(); },
        oversize);
    finished.get_future().wait();
    return *acks;
  }

  static std::string field(const std::string& ack, std::string_view segment, std::size_t n, std::size_t c = 1) {
    auto m = parse(ack);
    if (!m) return "<unparsable ack>";
    const Segment* s = m->first(segment);
    return s ? s->get(n, c) : std::string();
  }

  std::vector<resources::VersionRecord> patients(const std::string& identifier) {
    auto q = resources::parse_search("Patient", {{"identifier", identifier}}, *active_->search(), *defs_);
    EXPECT_TRUE(q.has_value());
    auto page = store_->search(resources::kDefaultTenant, *q);
    EXPECT_TRUE(page.has_value());
    return page ? page->entries : std::vector<resources::VersionRecord>{};
  }

  std::optional<resources::InboundMessageRecord> stored(const std::string& control_id) {
    return stored("SendApp", "SendFac", control_id);
  }
  std::optional<resources::InboundMessageRecord> stored(const std::string& app, const std::string& facility,
                                                        const std::string& control_id) {
    std::optional<resources::InboundMessageRecord> out;
    auto r = store_->write([&](resources::Transaction& txn) -> fhir::Result<void> {
      auto found = txn.find_inbound_message(resources::kDefaultTenant, app, facility, control_id);
      if (!found) return std::unexpected(found.error());
      out = *found;
      return {};
    });
    EXPECT_TRUE(r.has_value());
    return out;
  }

  std::shared_ptr<const resources::Definitions> defs_;
  std::unique_ptr<resources::StructureChecker> checker_;
  std::unique_ptr<resources::ActiveSearchParameters> active_;
  fs::path dir_;
  std::unique_ptr<resources::Store> store_;
  std::unique_ptr<resources::Repository> repo_;
  std::unique_ptr<InboundProcessor> processor_;
};

TEST_F(InboundTest, AdtIsStoredMappedAndAcknowledgedOnce) {
  auto acks = send(kAdt);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(field(acks[0], "MSA", 1), "AA");
  EXPECT_EQ(field(acks[0], "MSA", 2), "CTRL1");
  EXPECT_EQ(field(acks[0], "MSH", 3), "RecvApp");
  EXPECT_EQ(field(acks[0], "MSH", 5), "SendApp");
  EXPECT_EQ(field(acks[0], "MSH", 9, 1), "ACK");
  auto found = patients("urn:oid:1.2.3|123");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].version, 1);
  auto rec = stored("CTRL1");
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, "processed");
  EXPECT_EQ(rec->raw, kAdt);
  EXPECT_EQ(rec->ack, acks[0]);
  // The patient, then the message's Provenance (PV1 has no visit number: no Encounter).
  EXPECT_EQ(rec->resources, (std::vector<std::string>{"Patient/" + found[0].id + "/_history/1",
                                                      "Provenance/hl7v2-" + std::to_string(rec->id) + "/_history/1"}));

  // The same message again: the same acknowledgement, nothing written.
  auto again = send(kAdt);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0], acks[0]);
  ASSERT_EQ(patients("urn:oid:1.2.3|123").size(), 1u);
  EXPECT_EQ(patients("urn:oid:1.2.3|123")[0].version, 1);

  // A new message (A08) about the same patient updates it: a second version, no second patient.
  std::string a08 = kAdt;
  a08.replace(a08.find("ADT^A04|CTRL1"), 13, "ADT^A08|CTRL2");
  a08.replace(a08.find("Doe^John"), 8, "Doe^Jack");
  auto update = send(a08);
  EXPECT_EQ(field(update[0], "MSA", 1), "AA");
  found = patients("urn:oid:1.2.3|123");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].version, 2);
  EXPECT_NE(found[0].body.find("\"Jack\""), std::string::npos);
}

TEST_F(InboundTest, RejectionsAndErrors) {
  auto oru = send("MSH|^~\\&|SendApp|SendFac|R|F|2024||MFN^M02|U1|P|2.5.1\rMFI|PRA\r");  // a type we do not take
  ASSERT_EQ(oru.size(), 1u);
  EXPECT_EQ(field(oru[0], "MSA", 1), "AR");
  EXPECT_EQ(field(oru[0], "MSA", 2), "U1");
  EXPECT_EQ(field(oru[0], "ERR", 3), "200");
  EXPECT_EQ(field(oru[0], "ERR", 2), "MSH");
  EXPECT_EQ(stored("U1")->status, "rejected");

  auto a02 = send("MSH|^~\\&|SendApp|SendFac|R|F|2024||ADT^A17|U2|P|2.5.1\rEVN|A17\rPID|1||7\rPV1|1\r");
  EXPECT_EQ(field(a02[0], "MSA", 1), "AR");
  EXPECT_EQ(field(a02[0], "ERR", 3), "201");

  auto version = send("MSH|^~\\&|SendApp|SendFac|R|F|2024||ADT^A01|U3|P|3.0\rEVN|A01\rPID|1||7\rPV1|1\r");
  EXPECT_EQ(field(version[0], "MSA", 1), "AR");
  EXPECT_EQ(field(version[0], "ERR", 3), "203");

  auto processing = send("MSH|^~\\&|SendApp|SendFac|R|F|2024||ADT^A01|U4|X|2.5\rEVN|A01\rPID|1||7\rPV1|1\r");
  EXPECT_EQ(field(processing[0], "ERR", 3), "202");

  // A content error: AE with ERR naming the field, the raw message kept with its error.
  auto bad_date =
      send("MSH|^~\\&|SendApp|SendFac|R|F|2024||ADT^A01|U5|P|2.5\rEVN|A01\rPID|1||7||X||2024-01-01\rPV1|1\r");
  EXPECT_EQ(field(bad_date[0], "MSA", 1), "AE");
  EXPECT_EQ(field(bad_date[0], "ERR", 2), "PID");
  EXPECT_EQ(field(bad_date[0], "ERR", 2, 3), "7");
  EXPECT_EQ(field(bad_date[0], "ERR", 3), "102");
  auto rec = stored("U5");
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, "error");
  EXPECT_NE(rec->error.find("PID-7"), std::string::npos);
  EXPECT_TRUE(patients("7").empty());

  // A segment out of place: processed, with a warning naming it.
  auto misplaced = send("MSH|^~\\&|SendApp|SendFac|R|F|2024||ADT^A01|U6|P|2.5\rEVN|A01\rPID|1||6\rPV1|1\rORC|NW\r");
  EXPECT_EQ(field(misplaced[0], "MSA", 1), "AA");
  EXPECT_EQ(field(misplaced[0], "ERR", 2), "ORC");
  EXPECT_EQ(field(misplaced[0], "ERR", 3), "100");
  EXPECT_EQ(field(misplaced[0], "ERR", 4), "W");
  EXPECT_NE(field(misplaced[0], "ERR", 8).find("segment 5"), std::string::npos);
  // A missing required segment (PV1) that the Patient does not need: AA, with a warning.
  auto no_pv1 = send("MSH|^~\\&|SendApp|SendFac|R|F|2024||ADT^A01|U7|P|2.5\rEVN|A01\rPID|1||7\r");
  EXPECT_EQ(field(no_pv1[0], "MSA", 1), "AA");
  EXPECT_EQ(field(no_pv1[0], "ERR", 2), "PV1");
  EXPECT_EQ(field(no_pv1[0], "ERR", 4), "W");
  EXPECT_EQ(patients("7").size(), 1u);

  // Not a message at all: AR with an empty MSA-2.
  auto junk = send("hello");
  ASSERT_EQ(junk.size(), 1u);
  EXPECT_EQ(field(junk[0], "MSA", 1), "AR");
  EXPECT_EQ(field(junk[0], "MSA", 2), "");
  EXPECT_EQ(field(junk[0], "ERR", 2), "MSH");

  auto big = send(std::string(kAdt).substr(0, 60), true);
  EXPECT_EQ(field(big[0], "MSA", 1), "AR");
  EXPECT_NE(field(big[0], "ERR", 8).find("frame size cap"), std::string::npos);
}

TEST_F(InboundTest, EnhancedModeCommitThenApplicationAck) {
  std::string msg = kAdt;
  msg.replace(msg.find("|2.5.1\r"), 7, "|2.5.1|||AL|AL\r");
  auto acks = send(msg);
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(field(acks[0], "MSA", 1), "CA");
  EXPECT_EQ(field(acks[0], "MSA", 2), "CTRL1");
  EXPECT_EQ(field(acks[1], "MSA", 1), "AA");
  EXPECT_NE(field(acks[0], "MSH", 10), field(acks[1], "MSH", 10));  // our control ids are unique
  EXPECT_EQ(patients("urn:oid:1.2.3|123").size(), 1u);
  EXPECT_EQ(stored("CTRL1")->status, "processed");
  // MSH-16 ER: no application ack on success; MSH-15 NE: no commit ack.
  std::string quiet = kAdt;
  quiet.replace(quiet.find("CTRL1"), 5, "CTRL9");
  quiet.replace(quiet.find("|2.5.1\r"), 7, "|2.5.1|||NE|ER\r");
  EXPECT_TRUE(send(quiet).empty());
  EXPECT_EQ(stored("CTRL9")->status, "processed");
}

TEST_F(InboundTest, EverySampleIsAnsweredAaOrAr) {
  std::size_t aa = 0, ar = 0;
  for (const auto& entry : fs::directory_iterator(samples_dir())) {
    if (entry.path().extension() != ".hl7") continue;
    std::string raw = read_file(entry.path());
    auto m = parse(raw);
    ASSERT_TRUE(m.has_value());
    bool supported = find_mapper(m->type, m->trigger) != nullptr;
    // Several samples share a sender and control id: each gets its own, so that none is taken for a duplicate.
    std::string control = "|" + m->control_id + "|";
    raw.replace(raw.find(control), control.size(), "|" + entry.path().stem().string() + "|");
    auto acks = send(raw);
    // What the sender asked for: original mode, one ACK; enhanced mode as MSH-15/16 say (NE|NE: none).
    bool enhanced = !m->accept_ack.empty() || !m->application_ack.empty();
    if (!enhanced) ASSERT_EQ(acks.size(), 1u) << entry.path().filename();
    for (const std::string& a : acks) {
      std::string code = field(a, "MSA", 1);
      EXPECT_EQ(field(a, "MSA", 2), entry.path().stem().string());
      if (supported)
        EXPECT_TRUE(code == "AA" || code == "CA") << entry.path().filename() << "\n" << a;
      else
        EXPECT_TRUE(code == "AR" || code == "CR") << entry.path().filename() << "\n" << a;
    }
    auto rec = stored(m->sending_application, m->sending_facility, entry.path().stem().string());
    ASSERT_TRUE(rec.has_value()) << entry.path().filename();
    EXPECT_EQ(rec->status, supported ? "processed" : "rejected") << entry.path().filename() << ": " << rec->error;
    ++(rec->status == "processed" ? aa : ar);
  }
  // ADT-A01-01/02, ADT01-23/28, ADT-A02-01/02, ADT-A03-01/02, ADT-A04-01/02, ADT04-23/251/28, ADT-A05-01/02,
  // ADT-A08-01/02, ADT-A11-01/02, ADT-A13-01/02, ADT-A31-01/02, ADT-A40-01/02, and MDM_01 (which is an ADT^A01
  // despite its name): 26. Orders and results: LAB-ORU-1/2, LRI_2.0-NG_CBC, ORU-R01-01, -RMGEAD (5), LAB-ORM-1,
  // ORM-O01-01..06, OML-O21-02 (an ORM^O01) (8), OML-O21-01/03, MDHHS-OML-O21-1/2 (4), RDE-O11-01/02 (2),
  // SIU-S12-01/02, S12_1, S13, S14, S15, S26 -01/02 (11): 30.
  EXPECT_EQ(aa, 26u + 30u);
  EXPECT_EQ(ar, 139u - 26u - 30u);
}

}  // namespace
}  // namespace caduceus::adapters::hl7v2
