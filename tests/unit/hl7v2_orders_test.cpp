// HL7 v2 orders, results, prescriptions and appointments to FHIR: the data types (dates with their precision,
// numbers, CWE, EI, XCN), ORU^R01, ORM^O01/OML^O21, RDE^O11 and SIU^S12-S26 mapped from the vendored samples and
// from small messages, with the resources expected worked out by hand; bad input named segment-field; and the
// inbound processor writing one message's resources in one transaction with their references resolved.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "caduceus/adapters/hl7v2/clinical_mapping.hpp"
#include "caduceus/adapters/hl7v2/inbound.hpp"
#include "caduceus/adapters/hl7v2/mapping.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/custom_search.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/search_query.hpp"
#include "http_client.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

namespace fs = std::filesystem;
using fhir::json::Value;
using test::string_at;
using Criteria = std::vector<std::pair<std::string, std::string>>;

std::string sample(const std::string& name) {
  std::ifstream in(fs::path(CADUCEUS_TEST_DATA) / "hl7v2" / name, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Message parsed(const std::string& raw) {
  auto m = parse(raw);
  EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().message);
  return m ? std::move(*m) : Message{};
}

std::string json(const MappedResource& r) {
  return fhir::json::write(r.resource);
}

std::string errors(const Mapping& m) {
  std::string out;
  for (const Problem& p : m.problems)
    if (!p.warning) out += p.where.text() + ": " + p.message + "\n";
  return out;
}

constexpr const char* kPlac =
    R"({"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"PLAC"}]},)";
constexpr const char* kFill =
    R"({"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"FILL"}]},)";

TEST(Hl7v2DataTypes, DateTimesKeepTheirPrecisionAndOffset) {
  EXPECT_EQ(v2_datetime_to_fhir("2002", TimeZone{}), "2002");
  EXPECT_EQ(v2_datetime_to_fhir("200202", TimeZone{}), "2002-02");
  EXPECT_EQ(v2_datetime_to_fhir("20020215", TimeZone{}), "2002-02-15");
  EXPECT_EQ(v2_datetime_to_fhir("20020215+0600", TimeZone{}), "2002-02-15");  // a date has no zone in FHIR
  EXPECT_EQ(v2_datetime_to_fhir("2002021507", TimeZone{}), "2002-02-15T07:00:00+00:00");
  EXPECT_EQ(v2_datetime_to_fhir("200202150730+0600", TimeZone{}), "2002-02-15T07:30:00+06:00");
  EXPECT_EQ(v2_datetime_to_fhir("20020215073012-0500", TimeZone{}), "2002-02-15T07:30:12-05:00");
  EXPECT_EQ(v2_datetime_to_fhir("20020215073012.25", TimeZone{}),
            "2002-02-15T07:30:12.25+00:00");  // no offset: the interface's zone, here UTC
  EXPECT_FALSE(v2_datetime_to_fhir("2002-02-15", TimeZone{}).has_value());
  EXPECT_FALSE(v2_datetime_to_fhir("200202150760", TimeZone{}).has_value());
  EXPECT_FALSE(v2_datetime_to_fhir("200202150730+1600", TimeZone{}).has_value());
}

TEST(Hl7v2DataTypes, NumbersCodesIdentifiersAndPeople) {
  EXPECT_EQ(v2_decimal("182"), "182");
  EXPECT_EQ(v2_decimal("+007.50"), "7.50");
  EXPECT_EQ(v2_decimal(".5"), "0.5");
  EXPECT_EQ(v2_decimal("-3."), "-3");
  EXPECT_EQ(v2_decimal(" 4.06 "), "4.06");
  EXPECT_FALSE(v2_decimal("1,5").has_value());
  EXPECT_FALSE(v2_decimal("abc").has_value());
  EXPECT_FALSE(v2_decimal(".").has_value());

  EXPECT_EQ(code_system_uri("LN"), "http://loinc.org");
  EXPECT_EQ(code_system_uri("HL70078"), "http://terminology.hl7.org/CodeSystem/v2-0078");
  EXPECT_EQ(code_system_uri("L"), "");

  Message m = parsed(
      "MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5.1\r"
      "OBX|1|CWE|718-7^Hemoglobin^LN^HGB^Hgb^L^2.68^^Hemoglobin [Mass/volume]|"
      "ORD1^^1.2.3^ISO|^only text|10093^Deluca^Naddy^B^^^^^NIST&1.2.9&ISO\r");
  const Segment& obx = *m.first("OBX");
  EXPECT_EQ(fhir::json::write(*map_cwe_triplets(obx, 3)),
            R"({"coding":[{"system":"http://loinc.org","version":"2.68","code":"718-7","display":"Hemoglobin"},)"
            R"({"code":"HGB","display":"Hgb"}],"text":"Hemoglobin [Mass/volume]"})");
  EXPECT_EQ(fhir::json::write(*map_cwe_triplets(obx, 5)), R"({"text":"only text"})");
  EXPECT_FALSE(map_cwe_triplets(obx, 7).has_value());
  EXPECT_EQ(fhir::json::write(*map_ei(obx, 4, 1, 0, "PLAC")),
            std::string(kPlac) + R"("system":"urn:oid:1.2.3","value":"ORD1"})");
  EXPECT_EQ(fhir::json::write(*map_xcn_reference(obx, 6, 1, "Practitioner")),
            R"({"type":"Practitioner","identifier":{"system":"urn:oid:1.2.9","value":"10093"},)"
            R"("display":"Naddy B Deluca"})");
}

