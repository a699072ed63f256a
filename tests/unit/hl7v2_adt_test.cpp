// HL7 v2 ADT -> FHIR: the data types (dates in the interface's time zone, CWE), the concept maps against the IG's
// vendored CSVs, the resources of each event worked out by hand, A40 merges, the Provenance of every message, and
// AE for bad content; over a real SQLite store.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>

#include "caduceus/adapters/hl7v2/datatypes.hpp"
#include "caduceus/adapters/hl7v2/inbound.hpp"
#include "caduceus/adapters/hl7v2/mapping.hpp"
#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/custom_search.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/search_query.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

namespace fs = std::filesystem;
using fhir::json::Value;

// A segment from its non-empty fields: seg("PV1", {{2, "I"}, {19, "V1"}}) = "PV1||I|...|V1".
std::string seg(const std::string& name, const std::map<int, std::string>& fields) {
  std::string out = name;
  int last = fields.empty() ? 0 : fields.rbegin()->first;
  for (int i = 1; i <= last; ++i) {
    out += "|";
    if (auto it = fields.find(i); it != fields.end()) out += it->second;
  }
  return out + "\r";
}

std::string msh(const std::string& event, const std::string& control) {
  return "MSH|^~\\&|ADT1|HOSP|RECV|FAC|20240301101500||ADT^" + event + "|" + control + "|P|2.5.1\r";
}

// The sample admission of these tests: Jane Doe (MRN1), in ward W1, visit V100, her husband as next of kin, one
// insurance.
const std::string kPid =
    seg("PID", {{1, "1"}, {3, "MRN1^^^HOSP&1.2.3&ISO^MR"}, {5, "Doe^Jane"}, {7, "19700101"}, {8, "F"}});
const std::string kNk1 =
    seg("NK1", {{1, "1"}, {2, "Doe^John"}, {3, "SPO^Spouse^HL70063"}, {5, "^PRN^PH^^^555^1234"}, {15, "M"}});
std::string pv1(const std::string& cls, const std::map<int, std::string>& more = {}) {
  std::map<int, std::string> f{{1, "1"},
                               {2, cls},
                               {3, "W1^R2^B3^HOSP"},
                               {7, "1234^Welby^Marcus"},
                               {10, "MED"},
                               {14, "7"},
                               {19, "V100^^^HOSP&1.2.3.9&ISO^VN"},
                               {44, "202403011015"}};
  for (const auto& [k, v] : more) f[k] = v;
  return seg("PV1", f);
}
const std::string kPv2 = seg("PV2", {{3, "CHEST^Chest pain"}});
const std::string kIn1 = seg("IN1", {{1, "1"},
                                     {2, "PLAN7^Gold Plan"},
                                     {3, "INS1^^^HOSP"},
                                     {4, "Acme Insurance"},
                                     {12, "20240101"},
                                     {17, "SEL^Self^HL70063"}});

std::string a01(const std::string& control = "A01-1") {
  return msh("A01", control) + "EVN|A01|20240301101500\r" + kPid + kNk1 + pv1("I") + kPv2 + kIn1;
}

TimeZone paris() {
  auto tz = TimeZone::parse("Europe/Paris");
  EXPECT_TRUE(tz.has_value());
  return tz ? *tz : TimeZone();
}

TEST(Hl7v2Datatypes, DateTimesKeepPrecisionAndTakeTheInterfaceZone) {
  TimeZone utc;
  EXPECT_EQ(v2_datetime_to_fhir("2024", utc), "2024");
  EXPECT_EQ(v2_datetime_to_fhir("202403", utc), "2024-03");
  EXPECT_EQ(v2_datetime_to_fhir("20240315", utc), "2024-03-15");
  EXPECT_EQ(v2_datetime_to_fhir("2024031512", utc), "2024-03-15T12:00:00+00:00");
  // Paris is +01:00 in March before the last Sunday, +02:00 in July (daylight saving time).
  EXPECT_EQ(v2_datetime_to_fhir("202403151230", paris()), "2024-03-15T12:30:00+01:00");
  EXPECT_EQ(v2_datetime_to_fhir("20240715123045.12", paris()), "2024-07-15T12:30:45.12+02:00");
  // An offset in the text wins over the zone.
  EXPECT_EQ(v2_datetime_to_fhir("2024071512-0500", paris()), "2024-07-15T12:00:00-05:00");
  EXPECT_EQ(v2_datetime_to_fhir("20240715123045+0530", utc), "2024-07-15T12:30:45+05:30");
  EXPECT_FALSE(v2_datetime_to_fhir("20241315", utc).has_value());
  EXPECT_FALSE(v2_datetime_to_fhir("2024-03-15", utc).has_value());
  EXPECT_FALSE(v2_datetime_to_fhir("202403151261", utc).has_value());

  auto fixed = TimeZone::parse("+05:30");
  ASSERT_TRUE(fixed.has_value());
  EXPECT_EQ(fixed->offset_minutes(2024, 1, 1, 0, 0, 0), 330);
  EXPECT_EQ(TimeZone::parse("-0800")->offset_minutes(2024, 1, 1, 0, 0, 0), -480);
  EXPECT_EQ(v2_datetime_to_fhir("202401010930", *fixed), "2024-01-01T09:30:00+05:30");
  EXPECT_FALSE(TimeZone::parse("Mars/Olympus_Mons").has_value());
  EXPECT_FALSE(TimeZone::parse("+25:00").has_value());
  EXPECT_EQ(TimeZone::parse("America/New_York")->offset_minutes(2024, 1, 15, 8, 0, 0), -300);
}

