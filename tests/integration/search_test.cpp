// Search over HTTP (preview: the server indexes and searches when started with --search-index true).
#include <gtest/gtest.h>

#include <set>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

const HeaderList kJson{{"Content-Type", "application/fhir+json"}};

std::set<std::string> entry_ids(const Response& r) {
  std::set<std::string> ids;
  auto v = r.json();
  if (!v) return ids;
  if (const auto* entries = v->find("entry"))
    for (const auto& e : entries->items()) ids.insert(e.find("resource")->find("id")->text());
  return ids;
}

std::string next_link(const Response& r) {
  auto v = r.json();
  if (!v) return {};
  for (const auto& l : v->find("link")->items())
    if (l.find("relation")->text() == "next") return l.find("url")->text();
  return {};
}

class SearchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_args = {"--search-index", "true"};
    server_ = std::make_unique<TestServer>(options);
    HttpClient c(server_->host(), server_->port());
    const std::pair<const char*, const char*> resources[] = {
        {"Patient/p1", R"({"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1980-05-17",
                           "name":[{"family":"Müller","given":["Anna"]}]})"},
        {"Patient/p2", R"({"resourceType":"Patient","id":"p2","gender":"male","birthDate":"1980-05",
                           "name":[{"family":"Mueller","given":["Bob"]}]})"},
        {"Patient/p3", R"({"resourceType":"Patient","id":"p3","gender":"male","birthDate":"1950-01-01",
                           "name":[{"family":"Smith"}]})"},
        {"Observation/o1", R"({"resourceType":"Observation","id":"o1","status":"final",
                               "subject":{"reference":"Patient/p1"},
                               "code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},
                               "valueQuantity":{"value":37.50,"system":"http://unitsofmeasure.org","code":"Cel"}})"},
    };
    for (const auto& [path, body] : resources)
      ASSERT_EQ(c.put(server_->base_path() + "/" + path, body, kJson).status, 201);
  }
  static void TearDownTestSuite() { server_.reset(); }

  Response get(const std::string& target) {
    HttpClient c(server_->host(), server_->port());
    return c.get(server_->base_path() + "/" + target);
  }

  static inline std::unique_ptr<TestServer> server_;
};

TEST_F(SearchTest, SearchsetBundleWithMatches) {
  Response r = get("Patient?name=muller&_total=accurate");
  ASSERT_EQ(r.status, 200) << r.summary();
  auto v = r.json();
  ASSERT_TRUE(v);
  EXPECT_EQ(v->find("type")->text(), "searchset");
  EXPECT_EQ(v->find("total")->text(), "1");
  EXPECT_EQ(entry_ids(r), std::set<std::string>{"p1"});
  EXPECT_EQ(v->find("entry")->items()[0].find("search")->find("mode")->text(), "match");
  EXPECT_EQ(entry_ids(get("Patient?gender=male&birthdate=lt1960")), std::set<std::string>{"p3"});
  EXPECT_EQ(entry_ids(get("Patient?birthdate=1980")), (std::set<std::string>{"p1", "p2"}));
  EXPECT_EQ(entry_ids(get("Observation?patient=p1&code=http://loinc.org%7C8310-5")), std::set<std::string>{"o1"});
  EXPECT_EQ(entry_ids(get("Observation?value-quantity=37.5%7Chttp://unitsofmeasure.org%7CCel")),
            std::set<std::string>{"o1"});
  EXPECT_EQ(entry_ids(get("Observation?subject:Patient.name=anna")), std::set<std::string>{"o1"});
  EXPECT_EQ(entry_ids(get("Patient?_has:Observation:patient:code=8310-5")), std::set<std::string>{"p1"});
  // _include: the referenced patient comes as an entry with search.mode include.
  Response inc = get("Observation?_id=o1&_include=Observation:subject");
  ASSERT_EQ(inc.status, 200) << inc.summary();
  EXPECT_EQ(entry_ids(inc), (std::set<std::string>{"o1", "p1"}));
  auto bundle = inc.json();
  ASSERT_TRUE(bundle);
  std::set<std::string> modes;
  for (const auto& e : bundle->find("entry")->items()) modes.insert(e.find("search")->find("mode")->text());
  EXPECT_EQ(modes, (std::set<std::string>{"match", "include"}));
  // _elements and _summary subset the matches and mark them SUBSETTED.
  Response elements = get("Patient?_id=p1&_elements=gender");
  ASSERT_EQ(elements.status, 200) << elements.summary();
  auto eb = elements.json();
  ASSERT_TRUE(eb);
  const auto& subset = *eb->find("entry")->items()[0].find("resource");
  EXPECT_NE(subset.find("gender"), nullptr);
  EXPECT_EQ(subset.find("name"), nullptr);
  EXPECT_NE(elements.body.find("SUBSETTED"), std::string::npos);
  Response summary = get("Patient?_id=p1&_summary=true");
  ASSERT_EQ(summary.status, 200) << summary.summary();
  EXPECT_NE(summary.body.find("SUBSETTED"), std::string::npos);
  auto sb = summary.json();
  ASSERT_TRUE(sb);
  EXPECT_NE(sb->find("entry")->items()[0].find("resource")->find("name"), nullptr) << "name is a summary element";
}

