#include "caduceus/resources/fhirpath.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "caduceus/conformance/embedded.hpp"

namespace caduceus::resources::fhirpath {
namespace {

const Definitions& r4() {
  static const std::shared_ptr<const Definitions> kDefinitions = [] {
    auto loaded = Definitions::load(conformance::r4_model_json());
    EXPECT_TRUE(loaded.has_value());
    return loaded ? *loaded : std::shared_ptr<const Definitions>();
  }();
  return *kDefinitions;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const fhir::json::Value& example(const std::string& name) {
  static std::map<std::string, fhir::json::Value> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    auto parsed =
        fhir::json::parse(read_text(std::filesystem::path(CADUCEUS_TEST_DATA) / "checker" / (name + ".json")));
    EXPECT_TRUE(parsed.has_value()) << name;
    it = cache.emplace(name, parsed ? std::move(*parsed) : fhir::json::Value()).first;
  }
  return it->second;
}

// One item as text: primitives by their value, complex nodes by their type in angle brackets, quantities as
// `value 'unit'`.
std::string render(const Item& item) {
  switch (item.kind) {
    case Item::Kind::kNode:
      if (item.node == nullptr || item.node->is_object() || item.node->is_array()) {
        std::string out = "<";
        out.append(item.type_name());
        out.push_back('>');
        return out;
      }
      if (item.node->is_bool()) return item.node->as_bool() ? "true" : "false";
      return item.node->text();
    case Item::Kind::kBoolean: return item.boolean ? "true" : "false";
    case Item::Kind::kInteger: return std::to_string(item.integer);
    case Item::Kind::kQuantity: return item.text + " '" + item.unit + "'";
    default: return item.text;
  }
}

std::string render(const Collection& c) {
  std::string out = "[";
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (i > 0) out += ", ";
    out += render(c[i]);
  }
  return out + "]";
}

// The rendered result, or "error: <diagnostics>".
std::string run(std::string_view expression, const fhir::json::Value& resource, bool with_model = true) {
  auto compiled = FhirPath::compile(expression);
  if (!compiled) return "compile error: " + compiled.error().issues.front().diagnostics;
  EvalContext ctx;
  if (with_model) ctx.definitions = &r4();
  auto result = compiled->evaluate(resource, ctx);
  if (!result) return "error: " + result.error().issues.front().diagnostics;
  return render(*result);
}

struct Case {
  const char* resource;  // a file of tests/data/checker without .json, or "" for an empty Parameters
  const char* expression;
  const char* expected;
};

void check_cases(const std::vector<Case>& cases) {
  fhir::json::Value empty = fhir::json::Value::object();
  empty.set("resourceType", fhir::json::Value::string("Parameters"));
  for (const Case& c : cases) {
    const fhir::json::Value& resource = std::string_view(c.resource).empty() ? empty : example(c.resource);
    EXPECT_EQ(run(c.expression, resource), c.expected) << c.expression;
  }
}

TEST(FhirPathNavigation, PathsTypesAndChoices) {
  check_cases({
      {"Patient-example", "Patient.name.family", "[Chalmers, Windsor]"},
      {"Patient-example", "name.given", "[Peter, James, Jim, Peter, James]"},
      {"Patient-example", "Patient.name", "[<HumanName>, <HumanName>, <HumanName>]"},
      {"Patient-example", "Observation.name", "[]"},
      {"Patient-example", "DomainResource.id", "[example]"},
      {"Patient-example", "Patient.name[1].given", "[Jim]"},
      {"Patient-example", "Patient.name[5]", "[]"},
      {"Patient-example", "Patient.deceased", "[false]"},
      {"Patient-example", "Patient.deceased is boolean", "[true]"},
      {"Patient-example", "Patient.birthDate.extension.value", "[1974-12-25T14:35:45-05:00]"},
      {"Patient-example",
       "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime')"
       ".value is dateTime",
       "[true]"},
      {"Patient-example", "Patient.contact.name.family.extension.value", "[VV]"},
      {"Patient-example", "Patient.birthDate.value", "[1974-12-25]"},
      {"Patient-example", "Patient.birthDate.value is date", "[true]"},
      {"Patient-example", "Patient.name.given.getValue()", "[]"},
      {"Patient-example", "Patient.gender.getValue()", "[male]"},
      {"Patient-example", "Patient.gender.getValue() is System.String", "[true]"},
      {"Patient-example", "Patient.gender is System.String", "[false]"},
      {"Patient-example", "Patient.gender is code", "[true]"},
      {"Patient-example", "Patient.gender is string", "[true]"},
      {"Patient-example", "Patient.contact.relationship.coding.code", "[N]"},
      {"Patient-example", "Patient.contact.first() is Patient.contact", "[true]"},
      {"Patient-example", "Patient.`gender`", "[male]"},
      {"Patient-example", "Patient.managingOrganization.reference", "[Organization/1]"},
      {"Patient-example", "Patient.telecom.where(system = 'phone').value",
       "[(03) 5555 6473, (03) 3410 5613, (03) 5555 8834]"},
      {"Patient-example", "Patient.telecom.where(system = 'phone' and rank > 1).use", "[mobile]"},
      {"Patient-example", "Patient.telecom.select(rank)", "[1, 2]"},
      {"Patient-example", "%resource.id", "[example]"},
      {"Patient-example", "%context.active", "[true]"},
      {"Patient-example", "$this.gender", "[male]"},
      {"Patient-example", "Patient.children().count()", "[17]"},
      {"Patient-example", "Patient.descendants().ofType(HumanName).count()", "[4]"},
      {"Patient-example", "Patient.name.where(given = 'Jim').use", "[usual]"},
      {"Patient-example", "Patient.name.where($this.use = 'maiden').period.end", "[2002]"},
      {"Patient-example", "Patient.name.select(given.first() + ' ' + family)", "[Peter Chalmers, Peter Windsor]"},
      {"Patient-example", "Patient.name.given.select($index)", "[0, 1, 2, 3, 4]"},
      {"Observation-example", "Observation.value", "[<Quantity>]"},
      {"Observation-example", "Observation.value.value", "[185]"},
      {"Observation-example", "(Observation.value as Quantity).unit", "[lbs]"},
      {"Observation-example", "Observation.value.as(Quantity).code", "[[lb_av]]"},
      {"Observation-example", "Observation.value as Period", "[]"},
      {"Observation-example", "Observation.value.ofType(Quantity).system", "[http://unitsofmeasure.org]"},
      {"Observation-example", "Observation.value is Quantity", "[true]"},
      {"Observation-example", "Observation.value is FHIR.Quantity", "[true]"},
      {"Observation-example", "Observation.value is System.Quantity", "[false]"},
      {"Observation-example", "Observation.effective", "[2016-03-28]"},
      {"Observation-example", "Observation.effective > @2016-01-01", "[true]"},
      {"Observation-example", "Observation.value > 100 '[lb_av]'", "[true]"},
      {"Observation-example", "Observation.value = 185 '[lb_av]'", "[true]"},
      {"Observation-example", "Observation.code.coding.where(system = %loinc).code", "[29463-7, 3141-9]"},
      {"Observation-example", "Observation.subject.where(resolve() is Patient)", "[<Reference>]"},
      {"Observation-example", "Observation.subject.where(resolve() is Group)", "[]"},
      {"Observation-example", "Observation.subject.resolve()", "[<Patient>]"},
      {"Observation-example", "Observation.encounter.resolve() is Encounter", "[true]"},
      {"Observation-example", "Observation.subject.resolve().name", "[]"},
      {"Bundle-bundle-response", "Bundle.entry[0].resource", "[<Patient>]"},
      {"Bundle-bundle-response", "Bundle.entry.resource.ofType(Patient).id.exists()", "[true]"},
      {"Bundle-bundle-response", "Bundle.entry[0].resource is DomainResource", "[true]"},
      {"Bundle-bundle-response", "Bundle.entry.response.status.first()", "[201 Created]"},
  });
}

TEST(FhirPathNavigation, ResolvesContainedAndAbsoluteReferences) {
  auto parsed = fhir::json::parse(R"({"resourceType":"Observation","status":"final",
    "contained":[{"resourceType":"Patient","id":"p1","gender":"female"}],
    "subject":{"reference":"#p1"},
    "performer":[{"reference":"http://x/fhir/Practitioner/9/_history/2"},{"reference":"urn:uuid:1234"},
                 {"display":"no reference"}]})");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(run("Observation.subject.resolve().gender", *parsed), "[female]");
  EXPECT_EQ(run("Observation.subject.where(resolve() is Patient).reference", *parsed), "[#p1]");
  EXPECT_EQ(run("Observation.performer.resolve()", *parsed), "[<Practitioner>]");
  EXPECT_EQ(run("Observation.contained.gender", *parsed), "[female]");
  EXPECT_EQ(run("Observation.contained.ofType(Patient).id", *parsed), "[p1]");