TEST(Hl7v2Datatypes, CweBecomesCodeableConcept) {
  auto m = parse(msh("A08", "X") +
                 "ZZZ|140004^Chronic pharyngitis^SCT|M^Married|^^^^^^^^Free text|A1^One^L^B2^Two^HL70005\r");
  ASSERT_TRUE(m.has_value());
  const Segment& z = *m->first("ZZZ");
  EXPECT_EQ(fhir::json::write(*map_cwe(z, 1, 1)),
            R"({"coding":[{"system":"http://snomed.info/sct","code":"140004","display":"Chronic pharyngitis"}]})");
  EXPECT_EQ(
      fhir::json::write(*map_cwe(z, 2, 1, "http://terminology.hl7.org/CodeSystem/v2-0002")),
      R"({"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0002","code":"M","display":"Married"}]})");
  EXPECT_EQ(fhir::json::write(*map_cwe(z, 3, 1)), R"({"text":"Free text"})");
  // A local system ("L") is not a default one: no system; the alternate triplet is a second coding.
  EXPECT_EQ(fhir::json::write(*map_cwe(z, 4, 1, "http://x")),
            R"({"coding":[{"code":"A1","display":"One"},)"
            R"({"system":"http://terminology.hl7.org/CodeSystem/v2-0005","code":"B2","display":"Two"}]})");
  EXPECT_FALSE(map_cwe(z, 5, 1).has_value());
  EXPECT_EQ(coding_system_uri("LN"), "http://loinc.org");
  EXPECT_EQ(coding_system_uri("HL70203"), "http://terminology.hl7.org/CodeSystem/v2-0203");
  EXPECT_EQ(coding_system_uri("99ZZZ"), "");
}

// The rows (v2 code, FHIR code) of a vendored IG concept map.
std::vector<std::pair<std::string, std::string>> concept_map(const std::string& name) {
  fs::path path = fs::path(CADUCEUS_TEST_DATA) / ".." / ".." / "adapters" / "data" / "v2-to-fhir" / (name + ".csv");
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<std::pair<std::string, std::string>> rows;
  std::string line;
  for (int n = 0; std::getline(in, line); ++n) {
    if (n < 2) continue;  // the two header lines
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) cells.push_back(cell);
    if (cells.size() > 6 && !cells[0].empty() && !cells[6].empty()) rows.emplace_back(cells[0], cells[6]);
  }
  return rows;
}

const Value* find_resource(const Mapping& out, std::string_view type) {
  for (const MappedResource& r : out.resources)
    if (r.type == type) return &r.resource;
  return nullptr;
}

TEST(Hl7v2AdtMapping, ConceptMapsFollowTheGuide) {
  for (const auto& [v2, fhir] : concept_map("AdministrativeSex")) EXPECT_EQ(administrative_gender(v2), fhir) << v2;
  // Event[EncounterStatus]: every event we map (A08's "unknown" aside: an update keeps what PV1 says).
  std::size_t checked = 0;
  for (const auto& [event, status] : concept_map("Event_EncounterStatus")) {
    if (event == "A08" || find_mapper("ADT", event) == nullptr) continue;
    auto m = parse(msh(event, "C") + kPid + pv1("I", {{45, event == "A03" ? "202403051200" : ""}}));
    ASSERT_TRUE(m.has_value());
    Mapping out = map_adt(*m);
    ASSERT_TRUE(out.problems.empty()) << event << ": " << out.problems[0].message;
    const Value* e = find_resource(out, "Encounter");
    ASSERT_NE(e, nullptr) << event;
    EXPECT_EQ(e->find("status")->text(), status) << event;
    ++checked;
  }
  EXPECT_EQ(checked, 7u);  // A01 A02 A03 A04 A05 A11 A13
  // PatientClass[EncounterClass] and, for an update without a discharge, PatientClass[EncounterStatus].
  auto statuses = concept_map("PatientClass_EncounterStatus");
  std::map<std::string, std::string> status_of(statuses.begin(), statuses.end());
  checked = 0;
  for (const auto& [cls, code] : concept_map("PatientClass_EncounterClass")) {
    if (cls.size() > 1) continue;  // the rows that only list v3 codes
    auto m = parse(msh("A08", "C") + kPid + pv1(cls));
    ASSERT_TRUE(m.has_value());
    Mapping out = map_adt(*m);
    const Value* e = find_resource(out, "Encounter");
    ASSERT_NE(e, nullptr) << cls;
    EXPECT_EQ(e->find("class")->find("code")->text(), code) << cls;
    bool v3 = cls == "E" || cls == "I" || cls == "O" || cls == "P";
    EXPECT_EQ(e->find("class")->find("system")->text(), v3 ? "http://terminology.hl7.org/CodeSystem/v3-ActCode"
                                                           : "http://terminology.hl7.org/CodeSystem/v2-0004");
    EXPECT_EQ(e->find("status")->text(), status_of.at(cls)) << cls;
    ++checked;
  }
  EXPECT_EQ(checked, 9u);
}

TEST(Hl7v2AdtMapping, A01YieldsPatientEncounterRelatedPersonCoverage) {
  auto m = parse(a01());
  ASSERT_TRUE(m.has_value());
  m->time_zone = paris();
  Mapping out = map_adt(*m);
  for (const Problem& p : out.problems) EXPECT_TRUE(p.warning) << p.where.text() << ": " << p.message;
  ASSERT_EQ(out.resources.size(), 4u);
  EXPECT_EQ(out.occurred, "2024-03-01T10:15:00+01:00");  // EVN-2, Paris time

  EXPECT_EQ(out.resources[0].type, "Patient");
  EXPECT_EQ(out.resources[0].local, "urn:hl7v2:patient");

  const MappedResource& enc = out.resources[1];
  EXPECT_EQ(enc.type, "Encounter");
  EXPECT_EQ(enc.criteria, (std::vector<std::pair<std::string, std::string>>{{"identifier", "urn:oid:1.2.3.9|V100"}}));
  EXPECT_EQ(fhir::json::write(enc.resource),
            R"({"resourceType":"Encounter","identifier":[)"
            R"({"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"VN"}]},)"
            R"("system":"urn:oid:1.2.3.9","value":"V100","assigner":{"display":"HOSP"}}],)"
            R"("status":"in-progress",)"
            R"("class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP",)"
            R"("display":"inpatient encounter"},)"
            R"("serviceType":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0069","code":"MED"}]},)"
            R"("subject":{"reference":"urn:hl7v2:patient"},)"
            R"("participant":[{"type":[{"coding":[{"system":)"
            R"("http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"ATND","display":"attender"}]}],)"
            R"("individual":{"identifier":{"value":"1234"},"display":"Marcus Welby"}}],)"
            R"("period":{"start":"2024-03-01T10:15:00+01:00"},)"
            R"("reasonCode":[{"coding":[{"code":"CHEST","display":"Chest pain"}]}],)"
            R"("hospitalization":{"admitSource":{"coding":[{"system":)"
            R"("http://terminology.hl7.org/CodeSystem/v2-0023","code":"7"}]}},)"
            R"("location":[{"location":{"display":"W1 R2 B3, HOSP"},"status":"active"}]})");

  const MappedResource& rp = out.resources[2];
  EXPECT_EQ(rp.type, "RelatedPerson");
  EXPECT_EQ(rp.criteria, (std::vector<std::pair<std::string, std::string>>{
                             {"patient", "urn:hl7v2:patient"}, {"name:exact", "Doe"}, {"name:exact", "John"}}));
  EXPECT_EQ(fhir::json::write(rp.resource),
            R"({"resourceType":"RelatedPerson","active":true,"patient":{"reference":"urn:hl7v2:patient"},)"
            R"("relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0063","code":"SPO",)"
            R"("display":"Spouse"}]}],"name":[{"family":"Doe","given":["John"]}],)"
            R"("telecom":[{"system":"phone","value":"(555) 1234","use":"home"}],"gender":"male"})");

  const MappedResource& cov = out.resources[3];
  EXPECT_EQ(cov.type, "Coverage");
  EXPECT_EQ(cov.criteria, (std::vector<std::pair<std::string, std::string>>{{"beneficiary", "urn:hl7v2:patient"},
                                                                            {"identifier", "PLAN7"}}));
  EXPECT_EQ(fhir::json::write(cov.resource),
            R"({"resourceType":"Coverage","identifier":[{"value":"PLAN7"}],"status":"active",)"
            R"("beneficiary":{"reference":"urn:hl7v2:patient"},)"
            R"("relationship":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0063","code":"SEL",)"
            R"("display":"Self"}]},"subscriber":{"reference":"urn:hl7v2:patient"},)"
            R"("period":{"start":"2024-01-01"},"payor":[{"identifier":{"value":"INS1"},"display":"Acme Insurance"}],)"
            R"("class":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/coverage-class",)"
            R"("code":"plan","display":"Plan"}]},"value":"PLAN7","name":"Gold Plan"}]})");
}

