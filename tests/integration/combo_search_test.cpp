// The Observation combo-* parameters over HTTP, on both backends: their rows are those of two other parameters
// (code and component-code, ...), which the server does not write twice (SearchParameter::subsets); a search reads
// them there. Results worked out by hand.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

const HeaderList kJson{{"Content-Type", "application/fhir+json"}};
using Ids = std::set<std::string>;
using Order = std::vector<std::string>;

class ComboSearchTest : public ServerTest {
 protected:
  static void SetUpTestSuite() {
    start_server();  // (on both backends: see tests/CMakeLists.txt)
    if (!server_) return;
    HttpClient c(server_->host(), server_->port());
    const std::pair<const char*, const char*> resources[] = {
        {"Observation/temp", R"({"resourceType":"Observation","id":"temp","status":"final",
            "subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},
            "valueQuantity":{"value":37.5,"system":"http://unitsofmeasure.org","code":"Cel"}})"},
        {"Observation/bp", R"({"resourceType":"Observation","id":"bp","status":"final",
            "subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
            "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
             "valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
            {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},
             "valueQuantity":{"value":80,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]})"},
        {"Observation/smoke", R"({"resourceType":"Observation","id":"smoke","status":"final",
            "subject":{"reference":"Patient/p2"},"code":{"coding":[{"system":"http://loinc.org","code":"72166-2"}]},
            "valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"449868002"}]}})"},
    };
    for (const auto& [path, body] : resources)
      ASSERT_EQ(c.put(server_->base_path() + "/" + path, body, kJson).status, 201);
  }

  Response get(const std::string& target) {
    Response r = client().get(path(target));
    EXPECT_EQ(r.status, 200) << target << ": " << r.summary();
    return r;
  }
  Ids ids(const std::string& query) { return entry_ids(get("Observation?" + query)); }
  Order order(const std::string& query) { return entry_order(get("Observation?" + query)); }
};

TEST_F(ComboSearchTest, CodesAndValuesOfTheObservationAndOfItsComponents) {
  EXPECT_EQ(ids("combo-code=8310-5"), Ids{"temp"});
  EXPECT_EQ(ids("combo-code=http://loinc.org%7C8480-6"), Ids{"bp"});
  EXPECT_EQ(ids("combo-code=85354-9"), Ids{"bp"});
  EXPECT_EQ(ids("combo-code=8462-4,72166-2"), (Ids{"bp", "smoke"}));
  EXPECT_EQ(ids("combo-code:not=8310-5"), (Ids{"bp", "smoke"}));
  EXPECT_EQ(ids("combo-code:missing=true"), Ids{});
  EXPECT_EQ(ids("combo-value-quantity=80"), Ids{"bp"});
  EXPECT_EQ(ids("combo-value-quantity=lt50"), Ids{"temp"});
  EXPECT_EQ(ids("combo-value-quantity:missing=true"), Ids{"smoke"});
  EXPECT_EQ(ids("combo-value-concept=449868002"), Ids{"smoke"});
  EXPECT_EQ(ids("combo-code-value-quantity=8480-6$120"), Ids{"bp"});
  EXPECT_EQ(ids("combo-code-value-quantity=8480-6$80"), Ids{});  // 80 is the other component's
  EXPECT_EQ(ids("combo-code-value-quantity=8310-5$37.5"), Ids{"temp"});
  EXPECT_EQ(ids("patient=p1&combo-code=8480-6,72166-2"), Ids{"bp"});
}

TEST_F(ComboSearchTest, SortsAndCounts) {
  EXPECT_EQ(order("_sort=combo-value-quantity"), (Order{"temp", "bp", "smoke"}));
  EXPECT_EQ(order("_sort=-combo-value-quantity"), (Order{"bp", "temp", "smoke"}));
  EXPECT_EQ(order("_sort=combo-code"), (Order{"smoke", "temp", "bp"}));
  EXPECT_EQ(order("_sort=-combo-code"), (Order{"bp", "temp", "smoke"}));
  auto count = get("Observation?combo-code=8310-5,8480-6,8462-4&_summary=count").json();
  ASSERT_TRUE(count);
  EXPECT_EQ(count->find("total")->text(), "2");
}

}  // namespace
}  // namespace caduceus::test