  auto compiled = FhirPath::compile("Observation.performer.resolve().id");
  ASSERT_TRUE(compiled.has_value());
  auto target = fhir::json::parse(R"({"resourceType":"Practitioner","id":"from-resolver"})");
  EvalContext ctx;
  ctx.definitions = &r4();
  ctx.resolver = [&](std::string_view ref) -> const fhir::json::Value* {
    return ref == "urn:uuid:1234" ? &*target : nullptr;
  };
  auto result = compiled->evaluate(*parsed, ctx);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(render(*result), "[from-resolver]");
}

TEST(FhirPathNavigation, UnionKeepsElementsThatDifferAnywhere) {
  // As the reference engine: complex elements are the same when their whole trees are (numbers to 8 places).
  auto parsed = fhir::json::parse(R"({"resourceType":"Observation","status":"final","component":[
    {"valueQuantity":{"value":60,"comparator":">","unit":"mL"}},{"valueQuantity":{"value":60,"unit":"mL"}},
    {"valueQuantity":{"unit":"mL","value":60.0}},{"valueQuantity":{"value":1E-22}},{"valueQuantity":{"value":1E-245}}]})");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(run("(Observation.component.value as Quantity).count()", *parsed), "[5]");
  EXPECT_EQ(run("(Observation.component.value as Quantity | {}).count()", *parsed), "[3]");
  EXPECT_EQ(run("Observation.component[1].value = Observation.component[2].value", *parsed), "[true]");
  EXPECT_EQ(run("Observation.component[0].value = Observation.component[1].value", *parsed), "[false]");
}