TEST(Hl7v2AdtMapping, EventsSetStatusLocationAndPeriod) {
  // A02: the new bed is active, the one the patient left (PV1-6) completed.
  auto m = parse(msh("A02", "T") + kPid + pv1("I", {{3, "W2^R9^B1^HOSP"}, {6, "W1^R2^B3^HOSP"}}));
  ASSERT_TRUE(m.has_value());
  Mapping out = map_adt(*m);
  const Value* e = find_resource(out, "Encounter");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(fhir::json::write(*e->find("location")),
            R"([{"location":{"display":"W2 R9 B1, HOSP"},"status":"active"},)"
            R"({"location":{"display":"W1 R2 B3, HOSP"},"status":"completed"}])");
  EXPECT_EQ(e->find("status")->text(), "in-progress");

  // A03: finished, period.end from PV1-45 (UTC by default), the location completed.
  m = parse(msh("A03", "D") + kPid + pv1("I", {{45, "202403051200"}, {36, "01^Home^HL70112"}}));
  out = map_adt(*m);
  e = find_resource(out, "Encounter");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->find("status")->text(), "finished");
  EXPECT_EQ(fhir::json::write(*e->find("period")),
            R"({"start":"2024-03-01T10:15:00+00:00","end":"2024-03-05T12:00:00+00:00"})");
  EXPECT_EQ(e->find("location")->items()[0].find("status")->text(), "completed");
  EXPECT_EQ(e->find("hospitalization")->find("dischargeDisposition")->find("coding")->items()[0].find("code")->text(),
            "01");
  // A03 without PV1-45: the end is when the event happened (EVN-2).
  m = parse(msh("A03", "D2") + "EVN|A03|202403061300\r" + kPid + pv1("I"));
  out = map_adt(*m);
  EXPECT_EQ(find_resource(out, "Encounter")->find("period")->find("end")->text(), "2024-03-06T13:00:00+00:00");

  // A13 (cancel discharge): in progress again, no end, no discharge disposition.
  m = parse(msh("A13", "CD") + kPid + pv1("I", {{45, "202403051200"}, {36, "01"}}));
  out = map_adt(*m);
  e = find_resource(out, "Encounter");
  EXPECT_EQ(e->find("status")->text(), "in-progress");
  EXPECT_EQ(fhir::json::write(*e->find("period")), R"({"start":"2024-03-01T10:15:00+00:00"})");
  EXPECT_EQ(e->find("hospitalization")->find("dischargeDisposition"), nullptr);

  // A11 (cancel admit): cancelled. A05 (preadmit, class P): planned, the bed too.
  m = parse(msh("A11", "CA") + kPid + pv1("I"));
  EXPECT_EQ(find_resource(map_adt(*m), "Encounter")->find("status")->text(), "cancelled");
  m = parse(msh("A05", "PA") + kPid + pv1("P"));
  out = map_adt(*m);
  e = find_resource(out, "Encounter");
  EXPECT_EQ(e->find("status")->text(), "planned");
  EXPECT_EQ(e->find("class")->find("code")->text(), "PRENC");
  EXPECT_EQ(e->find("location")->items()[0].find("status")->text(), "planned");
}