// The vendored ORU-R01-RMGEAD (HL7 v2.4 standard's example): one OBR, one SN result.
TEST(Hl7v2Results, OruSampleMapsToPatientOrderObservationAndReport) {
  Message m = parsed(sample("ORU-R01-RMGEAD.hl7"));
  Mapping out = map_oru_r01(m);
  ASSERT_EQ(errors(out), "");
  ASSERT_EQ(out.resources.size(), 4u);
  EXPECT_EQ(out.resources[0].type, "Patient");
  EXPECT_EQ(out.resources[0].criteria, (Criteria{{"identifier", "555-44-4444"}}));
  EXPECT_EQ(out.resources[0].local, "urn:hl7v2:resource:1");

  EXPECT_EQ(out.resources[1].type, "ServiceRequest");
  EXPECT_EQ(out.resources[1].criteria, (Criteria{{"identifier", "845439"}}));
  EXPECT_EQ(json(out.resources[1]),
            R"({"resourceType":"ServiceRequest","identifier":[)" + std::string(kPlac) +
                R"("value":"845439","assigner":{"display":"GHH OE"}},)" + kFill +
                R"("value":"1045813","assigner":{"display":"GHH LAB"}}],)"
                R"("status":"completed","intent":"order","code":{"coding":[{"code":"15545","display":"GLUCOSE"}]},)"
                R"("subject":{"reference":"urn:hl7v2:resource:1"},)"
                R"("requester":{"type":"Practitioner","identifier":{"value":"555-55-5555"},)"
                R"("display":"PATRICIA P PRIMARY"}})");

  // OBX|1|SN|1554-5^GLUCOSE^...||^182|mg/dl|70_105|H|||F: no OBX-14, so OBR-7 is the effective time.
  EXPECT_EQ(out.resources[2].type, "Observation");
  EXPECT_EQ(out.resources[2].criteria, (Criteria{{"identifier", "urn:caduceus:hl7v2:observation|1045813/1554-5/"}}));
  EXPECT_EQ(json(out.resources[2]),
            R"({"resourceType":"Observation","identifier":[{"system":"urn:caduceus:hl7v2:observation",)"
            R"("value":"1045813/1554-5/"}],"basedOn":[{"reference":"urn:hl7v2:resource:2"}],"status":"final",)"
            R"("code":{"coding":[{"code":"1554-5","display":"GLUCOSE"}]},)"
            R"("subject":{"reference":"urn:hl7v2:resource:1"},"effectiveDateTime":"2002-02-15T07:30:00+06:00",)"
            R"("valueQuantity":{"value":182,"unit":"mg/dl"},"interpretation":[{"coding":[{"system":)"
            R"("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"H"}]}],)"
            R"("referenceRange":[{"text":"70_105"}]})");

  EXPECT_EQ(out.resources[3].type, "DiagnosticReport");
  EXPECT_EQ(out.resources[3].criteria, (Criteria{{"identifier", "1045813"}}));
  EXPECT_EQ(json(out.resources[3]),
            R"({"resourceType":"DiagnosticReport","identifier":[)" + std::string(kPlac) +
                R"("value":"845439","assigner":{"display":"GHH OE"}},)" + kFill +
                R"("value":"1045813","assigner":{"display":"GHH LAB"}}],)"
                R"("basedOn":[{"reference":"urn:hl7v2:resource:2"}],"status":"final",)"
                R"("code":{"coding":[{"code":"15545","display":"GLUCOSE"}]},)"
                R"("subject":{"reference":"urn:hl7v2:resource:1"},"effectiveDateTime":"2002-02-15T07:30:00+06:00",)"
                R"("result":[{"reference":"urn:hl7v2:resource:3"}]})");
}