TEST(FhirPathNavigation, EvaluatesFromAnItem) {
  // A composite parameter: component expressions on each item of the main expression.
  auto parsed = fhir::json::parse(R"({"resourceType":"Observation","status":"final","component":[
    {"code":{"coding":[{"code":"8480-6"}]},"valueQuantity":{"value":107,"code":"mm[Hg]"}},
    {"code":{"coding":[{"code":"8462-4"}]},"valueQuantity":{"value":60,"code":"mm[Hg]"}}]})");
  ASSERT_TRUE(parsed.has_value());
  EvalContext ctx;
  ctx.definitions = &r4();
  auto main = FhirPath::compile("Observation.component");
  auto code = FhirPath::compile("code.coding.code");
  auto value = FhirPath::compile("value.as(Quantity).value");
  auto resource = FhirPath::compile("%resource.status");
  ASSERT_TRUE(main && code && value && resource);
  auto components = main->evaluate(*parsed, ctx);
  ASSERT_TRUE(components.has_value());
  ASSERT_EQ(components->size(), 2u);
  std::string pairs;
  for (const Item& component : *components) {
    EXPECT_EQ(component.type_name(), "Observation.component");
    pairs += render(*code->evaluate(component, *parsed, ctx)) + "=" + render(*value->evaluate(component, *parsed, ctx));
    pairs += render(*resource->evaluate(component, *parsed, ctx)) + ";";
  }
  EXPECT_EQ(pairs, "[8480-6]=[107][final];[8462-4]=[60][final];");
}

TEST(FhirPathNavigation, WorksWithoutTheModel) {
  const auto& patient = example("Patient-example");
  EXPECT_EQ(run("Patient.name.family", patient, false), "[Chalmers, Windsor]");
  EXPECT_EQ(run("Patient.birthDate", patient, false), "[1974-12-25]");
  EXPECT_EQ(run("Patient.birthDate < @2000-01-01", patient, false), "[true]");
  EXPECT_EQ(run("Patient.deceased", patient, false), "[]");  // choices need the model
}

TEST(FhirPathOperators, PrecedenceAndArithmetic) {
  check_cases({
      {"", "1 + 2 * 3", "[7]"},
      {"", "(1 + 2) * 3", "[9]"},
      {"", "10 - 4 - 3", "[3]"},
      {"", "7 div 2", "[3]"},
      {"", "7 mod 2", "[1]"},
      {"", "7 / 2", "[3.5]"},
      {"", "1.5 + 1", "[2.5]"},
      {"", "0.1 + 0.2", "[0.3]"},
      {"", "1.5 * 1.5", "[2.25]"},
      {"", "2 * 2.0", "[4.0]"},
      {"", "1 / 3", "[0.33333333]"},
      {"", "1.0 - 1.5", "[-0.5]"},
      {"", "7.5 mod 2", "[1.5]"},
      {"", "-2 * 3", "[-6]"},
      {"", "-(2 + 3)", "[-5]"},
      {"", "1 / 0", "[]"},
      {"", "5 div 0", "[]"},
      {"", "9223372036854775807 + 1", "[]"},
      {"", "'a' + 'b'", "[ab]"},
      {"", "'a' & {} & 'c'", "[ac]"},
      {"", "'a' + {}", "[]"},
      {"", "1 + 2 = 3", "[true]"},
      {"", "1 < 2 = true", "[true]"},
      {"", "2 | 1 | 2", "[2, 1]"},
      {"", "(1 | 2 | 3).count()", "[3]"},
      {"", "1 | 2 = 1 | 2", "[true]"},
      {"", "3 in (1 | 2 | 3)", "[true]"},
      {"", "(1 | 2) contains 4", "[false]"},
      {"", "1 = 1 and 2 = 3 or true", "[true]"},
      {"", "true or false and false", "[true]"},
      {"", "false implies {}", "[true]"},
      {"", "true xor true", "[false]"},
      {"", "5 is Integer", "[true]"},
      {"", "5 is System.Integer", "[true]"},
      {"", "5.0 is Decimal", "[true]"},
      {"", "'x' is String", "[true]"},
      {"", "'x' as Integer", "[]"},
      {"", "1 + 2 is Integer", "[true]"},
      {"", "2 '[lb_av]' * 2", "[4.0 '[lb_av]']"},
      {"", "@2019-01-31 + 1 month", "[2019-02-28]"},
      {"", "@2019-12-31T23:00:00Z + 2 hours", "[2020-01-01T01:00:00Z]"},
      {"", "@T10:00 + 90 minutes", "[11:30]"},
      {"", "@2020-03-01 - 1 day", "[2020-02-29]"},
      {"", "iif(1 > 2, 'yes', 'no')", "[no]"},
      {"", "iif({}, 'yes')", "[]"},
      {"", "1 // a comment\n + /* another */ 1", "[2]"},
      {"", "'it''s'",
       "compile error: FHIRPath syntax error at offset 4: expected an operator or the end of the "
       "expression, found ''s''"},
      {"", "'it\\'s \\u00e9\\n'.length()", "[7]"},
  });
}