TEST(Hl7v2AdtMapping, BadContentNamesItsField) {
  // A03 without a visit number: nothing to discharge.
  auto m = parse(msh("A03", "B1") + kPid + pv1("I", {{19, ""}}));
  Mapping out = map_adt(*m);
  ASSERT_EQ(out.problems.size(), 1u);
  EXPECT_FALSE(out.problems[0].warning);
  EXPECT_EQ(out.problems[0].code, ErrorCode::kRequiredFieldMissing);
  EXPECT_EQ(out.problems[0].where.text(), "PV1-19");
  // A01 without one: the patient alone, with a warning.
  m = parse(msh("A01", "B2") + kPid + pv1("I", {{19, ""}}));
  out = map_adt(*m);
  ASSERT_EQ(out.problems.size(), 1u);
  EXPECT_TRUE(out.problems[0].warning);
  EXPECT_EQ(out.resources.size(), 1u);
  // An admit time that is not one; an empty patient class; an IN1 without its plan.
  m = parse(msh("A01", "B3") + kPid + pv1("I", {{44, "2024-03-01"}}));
  out = map_adt(*m);
  ASSERT_EQ(out.problems.size(), 1u);
  EXPECT_EQ(out.problems[0].code, ErrorCode::kDataType);
  EXPECT_EQ(out.problems[0].where.text(), "PV1-44");
  m = parse(msh("A01", "B4") + kPid + pv1(""));
  out = map_adt(*m);
  ASSERT_EQ(out.problems.size(), 1u);
  EXPECT_EQ(out.problems[0].where.text(), "PV1-2");
  m = parse(msh("A01", "B5") + kPid + pv1("I") + seg("IN1", {{1, "1"}, {3, "INS1"}}));
  out = map_adt(*m);
  ASSERT_EQ(out.problems.size(), 1u);
  EXPECT_EQ(out.problems[0].where.text(), "IN1-2");
  // A40 without MRG-1.
  m = parse(msh("A40", "B6") + kPid + "MRG|\r");
  out = map_adt_merge(*m);
  ASSERT_EQ(out.problems.size(), 1u);
  EXPECT_EQ(out.problems[0].where.text(), "MRG-1");
}

