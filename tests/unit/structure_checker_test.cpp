#include "caduceus/resources/structure_checker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "test_server.hpp"

namespace caduceus::resources {
namespace {

const Definitions& r4() {
  static const std::shared_ptr<const Definitions> kDefinitions = [] {
    auto loaded = Definitions::load(conformance::r4_model_json());
    if (!loaded) std::abort();
    return *loaded;
  }();
  return *kDefinitions;
}

std::vector<fhir::Issue> check(std::string_view text) {
  auto parsed = fhir::json::parse(text);
  if (!parsed) {
    ADD_FAILURE() << "test input does not parse: " << text;
    return {};
  }
  return StructureChecker(r4()).check(*parsed);
}

// (code, expression) of each issue, in the order reported.
using Found = std::vector<std::pair<std::string, std::string>>;

Found found(const std::vector<fhir::Issue>& issues) {
  Found out;
  for (const auto& issue : issues) out.emplace_back(issue.code, issue.expression);
  return out;
}

std::string describe(const std::vector<fhir::Issue>& issues) {
  std::string out;
  for (const auto& issue : issues) out += "\n  " + issue.code + " " + issue.expression + ": " + issue.diagnostics;
  return out;
}

struct Case {
  const char* name;
  const char* json;
  Found expected;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      // The root.
      {"minimal resource", R"({"resourceType":"Patient"})", {}},
      {"body not an object", R"(["Patient"])", {{"structure", ""}}},
      {"no resourceType", R"({"id":"x"})", {{"required", ""}}},
      {"unknown resourceType", R"({"resourceType":"Patientx","id":"x"})", {{"invalid", ""}}},
      {"abstract resourceType", R"({"resourceType":"DomainResource"})", {{"invalid", ""}}},
      {"datatype as resourceType", R"({"resourceType":"HumanName"})", {{"invalid", ""}}},
      {"resourceType not a string", R"({"resourceType":5})", {{"structure", "resourceType"}}},
      {"fhir_comments ignored", R"({"resourceType":"Patient","fhir_comments":["hi"]})", {}},