TEST(FhirPathOperators, ThreeValuedLogic) {
  // (left, right) over true, false, empty, against the spec's truth tables.
  const char* values[] = {"true", "false", "{}"};
  const char* and_table[3][3] = {
      {"[true]", "[false]", "[]"}, {"[false]", "[false]", "[false]"}, {"[]", "[false]", "[]"}};
  const char* or_table[3][3] = {{"[true]", "[true]", "[true]"}, {"[true]", "[false]", "[]"}, {"[true]", "[]", "[]"}};
  const char* xor_table[3][3] = {{"[false]", "[true]", "[]"}, {"[true]", "[false]", "[]"}, {"[]", "[]", "[]"}};
  const char* implies_table[3][3] = {
      {"[true]", "[false]", "[]"}, {"[true]", "[true]", "[true]"}, {"[true]", "[]", "[]"}};
  fhir::json::Value empty = fhir::json::Value::object();
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      const std::string l = values[i];
      const std::string r = values[j];
      EXPECT_EQ(run(l + " and " + r, empty), and_table[i][j]) << l << " and " << r;
      EXPECT_EQ(run(l + " or " + r, empty), or_table[i][j]) << l << " or " << r;
      EXPECT_EQ(run(l + " xor " + r, empty), xor_table[i][j]) << l << " xor " << r;
      EXPECT_EQ(run(l + " implies " + r, empty), implies_table[i][j]) << l << " implies " << r;
    }
  }
  EXPECT_EQ(run("{}.not()", empty), "[]");
  EXPECT_EQ(run("true.not()", empty), "[false]");
}

TEST(FhirPathOperators, EqualityAndEmptyPropagation) {
  check_cases({
      {"", "1 = 1.0", "[true]"},
      {"", "1 = {}", "[]"},
      {"", "{} != 1", "[]"},
      {"", "{} = {}", "[]"},
      {"", "'a' = 'A'", "[false]"},
      {"", "'a' ~ 'A'", "[true]"},
      {"", "' a  b' ~ 'A B'", "[true]"},
      {"", "{} ~ {}", "[true]"},
      {"", "1 ~ {}", "[false]"},
      {"", "1.2 ~ 1.24", "[true]"},
      {"", "(1 | 2) = (1 | 2 | 3)", "[false]"},
      {"", "(1 | 2) ~ (2 | 1)", "[true]"},
      {"", "1 != 2", "[true]"},
      {"", "'a' !~ 'b'", "[true]"},
      {"", "{} < 1", "[]"},
      {"", "{}.count()", "[0]"},
      {"", "{}.empty()", "[true]"},
      {"", "{}.first()", "[]"},
      {"", "'x' < 'y'", "[true]"},
      {"", "1 < 'a'",
       "error: FHIRPath evaluation error at offset 2: cannot compare System.Integer with "
       "System.String"},
      {"", "(1 | 2) > 0", "error: FHIRPath evaluation error at offset 8: comparison needs single items"},
      {"Patient-example", "Patient.deceased.exists() and Patient.deceased != false", "[false]"},
      {"Patient-example", "Patient.name.given = Patient.name.given", "[true]"},
      {"Patient-example", "Patient.name[0] = Patient.name[2]", "[false]"},
      {"Patient-example", "Patient.name[0].given = Patient.name[2].given", "[true]"},
  });
}

TEST(FhirPathOperators, DatePrecision) {
  check_cases({
      {"", "@2012-01-01 = @2012-01-01", "[true]"},
      {"", "@2012-01 = @2012-01-01", "[]"},
      {"", "@2012-01 = @2013-01-01", "[false]"},
      {"", "@2012-01 ~ @2012-01-01", "[false]"},
      {"", "@2012 < @2013-05", "[true]"},
      {"", "@2012-05 < @2012-06-15", "[true]"},
      {"", "@2012-06 < @2012-06-15", "[]"},
      {"", "@2012-01-01T10:30 = @2012-01-01T10:30:00", "[]"},
      {"", "@2012-01-01T10:30:00 = @2012-01-01T10:30:00.000", "[true]"},
      {"", "@2012-01-01T10:30:00Z = @2012-01-01T12:30:00+02:00", "[true]"},
      {"", "@2012-01-01T10:30:00Z < @2012-01-01T11:30:00+02:00", "[false]"},
      {"", "@2012-01-01T10 > @2012-01-01", "[]"},
      {"", "@T10:30 < @T10:31", "[true]"},
      {"", "@T10:30 = @T10:30:00", "[]"},
      {"", "@2012-01-01 is Date", "[true]"},
      {"", "@2012-01-01T is DateTime", "[true]"},
      {"", "@2012-01-01T10:00:00.123Z.toString()", "[2012-01-01T10:00:00.123Z]"},
      {"Patient-example", "Patient.birthDate = @1974-12-25", "[true]"},
      {"Patient-example", "Patient.birthDate < @1974-12-25T10:00", "[]"},
      {"Patient-example", "Patient.birthDate >= @1974", "[]"},
      {"Patient-example", "Patient.name.period.end > @2001", "[true]"},
  });
}