// The inbound processor over a throwaway SQLite store with the R4 search parameters, its zone Europe/Paris.
class AdtStoreTest : public ::testing::Test {
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
    dir_ = fs::temp_directory_path() / ("caduceus-adt-test-" + resources::new_resource_id());
    fs::create_directories(dir_);
    resources::StoreOptions options;
    options.synchronous_full = false;
    auto s = resources::open_store("sqlite:" + (dir_ / "test.db").string(), options);
    ASSERT_TRUE(s.has_value());
    store_ = std::move(*s);
    repo_ = std::make_unique<resources::Repository>(*store_, *defs_, *checker_, *active_);
    InboundOptions inbound;
    inbound.time_zone = paris();
    processor_ = std::make_unique<InboundProcessor>(*repo_, active_.get(), inbound);
  }
  void TearDown() override {
    processor_.reset();
    repo_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  // The acknowledgement of one message (original mode).
  std::string send(std::string raw) {
    auto acks = std::make_shared<std::vector<std::string>>();
    std::promise<void> finished;
    processor_->handle(
        std::move(raw), [acks](std::string a) { acks->push_back(std::move(a)); }, [&] { finished.set_value(); });
    finished.get_future().wait();
    EXPECT_EQ(acks->size(), 1u);
    return acks->empty() ? std::string() : acks->front();
  }

  static std::string field(const std::string& ack, std::string_view segment, std::size_t n, std::size_t c = 1) {
    auto m = parse(ack);
    if (!m) return "<unparsable ack>";
    const Segment* s = m->first(segment);
    return s ? s->get(n, c) : std::string();
  }

  // The current resources of `type` that match.
  std::vector<Value> find(const std::string& type, std::vector<std::pair<std::string, std::string>> params) {
    auto q = resources::parse_search(type, params, *active_->search(), *defs_);
    EXPECT_TRUE(q.has_value()) << (q ? "" : q.error().issues[0].diagnostics);
    if (!q) return {};
    auto page = store_->search(resources::kDefaultTenant, *q);
    EXPECT_TRUE(page.has_value());
    std::vector<Value> out;
    if (page)
      for (const auto& rec : page->entries) out.push_back(*fhir::json::parse(rec.body));
    return out;
  }

  std::optional<resources::InboundMessageRecord> stored(const std::string& control_id) {
    std::optional<resources::InboundMessageRecord> out;
    auto r = store_->write([&](resources::Transaction& txn) -> fhir::Result<void> {
      auto found = txn.find_inbound_message(resources::kDefaultTenant, "ADT1", "HOSP", control_id);
      if (!found) return std::unexpected(found.error());
      out = *found;
      return {};
    });
    EXPECT_TRUE(r.has_value());
    return out;
  }

  static std::string text(const Value& v, std::initializer_list<std::string_view> path) {
    const Value* at = &v;
    for (std::string_view key : path) {
      if (at->is_array()) at = at->items().empty() ? nullptr : &at->items().front();
      if (at == nullptr) return "<absent>";
      at = at->find(key);
      if (at == nullptr) return "<absent>";
    }
    return at->is_string() ? at->text() : fhir::json::write(*at);
  }

  std::shared_ptr<const resources::Definitions> defs_;
  std::unique_ptr<resources::StructureChecker> checker_;
  std::unique_ptr<resources::ActiveSearchParameters> active_;
  fs::path dir_;
  std::unique_ptr<resources::Store> store_;
  std::unique_ptr<resources::Repository> repo_;
  std::unique_ptr<InboundProcessor> processor_;
};

