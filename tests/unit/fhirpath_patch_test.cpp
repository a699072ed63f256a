// fhirpath::locate and FhirPathPatch without a server: where selected nodes are, and the edits of each operation
// on primitives with `_x` siblings, choices, repeating parts and contained resources (expected JSON by hand).
#include "caduceus/resources/fhirpath_patch.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/resources/fhirpath.hpp"

namespace caduceus::resources {
namespace {

using fhir::json::Value;

const Definitions& r4() {
  static const std::shared_ptr<const Definitions> kDefinitions = [] {
    auto loaded = Definitions::load(conformance::r4_model_json());
    EXPECT_TRUE(loaded.has_value());
    return loaded ? *loaded : std::shared_ptr<const Definitions>();
  }();
  return *kDefinitions;
}

Value parse(std::string_view text) {
  auto v = fhir::json::parse(text);
  EXPECT_TRUE(v.has_value()) << text;
  return v ? *v : Value();
}

// "name[0].given[1]" for a location ("_given[1]" for a primitive present only as its sibling).
std::string render(const std::vector<fhirpath::PathStep>& steps) {
  std::string out;
  for (const auto& s : steps) {
    if (!out.empty()) out += ".";
    out += s.key;
    if (s.index) out += "[" + std::to_string(*s.index) + "]";
  }
  return out;
}

std::vector<std::string> locations(const Value& resource, std::string_view expression) {
  auto path = fhirpath::FhirPath::compile(expression);
  EXPECT_TRUE(path.has_value()) << expression;
  fhirpath::EvalContext ctx;
  ctx.definitions = &r4();
  auto items = path->evaluate(resource, ctx);
  EXPECT_TRUE(items.has_value()) << expression;
  std::vector<std::string> out;
  for (const auto& item : *items) {
    auto steps = fhirpath::locate(resource, item);
    out.push_back(steps ? "/" + render(*steps) : "none");
  }
  return out;
}

TEST(FhirPathLocateTest, FindsEveryKindOfNode) {
  const Value p = parse(R"({"resourceType":"Patient","id":"x","name":[{"given":["A","B"]},{"family":"F"}],)"
                        R"("_birthDate":{"extension":[{"url":"u","valueString":"s"}]},"deceasedBoolean":false,)"
                        R"("contained":[{"resourceType":"Organization","id":"o","name":"Org"}],)"
                        R"("managingOrganization":{"reference":"#o"}})");
  EXPECT_EQ(locations(p, "Patient"), (std::vector<std::string>{"/"}));
  EXPECT_EQ(locations(p, "Patient.name.given"), (std::vector<std::string>{"/name[0].given[0]", "/name[0].given[1]"}));
  EXPECT_EQ(locations(p, "Patient.name[1].family"), (std::vector<std::string>{"/name[1].family"}));
  EXPECT_EQ(locations(p, "Patient.birthDate"), (std::vector<std::string>{"/_birthDate"}));
  EXPECT_EQ(locations(p, "Patient.deceased"), (std::vector<std::string>{"/deceasedBoolean"}));
  EXPECT_EQ(locations(p, "Patient.managingOrganization.resolve().name"),
            (std::vector<std::string>{"/contained[0].name"}));
  EXPECT_EQ(locations(p, "Patient.name[1].family.upper()"), (std::vector<std::string>{"none"}));
}

std::string op(const std::string& type, const std::string& path, const std::string& more = {}) {
  std::string s = R"({"name":"operation","part":[{"name":"type","valueCode":")" + type +
                  R"("},{"name":"path","valueString":")" + path + R"("})";
  if (!more.empty()) s += "," + more;
  return s + "]}";
}

// Applies the operations to `resource`; the result's JSON text (members in order), or "error <expression>".
std::string apply(const std::string& resource, const std::vector<std::string>& ops) {
  std::string text = R"({"resourceType":"Parameters","parameter":[)";
  for (std::size_t i = 0; i < ops.size(); ++i) text += (i == 0 ? "" : ",") + ops[i];
  auto patch = FhirPathPatch::parse(parse(text + "]}"));
  if (!patch) return "malformed " + patch.error().issues[0].expression;
  Value v = parse(resource);
  if (auto ok = patch->apply(v, r4()); !ok) return "error " + ok.error().issues[0].expression;
  return fhir::json::write(v);
}