      // Unknown elements.
      {"unknown element", R"({"resourceType":"Patient","foo":1})", {{"structure", "Patient.foo"}}},
      {"unknown nested element",
       R"({"resourceType":"Patient","name":[{"family":"X","foo":"y"}]})",
       {{"structure", "Patient.name[0].foo"}}},
      {"choice name not allowed",
       R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
          "valueMoney":{"value":1}})",
       {{"structure", "Observation.valueMoney"}}},
      {"bare choice stem",
       R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"value":1})",
       {{"structure", "Observation.value"}}},
      {"resourceType inside an element",
       R"({"resourceType":"Patient","name":[{"resourceType":"HumanName",
          "family":"X"}]})",
       {{"structure", "Patient.name[0].resourceType"}}},
      {"ExampleScenario.instance has its own resourceType element",
       R"({"resourceType":"ExampleScenario","status":"draft","instance":[{"resourceId":"a",
          "resourceType":"Patient"}]})",
       {}},

      // Arrays and single values.
      {"array for a single element",
       R"({"resourceType":"Patient","birthDate":["2000-01-01"]})",
       {{"structure", "Patient.birthDate"}}},
      {"single value for an array",
       R"({"resourceType":"Patient","name":{"family":"X"}})",
       {{"structure", "Patient.name"}}},
      {"empty array", R"({"resourceType":"Patient","name":[]})", {{"structure", "Patient.name"}}},
      {"empty object", R"({"resourceType":"Patient","maritalStatus":{}})", {{"structure", "Patient.maritalStatus"}}},
      {"empty object in an array",
       R"({"resourceType":"Patient","name":[{"family":"X"},{}]})",
       {{"structure", "Patient.name[1]"}}},
      {"null single value", R"({"resourceType":"Patient","birthDate":null})", {{"structure", "Patient.birthDate"}}},
      {"null in an array of complex values",
       R"({"resourceType":"Patient","name":[null]})",
       {{"structure", "Patient.name[0]"}}},
      {"string for a complex type",
       R"({"resourceType":"Patient","maritalStatus":"married"})",
       {{"structure", "Patient.maritalStatus"}}},

      // Primitives.
      {"primitive of the wrong JSON type",
       R"({"resourceType":"Patient","name":[{"given":["a",5]}]})",
       {{"value", "Patient.name[0].given[1]"}}},
      {"invalid date", R"({"resourceType":"Patient","birthDate":"1970-13-45"})", {{"value", "Patient.birthDate"}}},
      {"boolean as string", R"({"resourceType":"Patient","active":"true"})", {{"value", "Patient.active"}}},
      {"id too long",
       R"({"resourceType":"Patient","id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})",
       {{"value", "Patient.id"}}},
      {"element id is a string, not an id", R"({"resourceType":"Patient","name":[{"id":"a_b c","family":"X"}]})", {}},
      {"narrative div",
       R"({"resourceType":"Patient","text":{"status":"generated","div":"no div"}})",
       {{"value", "Patient.text.div"}}},
      {"decimal in a choice",
       R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
          "valueQuantity":{"value":"5"}})",
       {{"value", "Observation.valueQuantity.value"}}},
      {"decimals keep their form",
       R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
          "valueQuantity":{"value":1.50},"component":[{"code":{"text":"y"},"valueQuantity":{"value":1e3}}]})",
       {}},

      // Choices.
      {"two types for one choice",
       R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
          "valueString":"a","valueInteger":1})",
       {{"structure", "Observation.valueInteger"}}},
      {"value and extension of one choice type",
       R"({"resourceType":"Observation","status":"final",
          "code":{"text":"x"},"valueString":"a","_valueString":{"id":"v"}})",
       {}},
      {"value and extension of two choice types",
       R"({"resourceType":"Observation","status":"final",
          "code":{"text":"x"},"valueString":"a","_valueBoolean":{"id":"v"}})",
       {{"structure", "Observation.valueBoolean"}}},

      // Primitive extensions.
      {"extension of a primitive",
       R"({"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":{
          "extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime",
          "valueDateTime":"1970-01-01T10:00:00+01:00"}]}})",
       {}},
      {"extension without the value", R"({"resourceType":"Patient","_birthDate":{"id":"b"}})", {}},
      {"extension not an object",
       R"({"resourceType":"Patient","_birthDate":"x"})",
       {{"structure", "Patient.birthDate"}}},
      {"extension of an empty object",
       R"({"resourceType":"Patient","_birthDate":{}})",
       {{"structure", "Patient.birthDate"}}},
      {"extension of a complex element",
       R"({"resourceType":"Patient","_name":[{"id":"x"}]})",
       {{"structure", "Patient.name"}}},
      {"extension with an unknown element",
       R"({"resourceType":"Patient","_birthDate":{"foo":1}})",
       {{"structure", "Patient.birthDate.foo"}}},
      {"invalid extension inside a primitive extension",
       R"({"resourceType":"Patient","_birthDate":{
          "extension":[{"valueInteger":"1"}]}})",
       {{"value", "Patient.birthDate.extension[0].valueInteger"}, {"required", "Patient.birthDate.extension[0].url"}}},
      {"aligned arrays with nulls",
       R"({"resourceType":"Patient","name":[{"given":["a",null,"c"],
          "_given":[null,{"extension":[{"url":"http://x","valueString":"b"}]},null]}]})",
       {}},
      {"extension array alone", R"({"resourceType":"Patient","name":[{"_given":[{"id":"g"}]}]})", {}},
      {"null value without extension",
       R"({"resourceType":"Patient","name":[{"given":["a",null]}]})",
       {{"structure", "Patient.name[0].given[1]"}}},
      {"null in both arrays",
       R"({"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,null]}]})",
       {{"structure", "Patient.name[0].given[1]"}}},
      {"arrays of different lengths",
       R"({"resourceType":"Patient","name":[{"given":["a","b"],
          "_given":[{"id":"x"}]}]})",
       {{"structure", "Patient.name[0].given"}}},
      {"extension of a repeating primitive not an array",
       R"({"resourceType":"Patient","name":[{"given":["a"],
          "_given":{"id":"x"}}]})",
       {{"structure", "Patient.name[0].given"}}},
      {"extension array entry of the wrong kind",
       R"({"resourceType":"Patient","name":[{"given":["a"],
          "_given":["x"]}]})",
       {{"structure", "Patient.name[0].given[0]"}}},
      {"extension array alone with a null",
       R"({"resourceType":"Patient","name":[{"_given":[null]}]})",
       {{"structure", "Patient.name[0].given[0]"}}},

      // Extensions.
      {"extension without url",
       R"({"resourceType":"Patient","extension":[{"valueString":"x"}]})",
       {{"required", "Patient.extension[0].url"}}},
      {"extension with an unknown value type",
       R"({"resourceType":"Patient","extension":[{"url":"http://x",
          "valueFoo":"x"}]})",
       {{"structure", "Patient.extension[0].valueFoo"}}},
      {"nested extensions",
       R"({"resourceType":"Patient","modifierExtension":[{"url":"http://x",
          "extension":[{"url":"a","valueCodeableConcept":{"text":"t"}},{"url":"b","valueDate":"2019-02-29"}]}]})",
       {{"value", "Patient.modifierExtension[0].extension[1].valueDate"}}},

      // Required elements.
      {"required elements missing",
       R"({"resourceType":"Observation","id":"o"})",
       {{"required", "Observation.status"}, {"required", "Observation.code"}}},
      {"required choice missing",
       R"({"resourceType":"MedicationRequest","status":"active","intent":"order",
          "subject":{"reference":"Patient/1"}})",
       {{"required", "MedicationRequest.medication"}}},
      {"required element given by its extension only",
       R"({"resourceType":"Observation","code":{"text":"x"},
          "_status":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason",
          "valueCode":"unknown"}]}})",
       {}},
      {"required in a backbone element",
       R"({"resourceType":"Patient","link":[{"type":"seealso"}]})",
       {{"required", "Patient.link[0].other"}}},
      {"required in a contentReference",
       R"({"resourceType":"Questionnaire","status":"draft","item":[{
          "linkId":"1","type":"group","item":[{"type":"string"}]}]})",
       {{"required", "Questionnaire.item[0].item[0].linkId"}}},

      // Resources inside resources.
      {"contained resource",
       R"({"resourceType":"Patient","contained":[{"resourceType":"Practitioner",
          "id":"p"},{"resourceType":"Patient","birthDate":"bad"}]})",
       {{"value", "Patient.contained[1].birthDate"}}},
      {"contained without resourceType",
       R"({"resourceType":"Patient","contained":[{"id":"p"}]})",
       {{"required", "Patient.contained[0]"}}},
      {"contained of an unknown type",
       R"({"resourceType":"Patient","contained":[{"resourceType":"Nope"}]})",
       {{"invalid", "Patient.contained[0]"}}},
      {"contained in contained",
       R"({"resourceType":"Patient","contained":[{"resourceType":"Patient",
          "contained":[{"resourceType":"Patient"}]}]})",
       {{"structure", "Patient.contained[0].contained"}}},
      {"contained not an object",
       R"({"resourceType":"Patient","contained":["x"]})",
       {{"structure", "Patient.contained[0]"}}},
      {"bundle entry resource",
       R"({"resourceType":"Bundle","type":"collection","entry":[
          {"resource":{"resourceType":"Patient"}},{"resource":{"resourceType":"Patient","gender":5}}]})",
       {{"value", "Bundle.entry[1].resource.gender"}}},
      {"bundle entry resources may contain",
       R"({"resourceType":"Bundle","type":"collection","entry":[
          {"resource":{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o"}]}}]})",
       {}},
      {"parameters resource",
       R"({"resourceType":"Parameters","parameter":[{"name":"p","resource":{
          "resourceType":"Observation","status":"final","code":{"text":"x"},"foo":1}},
          {"name":"q","part":[{"name":"r","valueBoolean":"yes"}]}]})",
       {{"structure", "Parameters.parameter[0].resource.foo"},
        {"value", "Parameters.parameter[1].part[0].valueBoolean"}}},

      // Every issue, not just the first.
      {"several issues at once",
       R"({"resourceType":"Patient","foo":1,"birthDate":"2019-02-29",
          "name":[{"given":[1,2]}],"gender":["male"],"bar":{}})",
       {{"structure", "Patient.foo"},
        {"value", "Patient.birthDate"},
        {"value", "Patient.name[0].given[0]"},
        {"value", "Patient.name[0].given[1]"},
        {"structure", "Patient.gender"},
        {"structure", "Patient.bar"}}},
  };
  return kCases;
}