TEST_F(AdtStoreTest, A01StoresEverythingLinkedWithItsProvenance) {
  std::string ack = send(a01());
  EXPECT_EQ(field(ack, "MSA", 1), "AA");
  auto patients = find("Patient", {{"identifier", "urn:oid:1.2.3|MRN1"}});
  ASSERT_EQ(patients.size(), 1u);
  std::string patient = "Patient/" + patients[0].find("id")->text();
  auto encounters = find("Encounter", {{"identifier", "urn:oid:1.2.3.9|V100"}});
  ASSERT_EQ(encounters.size(), 1u);
  EXPECT_EQ(text(encounters[0], {"subject", "reference"}), patient);
  EXPECT_EQ(text(encounters[0], {"period", "start"}), "2024-03-01T10:15:00+01:00");
  auto related = find("RelatedPerson", {{"patient", patient}});
  ASSERT_EQ(related.size(), 1u);
  EXPECT_EQ(text(related[0], {"name", "family"}), "Doe");
  auto coverage = find("Coverage", {{"beneficiary", patient}});
  ASSERT_EQ(coverage.size(), 1u);
  EXPECT_EQ(text(coverage[0], {"payor", "display"}), "Acme Insurance");

  auto rec = stored("A01-1");
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, "processed");
  ASSERT_EQ(rec->resources.size(), 5u);
  std::string provenance_id = "hl7v2-" + std::to_string(rec->id);
  EXPECT_EQ(rec->resources[4], "Provenance/" + provenance_id + "/_history/1");
  auto provenance = find("Provenance", {{"_id", provenance_id}});
  ASSERT_EQ(provenance.size(), 1u);
  const Value& p = provenance[0];
  std::vector<std::string> targets;
  for (const Value& t : p.find("target")->items()) targets.push_back(t.find("reference")->text());
  EXPECT_EQ(targets, std::vector<std::string>(rec->resources.begin(), rec->resources.begin() + 4));
  EXPECT_EQ(targets[0], patient + "/_history/1");
  EXPECT_EQ(text(p, {"entity", "what", "identifier", "system"}), "urn:caduceus:hl7v2:message");
  EXPECT_EQ(text(p, {"entity", "what", "identifier", "value"}), std::to_string(rec->id));
  EXPECT_EQ(text(p, {"entity", "role"}), "source");
  EXPECT_EQ(text(p, {"agent", "who", "display"}), "ADT1 at HOSP");
  EXPECT_EQ(text(p, {"occurredDateTime"}), "2024-03-01T10:15:00+01:00");
  // The Provenance is found from the patient too.
  EXPECT_EQ(find("Provenance", {{"target", patient}}).size(), 1u);

  // The same admission sent again (new control id): the same resources, a version more; no duplicates.
  EXPECT_EQ(field(send(a01("A01-2")), "MSA", 1), "AA");
  EXPECT_EQ(find("Patient", {{"identifier", "urn:oid:1.2.3|MRN1"}}).size(), 1u);
  encounters = find("Encounter", {{"identifier", "urn:oid:1.2.3.9|V100"}});
  ASSERT_EQ(encounters.size(), 1u);
  EXPECT_EQ(text(encounters[0], {"meta", "versionId"}), "2");
  EXPECT_EQ(find("RelatedPerson", {{"patient", patient}}).size(), 1u);
  EXPECT_EQ(find("Coverage", {{"beneficiary", patient}}).size(), 1u);
  EXPECT_EQ(find("Provenance", {{"target", patient}}).size(), 2u);
}

