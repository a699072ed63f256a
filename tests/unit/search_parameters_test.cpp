#include "caduceus/resources/search_parameters.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "caduceus/conformance/embedded.hpp"

namespace caduceus::resources {
namespace {

const SearchParameterRegistry& r4() {
  static const std::shared_ptr<const SearchParameterRegistry> kRegistry = [] {
    auto loaded =
        SearchParameterRegistry::load(conformance::r4_search_parameters_json(), conformance::r4_compartments_json());
    if (!loaded) {
      ADD_FAILURE() << "the embedded search parameters do not load: " << loaded.error().issues.front().diagnostics;
      return std::shared_ptr<const SearchParameterRegistry>();
    }
    return *loaded;
  }();
  return *kRegistry;
}

std::vector<std::string> codes(std::span<const SearchParameter* const> params) {
  std::vector<std::string> out;
  for (const SearchParameter* p : params) out.push_back(p->code);
  return out;
}

std::vector<std::string> strings(std::span<const std::string> s) {
  return {s.begin(), s.end()};
}

TEST(SearchParameterRegistry, LoadsTheEmbeddedDefinitions) {
  // (How long it takes is measured by BM_LoadSearchParameters in bench/core_benchmark.cpp, not here.)
  auto loaded =
      SearchParameterRegistry::load(conformance::r4_search_parameters_json(), conformance::r4_compartments_json());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().issues.front().diagnostics;
  EXPECT_EQ((*loaded)->fhir_version(), "4.0.1");
  // 1,385 from the package plus _has, _list, _type.
  EXPECT_EQ((*loaded)->all().size(), 1388u);
}

TEST(SearchParameterRegistry, ObservationCode) {
  const SearchParameter* code = r4().find("Observation", "code");
  ASSERT_NE(code, nullptr);
  EXPECT_EQ(code->type, SearchParamType::kToken);
  EXPECT_EQ(code->url, "http://hl7.org/fhir/SearchParameter/clinical-code");
  EXPECT_EQ(code->expression_for("Observation"), "Observation.code");
  EXPECT_FALSE(code->common());
}

TEST(SearchParameterRegistry, SharedPatientParameterHasAPerBaseExpression) {
  const SearchParameter* patient = r4().find("Observation", "patient");
  ASSERT_NE(patient, nullptr);
  EXPECT_EQ(patient->url, "http://hl7.org/fhir/SearchParameter/clinical-patient");
  EXPECT_EQ(patient->type, SearchParamType::kReference);
  EXPECT_TRUE(std::ranges::find(patient->target, "Patient") != patient->target.end());
  EXPECT_EQ(patient->expression_for("Observation"), "Observation.subject.where(resolve() is Patient)");
  EXPECT_EQ(patient->expression_for("AllergyIntolerance"), "AllergyIntolerance.patient");
  EXPECT_EQ(patient->expression_for("Patient"), "");  // not a base of it
  // The full expression is kept too.
  EXPECT_TRUE(patient->expression.starts_with("AllergyIntolerance.patient | CarePlan.subject"));
  EXPECT_GT(patient->base.size(), 30u);
  // The same object answers for every base.
  EXPECT_EQ(r4().find("Condition", "patient"), patient);
  EXPECT_EQ(r4().find("Patient", "patient"), nullptr);
}

TEST(SearchParameterRegistry, PerBaseExpressionKeepsSeveralPartsOfOneBase) {
  const SearchParameter* code = r4().find("AllergyIntolerance", "code");
  ASSERT_NE(code, nullptr);
  EXPECT_EQ(code->expression_for("AllergyIntolerance"),
            "AllergyIntolerance.code | AllergyIntolerance.reaction.substance");
  const SearchParameter* quantity = r4().find("CodeSystem", "context-quantity");
  ASSERT_NE(quantity, nullptr);
  EXPECT_EQ(quantity->expression_for("CodeSystem"),
            "(CodeSystem.useContext.value as Quantity) | (CodeSystem.useContext.value as Range)");
}

TEST(SearchParameterRegistry, ValueQuantityAndComposite) {
  const SearchParameter* value = r4().find("Observation", "value-quantity");
  ASSERT_NE(value, nullptr);
  EXPECT_EQ(value->type, SearchParamType::kQuantity);
  EXPECT_EQ(value->expression_for("Observation"),
            "(Observation.value as Quantity) | (Observation.value as SampledData)");

  const SearchParameter* composite = r4().find("Observation", "code-value-quantity");
  ASSERT_NE(composite, nullptr);
  EXPECT_EQ(composite->type, SearchParamType::kComposite);
  EXPECT_EQ(composite->expression_for("Observation"), "Observation");
  ASSERT_EQ(composite->components.size(), 2u);
  EXPECT_EQ(composite->components[0].definition, "http://hl7.org/fhir/SearchParameter/clinical-code");
  EXPECT_EQ(composite->components[0].expression, "code");
  EXPECT_EQ(composite->components[0].parameter, r4().find("Observation", "code"));
  EXPECT_EQ(composite->components[1].expression, "value.as(Quantity)");
  EXPECT_EQ(composite->components[1].parameter, value);
  ASSERT_TRUE(composite->multiple_or.has_value());
  EXPECT_FALSE(*composite->multiple_or);

  for (const SearchParameter& p : r4().all()) {
    if (p.type != SearchParamType::kComposite) continue;
    EXPECT_GE(p.components.size(), 2u) << p.url;
    for (const auto& c : p.components) EXPECT_NE(c.parameter, nullptr) << p.url;
  }
}

TEST(SearchParameterRegistry, CommonParametersApplyToEveryType) {
  for (const auto type : {"Patient", "Observation", "Bundle", "Binary", "Slot"}) {
    const SearchParameter* id = r4().find(type, "_id");
    ASSERT_NE(id, nullptr) << type;
    EXPECT_TRUE(id->common());
    EXPECT_EQ(id->type, SearchParamType::kToken);
    EXPECT_EQ(id->expression_for(type), "Resource.id");
    const SearchParameter* last_updated = r4().find(type, "_lastUpdated");
    ASSERT_NE(last_updated, nullptr) << type;
    EXPECT_EQ(last_updated->type, SearchParamType::kDate);
    EXPECT_EQ(last_updated->expression_for(type), "Resource.meta.lastUpdated");
    for (const auto code :
         {"_tag", "_profile", "_security", "_source", "_content", "_query", "_has", "_list", "_type", "_filter"}) {
      EXPECT_NE(r4().find(type, code), nullptr) << type << " " << code;
    }
  }
  // _text is on DomainResource: not for Bundle, Binary, Parameters.
  EXPECT_NE(r4().find("Patient", "_text"), nullptr);
  EXPECT_EQ(r4().find("Bundle", "_text"), nullptr);
  EXPECT_EQ(r4().find("Binary", "_text"), nullptr);
  EXPECT_TRUE(r4().find("Patient", "_has")->synthetic);
  EXPECT_TRUE(r4().find("Patient", "_has")->url.empty());
  EXPECT_EQ(r4().find("Patient", "_nonsense"), nullptr);
  EXPECT_EQ(r4().find("Patient", ""), nullptr);
}

TEST(SearchParameterRegistry, CountsPerType) {
  // Own parameters plus 13 common ones: 12 on Resource (_id, _lastUpdated, _tag, _profile, _security, _source,
  // _content, _query, _filter, _has, _list, _type) and _text on DomainResource.
  EXPECT_EQ(r4().for_type("Observation").size(), 43u + 13u);
  EXPECT_EQ(r4().for_type("Patient").size(), 24u + 13u);
  EXPECT_EQ(r4().for_type("Binary").size(), 12u);  // no own parameter, not a DomainResource
  EXPECT_EQ(r4().for_type("Parameters").size(), 12u);
  EXPECT_EQ(r4().for_type("Bundle").size(), 5u + 12u);
  const auto observation = codes(r4().for_type("Observation"));
  EXPECT_TRUE(std::ranges::is_sorted(observation));
  EXPECT_TRUE(std::ranges::adjacent_find(observation) == observation.end());
  for (const auto code : {"code", "patient", "subject", "value-quantity", "code-value-quantity", "_id", "_text"}) {
    EXPECT_TRUE(std::ranges::binary_search(observation, std::string(code))) << code;
  }
  // Every listed parameter is found by its code, and has an expression for the type unless it has none at all.
  for (const auto type : {"Observation", "Patient", "Appointment", "MedicationRequest", "Encounter", "Slot"}) {
    for (const SearchParameter* p : r4().for_type(type)) {
      EXPECT_EQ(r4().find(type, p->code), p) << type << " " << p->code;
      if (!p->expression.empty()) EXPECT_FALSE(p->expression_for(type).empty()) << type << " " << p->code;
    }
  }
  EXPECT_EQ(r4().types().size(), 133u);  // the types with own parameters
  EXPECT_FALSE(std::ranges::binary_search(r4().types(), std::string("Resource")));
  EXPECT_TRUE(std::ranges::is_sorted(r4().types()));
}

TEST(SearchParameterRegistry, ByUrl) {
  const SearchParameter* p = r4().by_url("http://hl7.org/fhir/SearchParameter/individual-birthdate");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p, r4().find("Patient", "birthdate"));
  EXPECT_EQ(p, r4().find("Person", "birthdate"));  // one definition shared by Patient, Person, RelatedPerson
  EXPECT_EQ(p->type, SearchParamType::kDate);
  EXPECT_EQ(r4().by_url("http://hl7.org/fhir/SearchParameter/example"), nullptr);  // the examples are left out
}

TEST(SearchParameterRegistry, PatientCompartment) {
  EXPECT_EQ(strings(r4().compartment_params("Patient", "Observation")),
            (std::vector<std::string>{"subject", "performer"}));
  EXPECT_EQ(strings(r4().compartment_params("Patient", "Patient")), (std::vector<std::string>{"link"}));
  EXPECT_TRUE(r4().compartment_params("Patient", "ValueSet").empty());
  EXPECT_TRUE(r4().compartment_params("Nonsense", "Observation").empty());
  const auto types = strings(r4().compartment_types("Patient"));
  EXPECT_TRUE(std::ranges::is_sorted(types));
  EXPECT_TRUE(std::ranges::binary_search(types, std::string("Observation")));
  EXPECT_TRUE(std::ranges::binary_search(types, std::string("Encounter")));
  EXPECT_FALSE(std::ranges::binary_search(types, std::string("Organization")));
  EXPECT_FALSE(r4().compartment_types("Encounter").empty());
  // Every code named by a compartment is a parameter of that type (except {def}, the compartment's own resource).
  for (const auto compartment : {"Patient", "Encounter", "Practitioner", "RelatedPerson", "Device"}) {
    for (const std::string& type : r4().compartment_types(compartment)) {
      for (const std::string& code : r4().compartment_params(compartment, type)) {
        if (code != "{def}") EXPECT_NE(r4().find(type, code), nullptr) << compartment << " " << type << " " << code;
      }
    }
  }
}

TEST(SearchParameterRegistry, RejectsBadInput) {
  EXPECT_FALSE(SearchParameterRegistry::load("").has_value());
  EXPECT_FALSE(SearchParameterRegistry::load("[]").has_value());
  EXPECT_FALSE(SearchParameterRegistry::load(R"({"parameters":[{"code":"x","type":"bogus","base":["A"]}]})"));
  EXPECT_FALSE(SearchParameterRegistry::load(R"({"parameters":[{"code":"x","type":"token"}]})"));
  EXPECT_FALSE(SearchParameterRegistry::load(
      R"({"parameters":[{"url":"u1","code":"x","type":"token","base":["A"]},
                         {"url":"u2","code":"x","type":"token","base":["A"]}]})"));
  EXPECT_FALSE(SearchParameterRegistry::load(
      R"({"parameters":[{"url":"u","code":"c","type":"composite","base":["A"],"expression":"A",
                         "component":[{"definition":"missing","expression":"code"}]}]})"));
  const auto ok = SearchParameterRegistry::load(
      R"({"parameters":[{"url":"u","code":"x","type":"string","base":["A","B"],"expression":"A.x | B.y"}]})");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ((*ok)->find("B", "x")->expression_for("B"), "A.x | B.y");  // no per-base table: the full expression
}

}  // namespace
}  // namespace caduceus::resources
