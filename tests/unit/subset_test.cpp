#include "caduceus/resources/subset.hpp"

#include <gtest/gtest.h>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;

constexpr std::string_view kPatient =
    R"({"resourceType":"Patient","id":"p","meta":{"versionId":"2"},)"
    R"("text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Anna</div>"},)"
    R"("name":[{"family":"Muller"}],"birthDate":"1980-05-17","_birthDate":{"extension":[{"url":"http://x","valueString":"y"}]},)"
    R"("photo":[{"contentType":"image/png","data":"AAAA"}],"communication":[{"language":{"text":"fr"}}]})";

std::vector<std::string> keys(const std::string& text) {
  auto v = json::parse(text);
  std::vector<std::string> out;
  for (const auto& m : v->members()) out.push_back(m.first);
  return out;
}

bool subsetted(const std::string& text) {
  return text.find("SUBSETTED") != std::string::npos;
}

TEST(Subset, SummaryKeepsSummaryElementsAndMarksTheResource) {
  auto defs = *Definitions::load(conformance::r4_model_json());
  std::string s = subset_resource(kPatient, *defs, Summary::kTrue, {});
  EXPECT_EQ(keys(s), (std::vector<std::string>{"resourceType", "id", "meta", "name", "birthDate", "_birthDate"}));
  EXPECT_TRUE(subsetted(s));
  EXPECT_NE(s.find("\"versionId\":\"2\""), std::string::npos);

  std::string data = subset_resource(kPatient, *defs, Summary::kData, {});
  const auto data_keys = keys(data);
  EXPECT_EQ(std::count(data_keys.begin(), data_keys.end(), "text"), 0);
  EXPECT_EQ(data_keys.size(), keys(std::string(kPatient)).size() - 1);

  std::string text = subset_resource(kPatient, *defs, Summary::kText, {});
  EXPECT_EQ(keys(text), (std::vector<std::string>{"resourceType", "id", "meta", "text"}));

  std::string elements = subset_resource(kPatient, *defs, Summary::kFalse, {"birthDate", "photo"});
  EXPECT_EQ(keys(elements),
            (std::vector<std::string>{"resourceType", "id", "meta", "birthDate", "_birthDate", "photo"}));
  EXPECT_TRUE(subsetted(elements));

  EXPECT_EQ(subset_resource(kPatient, *defs, Summary::kFalse, {}), kPatient);  // nothing asked: unchanged
}

}  // namespace
}  // namespace caduceus::resources