// The writer prepares each resource's body and index values before the write job as if nothing matched (new ids);
// a known patient's new visit must still be written against the patient found in the job: the Encounter's body and
// its index rows refer to that patient, not to the id prepared for a new one.
TEST_F(AdtStoreTest, ANewVisitOfAKnownPatientRefersToThatPatient) {
  ASSERT_EQ(field(send(a01()), "MSA", 1), "AA");
  auto patients = find("Patient", {{"identifier", "urn:oid:1.2.3|MRN1"}});
  ASSERT_EQ(patients.size(), 1u);
  std::string patient = "Patient/" + patients[0].find("id")->text();
  std::string second =
      msh("A01", "A01-V2") + "EVN|A01|20240310101500\r" + kPid + pv1("I", {{19, "V200^^^HOSP&1.2.3.9&ISO^VN"}});
  ASSERT_EQ(field(send(second), "MSA", 1), "AA");
  patients = find("Patient", {{"identifier", "urn:oid:1.2.3|MRN1"}});
  ASSERT_EQ(patients.size(), 1u);
  EXPECT_EQ("Patient/" + patients[0].find("id")->text(), patient);
  EXPECT_EQ(text(patients[0], {"meta", "versionId"}), "2");
  auto visit = find("Encounter", {{"identifier", "urn:oid:1.2.3.9|V200"}});
  ASSERT_EQ(visit.size(), 1u);
  EXPECT_EQ(text(visit[0], {"subject", "reference"}), patient);
  EXPECT_EQ(text(visit[0], {"meta", "versionId"}), "1");
  // Found by the patient through the index rows: both visits, the new one among them.
  auto visits = find("Encounter", {{"patient", patient}});
  ASSERT_EQ(visits.size(), 2u);
  std::set<std::string> numbers;
  for (const Value& e : visits) numbers.insert(text(e, {"identifier", "value"}));
  EXPECT_EQ(numbers, (std::set<std::string>{"V100", "V200"}));
  EXPECT_EQ(find("Encounter", {{"subject", patient}, {"identifier", "urn:oid:1.2.3.9|V200"}}).size(), 1u);
  // Its Provenance names the patient's second version and the new Encounter.
  auto rec = stored("A01-V2");
  ASSERT_TRUE(rec.has_value());
  ASSERT_EQ(rec->resources.size(), 3u);
  EXPECT_EQ(rec->resources[0], patient + "/_history/2");
  EXPECT_EQ(rec->resources[1], "Encounter/" + visit[0].find("id")->text() + "/_history/1");
  EXPECT_EQ(find("Provenance", {{"patient", patient}}).size(), 2u);
}

TEST_F(AdtStoreTest, AVisitFromAdmissionToDischargeAndBack) {
  ASSERT_EQ(field(send(a01()), "MSA", 1), "AA");
  // Transfer to W2.
  ASSERT_EQ(field(send(msh("A02", "V2") + kPid + pv1("I", {{3, "W2^R9^B1^HOSP"}, {6, "W1^R2^B3^HOSP"}})), "MSA", 1),
            "AA");
  auto e = find("Encounter", {{"identifier", "urn:oid:1.2.3.9|V100"}});
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(text(e[0], {"location", "location", "display"}), "W2 R9 B1, HOSP");
  EXPECT_EQ(text(e[0], {"status"}), "in-progress");
  // Discharge at 12:00 Paris time (PV1-45 without an offset).
  ASSERT_EQ(field(send(msh("A03", "V3") + kPid + pv1("I", {{3, "W2^R9^B1^HOSP"}, {45, "202403051200"}})), "MSA", 1),
            "AA");
  e = find("Encounter", {{"identifier", "urn:oid:1.2.3.9|V100"}});
  EXPECT_EQ(text(e[0], {"status"}), "finished");
  EXPECT_EQ(text(e[0], {"period", "end"}), "2024-03-05T12:00:00+01:00");
  EXPECT_EQ(find("Encounter",
                 {{"status", "finished"}, {"patient", "Patient/" + text(e[0], {"subject", "reference"}).substr(8)}})
                .size(),
            1u);
  // The discharge cancelled.
  ASSERT_EQ(field(send(msh("A13", "V4") + kPid + pv1("I", {{3, "W2^R9^B1^HOSP"}})), "MSA", 1), "AA");
  e = find("Encounter", {{"identifier", "urn:oid:1.2.3.9|V100"}});
  EXPECT_EQ(text(e[0], {"status"}), "in-progress");
  EXPECT_EQ(text(e[0], {"period", "end"}), "<absent>");
  EXPECT_EQ(text(e[0], {"meta", "versionId"}), "4");
  // The admission cancelled.
  ASSERT_EQ(field(send(msh("A11", "V5") + kPid + pv1("I")), "MSA", 1), "AA");
  e = find("Encounter", {{"identifier", "urn:oid:1.2.3.9|V100"}});
  EXPECT_EQ(text(e[0], {"status"}), "cancelled");
  EXPECT_EQ(find("Patient", {{"identifier", "urn:oid:1.2.3|MRN1"}}).size(), 1u);
}

