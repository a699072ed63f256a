#include "caduceus/resources/definitions.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

#include "caduceus/conformance/embedded.hpp"

namespace caduceus::resources {
namespace {

const Definitions& r4() {
  static const std::shared_ptr<const Definitions> kDefinitions = [] {
    auto loaded = Definitions::load(conformance::r4_model_json());
    if (!loaded) {
      ADD_FAILURE() << "the embedded R4 model does not load: " << loaded.error().issues.front().diagnostics;
      return std::shared_ptr<const Definitions>();
    }
    return *loaded;
  }();
  return *kDefinitions;
}

TEST(Definitions, LoadsTheEmbeddedModel) {
  // (How long it takes is measured by BM_LoadDefinitions in bench/core_benchmark.cpp, not here.)
  auto loaded = Definitions::load(conformance::r4_model_json());
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ((*loaded)->fhir_version(), "4.0.1");
  EXPECT_GT((*loaded)->type_count(), 600u);
}

TEST(Definitions, ResourceTypesAreTheConcreteResources) {
  const auto& types = r4().resource_types();
  EXPECT_EQ(types.size(), 146u);
  EXPECT_TRUE(std::is_sorted(types.begin(), types.end()));
  for (const auto name : {"Patient", "Observation", "Bundle", "Parameters", "Binary", "ValueSet"}) {
    EXPECT_TRUE(r4().is_resource_type(name)) << name;
    EXPECT_TRUE(std::binary_search(types.begin(), types.end(), name)) << name;
  }
  for (const auto name : {"Resource", "DomainResource", "HumanName", "string", "Patient.contact", "patient", ""}) {
    EXPECT_FALSE(r4().is_resource_type(name)) << name;
  }
}

TEST(Definitions, TypesByName) {
  const TypeDefinition* patient = r4().type("Patient");
  ASSERT_NE(patient, nullptr);
  EXPECT_EQ(patient->kind, TypeKind::kResource);
  EXPECT_FALSE(patient->is_abstract);
  ASSERT_NE(patient->base, nullptr);
  EXPECT_EQ(patient->base->name, "DomainResource");
  EXPECT_TRUE(patient->derives_from(*r4().type("Resource")));

  const TypeDefinition* code = r4().type("code");
  ASSERT_NE(code, nullptr);
  EXPECT_EQ(code->kind, TypeKind::kPrimitive);
  EXPECT_EQ(code->primitive, fhir::Primitive::kCode);
  EXPECT_EQ(code->base->name, "string");

  const TypeDefinition* contact = r4().type("Patient.contact");
  ASSERT_NE(contact, nullptr);
  EXPECT_TRUE(contact->backbone);
  EXPECT_EQ(contact->base->name, "BackboneElement");

  EXPECT_TRUE(r4().type("DomainResource")->is_abstract);
  EXPECT_EQ(r4().type("NoSuchType"), nullptr);
}

TEST(Definitions, ElementsByJsonName) {
  const ElementMatch* name = r4().element("Patient", "name");
  ASSERT_NE(name, nullptr);
  EXPECT_EQ(name->element->name, "name");
  EXPECT_TRUE(name->element->many);
  EXPECT_EQ(name->element->min, 0u);
  EXPECT_EQ(name->type->name, "HumanName");

  const ElementMatch* birth_date = r4().element("Patient", "birthDate");
  ASSERT_NE(birth_date, nullptr);
  EXPECT_FALSE(birth_date->element->many);
  EXPECT_EQ(birth_date->type->primitive, fhir::Primitive::kDate);

  const ElementMatch* contact = r4().element("Patient", "contact");
  ASSERT_NE(contact, nullptr);
  EXPECT_EQ(contact->type->name, "Patient.contact");

  const ElementMatch* status = r4().element("Observation", "status");
  ASSERT_NE(status, nullptr);
  EXPECT_EQ(status->element->min, 1u);

  EXPECT_EQ(r4().element("Patient", "noSuchElement"), nullptr);
  EXPECT_EQ(r4().element("Patient", "value[x]"), nullptr);
  EXPECT_EQ(r4().element("NoSuchType", "id"), nullptr);
}

TEST(Definitions, ChoiceNamesAreExpanded) {
  const ElementMatch* quantity = r4().element("Observation", "valueQuantity");
  ASSERT_NE(quantity, nullptr);
  EXPECT_EQ(quantity->element->name, "value[x]");
  EXPECT_TRUE(quantity->element->choice);
  EXPECT_EQ(quantity->element->stem(), "value");
  EXPECT_EQ(quantity->type->name, "Quantity");

  const ElementMatch* date_time = r4().element("Observation", "effectiveDateTime");
  ASSERT_NE(date_time, nullptr);
  EXPECT_EQ(date_time->type->primitive, fhir::Primitive::kDateTime);

  const ElementMatch* base64 = r4().element("Extension", "valueBase64Binary");
  ASSERT_NE(base64, nullptr);
  EXPECT_EQ(base64->type->name, "base64Binary");
  EXPECT_NE(r4().element("Extension", "valueMeta"), nullptr);

  EXPECT_EQ(r4().element("Observation", "valueMoney"), nullptr);  // not one of Observation.value[x]'s types
  EXPECT_EQ(r4().element("Observation", "value"), nullptr);
}

TEST(Definitions, SpecialCases) {
  // Resource.id is an id (the 4.0.1 snapshot says System.String); Element.id a string; Extension.url a uri.
  EXPECT_EQ(r4().element("Patient", "id")->type->name, "id");
  EXPECT_EQ(r4().element("HumanName", "id")->type->name, "string");
  EXPECT_EQ(r4().element("Extension", "url")->type->name, "uri");
  EXPECT_EQ(r4().element("Extension", "url")->element->min, 1u);
  EXPECT_EQ(r4().element("Narrative", "div")->type->name, "xhtml");
  EXPECT_EQ(r4().element("Patient", "contained")->type->name, "Resource");
  EXPECT_EQ(r4().element("Bundle.entry", "resource")->type->name, "Resource");
  // A contentReference resolves to the synthetic type it names.
  EXPECT_EQ(r4().element("Questionnaire.item", "item")->type->name, "Questionnaire.item");
  EXPECT_EQ(r4().element("Parameters.parameter", "part")->type->name, "Parameters.parameter");
  // Primitive types list no `value` element.
  EXPECT_EQ(r4().element("string", "value"), nullptr);
  EXPECT_NE(r4().element("string", "extension"), nullptr);
}

TEST(Definitions, RejectsBrokenModels) {
  EXPECT_FALSE(Definitions::load("").has_value());
  EXPECT_FALSE(Definitions::load("[]").has_value());
  EXPECT_FALSE(Definitions::load(R"({"resourceTypes":[],"types":[{"name":"A","kind":"complex","elements":[)"
                                 R"({"name":"b","min":0,"max":"1","types":["Missing"]}]}]})")
                   .has_value());
  const auto error = Definitions::load("{").error();
  EXPECT_EQ(error.kind, fhir::ErrorKind::kInternal);
}

}  // namespace
}  // namespace caduceus::resources
