// The access policy (server/auth/access_policy.hpp): the built-in defaults, and a policy file's errors naming the
// element.
#include "caduceus/server/auth/access_policy.hpp"

#include <gtest/gtest.h>

namespace caduceus::server::auth {
namespace {

TEST(AccessPolicy, DefaultsAreTheHospitalRules) {
  AccessPolicy policy;
  ASSERT_NE(policy.role("physician"), nullptr);
  EXPECT_TRUE(policy.role("physician")->types.empty());
  EXPECT_TRUE(policy.role("physician")->deny.empty());
  ASSERT_NE(policy.role("admin"), nullptr);
  EXPECT_TRUE(policy.role("admin")->deny.empty());
  const RolePolicy* nurse = policy.role("nurse");
  ASSERT_NE(nurse, nullptr);
  ASSERT_EQ(nurse->deny.size(), 1u);
  EXPECT_EQ(nurse->deny[0].type, "MedicationRequest");
  EXPECT_EQ(nurse->deny[0].query,
            "_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R,"
            "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|V");
  const RolePolicy* tech = policy.role("technician");
  ASSERT_NE(tech, nullptr);
  EXPECT_EQ(tech->types, (std::vector<std::string>{"Observation", "DiagnosticReport", "ServiceRequest", "Specimen"}));
  ASSERT_NE(policy.role("patient"), nullptr);
  EXPECT_TRUE(policy.role("patient")->own_record);
  EXPECT_FALSE(policy.role("nurse")->own_record);
  EXPECT_EQ(policy.role("janitor"), nullptr);
}

TEST(AccessPolicy, ParsesAFileAndNamesWhatIsWrong) {
  auto ok = AccessPolicy::parse(R"({"roles":{"nurse":{},"technician":{"types":["Specimen"]}}})");
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->role("nurse")->deny.empty());
  EXPECT_EQ(ok->role("physician"), nullptr);  // not named: sees nothing
  struct Case {
    const char* json;
    const char* expression;
  };
  for (const Case& c :
       {Case{R"([])", ""}, Case{R"({"roles":[]})", "roles"}, Case{R"({"roles":{"janitor":{}}})", "roles.janitor"},
        Case{R"({"roles":{"nurse":{"types":[]}}})", "roles.nurse.types"},
        Case{R"({"roles":{"nurse":{"deny":[{"type":"MedicationRequest"}]}}})", "roles.nurse.deny"},
        Case{R"({"roles":{"patient":{"compartment":"Patient/1"}}})", "roles.patient.compartment"},
        Case{R"({"roles":{"nurse":{"see":"all"}}})", "roles.nurse.see"}}) {
    auto bad = AccessPolicy::parse(c.json);
    ASSERT_FALSE(bad) << c.json;
    EXPECT_EQ(bad.error().kind, fhir::ErrorKind::kInvalid) << c.json;
    EXPECT_EQ(bad.error().issues.front().expression, c.expression) << c.json;
  }
}

}  // namespace
}  // namespace caduceus::server::auth