TEST_F(AdtStoreTest, A40MergesTwoPatients) {
  ASSERT_EQ(field(send(a01()), "MSA", 1), "AA");
  std::string pid2 =
      seg("PID", {{1, "1"}, {3, "MRN2^^^HOSP&1.2.3&ISO^MR"}, {5, "Doe^Janet"}, {7, "19700101"}, {8, "F"}});
  ASSERT_EQ(field(send(msh("A04", "R2") + pid2), "MSA", 1), "AA");
  auto survivor = find("Patient", {{"identifier", "urn:oid:1.2.3|MRN1"}});
  auto merged = find("Patient", {{"identifier", "urn:oid:1.2.3|MRN2"}});
  ASSERT_EQ(survivor.size(), 1u);
  ASSERT_EQ(merged.size(), 1u);
  std::string survivor_id = survivor[0].find("id")->text(), merged_id = merged[0].find("id")->text();

  std::string a40 = msh("A40", "M1") + "EVN|A40|202403021000\r" + kPid + "MRG|MRN2^^^HOSP&1.2.3&ISO^MR\r";
  std::string ack = send(a40);
  ASSERT_EQ(field(ack, "MSA", 1), "AA") << ack;
  auto s = find("Patient", {{"_id", survivor_id}});
  auto o = find("Patient", {{"_id", merged_id}});
  ASSERT_EQ(s.size(), 1u);
  ASSERT_EQ(o.size(), 1u);
  // The survivor: both identifiers (the merged one as old), replaces the other.
  const auto& ids = s[0].find("identifier")->items();
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0].find("value")->text(), "MRN1");
  EXPECT_EQ(ids[1].find("value")->text(), "MRN2");
  EXPECT_EQ(ids[1].find("use")->text(), "old");
  EXPECT_EQ(fhir::json::write(*s[0].find("link")),
            R"([{"other":{"reference":"Patient/)" + merged_id + R"("},"type":"replaces"}])");
  EXPECT_EQ(text(s[0], {"active"}), "true");
  // The merged one: inactive, replaced-by the survivor, its name kept.
  EXPECT_EQ(fhir::json::write(*o[0].find("link")),
            R"([{"other":{"reference":"Patient/)" + survivor_id + R"("},"type":"replaced-by"}])");
  EXPECT_EQ(text(o[0], {"active"}), "false");
  EXPECT_EQ(text(o[0], {"name", "given"}), R"(["Janet"])");
  EXPECT_EQ(text(o[0], {"meta", "versionId"}), "2");
  EXPECT_EQ(find("Patient", {{"link", "Patient/" + survivor_id}}).size(), 1u);

  // The same merge again (another control id): nothing new is linked twice, still two patients.
  ASSERT_EQ(field(send(msh("A40", "M2") + kPid + "MRG|MRN2^^^HOSP&1.2.3&ISO^MR\r"), "MSA", 1), "AA");
  o = find("Patient", {{"_id", merged_id}});
  EXPECT_EQ(o[0].find("link")->items().size(), 1u);
  EXPECT_EQ(find("Patient", {{"family", "Doe"}}).size(), 2u);
}

TEST_F(AdtStoreTest, BadContentIsAnsweredAeAndKept) {
  std::string ack = send(msh("A03", "E1") + kPid + pv1("I", {{19, ""}}));
  EXPECT_EQ(field(ack, "MSA", 1), "AE");
  EXPECT_EQ(field(ack, "ERR", 2, 1), "PV1");
  EXPECT_EQ(field(ack, "ERR", 2, 2), "1");
  EXPECT_EQ(field(ack, "ERR", 2, 3), "19");
  EXPECT_EQ(field(ack, "ERR", 3), "101");
  auto rec = stored("E1");
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->status, "error");
  EXPECT_NE(rec->error.find("PV1-19"), std::string::npos);
  EXPECT_EQ(rec->raw, msh("A03", "E1") + kPid + pv1("I", {{19, ""}}));
  EXPECT_TRUE(find("Patient", {{"identifier", "urn:oid:1.2.3|MRN1"}}).empty());  // nothing of it written

  ack = send(msh("A01", "E2") + kPid + pv1("I", {{45, "20240231"}}));
  EXPECT_EQ(field(ack, "MSA", 1), "AE");
  EXPECT_EQ(field(ack, "ERR", 2, 3), "45");
  EXPECT_EQ(field(ack, "ERR", 3), "102");
  EXPECT_EQ(stored("E2")->status, "error");
}

}  // namespace
}  // namespace caduceus::adapters::hl7v2