TEST_F(SearchTest, PostSearchAndPagingByNextLinks) {
  HttpClient c(server_->host(), server_->port());
  Response post = c.post(server_->base_path() + "/Patient/_search", "family=mueller",
                         {{"Content-Type", "application/x-www-form-urlencoded"}});
  ASSERT_EQ(post.status, 200) << post.summary();
  EXPECT_EQ(entry_ids(post), std::set<std::string>{"p2"});

  std::set<std::string> seen;
  std::string target = server_->base_path() + "/Patient?_count=1";
  for (int pages = 0; !target.empty() && pages < 10; ++pages) {
    Response r = c.get(target);
    ASSERT_EQ(r.status, 200) << r.summary();
    for (const auto& id : entry_ids(r)) EXPECT_TRUE(seen.insert(id).second) << id;
    std::string next = next_link(r);
    target = next.empty() ? std::string() : next.substr(next.find(server_->base_path()));
  }
  EXPECT_EQ(seen, (std::set<std::string>{"p1", "p2", "p3"}));
}

TEST_F(SearchTest, BadInputAndWhatIsNotBuiltYet) {
  EXPECT_TRUE(IsOperationOutcome(get("Patient?birthdate=1970-13-45"), 400));
  EXPECT_TRUE(IsOperationOutcome(get("Patient?gender:exact=male"), 400));
  EXPECT_TRUE(IsOperationOutcome(get("Patient?_count=100000"), 400));
  EXPECT_TRUE(IsOperationOutcome(get("Patient?_cursor=xyz"), 400));
  EXPECT_TRUE(IsOperationOutcome(get("Observation?_sort=date"), 501));
  // Unknown parameters are ignored and left out of the self link; strict handling refuses them.
  Response lenient = get("Patient?nickname=jo&gender=female");
  ASSERT_EQ(lenient.status, 200);
  EXPECT_EQ(lenient.body.find("nickname"), std::string::npos);
  EXPECT_EQ(entry_ids(lenient), std::set<std::string>{"p1"});
  HttpClient c(server_->host(), server_->port());
  EXPECT_TRUE(
      IsOperationOutcome(c.get(server_->base_path() + "/Patient?nickname=jo", {{"Prefer", "handling=strict"}}), 400));
}

TEST_F(SearchTest, CapabilityStatementListsTheSearchParameters) {
  Response r = get("metadata");
  ASSERT_EQ(r.status, 200);
  auto cs = r.json();
  ASSERT_TRUE(cs);
  const fhir::json::Value* patient = nullptr;
  for (const auto& res : cs->find("rest")->items()[0].find("resource")->items())
    if (res.find("type")->text() == "Patient") patient = &res;
  ASSERT_NE(patient, nullptr);
  std::set<std::string> interactions, params;
  for (const auto& i : patient->find("interaction")->items()) interactions.insert(i.find("code")->text());
  for (const auto& p : patient->find("searchParam")->items()) params.insert(p.find("name")->text());
  EXPECT_TRUE(interactions.contains("search-type"));
  for (const char* name : {"name", "birthdate", "gender", "identifier", "_id", "_lastUpdated", "general-practitioner"})
    EXPECT_TRUE(params.contains(name)) << name;
}

TEST(SearchDisabledTest, WithoutTheIndexSearchAnswers501) {
  TestServer server;
  HttpClient c(server.host(), server.port());
  EXPECT_TRUE(IsOperationOutcome(c.get(server.base_path() + "/Patient?name=x"), 501));
}

}  // namespace
}  // namespace caduceus::test