TEST(FhirPathFunctions, Collections) {
  check_cases({
      {"", "(1 | 2 | 3).first()", "[1]"},
      {"", "(1 | 2 | 3).last()", "[3]"},
      {"", "(1 | 2 | 3).tail()", "[2, 3]"},
      {"", "(1 | 2 | 3).skip(1)", "[2, 3]"},
      {"", "(1 | 2 | 3).skip(5)", "[]"},
      {"", "(1 | 2 | 3).take(2)", "[1, 2]"},
      {"", "(1 | 2 | 3).take(0)", "[]"},
      {"", "5.single()", "[5]"},
      {"", "(1 | 2).single()", "error: FHIRPath evaluation error at offset 8: single() on 2 items"},
      {"", "(1 | 2 | 3).count()", "[3]"},
      {"", "(1 | 2).combine(2 | 3)", "[1, 2, 2, 3]"},
      {"", "(1 | 2).union(2 | 3)", "[1, 2, 3]"},
      {"", "(1 | 2).combine(2 | 3).distinct()", "[1, 2, 3]"},
      {"", "(1 | 2).combine(2).isDistinct()", "[false]"},
      {"", "(1 | 2 | 3).intersect(2 | 3 | 4)", "[2, 3]"},
      {"", "(1 | 2 | 3).exclude(2)", "[1, 3]"},
      {"", "(1 | 2).subsetOf(1 | 2 | 3)", "[true]"},
      {"", "(1 | 2).supersetOf(1 | 2 | 3)", "[false]"},
      {"", "(1 | 2 | 3).where($this > 1)", "[2, 3]"},
      {"", "(1 | 2 | 3).select($this * 10)", "[10, 20, 30]"},
      {"", "(1 | 2 | 3).all($this > 0)", "[true]"},
      {"", "(1 | 2 | 3).exists($this > 2)", "[true]"},
      {"", "(true | false).allTrue()", "[false]"},
      {"", "(true | false).anyTrue()", "[true]"},
      {"", "(false).allFalse()", "[true]"},
      {"", "{}.allTrue()", "[true]"},
      {"", "(true | false).anyFalse()", "[true]"},
      {"", "(1 | 2 | 3).aggregate($this + $total, 0)", "[6]"},
      {"", "(1 | 2 | 3).repeat(iif($this < 5, $this + 1, {}))", "[2, 3, 4, 5]"},
      {"", "5.trace('x')", "[5]"},
      {"Questionnaire-f201", "Questionnaire.repeat(item).linkId.count() > 3", "[true]"},
      {"Patient-example", "Patient.name.exists(use = 'maiden')", "[true]"},
      {"Patient-example", "Patient.name.all(given.exists())", "[true]"},
      {"Patient-example", "Patient.name.given.distinct()", "[Peter, James, Jim]"},
      {"Patient-example", "Patient.telecom.rank.aggregate($total + $this, 0)", "[3]"},
      {"Patient-example", "Patient.birthDate.hasValue()", "[true]"},
      {"Patient-example", "Patient.name.hasValue()", "[false]"},
      {"Patient-example", "Patient.birthDate.hasExtension('http://hl7.org/fhir/StructureDefinition/patient-birthTime')",
       "[true]"},
      {"Patient-example", "Patient.name.family.union(Patient.name.given)", "[Chalmers, Windsor, Peter, James, Jim]"},
  });
}

