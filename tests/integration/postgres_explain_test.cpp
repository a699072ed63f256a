// The explainer on PostgreSQL (`_explain=true`): the real SQL with PostgreSQL's plan. The main searches
// (patient + code, token, string, date) are served by the value indexes, and no table is read whole.
//
// The database is small, so it runs with enable_seqscan = off (ALTER DATABASE ... SET): on a handful of rows
// PostgreSQL rightly prefers reading a one-page table whole, which says nothing about a large one. With sequential
// scans discouraged, a Seq Scan is left in a plan only where no index can serve the statement at all; so a plan
// without one shows that an index covers every table the search reads. (The generic explainer tests run on both
// backends too: ExplainTest in explain_test.cpp.)
#include <gtest/gtest.h>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "pg_cluster.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using fhir::json::Value;

std::vector<const Value*> named(const Value& holder, std::string_view key, std::string_view name) {
  std::vector<const Value*> out;
  if (const Value* list = holder.find(key); list != nullptr && list->is_array())
    for (const Value& p : list->items())
      if (const Value* n = p.find("name"); n != nullptr && n->text() == name) out.push_back(&p);
  return out;
}

std::string value_text(const Value& part) {
  for (const auto& [key, v] : part.members())
    if (key.starts_with("value")) return v.text();
  return {};
}

struct PagePlan {
  std::vector<std::string> indexes, details;
  std::int64_t rows = -1, estimate = -1;
  std::string sql;
};

// The "page" statement of an explainer answer.
PagePlan page_of(const Response& r) {
  PagePlan out;
  auto v = r.json();
  if (!v) return out;
  for (const Value* s : named(*v, "parameter", "statement")) {
    bool page = false;
    for (const Value* role : named(*s, "part", "role")) page = value_text(*role) == "page";
    if (!page) continue;
    for (const Value* p : named(*s, "part", "sql")) out.sql = value_text(*p);
    for (const Value* p : named(*s, "part", "index")) out.indexes.push_back(value_text(*p));
    for (const Value* step : named(*s, "part", "step"))
      for (const Value* d : named(*step, "part", "detail")) out.details.push_back(value_text(*d));
    for (const Value* rows : named(*s, "part", "rows")) {
      for (const Value* c : named(*rows, "part", "count")) out.rows = std::stoll(value_text(*c));
      for (const Value* e : named(*rows, "part", "estimate")) out.estimate = std::stoll(value_text(*e));
    }
  }
  return out;
}

bool has(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

bool reads_a_table_whole(const PagePlan& p) {
  for (const std::string& d : p.details)
    if (d.starts_with("Seq Scan")) return true;
  return false;
}

TEST(PostgresExplainTest, TheMainSearchesUseTheirIndexesNotASequentialScan) {
  if (postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
  auto db = PgDatabase::create();
  ASSERT_TRUE(db.has_value()) << db.error();
  auto off = (*db)->query("ALTER DATABASE " + (*db)->name() + " SET enable_seqscan = off");
  ASSERT_TRUE(off.has_value()) << off.error();
  ServerOptions o;
  o.db = (*db)->url();
  o.extra_args = {"--search-index", "true"};
  TestServer server(o);
  HttpClient c(server.host(), server.port());
  const HeaderList json{{"Content-Type", "application/fhir+json"}};
  const std::pair<const char*, const char*> resources[] = {
      {"Patient/p1", R"({"resourceType":"Patient","id":"p1","gender":"female","name":[{"family":"Smith"}],
          "identifier":[{"value":"A1","type":{"coding":[{"system":"urn:t","code":"MR"}]}},
                        {"value":"B2","type":{"coding":[{"system":"urn:t","code":"DL"}]}}]})"},
      {"Patient/p2", R"({"resourceType":"Patient","id":"p2","gender":"male","name":[{"family":"Smithers"}],
          "identifier":[{"value":"B2","type":{"coding":[{"system":"urn:t","code":"MR"}]}}]})"},
      {"Patient/p3", R"({"resourceType":"Patient","id":"p3","gender":"male","name":[{"family":"Jones"}]})"},
      {"Observation/o1", R"({"resourceType":"Observation","id":"o1","status":"final",
          "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-03-01",
          "code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]}})"},
      {"Observation/o2", R"({"resourceType":"Observation","id":"o2","status":"final",
          "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2021-06-15",
          "code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]}})"},
      {"Observation/o3", R"({"resourceType":"Observation","id":"o3","status":"final",
          "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2022-01-10",
          "code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]}})"},
      {"Observation/o4", R"({"resourceType":"Observation","id":"o4","status":"final",
          "subject":{"reference":"Patient/p2"},"effectiveDateTime":"2023-02-02",
          "code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]}})"},
  };
  for (const auto& [path, body] : resources) ASSERT_EQ(c.put("/fhir/" + std::string(path), body, json).status, 201);

  struct Case {
    std::string search, index;
    std::int64_t matches;
  };
  const Case cases[] = {
      // patient + code: o1, o2 (p1's 8310-5), through the table of (patient, code) pairs, one seek.
      {"Observation?patient=Patient/p1&code=http://loinc.org|8310-5", "idx_patient_token_value", 2},
      // token: p2, p3.
      {"Patient?gender=male", "idx_token_value", 2},
      // string (starts with): Smith, Smithers.
      {"Patient?name=smith", "idx_string_value", 2},
      // date: o3 (2022-01-10), o4 (2023-02-02).
      {"Observation?date=ge2022-01-01", "idx_date_value", 2},
      // identifier:of-type: p2 (MR B2; p1's B2 is a DL), its candidates by token (B2: p1 and p2), each checked on
      // idx_identifier_type's rows of that rid; the table has no other index.
      {"Patient?identifier:of-type=urn:t|MR|B2", "idx_token_value", 1},
      {"Patient?identifier:of-type=urn:t|MR|B2", "idx_identifier_type_rid", 1},
  };
  for (const Case& k : cases) {
    Response r = c.get("/fhir/" + k.search + "&_explain=true");
    ASSERT_EQ(r.status, 200) << k.search << ": " << r.summary();
    PagePlan p = page_of(r);
    ASSERT_FALSE(p.details.empty()) << k.search << ": " << r.body;
    const std::string plan = ::testing::PrintToString(p.details);
    EXPECT_TRUE(has(p.indexes, k.index)) << k.search << " does not use " << k.index << ": " << plan;
    EXPECT_FALSE(reads_a_table_whole(p)) << k.search << " reads a table whole: " << plan << "\n" << p.sql;
    EXPECT_EQ(p.rows, k.matches) << k.search;
    EXPECT_GE(p.estimate, 0) << k.search << ": PostgreSQL's estimate is given";
    EXPECT_EQ(p.sql.find('?'), std::string::npos) << "the SQL as PostgreSQL runs it ($n parameters): " << p.sql;
    // And the search itself finds what the explainer counted.
    Response found = c.get("/fhir/" + k.search);
    ASSERT_EQ(found.status, 200) << found.summary();
    EXPECT_EQ(static_cast<std::int64_t>(entry_ids(found).size()), k.matches) << k.search;
  }
}

}  // namespace
}  // namespace caduceus::test
