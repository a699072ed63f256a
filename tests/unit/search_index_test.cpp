#include "caduceus/resources/search_index.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/datetime.hpp"
#include "test_server.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;

struct Fixture {
  std::shared_ptr<const Definitions> defs = *Definitions::load(conformance::r4_model_json());
  std::shared_ptr<const SearchParameterRegistry> registry =
      *SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  std::shared_ptr<const SearchIndexer> indexer = *SearchIndexer::create(*defs, *registry);
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

json::Value example(const std::string& name) {
  std::ifstream in(std::filesystem::path(CADUCEUS_TEST_DATA) / "checker" / name);
  std::stringstream ss;
  ss << in.rdbuf();
  return *json::parse(ss.str());
}

template <class Row>
std::vector<Row> of(const std::vector<Row>& rows, std::string_view param) {
  std::vector<Row> out;
  for (const auto& r : rows)
    if (r.param == param) out.push_back(r);
  return out;
}

TEST(SearchIndex, ObservationValues) {
  std::vector<std::string> failures;
  IndexValues v = fixture().indexer->extract(example("Observation-example.json"), &failures);
  EXPECT_TRUE(failures.empty()) << failures.front();

  auto code = of(v.tokens, "code");
  ASSERT_EQ(code.size(), 4u);
  EXPECT_EQ(code[0].system, "http://loinc.org");
  EXPECT_EQ(code[0].code, "29463-7");
  EXPECT_EQ(code[0].text, "body weight");

  auto status = of(v.tokens, "status");
  ASSERT_EQ(status.size(), 1u);
  EXPECT_FALSE(status[0].system.has_value());
  EXPECT_EQ(status[0].code, "final");

  auto subject = of(v.references, "subject");
  ASSERT_EQ(subject.size(), 1u);
  EXPECT_EQ(subject[0].type, "Patient");
  EXPECT_EQ(subject[0].id, "example");
  EXPECT_EQ(of(v.references, "patient").size(), 1u);  // subject.where(resolve() is Patient)

  auto date = of(v.dates, "date");
  ASSERT_EQ(date.size(), 1u);
  auto day = fhir::datetime_range("2016-03-28");
  EXPECT_EQ(date[0].low_ms, day->first);
  EXPECT_EQ(date[0].high_ms, day->second);

  auto quantity = of(v.quantities, "value-quantity");
  ASSERT_EQ(quantity.size(), 1u);
  EXPECT_EQ(quantity[0].value, "185");
  EXPECT_DOUBLE_EQ(quantity[0].low, 184.5);
  EXPECT_DOUBLE_EQ(quantity[0].high, 185.5);
  EXPECT_EQ(quantity[0].system, "http://unitsofmeasure.org");
  EXPECT_EQ(quantity[0].code, "[lb_av]");
}

// Quantities whose exponent is beyond the exact decimals of search values (as in the official Observation-decimal
// example, found by the composite oracle comparison): indexed in double precision, the value plus or minus half a
// unit of its last significant digit.
TEST(SearchIndex, QuantitiesWithLargeExponents) {
  auto obs = json::parse(R"({"resourceType":"Observation","status":"final","code":{"text":"x"},
    "valueQuantity":{"value":2.5E+100,"unit":"g"},
    "component":[{"code":{"text":"a"},"valueQuantity":{"value":1.000000000000000000E-245,"unit":"g"}},
                 {"code":{"text":"b"},"valueQuantity":{"value":-1.0E+245,"unit":"g"}},
                 {"code":{"text":"c"},"valueQuantity":{"unit":"g"}}]})");
  ASSERT_TRUE(obs.has_value()) << obs.error().issues[0].diagnostics;
  std::vector<std::string> failures;
  IndexValues v = fixture().indexer->extract(*obs, &failures);
  EXPECT_TRUE(failures.empty()) << failures.front();

  auto value = of(v.quantities, "value-quantity");
  ASSERT_EQ(value.size(), 1u);
  EXPECT_EQ(value[0].value, "2.5E+100");
  EXPECT_DOUBLE_EQ(value[0].low, 2.45e100);  // half a unit of the last digit: 0.05e100
  EXPECT_DOUBLE_EQ(value[0].high, 2.55e100);
  EXPECT_EQ(value[0].unit, "g");