// LAB-ORU-1: two OBRs, each with five OBX and an SPM (the same specimen id); OBX-11 I, P and F.
TEST(Hl7v2Results, OruSampleWithTwoOrdersAndSpecimens) {
  Message m = parsed(sample("LAB-ORU-1.hl7"));
  Mapping out = map_oru_r01(m);
  ASSERT_EQ(errors(out), "");
  // Patient, then per order: ServiceRequest, Specimen, 5 Observations, DiagnosticReport.
  ASSERT_EQ(out.resources.size(), 1u + 2u * 8u);
  EXPECT_EQ(out.resources[2].type, "Specimen");
  EXPECT_EQ(json(out.resources[2]),
            R"({"resourceType":"Specimen","identifier":[)" + std::string(kPlac) +
                R"("value":"SpecimenID"}],"type":{"coding":[{"code":"BLD"}]},)"
                R"("collection":{"collectedDateTime":"2014-10-06T05:35:00+07:00"},)"
                R"("receivedTime":"2014-10-06T08:21:00+07:00","subject":{"reference":"urn:hl7v2:resource:1"}})");
  EXPECT_EQ(out.resources[2].criteria, (Criteria{{"identifier", "SpecimenID"}}));
  // OBX|1|NM|11156-7^LEUKOCYTES^LN||||||||I|: no value, registered.
  const Value& leukocytes = out.resources[3].resource;
  EXPECT_EQ(string_at(leukocytes, "status"), "registered");
  EXPECT_EQ(leukocytes.find("valueQuantity"), nullptr);
  EXPECT_EQ(string_at(leukocytes, "specimen.reference"), "urn:hl7v2:resource:3");
  // OBX|2|NM|11273-0^ERYTHROCYTES^LN||4.06|tera.l-1||N|||P|||20141006062700+0700
  const Value& erythrocytes = out.resources[4].resource;
  EXPECT_EQ(string_at(erythrocytes, "status"), "preliminary");
  EXPECT_EQ(fhir::json::write(*erythrocytes.find("valueQuantity")), R"({"value":4.06,"unit":"tera.l-1"})");
  EXPECT_EQ(string_at(erythrocytes, "effectiveDateTime"), "2014-10-06T06:27:00+07:00");
  EXPECT_EQ(string_at(erythrocytes, "interpretation[0].coding[0].code"), "N");
  EXPECT_EQ(string_at(out.resources[7].resource, "status"), "final");
  // The report: OBR-25 F, 5 results, the specimen.
  const Value& report = out.resources[8].resource;
  EXPECT_EQ(out.resources[8].type, "DiagnosticReport");
  EXPECT_EQ(report.find("issued"), nullptr);  // OBR-22 is empty (the sample has its date in OBR-23)
  EXPECT_EQ(string_at(report, "status"), "final");
  EXPECT_EQ(string_at(out.resources[16].resource, "status"), "unknown");  // the second OBR-25 is empty
  EXPECT_EQ(string_at(out.resources[9].resource, "status"), "active");    // so is its order's
  EXPECT_EQ(report.find("result")->items().size(), 5u);
  EXPECT_EQ(string_at(report, "result[4].reference"), "urn:hl7v2:resource:8");
  EXPECT_EQ(string_at(report, "specimen[0].reference"), "urn:hl7v2:resource:3");
  EXPECT_EQ(out.resources[8].criteria, (Criteria{{"identifier", "82503246"}}));
  EXPECT_EQ(out.resources[16].criteria, (Criteria{{"identifier", "890775544"}}));
}