TEST(FhirPathFunctions, StringsAndConversions) {
  check_cases({
      {"", "'abcdef'.startsWith('abc')", "[true]"},
      {"", "'abcdef'.endsWith('ef')", "[true]"},
      {"", "'abcdef'.contains('cd')", "[true]"},
      {"", "'abcdef'.indexOf('cd')", "[2]"},
      {"", "'abcdef'.indexOf('x')", "[-1]"},
      {"", "'abcdef'.substring(2)", "[cdef]"},
      {"", "'abcdef'.substring(2, 3)", "[cde]"},
      {"", "'abcdef'.substring(10)", "[]"},
      {"", "'AbC'.upper()", "[ABC]"},
      {"", "'AbC'.lower()", "[abc]"},
      {"", "'a-b-c'.replace('-', '+')", "[a+b+c]"},
      {"", "'abc'.replace('', '.')", "[.a.b.c.]"},
      {"", "'abc123'.matches('[0-9]+')", "[true]"},
      {"", "'abc'.matches('^[0-9]+$')", "[false]"},
      {"", "'abc123'.replaceMatches('[0-9]', 'x')", "[abcxxx]"},
      {"", "'abc'.length()", "[3]"},
      {"", "'dé jà'.length()", "[5]"},
      {"", "'dé jà'.substring(1, 3)", "[é j]"},
      {"", "'dé jà'.substring(4)", "[à]"},
      {"", "'dé jà'.indexOf('j')", "[3]"},
      {"", "'dé'.toChars()", "[d, é]"},
      {"", "'abc'.toChars()", "[a, b, c]"},
      {"", "'  a b  '.trim()", "[a b]"},
      {"", "'a,b,,c'.split(',')", "[a, b, , c]"},
      {"", "('a' | 'b' | 'c').join('-')", "[a-b-c]"},
      {"", "{}.upper()", "[]"},
      {"", "5.startsWith('5')", "error: FHIRPath evaluation error at offset 2: expected a String"},
      {"", "'5'.toInteger() + 1", "[6]"},
      {"", "'5.5'.toInteger()", "[]"},
      {"", "'5.5'.toDecimal()", "[5.5]"},
      {"", "'5.5'.convertsToDecimal()", "[true]"},
      {"", "'x'.convertsToInteger()", "[false]"},
      {"", "'yes'.toBoolean()", "[true]"},
      {"", "1.toBoolean()", "[true]"},
      {"", "5.toString()", "[5]"},
      {"", "true.toString()", "[true]"},
      {"", "'2012-01-01'.toDate()", "[2012-01-01]"},
      {"", "'2012-01-01T10:00:00Z'.toDate()", "[2012-01-01]"},
      {"", "'2012-01-01'.toDateTime() = @2012-01-01", "[true]"},
      {"", "'10:00'.toTime()", "[10:00]"},
      {"", "'5 \\'mg\\''.toQuantity()", "[5 'mg']"},
      {"", "5.toQuantity()", "[5 '1']"},
      {"", "10 'mg'.toString()", "[10 'mg']"},
      {"", "(-5).abs()", "[5]"},
      {"", "(-5.5).abs()", "[5.5]"},
      {"", "1.1.ceiling()", "[2]"},
      {"", "1.9.floor()", "[1]"},
      {"", "1.9.truncate()", "[1]"},
      {"", "2.power(10)", "[1024]"},
      {"", "16.sqrt()", "[4.0]"},
      {"", "3.14159.round(2)", "[3.14]"},
      {"", "100.log(10)", "[2.0]"},
      {"", "0.exp()", "[1.0]"},
      {"", "%ucum", "[http://unitsofmeasure.org]"},
      {"", "%`vs-administrative-gender`", "[http://hl7.org/fhir/ValueSet/administrative-gender]"},
      {"", "%nope", "error: FHIRPath evaluation error at offset 0: unknown external constant %nope"},
      {"", "today() > @2020-01-01", "[true]"},
      {"", "now() > @2020-01-01T00:00:00Z", "[true]"},
  });
}

TEST(FhirPathCompile, ReportsErrorsWithPositions) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Patient.name.foo()", "FHIRPath error at offset 13: unknown function 'foo'"},
      {"Patient.name.where()", "FHIRPath error at offset 13: function 'where' takes 1 argument(s), given 0"},
      {"Patient.name.substring(1, 2, 3)",
       "FHIRPath error at offset 13: function 'substring' takes 1 to 2 "
       "argument(s), given 3"},
      {"Patient.", "FHIRPath syntax error at offset 8: expected a name or function after '.', found the end"},
      {"(1 + 2", "FHIRPath syntax error at offset 6: expected ')', found the end"},
      {"1 +", "FHIRPath syntax error at offset 3: expected an expression, found the end"},
      {"'abc", "FHIRPath error at offset 0: unterminated string or identifier"},
      {"Patient.name[0", "FHIRPath syntax error at offset 14: expected ']', found the end"},
      {"a # b", "FHIRPath error at offset 2: unexpected character '#'"},
      {"1 is 2", "FHIRPath syntax error at offset 5: expected a type name, found '2'"},
      {"x.ofType('a')", "FHIRPath error at offset 9: expected a type name as argument of ofType"},
      {"$foo", "FHIRPath error at offset 0: expected $this, $index or $total"},
      {"'\\q'", "FHIRPath error at offset 1: invalid escape '\\q'"},
      {"@20x", "FHIRPath error at offset 0: invalid date literal"},
      {"", "FHIRPath syntax error at offset 0: expected an expression, found the end"},
  };
  for (const auto& [expression, diagnostics] : cases) {
    auto compiled = FhirPath::compile(expression);
    ASSERT_FALSE(compiled.has_value()) << expression;
    EXPECT_EQ(compiled.error().kind, fhir::ErrorKind::kInvalid);
    EXPECT_EQ(compiled.error().issues.front().diagnostics, diagnostics) << expression;
  }
}