TEST(StructureChecker, Cases) {
  for (const Case& c : cases()) {
    const auto issues = check(c.json);
    EXPECT_EQ(found(issues), c.expected) << c.name << describe(issues);
  }
}

TEST(StructureChecker, DiagnosticsNameTheProblem) {
  const auto unknown = check(R"({"resourceType":"Patient","nmae":[{"family":"X"}]})");
  ASSERT_EQ(unknown.size(), 1u);
  EXPECT_NE(unknown[0].diagnostics.find("nmae"), std::string::npos) << unknown[0].diagnostics;
  EXPECT_EQ(unknown[0].severity, fhir::Severity::kError);

  const auto date = check(R"({"resourceType":"Patient","birthDate":"1970-13-45"})");
  ASSERT_EQ(date.size(), 1u);
  EXPECT_NE(date[0].diagnostics.find("1970-13-45"), std::string::npos) << date[0].diagnostics;

  const auto type = check(R"({"resourceType":"Nope"})");
  ASSERT_EQ(type.size(), 1u);
  EXPECT_NE(type[0].diagnostics.find("Nope"), std::string::npos) << type[0].diagnostics;

  const auto required = check(R"({"resourceType":"Observation","code":{"text":"x"}})");
  ASSERT_EQ(required.size(), 1u);
  EXPECT_NE(required[0].diagnostics.find("status"), std::string::npos) << required[0].diagnostics;
}