  auto components = of(v.quantities, "component-value-quantity");
  ASSERT_EQ(components.size(), 2u);
  EXPECT_EQ(components[0].value, "1.000000000000000000E-245");
  EXPECT_DOUBLE_EQ(components[0].low, 1e-245);  // +- 5e-264, below double precision
  EXPECT_DOUBLE_EQ(components[0].high, 1e-245);
  EXPECT_LE(components[0].low, 1e-245);
  EXPECT_GE(components[0].high, 1e-245);
  EXPECT_EQ(components[1].value, "-1.0E+245");
  EXPECT_DOUBLE_EQ(components[1].low, -1.05e245);  // +- 0.05e245
  EXPECT_DOUBLE_EQ(components[1].high, -0.95e245);

  // The composite: items 0 and 1 of Observation.component have both components; item 2 has no value.
  std::vector<std::pair<std::int64_t, std::int64_t>> positions;
  for (const CompositeIndex& row : of(v.composites, "component-code-value-quantity")) {
    positions.emplace_back(row.item, row.component);
    if (row.component == 1) EXPECT_EQ(row.unit, "g");
  }
  EXPECT_EQ(positions, (std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 0}, {0, 1}, {1, 0}, {1, 1}}));
}

TEST(SearchIndex, PatientValues) {
  IndexValues v = fixture().indexer->extract(example("Patient-example.json"));
  auto family = of(v.strings, "family");
  ASSERT_EQ(family.size(), 2u);
  EXPECT_EQ(family[0].exact, "Chalmers");
  EXPECT_EQ(family[0].normalized, "chalmers");
  // name covers family, given, prefix, suffix and text of every HumanName.
  std::vector<std::string> names;
  for (const auto& s : of(v.strings, "name")) names.push_back(s.exact);
  EXPECT_EQ(names, (std::vector<std::string>{"Chalmers", "Peter", "James", "Jim", "Windsor", "Peter", "James"}));

  auto birthdate = of(v.dates, "birthdate");
  ASSERT_EQ(birthdate.size(), 1u);
  EXPECT_EQ(birthdate[0].high_ms - birthdate[0].low_ms, 86400000);

  auto identifier = of(v.tokens, "identifier");
  ASSERT_EQ(identifier.size(), 1u);
  EXPECT_EQ(identifier[0].system, "urn:oid:1.2.36.146.595.217.0.1");
  EXPECT_EQ(identifier[0].code, "12345");

  auto gender = of(v.tokens, "gender");
  ASSERT_EQ(gender.size(), 1u);
  EXPECT_EQ(gender[0].code, "male");

  auto id = of(v.tokens, "_id");
  ASSERT_EQ(id.size(), 1u);
  EXPECT_EQ(id[0].code, "example");
}

// Every official example of the vendored set is indexed without an expression failing.
TEST(SearchIndex, EveryOfficialExampleIndexes) {
  const std::filesystem::path dir = test::r4_examples_dir();
  if (dir.empty()) GTEST_SKIP() << "the official examples are not unpacked (or set CADUCEUS_R4_EXAMPLES)";
  std::size_t resources = 0, rows = 0;
  std::vector<std::string> failures;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    auto parsed = json::parse(ss.str());
    if (!parsed || !parsed->is_object()) continue;
    std::vector<std::string> f;
    IndexValues v = fixture().indexer->extract(*parsed, &f);
    for (auto& e : f) failures.push_back(entry.path().filename().string() + " " + e);
    ++resources;
    rows += v.strings.size() + v.tokens.size() + v.references.size() + v.dates.size() + v.numbers.size() +
            v.quantities.size() + v.uris.size();
  }
  EXPECT_GT(resources, 5000u);
  EXPECT_GT(rows, resources);
  std::string report;
  for (std::size_t i = 0; i < failures.size() && i < 20; ++i) report += "\n  " + failures[i];
  EXPECT_TRUE(failures.empty()) << failures.size() << " expression failures:" << report;
}