TEST(FhirPathCompile, BoundsNestingDepth) {
  std::string deep(5000, '(');
  deep += "1";
  deep += std::string(5000, ')');
  EXPECT_FALSE(FhirPath::compile(deep).has_value());
  std::string chain = "1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  // A long flat chain is fine for the parser (it is iterative) but deep for the evaluator: an error, no crash.
  auto compiled = FhirPath::compile(chain);
  if (compiled) {
    fhir::json::Value empty = fhir::json::Value::object();
    (void)compiled->evaluate(empty, EvalContext{});
  }
  std::string minus(5000, '-');
  EXPECT_FALSE(FhirPath::compile(minus + "1").has_value());
  // The deepest that compiles evaluates (with a result or an error).
  std::string nested = "true";
  for (int i = 0; i < 90; ++i) nested = "Patient.name.where(" + nested + ").exists()";
  auto deep_where = FhirPath::compile(nested);
  ASSERT_TRUE(deep_where.has_value());
  EvalContext ctx;
  ctx.definitions = &r4();
  EXPECT_TRUE(deep_where->evaluate(example("Patient-example"), ctx).has_value());
  std::string chain_path = "Patient";
  for (int i = 0; i < 290; ++i) chain_path += ".name";
  auto chain_compiled = FhirPath::compile(chain_path);
  ASSERT_TRUE(chain_compiled.has_value());
  auto chain_result = chain_compiled->evaluate(example("Patient-example"), ctx);
  ASSERT_TRUE(chain_result.has_value());
  EXPECT_TRUE(chain_result->empty());
  std::string path = "Patient";
  for (int i = 0; i < 100000; ++i) path += ".name";
  auto long_path = FhirPath::compile(path);
  ASSERT_FALSE(long_path.has_value());
  EXPECT_NE(long_path.error().issues.front().diagnostics.find("nested too deeply"), std::string::npos);
}

// Every prefix and every one-character deletion of a set of expressions either compiles or fails with kInvalid;
// those that compile evaluate without crashing.
TEST(FhirPathCompile, SurvivesMangledInput) {
  const std::vector<std::string> seeds = {
      "Patient.name.where(use = 'official' and given.exists()).select(given.first() & ' ' & family)",
      "(Observation.value as Quantity) | Observation.component.value.ofType(Quantity)",
      "iif(%resource.birthDate > @2012-01-01T10:30:00+02:00, 10 'mg' * 2.5, {}).toString().substring(1, 2)",
      "Observation.subject.where(resolve() is Patient).reference.replaceMatches('\\d+', `x`)",
      "(1 | 2 | 3).aggregate($this + $total, 0) div -2 mod 3 implies true xor false",
  };
  EvalContext ctx;
  ctx.definitions = &r4();
  const auto& patient = example("Patient-example");
  std::size_t compiled = 0;
  for (const std::string& seed : seeds) {
    std::vector<std::string> variants;
    for (std::size_t i = 0; i <= seed.size(); ++i) {
      variants.push_back(seed.substr(0, i));
      if (i < seed.size()) variants.push_back(seed.substr(0, i) + seed.substr(i + 1));
    }
    for (const std::string& v : variants) {
      auto c = FhirPath::compile(v);
      if (!c) {
        EXPECT_EQ(c.error().kind, fhir::ErrorKind::kInvalid) << v;
        continue;
      }
      ++compiled;
      auto r = c->evaluate(patient, ctx);
      if (!r) {
        EXPECT_EQ(r.error().kind, fhir::ErrorKind::kInvalid) << v;
      }
    }
  }
  EXPECT_GT(compiled, 50u);
}

TEST(FhirPathCompile, KeepsTheTextAndIsCopyable) {
  auto compiled = FhirPath::compile("Patient.name.family");
  ASSERT_TRUE(compiled.has_value());
  const FhirPath copy = *compiled;
  EXPECT_EQ(copy.text(), "Patient.name.family");
  EvalContext ctx;
  ctx.definitions = &r4();
  auto result = copy.evaluate(example("Patient-example"), ctx);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(render(*result), "[Chalmers, Windsor]");
}

// Random token soup (a fixed seed): compiles or fails with kInvalid, and evaluates without crashing.
TEST(FhirPathCompile, SurvivesRandomTokens) {
  static constexpr const char* kTokens[] = {
      "Patient",    "name",
      "given",      "family",
      "telecom",    "value",
      "where(",     "select(",
      "exists(",    "first()",
      "resolve()",  "ofType(",
      "as",         "is",
      "Quantity",   "HumanName",
      "iif(",       "(",
      ")",          ".",
      ",",          "[",
      "]",          "0",
      "1",          "2.5",
      "'a'",        "'Jim'",
      "@2012-01",   "@T10:00",
      "10 'mg'",    "{}",
      "$this",      "$index",
      "%resource",  "+",
      "-",          "*",
      "/",          "div",
      "mod",        "&",
      "|",          "=",
      "!=",         "~",
      "<",          ">=",
      "and",        "or",
      "xor",        "implies",
      "in",         "contains",
      "not()",      "count()",
      "repeat(",    "descendants()",
      "children()", "substring(",
      "matches(",   "aggregate(",
      "$total",     "true",
      "false",      "extension(",
      "`given`",    "toString()",
      "split(",     "join(",
  };
  constexpr std::size_t kCount = sizeof kTokens / sizeof kTokens[0];
  EvalContext ctx;
  ctx.definitions = &r4();
  const auto& patient = example("Patient-example");
  std::uint64_t state = 0x9E3779B97F4A7C15ULL;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  std::size_t compiled = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string e;
    const std::size_t length = 1 + next() % 12;
    for (std::size_t k = 0; k < length; ++k) {
      e += kTokens[next() % kCount];
      if (next() % 2 == 0) e += ' ';
    }
    auto c = FhirPath::compile(e);
    if (!c) {
      EXPECT_EQ(c.error().kind, fhir::ErrorKind::kInvalid) << e;
      continue;
    }
    ++compiled;
    auto r = c->evaluate(patient, ctx);
    if (!r) {
      EXPECT_EQ(r.error().kind, fhir::ErrorKind::kInvalid) << e;
    }
  }
  EXPECT_GT(compiled, 500u);
}