TEST(FhirPathPatchTest, PrimitiveListsKeepTheirSiblingsInStep) {
  const std::string p = R"({"resourceType":"Patient","name":[{"given":["A","B"],"_given":[null,{"id":"b"}]}]})";
  EXPECT_EQ(apply(p, {op("delete", "Patient.name.given[1]")}),
            R"({"resourceType":"Patient","name":[{"given":["A"]}]})");
  EXPECT_EQ(apply(p, {op("delete", "Patient.name.given[0]")}),
            R"({"resourceType":"Patient","name":[{"given":["B"],"_given":[{"id":"b"}]}]})");
  EXPECT_EQ(apply(p, {op("add", "Patient.name[0]",
                         R"({"name":"name","valueString":"given"},)"
                         R"({"name":"value","valueString":"C"})")}),
            R"({"resourceType":"Patient","name":[{"given":["A","B","C"],"_given":[null,{"id":"b"},null]}]})");
  EXPECT_EQ(apply(p, {op("replace", "Patient.name.given[1]", R"({"name":"value","valueString":"Bee"})")}),
            R"({"resourceType":"Patient","name":[{"given":["A","Bee"]}]})");
  // Every item of the sibling list is null after the replace: the list goes.
  EXPECT_EQ(apply(p, {op("delete", "Patient.name.given[0]"), op("delete", "Patient.name.given")}),
            R"({"resourceType":"Patient","name":[{}]})");
}

TEST(FhirPathPatchTest, ChoicesAndParts) {
  const std::string o = R"({"resourceType":"Observation","status":"final","code":{"text":"c"}})";
  EXPECT_EQ(apply(o, {op("add", "Observation",
                         R"({"name":"name","valueString":"effective"},)"
                         R"({"name":"value","valueDateTime":"2020-01-01"})")}),
            R"({"resourceType":"Observation","status":"final","code":{"text":"c"},"effectiveDateTime":"2020-01-01"})");
  // A backbone element from parts, with a repeating part given twice and a nested backbone.
  EXPECT_EQ(apply(o, {op("add", "Observation",
                         R"({"name":"name","valueString":"component"},{"name":"value","part":[)"
                         R"({"name":"code","valueCodeableConcept":{"text":"x"}},)"
                         R"({"name":"interpretation","valueCodeableConcept":{"text":"H"}},)"
                         R"({"name":"interpretation","valueCodeableConcept":{"text":"A"}},)"
                         R"({"name":"value","valueInteger":3}]})")}),
            R"({"resourceType":"Observation","status":"final","code":{"text":"c"},"component":[{"code":{"text":"x"},)"
            R"("interpretation":[{"text":"H"},{"text":"A"}],"valueInteger":3}]})");
  // A part the backbone does not have.
  EXPECT_EQ(apply(o, {op("add", "Observation",
                         R"({"name":"name","valueString":"component"},{"name":"value","part":[)"
                         R"({"name":"colour","valueString":"x"}]})")}),
            "error Parameters.parameter[0]");
  // Operations see what the ones before did; the second one fails, so nothing changes (apply is all or nothing).
  EXPECT_EQ(
      apply(o, {op("replace", "Observation.status", R"({"name":"value","valueCode":"amended"})"),
                op("replace", "Observation.status.where($this = 'final')", R"({"name":"value","valueCode":"x"})")}),
      "error Parameters.parameter[1]");
}

TEST(FhirPathPatchTest, MalformedParametersNameTheOperation) {
  const std::string p = R"({"resourceType":"Patient"})";
  EXPECT_EQ(
      apply(p, {op("delete", "Patient.active"), op("move", "Patient.name", R"({"name":"source","valueInteger":0})")}),
      "malformed Parameters.parameter[1]");
  EXPECT_EQ(apply(p, {op("insert", "Patient.name",
                         R"({"name":"index","valueInteger":-1},)"
                         R"({"name":"value","valueHumanName":{}})")}),
            "malformed Parameters.parameter[0]");
  EXPECT_EQ(apply(p, {op("add", "Patient", R"({"name":"name","valueString":"active"},{"name":"value"})")}),
            "malformed Parameters.parameter[0]");
  EXPECT_EQ(apply(p, {op("delete", "Patient.active", R"({"name":"colour","valueString":"x"})")}),
            "malformed Parameters.parameter[0]");
}

}  // namespace
}  // namespace caduceus::resources