TEST(ExpressionRoots, NamesTheElementsOfTermsThatGiveNothingFromNothing) {
  using V = std::vector<std::string>;
  EXPECT_EQ(expression_roots("Observation.code"), V{"code"});
  EXPECT_EQ(expression_roots("Observation.code | Observation.component.code"), (V{"code", "component"}));
  EXPECT_EQ(expression_roots("(Observation.value as Quantity) | (Observation.value as SampledData)"),
            (V{"value", "value"}));
  EXPECT_EQ(expression_roots("Observation.subject.where(resolve() is Patient)"), V{"subject"});
  EXPECT_EQ(expression_roots("Patient.telecom.where(system='phone' or system = 'sms')"), V{"telecom"});
  EXPECT_EQ(expression_roots("Resource.meta.tag"), V{"meta"});
  EXPECT_EQ(expression_roots("Bundle.entry[0].resource"), V{"entry"});
  EXPECT_EQ(expression_roots("Patient.name.given.first()"), V{"name"});
  EXPECT_EQ(expression_roots("Observation.value.as(Quantity)"), V{"value"});
  // Cannot tell: the resource itself, a function or variable first, or a step that may give a value from nothing.
  EXPECT_TRUE(expression_roots("Observation | Observation.component").empty());
  EXPECT_TRUE(expression_roots("Patient.deceased.exists() and Patient.deceased != false").empty());
  EXPECT_TRUE(expression_roots("iif(Patient.active, 'a', 'b')").empty());
  EXPECT_TRUE(expression_roots("%resource.code").empty());
  EXPECT_TRUE(expression_roots("Patient.extension('http://example.org/x')").empty());
  EXPECT_TRUE(expression_roots("Observation.code.combine(Observation.category)").empty());
  EXPECT_TRUE(expression_roots("Patient.name.empty()").empty());
  EXPECT_TRUE(expression_roots("Patient.name & 'x'").empty());
  EXPECT_TRUE(expression_roots("Patient.name | Patient.active.not()").empty());
}

TEST(ExpressionRoots, ChoiceTypesAndPrimitiveExtensionsCount) {
  auto resource = *json::parse(
      R"({"resourceType":"Observation","status":"final","valueQuantity":{"value":1},"_issued":{"id":"x"}})");
  EXPECT_TRUE(has_any_root(resource, {"value"}));
  EXPECT_TRUE(has_any_root(resource, {"subject", "issued"}));
  EXPECT_TRUE(has_any_root(resource, {"status"}));
  EXPECT_FALSE(has_any_root(resource, {"subject", "code"}));
  EXPECT_FALSE(has_any_root(resource, {"stat"}));  // (a prefix is not the element)
}

// The premise of skipping an expression (SearchIndexer::extract): for every official example and every search
// parameter of its type whose expression names its roots, the expression gives nothing once those elements are
// removed from the resource.
TEST(ExpressionRoots, EveryOfficialExampleGivesNothingWithoutTheRoots) {
  const std::filesystem::path dir = test::r4_examples_dir();
  if (dir.empty()) GTEST_SKIP() << "the official examples are not unpacked (or set CADUCEUS_R4_EXAMPLES)";
  const Fixture& f = fixture();
  fhirpath::EvalContext ctx;
  ctx.definitions = f.defs.get();
  std::map<std::string, std::vector<std::pair<std::vector<std::string>, fhirpath::FhirPath>>> by_type;
  std::size_t checked = 0, skipped_with_values = 0;
  std::vector<std::string> wrong;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    auto parsed = json::parse(test::read_file(entry.path()));
    if (!parsed || !parsed->is_object()) continue;
    const json::Value* rt = parsed->find("resourceType");
    if (rt == nullptr || !rt->is_string()) continue;
    const std::string type(rt->text());
    if (!by_type.contains(type)) {
      auto& list = by_type[type];
      for (const SearchParameter* p : f.registry->for_type(type)) {
        if (p->type == SearchParamType::kSpecial || p->expression_for(type).empty()) continue;
        std::vector<std::string> roots = expression_roots(p->expression_for(type));
        if (roots.empty()) continue;
        list.emplace_back(std::move(roots), *fhirpath::FhirPath::compile(p->expression_for(type)));
      }
    }
    std::map<std::vector<std::string>, json::Value> without_roots;  // (one copy per set of roots)
    for (const auto& [roots, path] : by_type[type]) {
      auto [it, added] = without_roots.try_emplace(roots, json::Value::object());
      json::Value& without = it->second;
      if (added) {
        for (const auto& [key, value] : parsed->members()) {
          json::Value one = json::Value::object();
          one.members().emplace_back(key, json::Value());
          if (!has_any_root(one, roots)) without.members().emplace_back(key, value);
        }
      }
      if (without.members().size() == parsed->members().size()) continue;  // (no root there: nothing to learn)
      auto with_values = path.evaluate(*parsed, ctx);
      if (with_values && !with_values->empty()) ++skipped_with_values;
      auto result = path.evaluate(without, ctx);
      ++checked;
      if (result && !result->empty()) wrong.push_back(entry.path().filename().string() + " " + roots.front());
    }
  }
  EXPECT_GT(checked, 20000u);
  EXPECT_GT(skipped_with_values, 10000u);  // (the removed elements did give values)
  std::string report;
  for (std::size_t i = 0; i < wrong.size() && i < 20; ++i) report += "\n  " + wrong[i];
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " expressions gave values without their roots:" << report;
}

}  // namespace
}  // namespace caduceus::resources