TEST(FhirPathCompile, EvaluatesFromManyThreadsAtOnce) {
  auto compiled = FhirPath::compile("Patient.name.where(use = 'official').given | Patient.telecom.value");
  ASSERT_TRUE(compiled.has_value());
  EvalContext ctx;
  ctx.definitions = &r4();
  const auto& patient = example("Patient-example");
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto r = compiled->evaluate(patient, ctx);
        if (!r || r->size() != 5) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

std::vector<std::string> searchparameter_expressions() {
  std::ifstream in(std::filesystem::path(CADUCEUS_TEST_DATA) / "fhirpath" / "searchparameter-expressions.txt");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') out.push_back(line);
  }
  return out;
}

TEST(FhirPathSearchParameters, EveryR4ExpressionCompiles) {
  const auto expressions = searchparameter_expressions();
  ASSERT_GT(expressions.size(), 1300u);
  std::size_t compiled = 0;
  for (const std::string& e : expressions) {
    auto r = FhirPath::compile(e);
    EXPECT_TRUE(r.has_value()) << e << ": " << (r ? "" : r.error().issues.front().diagnostics);
    compiled += r.has_value() ? 1 : 0;
  }
  EXPECT_EQ(compiled, expressions.size());
}

// Each expression against the official examples of every resource type it names (every type's first
// example when it names none, as `%resource...` does): no evaluation error.
TEST(FhirPathSearchParameters, EveryR4ExpressionEvaluatesOnTheOfficialExamples) {
  const std::filesystem::path dir(CADUCEUS_R4_EXAMPLES_DIR);
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "no examples at " << dir;
  std::map<std::string, std::vector<fhir::json::Value>> by_type;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    const std::string name = path.filename().string();
    const std::string type = name.substr(0, name.find('-'));
    auto& list = by_type[type];
    auto parsed = fhir::json::parse(read_text(path));
    if (parsed && parsed->is_object()) list.push_back(std::move(*parsed));
  }
  ASSERT_GT(by_type.size(), 100u);

  EvalContext ctx;
  ctx.definitions = &r4();
  std::size_t evaluations = 0;
  std::size_t failures = 0;
  std::size_t non_empty = 0;
  for (const std::string& e : searchparameter_expressions()) {
    auto compiled = FhirPath::compile(e);
    if (!compiled) continue;  // reported by the test above
    std::vector<std::string> types;
    for (const auto& [type, list] : by_type) {
      // A type is named when it appears as a whole word.
      for (std::size_t at = e.find(type); at != std::string::npos; at = e.find(type, at + 1)) {
        const bool start = at == 0 || !std::isalnum(static_cast<unsigned char>(e[at - 1]));
        const std::size_t end = at + type.size();
        const bool stop = end == e.size() || !std::isalnum(static_cast<unsigned char>(e[end]));
        if (start && stop) {
          types.push_back(type);
          break;
        }
      }
    }
    const bool all_types = types.empty();
    for (const auto& [type, list] : by_type) {
      if (!all_types && std::find(types.begin(), types.end(), type) == types.end()) continue;
      const std::size_t count = all_types ? std::min<std::size_t>(1, list.size()) : list.size();
      for (std::size_t i = 0; i < count; ++i) {
        auto r = compiled->evaluate(list[i], ctx);
        ++evaluations;
        if (!r) {
          ++failures;
          ADD_FAILURE() << e << " on a " << type << ": " << r.error().issues.front().diagnostics;
        } else if (!r->empty()) {
          ++non_empty;
        }
      }
    }
  }
  std::cout << "[ FhirPath ] " << evaluations << " evaluations, " << failures << " errors, " << non_empty
            << " non-empty results\n";
  EXPECT_EQ(failures, 0u);
  EXPECT_GT(non_empty, 1000u);
}

// (Evaluation speed is measured by BM_FhirPathNavigate in bench/core_benchmark.cpp, not in a test.)

}  // namespace
}  // namespace caduceus::resources::fhirpath
