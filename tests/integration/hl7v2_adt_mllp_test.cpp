// HL7 v2 ADT over a real MLLP socket (--mllp 127.0.0.1:0, --hl7-timezone America/New_York): a visit from admission
// to discharge, a merge, and bad content, each checked through FHIR search over HTTP.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
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
// A segment from its non-empty fields.
std::string seg(const std::string& name, const std::map<int, std::string>& fields) {
  std::string out = name;
  for (int i = 1, last = fields.rbegin()->first; i <= last; ++i) {
    out += "|";
    if (auto it = fields.find(i); it != fields.end()) out += it->second;
  }
  return out + "\r";
}

std::string msh(const std::string& event, const std::string& control) {
  return "MSH|^~\\&|LegacyADT|WARD7|CADUCEUS|HOSP|20240301101500||ADT^" + event + "|" + control + "|P|2.5.1\r";
}

std::string pid(const std::string& mrn, const std::string& given) {
  return seg("PID",
             {{1, "1"}, {3, mrn + "^^^HOSP&2.16.840.1.999&ISO^MR"}, {5, "Rivera^" + given}, {7, "19840229"}, {8, "F"}});
}

std::string pv1(const std::map<int, std::string>& more = {}) {
  std::map<int, std::string> f{
      {1, "1"}, {2, "I"}, {3, "4W^401^A^HOSP"}, {7, "D77^Grey^Meredith"}, {19, "VIS-900"}, {44, "202401151030"}};
  for (const auto& [k, v] : more) f[k] = v;
  return seg("PV1", f);
}

class Hl7v2AdtMllpTest : public ServerTest {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_args = {"--mllp", "127.0.0.1:0", "--hl7-timezone", "America/New_York", "--log-requests", "false"};
    start_server(options);
  }

  static std::uint16_t mllp_port() { return mllp_port_of(server()); }

  // The resources a search finds.
  std::vector<Value> search(const std::string& query) {
    Response r = client().get(path(query));
    EXPECT_EQ(r.status, 200) << r.summary();
    std::vector<Value> out;
    auto v = r.json();
    if (v)
      if (const Value* entries = v->find("entry"))
        for (const Value& e : entries->items())
          if (const Value* res = e.find("resource")) out.push_back(*res);
    return out;
  }

  static std::string at(const Value& v, std::initializer_list<std::string_view> keys) {
    const Value* x = &v;
    for (std::string_view k : keys) {
      if (x->is_array()) x = x->items().empty() ? nullptr : &x->items().front();
      if (x == nullptr || (x = x->find(k)) == nullptr) return "<absent>";
    }
    return x->is_string() ? x->text() : fhir::json::write(*x);
  }
};

TEST_F(Hl7v2AdtMllpTest, AVisitFromAdmissionToDischargeIsSearchable) {
  MllpClient mllp(mllp_port());
  std::string a01 = msh("A01", "ADT-INT-1") + "EVN|A01|202401151030\r" + pid("M-7001", "Ana") +
                    seg("NK1", {{1, "1"}, {2, "Rivera^Luis"}, {3, "FTH^Father^HL70063"}}) + pv1() +
                    seg("IN1", {{1, "1"}, {2, "P-55^Silver"}, {3, "BCX^^^HOSP"}, {4, "BlueCross"}});
  std::string ack = mllp.exchange(a01);
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;

  auto patients = search("Patient?identifier=" + url_encode("urn:oid:2.16.840.1.999|M-7001"));
  ASSERT_EQ(patients.size(), 1u);
  std::string patient = "Patient/" + at(patients[0], {"id"});
  EXPECT_EQ(at(patients[0], {"birthDate"}), "1984-02-29");
  auto encounters = search("Encounter?identifier=VIS-900");
  ASSERT_EQ(encounters.size(), 1u);
  EXPECT_EQ(at(encounters[0], {"status"}), "in-progress");
  EXPECT_EQ(at(encounters[0], {"class", "code"}), "IMP");
  EXPECT_EQ(at(encounters[0], {"subject", "reference"}), patient);
  // 10:30 in New York on 15 January is 10:30-05:00 (standard time).
  EXPECT_EQ(at(encounters[0], {"period", "start"}), "2024-01-15T10:30:00-05:00");
  EXPECT_EQ(search("Encounter?patient=" + patient + "&status=in-progress").size(), 1u);
  auto kin = search("RelatedPerson?patient=" + patient);
  ASSERT_EQ(kin.size(), 1u);
  EXPECT_EQ(at(kin[0], {"relationship", "coding", "code"}), "FTH");
  auto coverage = search("Coverage?beneficiary=" + patient);
  ASSERT_EQ(coverage.size(), 1u);
  EXPECT_EQ(at(coverage[0], {"identifier", "value"}), "P-55");
  auto provenance = search("Provenance?target=" + patient);
  ASSERT_EQ(provenance.size(), 1u);
  EXPECT_EQ(provenance[0].find("target")->items().size(), 4u);  // Patient, Encounter, RelatedPerson, Coverage
  EXPECT_EQ(at(provenance[0], {"entity", "what", "identifier", "system"}), "urn:caduceus:hl7v2:message");
  EXPECT_EQ(at(provenance[0], {"entity", "what", "display"}), "HL7 v2 ADT^A01 ADT-INT-1");

  // Transferred, then discharged on 15 July at 09:00 New York time (daylight saving: -04:00).
  ack =
      mllp.exchange(msh("A02", "ADT-INT-2") + pid("M-7001", "Ana") + pv1({{3, "5E^502^B^HOSP"}, {6, "4W^401^A^HOSP"}}));
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  encounters = search("Encounter?identifier=VIS-900");
  ASSERT_EQ(encounters.size(), 1u);
  EXPECT_EQ(at(encounters[0], {"location", "location", "display"}), "5E 502 B, HOSP");
  ack =
      mllp.exchange(msh("A03", "ADT-INT-3") + pid("M-7001", "Ana") + pv1({{3, "5E^502^B^HOSP"}, {45, "202407150900"}}));
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  encounters = search("Encounter?identifier=VIS-900&status=finished");
  ASSERT_EQ(encounters.size(), 1u);
  EXPECT_EQ(at(encounters[0], {"period", "end"}), "2024-07-15T09:00:00-04:00");
  EXPECT_EQ(at(encounters[0], {"meta", "versionId"}), "3");
  EXPECT_EQ(search("Patient?identifier=" + url_encode("urn:oid:2.16.840.1.999|M-7001")).size(), 1u);
  EXPECT_EQ(search("Provenance?target=" + patient).size(), 3u);
}