TEST(StructureChecker, IssuesAreCapped) {
  std::string text = R"({"resourceType":"Patient")";
  for (int i = 0; i < 2000; ++i) text += ",\"x" + std::to_string(i) + "\":1";
  text += "}";
  const auto issues = check(text);
  EXPECT_LT(issues.size(), 1000u);
  EXPECT_EQ(issues.back().code, "too-costly");
}

using caduceus::test::read_file;

// Copies of official R4 examples (tests/data/checker/NOTICE.md): each must pass untouched.
TEST(StructureChecker, OfficialExamplesPass) {
  const std::filesystem::path dir = std::filesystem::path(CADUCEUS_TEST_DATA) / "checker";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    ++count;
    const auto issues = check(read_file(entry.path()));
    EXPECT_TRUE(issues.empty()) << entry.path().filename() << describe(issues);
  }
  EXPECT_GE(count, 10);
}

// The examples of R4 4.0.1 that break the structural rules themselves.
const std::map<std::string, std::string>& known_invalid_examples() {
  static const std::map<std::string, std::string> kKnown = {
      {"ImplementationGuide-fhir.json", "no name and no status (both 1..1)"},
      {"ig-r4.json", "the same ImplementationGuide: no name and no status (both 1..1)"},
      {"Questionnaire-qs1.json", "nested items without linkId (1..1)"},
      {"SearchParameter-codesystem-extensions-CodeSystem-author.json", "no base (1..*)"},
      {"SearchParameter-codesystem-extensions-CodeSystem-effective.json", "no base (1..*)"},
      {"SearchParameter-codesystem-extensions-CodeSystem-end.json", "no base (1..*)"},
      {"SearchParameter-codesystem-extensions-CodeSystem-keyword.json", "no base (1..*)"},
      {"SearchParameter-codesystem-extensions-CodeSystem-workflow.json", "no base (1..*)"},
      {"SearchParameter-valueset-extensions-ValueSet-author.json", "no base (1..*)"},
      {"SearchParameter-valueset-extensions-ValueSet-effective.json", "no base (1..*)"},
      {"SearchParameter-valueset-extensions-ValueSet-end.json", "no base (1..*)"},
      {"SearchParameter-valueset-extensions-ValueSet-keyword.json", "no base (1..*)"},
      {"SearchParameter-valueset-extensions-ValueSet-workflow.json", "no base (1..*)"},
      {"SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json",
       "id of 66 characters (an id has at most 64)"},
  };
  return kKnown;
}

// Every example of the official package (hl7.fhir.r4.examples 4.0.1, vendored in tests/data/r4-examples and
// unpacked by the build; CADUCEUS_R4_EXAMPLES may name another folder). Only the known invalid examples may fail.
TEST(StructureChecker, AllOfficialExamples) {
  const std::filesystem::path dir = test::r4_examples_dir();
  if (dir.empty()) GTEST_SKIP() << "the official examples are not unpacked (or set CADUCEUS_R4_EXAMPLES)";
  int passed = 0;
  std::vector<std::string> failed;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    auto parsed = fhir::json::parse(read_file(entry.path()));
    ASSERT_TRUE(parsed.has_value()) << entry.path();
    if (!parsed->is_object() || parsed->find("resourceType") == nullptr) continue;  // package.json
    const auto issues = StructureChecker(r4()).check(*parsed);
    const std::string name = entry.path().filename().string();
    if (issues.empty()) {
      ++passed;
      EXPECT_FALSE(known_invalid_examples().contains(name)) << name << " passes now: take it off the list";
    } else {
      failed.push_back(name);
      EXPECT_TRUE(known_invalid_examples().contains(name)) << name << describe(issues);
    }
  }
  std::cout << passed << " examples pass, " << failed.size() << " fail (all known)\n";
  EXPECT_GT(passed, 5000);
}

}  // namespace
}  // namespace caduceus::resources