TEST(Hl7v2Results, ValueTypesStatusesAndSpecimenFromObr15) {
  Message m = parsed(
      "MSH|^~\\&|Lab|L|C|D|20240301||ORU^R01|V1|P|2.5.1\r"
      "PID|1||MRN7^^^H&1.2.3&ISO^MR||Doe^Jane\r"
      "ORC|RE|PL1|FI1||CM\r"
      "OBR|1|PL1|FI1|24323-8^Panel^LN|||202403011015-0500||||||||BLD&Blood&HL70070|||||||202403011230-0500||CH|C\r"
      "OBX|1|NM|2345-7^Glucose^LN||+095.0|mg/dL^milligram per deciliter^UCUM|70-99|H|||C|||20240301101500-0500\r"
      "OBX|2|ST|8251-1^Comment^LN||first~second||||||F\r"
      "OBX|3|CWE|600-7^Culture^LN||3092008^Staphylococcus aureus^SCT||||||P\r"
      "OBX|4|SN|5778-6^Ratio^LN||^1^:^128||||||F\r"
      "OBX|5|SN|5779-4^Range^LN||^2^-^4|%^percent^UCUM|||||F\r"
      "OBX|6|SN|5780-2^Less^LN||<^0.5|mmol/L^^UCUM|||||X\r"
      "OBX|7|DT|5781-0^Date^LN||200105||||||F\r"
      "OBX|8|TS|5782-8^Time^LN||20010515123045+0100||||||F\r"
      "OBX|9|ED|5783-6^Doc^LN||^TEXT^^Base64^QQ==||||||F\r"
      "OBX|10|NM|2345-7^Glucose^LN||96||||||F\r");
  Mapping out = map_oru_r01(m);
  ASSERT_EQ(errors(out), "");
  // Patient, ServiceRequest, Specimen (OBR-15), 10 Observations, DiagnosticReport.
  ASSERT_EQ(out.resources.size(), 14u);
  EXPECT_EQ(string_at(out.resources[1].resource, "status"), "completed");  // ORC-5 CM
  EXPECT_EQ(out.resources[1].criteria, (Criteria{{"identifier", "PL1"}}));
  EXPECT_EQ(json(out.resources[2]),
            R"({"resourceType":"Specimen","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/)"
            R"(v2-0070","code":"BLD","display":"Blood"}]},"collection":{"collectedDateTime":)"
            R"("2024-03-01T10:15:00-05:00"},"subject":{"reference":"urn:hl7v2:resource:1"},)"
            R"("identifier":[{"system":"urn:caduceus:hl7v2:specimen","value":"FI1/1"}]})");
  auto obs = [&](std::size_t n) -> const Value& { return out.resources[2 + n].resource; };
  EXPECT_EQ(fhir::json::write(*obs(1).find("valueQuantity")),
            R"({"value":95.0,"unit":"milligram per deciliter","system":"http://unitsofmeasure.org","code":"mg/dL"})");
  EXPECT_EQ(string_at(obs(1), "status"), "corrected");
  EXPECT_EQ(string_at(obs(1), "referenceRange[0].text"), "70-99");
  EXPECT_EQ(string_at(obs(1), "effectiveDateTime"), "2024-03-01T10:15:00-05:00");
  EXPECT_EQ(string_at(obs(2), "valueString"), "first\nsecond");
  EXPECT_EQ(string_at(obs(2), "effectiveDateTime"), "2024-03-01T10:15:00-05:00");  // OBR-7
  EXPECT_EQ(fhir::json::write(*obs(3).find("valueCodeableConcept")),
            R"({"coding":[{"system":"http://snomed.info/sct","code":"3092008","display":"Staphylococcus aureus"}]})");
  EXPECT_EQ(string_at(obs(3), "status"), "preliminary");
  EXPECT_EQ(fhir::json::write(*obs(4).find("valueRatio")), R"({"numerator":{"value":1},"denominator":{"value":128}})");
  EXPECT_EQ(fhir::json::write(*obs(5).find("valueRange")),
            R"({"low":{"value":2,"unit":"percent","system":"http://unitsofmeasure.org","code":"%"},)"
            R"("high":{"value":4,"unit":"percent","system":"http://unitsofmeasure.org","code":"%"}})");
  EXPECT_EQ(fhir::json::write(*obs(6).find("valueQuantity")),
            R"({"value":0.5,"comparator":"<","unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"})");
  EXPECT_EQ(string_at(obs(6), "status"), "cancelled");
  EXPECT_EQ(string_at(obs(7), "valueDateTime"), "2001-05");
  EXPECT_EQ(string_at(obs(8), "valueDateTime"), "2001-05-15T12:30:45+01:00");
  EXPECT_EQ(obs(9).find("valueString"), nullptr);  // ED: left out, with a warning
  ASSERT_EQ(out.problems.size(), 1u);
  EXPECT_TRUE(out.problems[0].warning);
  EXPECT_EQ(out.problems[0].where.text(), "OBX-5");
  // The same code and sub-id twice in one order: two observations, told apart.
  EXPECT_EQ(out.resources[3].criteria, (Criteria{{"identifier", "urn:caduceus:hl7v2:observation|FI1/2345-7/"}}));
  EXPECT_EQ(out.resources[12].criteria, (Criteria{{"identifier", "urn:caduceus:hl7v2:observation|FI1/2345-7//2"}}));
  const Value& report = out.resources[13].resource;
  EXPECT_EQ(string_at(report, "status"), "corrected");
  EXPECT_EQ(string_at(report, "issued"), "2024-03-01T12:30:00-05:00");
  EXPECT_EQ(report.find("result")->items().size(), 10u);
}

TEST(Hl7v2Results, BadInputIsNamedBySegmentAndField) {
  auto problem = [](const std::string& body) {
    Message m = parsed("MSH|^~\\&|Lab|L|C|D|20240301||ORU^R01|V1|P|2.5.1\rPID|1||MRN7\r" + body);
    Mapping out = map_oru_r01(m);
    for (const Problem& p : out.problems)
      if (!p.warning) return p.where.text() + " " + std::to_string(static_cast<int>(p.code));
    return std::string("none");
  };
  EXPECT_EQ(problem("OBR|1||F1|1^X^L\rOBX|1|NM|2^Y^L||12,5||||||F\r"), "OBX-5 102");
  EXPECT_EQ(problem("OBR|1||F1|1^X^L\rOBX|1|NM|2^Y^L||12||||||\r"), "OBX-11 101");
  EXPECT_EQ(problem("OBR|1||F1|1^X^L\rOBX|1|NM|2^Y^L||12||||||Q\r"), "OBX-11 103");
  EXPECT_EQ(problem("OBR|1||F1|1^X^L\rOBX|1|NM|||12||||||F\r"), "OBX-3 101");
  EXPECT_EQ(problem("OBR|1||F1|1^X^L\rOBX|1||2^Y^L||12||||||F\r"), "OBX-2 101");
  EXPECT_EQ(problem("OBR|1||F1|1^X^L\rOBX|1|DT|2^Y^L||2024-01-01||||||F\r"), "OBX-5 102");
  EXPECT_EQ(problem("OBR|1|||1^X^L\r"), "OBR-3 101");
  EXPECT_EQ(problem("OBR|1||F1|\r"), "OBR-4 101");
  EXPECT_EQ(problem("OBR|1||F1|1^X^L|||yesterday\r"), "OBR-7 102");
  EXPECT_EQ(problem("OBR|1||F1|1^X^L|||||||||||||||||||||Z\r"), "OBR-25 103");
  EXPECT_EQ(problem("ORC|RE\r"), "OBR 100");  // no OBR at all
  EXPECT_EQ(problem("OBR|1||F1|1^X^L\rOBX|1|NM|2^Y^L||12||||||F\r"), "none");
}

// The vendored LAB-ORM-1: ORC|NW with its OBR.
TEST(Hl7v2Orders, OrmSampleMapsToAServiceRequest) {
  Message m = parsed(sample("LAB-ORM-1.hl7"));
  Mapping out = map_orm_o01(m);
  ASSERT_EQ(errors(out), "");
  ASSERT_EQ(out.resources.size(), 2u);
  EXPECT_EQ(out.resources[1].criteria, (Criteria{{"identifier", "88502218"}}));
  EXPECT_EQ(json(out.resources[1]),
            R"({"resourceType":"ServiceRequest","identifier":[)" + std::string(kPlac) + R"("value":"88502218"},)" +
                kFill +
                R"("value":"82503246"}],"status":"active","intent":"order","code":{"coding":[{"system":)"
                R"("http://loinc.org","code":"24317-0","display":"Hemogram and platelet count, automated"}]},)"
                R"("subject":{"reference":"urn:hl7v2:resource:1"},"occurrenceDateTime":"2014-10-06T06:44:00+00:00",)"
                R"("authoredOn":"2014-10-06T09:29:00+00:00","requester":{"type":"Practitioner","display":"URO"}})");
}

// OML-O21-03: orders without placer or filler numbers are matched by their placer group number and code; a
// cancelled order (ORC-1 CA with an empty ORC-5) stays active, as the IG's map says.
TEST(Hl7v2Orders, OmlSampleOrdersWithoutNumbersUseTheGroupNumber) {
  Message m = parsed(sample("OML-O21-03.hl7"));
  Mapping out = map_orm_o01(m);
  ASSERT_EQ(errors(out), "");
  ASSERT_EQ(out.resources.size(), 1u + 5u);
  EXPECT_EQ(out.resources[1].criteria,
            (Criteria{{"requisition", "9adf2339de714c6698063e3ddf5d07"}, {"code", "http://loinc.org|57698-3"}}));
  EXPECT_EQ(string_at(out.resources[1].resource, "status"), "completed");  // ORC-5 CM
  EXPECT_EQ(string_at(out.resources[1].resource, "occurrenceDateTime"), "2021-10-20T12:00:00+02:15");
  EXPECT_EQ(out.resources[3].criteria, (Criteria{{"identifier", "1101"}}));  // ORC-2 before OBR-2
  EXPECT_EQ(string_at(out.resources[5].resource, "status"), "active");
  EXPECT_EQ(out.resources[5].criteria, (Criteria{{"identifier", "NI-2"}}));
  EXPECT_EQ(string_at(out.resources[5].resource, "identifier[1].value"), "FO-3");  // OBR-3: ORC-3 is empty
}

// The vendored RDE-O11-01 (one order), and our RXE map.
TEST(Hl7v2Orders, RdeSampleMapsToAMedicationRequest) {
  Message m = parsed(sample("RDE-O11-01.hl7"));
  Mapping out = map_rde_o11(m);
  ASSERT_EQ(errors(out), "");
  ASSERT_EQ(out.resources.size(), 2u);
  EXPECT_EQ(out.resources[1].type, "MedicationRequest");
  EXPECT_EQ(out.resources[1].criteria, (Criteria{{"identifier", "1163422591"}}));
  EXPECT_EQ(json(out.resources[1]),
            R"({"resourceType":"MedicationRequest","identifier":[)" + std::string(kPlac) +
                R"("value":"1163422591","assigner":{"display":"EPC"}}],"status":"active","intent":"order",)"
                R"("medicationCodeableConcept":{"coding":[{"system":"http://hl7.org/fhir/sid/ndc",)"
                R"("code":"0143963401","display":"200 ML BAG : NICARDIPINE IN NACL (ISO-OS) 40 MG/200 ML IV PGBK"}],)"
                R"j("text":"niCARdipine (CARDENE) in NaCl IV infusion 40 mg/200 mL (0.2 mg/mL)"},)j"
                R"("subject":{"reference":"urn:hl7v2:resource:1"},"authoredOn":"2019-11-04T06:27:26+02:15",)"
                R"("requester":{"type":"Practitioner","display":"KEITH BELL TEST ONE"},)"
                R"("dosageInstruction":[{"text":"Titrate to BP less than 180","timing":{"code":{"text":"P"},)"
                R"("repeat":{"boundsPeriod":{"start":"2019-11-04T10:30:00+02:15","end":"2019-11-04T11:30:00+02:15"}}},)"
                R"("site":{"coding":[{"code":"HAND","display":"HAND"}]},)"
                R"("route":{"coding":[{"code":"IV","display":"Intravenous"}]},)"
                R"("doseAndRate":[{"doseQuantity":{"value":5,"unit":"mg/hr"}}]}],)"
                R"("dispenseRequest":{"quantity":{"value":3,"unit":"Bag"},"numberOfRepeatsAllowed":12}})");
}

TEST(Hl7v2Orders, RdeDoseRangeTimingCodeAndErrors) {
  std::string head = "MSH|^~\\&|Rx|P|C|D|20240301||RDE^O11|R1|P|2.5.1\rPID|1||MRN9\r";
  Mapping ok = map_rde_o11(parsed(head + "ORC|DC|RX77|||||||20240301\r"
                                         "RXE|^BID^^20240302^20240310|1049621^Oxycodone 5 MG^RXNORM|5|10|mg^^UCUM|||||"
                                         "30|TAB^tablet|0\rRXR|PO^Oral^HL70162\r"));
  ASSERT_EQ(errors(ok), "");
  const Value& mr = ok.resources[1].resource;
  EXPECT_EQ(string_at(mr, "status"), "stopped");  // ORC-1 DC
  EXPECT_EQ(string_at(mr, "authoredOn"), "2024-03-01");
  EXPECT_EQ(fhir::json::write(*mr.find("dosageInstruction")),
            R"([{"timing":{"code":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",)"
            R"("code":"BID"}],"text":"BID"},"repeat":{"boundsPeriod":{"start":"2024-03-02","end":"2024-03-10"}}},)"
            R"("route":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0162","code":"PO",)"
            R"("display":"Oral"}]},"doseAndRate":[{"doseRange":{"low":{"value":5,"unit":"mg","system":)"
            R"("http://unitsofmeasure.org","code":"mg"},"high":{"value":10,"unit":"mg","system":)"
            R"("http://unitsofmeasure.org","code":"mg"}}}]}])");
  EXPECT_EQ(fhir::json::write(*mr.find("dispenseRequest")),
            R"({"quantity":{"value":30,"unit":"tablet"},"numberOfRepeatsAllowed":0})");

  auto first_error = [&](const std::string& body) {
    Mapping out = map_rde_o11(parsed(head + body));
    return out.problems.empty() ? std::string("none") : out.problems[0].where.text();
  };
  EXPECT_EQ(first_error("ORC|NW|RX1\rRXE||\r"), "RXE-2");
  EXPECT_EQ(first_error("ORC|NW\rRXE||1^A^L\r"), "ORC-2");
  EXPECT_EQ(first_error("ORC|NW|RX1\rRXE||1^A^L|five\r"), "RXE-3");
  EXPECT_EQ(first_error("ORC|NW|RX1\rRXE||1^A^L|5|||||||2|X|1.5\r"), "RXE-12");
  EXPECT_EQ(first_error("ORC|NW|RX1\r"), "RXE");
}

// The vendored SIU-S12-01 (booked), and the same appointment as S13, S15 and S26.
TEST(Hl7v2Schedule, SiuSamplesMapToOneAppointment) {
  Message m = parsed(sample("SIU-S12-01.hl7"));
  Mapping out = map_siu(m);
  ASSERT_EQ(errors(out), "");
  ASSERT_EQ(out.resources.size(), 2u);
  EXPECT_EQ(out.resources[1].type, "Appointment");
  EXPECT_EQ(out.resources[1].criteria, (Criteria{{"identifier", "36996"}}));
  EXPECT_EQ(
      json(out.resources[1]),
      R"({"resourceType":"Appointment","identifier":[)" + std::string(kPlac) + R"("value":"12345"},)" + kFill +
          R"("value":"36996"}],"status":"booked","reasonCode":[{"coding":[{"code":"EMERGENCY"}]}],)"
          R"("serviceType":[{"coding":[{"system":"http://snomed.info/sct","code":"76164006",)"
          R"j("display":"Biopsy of colon (procedure)"},{"code":"1212","display":"Biopsy"}]}],)j"
          R"("start":"2021-09-24T09:30:00+02:15","end":"2021-09-24T10:20:00+02:15","minutesDuration":1,)"
          R"("participant":[{"actor":{"reference":"urn:hl7v2:resource:1","type":"Patient"},)"
          R"("status":"accepted"},)"
          R"({"type":[{"coding":[{"code":"101","display":"Equipment"}]}],"actor":{"identifier":{"value":"5001"},)"
          R"("display":"EVIS X12 Video Colonoscope"},"status":"accepted"},)"
          R"({"type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0305","code":"C",)"
          R"("display":"Clinic"}]}],"actor":{"type":"Location","display":"055 Room01 GH Clinic"},"status":"accepted"},)"
          R"({"type":[{"coding":[{"code":"010","display":"Gastroenterologist"}]}],"actor":{"type":)"
          R"("Practitioner","identifier":{"value":"1210"},"display":"Robert C GE"},"status":"accepted"}]})");
  for (const auto& [file, status] : std::vector<std::pair<std::string, std::string>>{
           {"SIU-S13-01.hl7", "booked"}, {"SIU-S15-01.hl7", "cancelled"}, {"SIU-S26-01.hl7", "noshow"}}) {
    Mapping o = map_siu(parsed(sample(file)));
    ASSERT_EQ(errors(o), "") << file;
    EXPECT_EQ(string_at(o.resources.back().resource, "status"), status) << file;
    EXPECT_EQ(o.resources.back().criteria, (Criteria{{"identifier", "36996"}})) << file;
  }
  Mapping none = map_siu(parsed("MSH|^~\\&|S|F|C|D|2024||SIU^S12|X|P|2.5.1\rSCH|||\rRGS|1\r"));
  ASSERT_FALSE(none.problems.empty());
  EXPECT_EQ(none.problems[0].where.text(), "SCH-2");
  EXPECT_EQ(none.problems[0].code, ErrorCode::kRequiredFieldMissing);
}

// The inbound processor over a throwaway SQLite store: an ORU is written in one transaction, its references
// resolved to the stored ids; sent again (a new control id) it updates instead of adding.
class ClinicalInboundTest : public ::testing::Test {
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
    dir_ = fs::temp_directory_path() / ("caduceus-hl7-orders-" + resources::new_resource_id());
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

  std::string send(std::string raw) {
    auto acks = std::make_shared<std::vector<std::string>>();
    std::promise<void> finished;
    processor_->handle(
        std::move(raw), [acks](std::string a) { acks->push_back(std::move(a)); }, [&] { finished.set_value(); }, false);
    finished.get_future().wait();
    return acks->empty() ? std::string() : acks->back();
  }
  static std::string msa(const std::string& ack, std::size_t n = 1) {
    auto m = parse(ack);
    return m && m->first("MSA") ? m->first("MSA")->get(n) : std::string("<none>");
  }

  std::vector<Value> search(const std::string& type, Criteria criteria) {
    auto q = resources::parse_search(type, criteria, *active_->search(), *defs_);
    EXPECT_TRUE(q.has_value());
    std::vector<Value> out;
    if (!q) return out;
    auto page = store_->search(resources::kDefaultTenant, *q);
    EXPECT_TRUE(page.has_value());
    if (page)
      for (const auto& e : page->entries) {
        auto v = fhir::json::parse(e.body);
        EXPECT_TRUE(v.has_value());
        if (v) out.push_back(std::move(*v));
      }
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

TEST_F(ClinicalInboundTest, OruIsStoredWithResolvedReferencesAndUpdatedNotDuplicated) {
  std::string raw = sample("LAB-ORU-1.hl7");
  std::string ack = send(raw);
  ASSERT_EQ(msa(ack), "AA") << ack;
  auto patients = search("Patient", {{"identifier", "10006579"}});
  ASSERT_EQ(patients.size(), 1u);
  std::string patient = "Patient/" + string_at(patients[0], "id");
  // The same specimen id in both orders: one Specimen.
  auto specimens = search("Specimen", {{"identifier", "SpecimenID"}});
  ASSERT_EQ(specimens.size(), 1u);
  auto reports = search("DiagnosticReport", {{"identifier", "82503246"}});
  ASSERT_EQ(reports.size(), 1u);
  const Value& report = reports[0];
  EXPECT_EQ(string_at(report, "subject.reference"), patient);
  EXPECT_EQ(string_at(report, "specimen[0].reference"), "Specimen/" + string_at(specimens[0], "id"));
  ASSERT_EQ(report.find("result")->items().size(), 5u);
  auto orders = search("ServiceRequest", {{"identifier", "88502218"}});
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_EQ(string_at(report, "basedOn[0].reference"), "ServiceRequest/" + string_at(orders[0], "id"));
  auto results = search("Observation", {{"subject", patient}});
  EXPECT_EQ(results.size(), 10u);
  auto erythrocytes = search("Observation", {{"code", "http://loinc.org|11273-0"}});
  ASSERT_EQ(erythrocytes.size(), 1u);
  EXPECT_EQ(string_at(erythrocytes[0], "status"), "preliminary");
  EXPECT_EQ(string_at(erythrocytes[0], "specimen.reference"), "Specimen/" + string_at(specimens[0], "id"));
  bool listed = false;
  for (const Value& r : report.find("result")->items())
    listed = listed || r.find("reference")->text() == "Observation/" + string_at(erythrocytes[0], "id");
  EXPECT_TRUE(listed);

  // LAB-ORU-2: the same orders, now final (another control id): updated, nothing added.
  ASSERT_EQ(msa(send(sample("LAB-ORU-2.hl7"))), "AA");
  EXPECT_EQ(search("Patient", {{"identifier", "10006579"}}).size(), 1u);
  EXPECT_EQ(search("Observation", {{"subject", patient}}).size(), 10u);
  EXPECT_EQ(search("DiagnosticReport", {{"subject", patient}}).size(), 2u);
  EXPECT_EQ(search("Specimen", {{"identifier", "SpecimenID"}}).size(), 1u);
  erythrocytes = search("Observation", {{"code", "http://loinc.org|11273-0"}});
  ASSERT_EQ(erythrocytes.size(), 1u);
  EXPECT_EQ(string_at(erythrocytes[0], "status"), "final");
  EXPECT_EQ(string_at(erythrocytes[0], "valueQuantity.value"), "4.08");
  EXPECT_EQ(string_at(erythrocytes[0], "meta.versionId"), "2");
}

// ORU^R01 with two PATIENT_RESULT groups: each group's results belong to the patient of its own PID, never to the
// first patient of the message.
TEST_F(ClinicalInboundTest, OruWithTwoPatientsFilesEachResultUnderItsOwnPatient) {
  std::string ack = send(
      "MSH|^~\\&|Lab|L|C|D|20240301||ORU^R01|TWO1|P|2.5.1\r"
      "PID|1||MRN-A^^^H&1.2.3&ISO^MR||Alpha^Ann\r"
      "OBR|1|PA|FA|2345-7^Glucose^LN|||202403010800\r"
      "OBX|1|NM|2345-7^Glucose^LN||95|mg/dL^^UCUM|||||F\r"
      "PID|1||MRN-B^^^H&1.2.3&ISO^MR||Beta^Bob\r"
      "OBR|1|PB|FB|2345-7^Glucose^LN|||202403010900\r"
      "OBX|1|NM|2345-7^Glucose^LN||180|mg/dL^^UCUM|||||F\r"
      "OBX|2|NM|2951-2^Sodium^LN||140|mmol/L^^UCUM|||||F\r");
  ASSERT_EQ(msa(ack), "AA") << ack;
  auto a = search("Patient", {{"identifier", "MRN-A"}});
  auto b = search("Patient", {{"identifier", "MRN-B"}});
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(string_at(a[0], "name[0].family"), "Alpha");
  EXPECT_EQ(string_at(b[0], "name[0].family"), "Beta");
  std::string ann = "Patient/" + string_at(a[0], "id"), bob = "Patient/" + string_at(b[0], "id");
  auto anns = search("Observation", {{"subject", ann}});
  auto bobs = search("Observation", {{"subject", bob}});
  ASSERT_EQ(anns.size(), 1u);
  ASSERT_EQ(bobs.size(), 2u);
  EXPECT_EQ(string_at(anns[0], "valueQuantity.value"), "95");
  for (const Value& o : bobs) EXPECT_NE(string_at(o, "valueQuantity.value"), "95");
  auto report_a = search("DiagnosticReport", {{"identifier", "FA"}});
  auto report_b = search("DiagnosticReport", {{"identifier", "FB"}});
  ASSERT_EQ(report_a.size(), 1u);
  ASSERT_EQ(report_b.size(), 1u);
  EXPECT_EQ(string_at(report_a[0], "subject.reference"), ann);
  EXPECT_EQ(string_at(report_b[0], "subject.reference"), bob);
  EXPECT_EQ(report_b[0].find("result")->items().size(), 2u);
  auto order_b = search("ServiceRequest", {{"identifier", "PB"}});
  ASSERT_EQ(order_b.size(), 1u);
  EXPECT_EQ(string_at(order_b[0], "subject.reference"), bob);
}

TEST_F(ClinicalInboundTest, BadResultIsAnsweredAeAndNothingIsWritten) {
  std::string ack = send(
      "MSH|^~\\&|Lab|L|C|D|20240301||ORU^R01|BAD1|P|2.5.1\rPID|1||MRN-BAD\rOBR|1||F9|1^X^L\r"
      "OBX|1|NM|2^Y^L||twelve||||||F\r");
  EXPECT_EQ(msa(ack), "AE");
  auto m = parse(ack);
  ASSERT_TRUE(m.has_value());
  const Segment* err = m->first("ERR");
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->get(2, 1), "OBX");
  EXPECT_EQ(err->get(2, 3), "5");
  EXPECT_EQ(err->get(3), "102");
  EXPECT_TRUE(search("Patient", {{"identifier", "MRN-BAD"}}).empty());
  EXPECT_TRUE(search("DiagnosticReport", {{"identifier", "F9"}}).empty());
}

}  // namespace
}  // namespace caduceus::adapters::hl7v2