TEST_F(Hl7v2AdtMllpTest, A40MergeLinksBothPatients) {
  MllpClient mllp(mllp_port());
  ASSERT_EQ(ack_field(mllp.exchange(msh("A04", "MRG-INT-1") + pid("M-8001", "Bea")), "MSA", 1), "AA");
  ASSERT_EQ(ack_field(mllp.exchange(msh("A04", "MRG-INT-2") + pid("M-8002", "Beatriz")), "MSA", 1), "AA");
  std::string ack =
      mllp.exchange(msh("A40", "MRG-INT-3") + pid("M-8001", "Bea") + "MRG|M-8002^^^HOSP&2.16.840.1.999&ISO^MR\r");
  ASSERT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  // The old identifier now finds both: the survivor (which keeps it as old) and the merged one.
  auto both = search("Patient?identifier=" + url_encode("urn:oid:2.16.840.1.999|M-8002"));
  ASSERT_EQ(both.size(), 2u);
  auto survivor = search("Patient?identifier=" + url_encode("urn:oid:2.16.840.1.999|M-8001"));
  ASSERT_EQ(survivor.size(), 1u);
  std::string survivor_ref = "Patient/" + at(survivor[0], {"id"});
  auto merged = search("Patient?link=" + survivor_ref);
  ASSERT_EQ(merged.size(), 1u);
  EXPECT_EQ(at(merged[0], {"active"}), "false");
  EXPECT_EQ(at(merged[0], {"link", "type"}), "replaced-by");
  EXPECT_EQ(at(merged[0], {"name", "given"}), R"(["Beatriz"])");
  EXPECT_EQ(at(survivor[0], {"link", "type"}), "replaces");
  EXPECT_EQ(at(survivor[0], {"link", "other", "reference"}), "Patient/" + at(merged[0], {"id"}));
  EXPECT_EQ(search("Patient?active=false&family=Rivera").size(), 1u);
}

TEST_F(Hl7v2AdtMllpTest, BadContentIsAnsweredAeWithTheField) {
  MllpClient mllp(mllp_port());
  std::string ack = mllp.exchange(msh("A01", "BAD-INT-1") + pid("M-9001", "Cy") + pv1({{44, "20240132"}}));
  EXPECT_EQ(ack_field(ack, "MSA", 1), "AE");
  EXPECT_EQ(ack_field(ack, "MSA", 2), "BAD-INT-1");
  EXPECT_EQ(ack_field(ack, "ERR", 2, 1), "PV1");
  EXPECT_EQ(ack_field(ack, "ERR", 2, 3), "44");
  EXPECT_EQ(ack_field(ack, "ERR", 3), "102");
  EXPECT_TRUE(search("Patient?identifier=" + url_encode("urn:oid:2.16.840.1.999|M-9001")).empty());
  // The connection stays usable: the corrected message goes through.
  ack = mllp.exchange(msh("A01", "BAD-INT-2") + pid("M-9001", "Cy") + pv1({{19, "VIS-901"}}));
  EXPECT_EQ(ack_field(ack, "MSA", 1), "AA") << ack;
  EXPECT_EQ(search("Encounter?identifier=VIS-901").size(), 1u);
}

}  // namespace
}  // namespace caduceus::test
