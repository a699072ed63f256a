// Search over the index tables (SQLite), with results worked out by hand for a small store.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <limits>
#include <set>
#include <variant>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/store/store.hpp"

// The SQL builder is internal to the store; its plan is checked here.
#include "../../resources/src/store/search_sql.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;
using Params = std::vector<std::pair<std::string, std::string>>;

class SearchSql : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    defs_ = *Definitions::load(conformance::r4_model_json());
    registry_ = *SearchParameterRegistry::load(conformance::r4_search_parameters_json());
    indexer_ = *SearchIndexer::create(*defs_, *registry_);
    checker_ = std::make_unique<StructureChecker>(*defs_);
    store_ = std::move(*open_store("sqlite::memory:"));
    Repository repo(*store_, *defs_, *checker_, indexer_.get());
    const char* resources[] = {
        R"({"resourceType":"Patient","id":"p1","active":true,"gender":"female","birthDate":"1980-05-17",
            "name":[{"family":"Müller","given":["Anna"]}],"identifier":[{"system":"urn:mrn","value":"111"}]})",
        R"({"resourceType":"Patient","id":"p2","gender":"male","birthDate":"1980-05",
            "name":[{"family":"Mueller","given":["Bob"]}],"identifier":[{"system":"urn:mrn","value":"222"}]})",
        R"({"resourceType":"Patient","id":"p3","gender":"male","birthDate":"1950-01-01",
            "name":[{"family":"Smith","given":["Carol"]}]})",
        R"({"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},
            "code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"effectiveDateTime":"2020-03-04T10:00:00Z",
            "valueQuantity":{"value":37.50,"unit":"Cel","system":"http://unitsofmeasure.org","code":"Cel"}})",
        R"({"resourceType":"Observation","id":"o2","status":"preliminary","subject":{"reference":"Patient/p2"},
            "code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"effectiveDateTime":"2021-01-01",
            "valueQuantity":{"value":100,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}})",
        R"({"resourceType":"Patient","id":"gone","gender":"male"})",
        R"({"resourceType":"Practitioner","id":"pr1","name":[{"family":"House"}]})",
        R"({"resourceType":"Patient","id":"p4","generalPractitioner":[{"reference":"Practitioner/pr1"}],
            "name":[{"family":"Wilson"}]})",
        R"({"resourceType":"Observation","id":"o4","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"component":[
            {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
             "valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
            {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},
             "valueQuantity":{"value":80,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]})",
        R"({"resourceType":"Observation","id":"o3","status":"final","subject":{"reference":"Patient/p4"},
            "code":{"text":"note"}})",
    };
    for (const char* text : resources) {
      auto v = *json::parse(text);
      auto out = repo.update(kDefaultTenant, v.find("resourceType")->text(), v.find("id")->text(), v, {});
      ASSERT_TRUE(out.has_value()) << out.error().issues[0].diagnostics;
    }
    ASSERT_TRUE(repo.remove(kDefaultTenant, "Patient", "gone", std::nullopt));
  }
  static void TearDownTestSuite() { store_.reset(); }

  static fhir::Result<SearchPage> search(std::string_view type, const Params& params) {
    auto q = parse_search(type, params, *registry_, *defs_);
    if (!q) return std::unexpected(q.error());
    return store_->search(kDefaultTenant, *q);
  }

  static std::set<std::string> ids(std::string_view type, const Params& params) {
    auto page = search(type, params);
    EXPECT_TRUE(page.has_value()) << (page ? "" : page.error().issues[0].diagnostics);
    std::set<std::string> out;
    if (page)
      for (const auto& e : page->entries) out.insert(e.id);
    return out;
  }

  // The ids of the matches, in order, following the cursors from page to page.
  static std::vector<std::string> sorted(std::string_view type, Params params) {
    std::vector<std::string> out;
    for (int guard = 0; guard < 20; ++guard) {
      auto q = parse_search(type, params, *registry_, *defs_);
      EXPECT_TRUE(q.has_value()) << (q ? "" : q.error().issues[0].diagnostics);
      if (!q) return out;
      auto page = store_->search(kDefaultTenant, *q);
      EXPECT_TRUE(page.has_value()) << (page ? "" : page.error().issues[0].diagnostics);
      if (!page) return out;
      for (const auto& e : page->entries) out.push_back(e.id);
      if (!page->next_cursor) return out;
      std::erase_if(params, [](const auto& p) { return p.first == "_cursor"; });
      params.emplace_back("_cursor", *page->next_cursor);
    }
    ADD_FAILURE() << "too many pages";
    return out;
  }

  static inline std::shared_ptr<const Definitions> defs_;
  static inline std::shared_ptr<const SearchParameterRegistry> registry_;
  static inline std::shared_ptr<const SearchIndexer> indexer_;
  static inline std::unique_ptr<StructureChecker> checker_;
  static inline std::unique_ptr<Store> store_;
};

using Ids = std::set<std::string>;

TEST_F(SearchSql, StringsAreCaseAndAccentInsensitivePrefixes) {
  EXPECT_EQ(ids("Patient", {{"name", "muller"}}), Ids{"p1"});
  EXPECT_EQ(ids("Patient", {{"name", "MU"}}), (Ids{"p1", "p2"}));
  EXPECT_EQ(ids("Patient", {{"given", "car"}}), Ids{"p3"});
  EXPECT_EQ(ids("Patient", {{"family:exact", "Müller"}}), Ids{"p1"});
  EXPECT_EQ(ids("Patient", {{"family:exact", "müller"}}), Ids{});
  EXPECT_EQ(ids("Patient", {{"name:contains", "ell"}}), Ids{"p2"});
  EXPECT_EQ(ids("Patient", {{"name", "100%"}}), Ids{});  // LIKE wildcards are escaped
}

TEST_F(SearchSql, DatesCompareByPrecision) {
  EXPECT_EQ(ids("Patient", {{"birthdate", "1980"}}), (Ids{"p1", "p2"}));
  EXPECT_EQ(ids("Patient", {{"birthdate", "1980-05"}}), (Ids{"p1", "p2"}));
  EXPECT_EQ(ids("Patient", {{"birthdate", "1980-05-17"}}), Ids{"p1"});  // p2's whole month is not in that day
  EXPECT_EQ(ids("Patient", {{"birthdate", "lt1960"}}), Ids{"p3"});
  EXPECT_EQ(ids("Patient", {{"birthdate", "ge1980-05-17"}}), (Ids{"p1", "p2"}));
  EXPECT_EQ(ids("Patient", {{"birthdate", "ne1980"}}), Ids{"p3"});
  EXPECT_EQ(ids("Observation", {{"date", "2020-03-04"}}), Ids{"o1"});
  EXPECT_EQ(ids("Observation", {{"date", "ge2021"}}), Ids{"o2"});
}

TEST_F(SearchSql, TokensMatchSystemAndCode) {
  EXPECT_EQ(ids("Patient", {{"gender", "male"}}), (Ids{"p2", "p3"}));
  EXPECT_EQ(ids("Patient", {{"gender:not", "male"}}), (Ids{"p1", "p4"}));  // p4 has no gender: :not keeps it
  EXPECT_EQ(ids("Patient", {{"identifier", "urn:mrn|111"}}), Ids{"p1"});
  EXPECT_EQ(ids("Patient", {{"identifier", "222"}}), Ids{"p2"});
  EXPECT_EQ(ids("Patient", {{"identifier", "urn:other|111"}}), Ids{});
  EXPECT_EQ(ids("Patient", {{"identifier", "urn:mrn|"}}), (Ids{"p1", "p2"}));
  EXPECT_EQ(ids("Observation", {{"code", "http://loinc.org|8310-5"}}), Ids{"o1"});
  EXPECT_EQ(ids("Observation", {{"code", "8867-4"}}), Ids{"o2"});
  EXPECT_EQ(ids("Patient", {{"_id", "p1,p3"}}), (Ids{"p1", "p3"}));
  EXPECT_EQ(ids("Patient", {{"identifier:missing", "true"}}), (Ids{"p3", "p4"}));
  EXPECT_EQ(ids("Patient", {{"identifier:missing", "false"}}), (Ids{"p1", "p2"}));
}

TEST_F(SearchSql, ReferencesQuantitiesAndCombinations) {
  EXPECT_EQ(ids("Observation", {{"subject", "Patient/p1"}}), Ids{"o1"});
  EXPECT_EQ(ids("Observation", {{"patient", "p2"}}), Ids{"o2"});
  EXPECT_EQ(ids("Observation", {{"subject:Patient", "p1"}}), Ids{"o1"});
  EXPECT_EQ(ids("Observation", {{"value-quantity", "37.5"}}), Ids{"o1"});
  EXPECT_EQ(ids("Observation", {{"value-quantity", "lt50||Cel"}}), Ids{"o1"});
  EXPECT_EQ(ids("Observation", {{"value-quantity", "gt50"}}), Ids{"o2"});
  EXPECT_EQ(ids("Observation", {{"value-quantity", "37.5|http://unitsofmeasure.org|Cel"}}), Ids{"o1"});
  EXPECT_EQ(ids("Observation", {{"value-quantity", "37.5|http://unitsofmeasure.org|/min"}}), Ids{});
  EXPECT_EQ(ids("Patient", {{"gender", "male"}, {"birthdate", "lt1960"}}), Ids{"p3"});  // AND
  EXPECT_EQ(ids("Patient", {{"gender", "female,male"}}), (Ids{"p1", "p2", "p3"}));      // OR; deleted left out
}

TEST_F(SearchSql, ChainsAndReverseChains) {
  EXPECT_EQ(ids("Observation", {{"subject:Patient.name", "muller"}}), Ids{"o1"});
  EXPECT_EQ(ids("Observation", {{"patient.family", "mueller"}}), Ids{"o2"});
  EXPECT_EQ(ids("Observation", {{"subject:Patient.general-practitioner:Practitioner.name", "house"}}), Ids{"o3"});
  EXPECT_EQ(ids("Observation", {{"subject:Patient.general-practitioner:Practitioner.name", "cuddy"}}), Ids{});
  EXPECT_EQ(ids("Patient", {{"_has:Observation:patient:code", "8310-5"}}), Ids{"p1"});
  EXPECT_EQ(ids("Patient", {{"_has:Observation:subject:status", "preliminary"}}), Ids{"p2"});
  EXPECT_EQ(ids("Patient", {{"_has:Observation:subject:status", "final"}}), (Ids{"p1", "p4"}));
  EXPECT_EQ(ids("Practitioner", {{"_has:Patient:general-practitioner:_has:Observation:subject:code:text", "note"}}),
            Ids{"pr1"});
  EXPECT_EQ(ids("Patient", {{"_has:Observation:subject:status", "final"}, {"name", "wil"}}), Ids{"p4"});
}

TEST_F(SearchSql, CompositesMatchWithinOneItem) {
  EXPECT_EQ(ids("Observation", {{"component-code-value-quantity", "http://loinc.org|8480-6$gt100"}}), Ids{"o4"});
  EXPECT_EQ(ids("Observation", {{"component-code-value-quantity", "http://loinc.org|8480-6$lt100"}}), Ids{});
  EXPECT_EQ(ids("Observation", {{"component-code-value-quantity", "8462-4$lt100"}}), Ids{"o4"});
  // 80 is the diastolic value: it does not pair with the systolic code.
  EXPECT_EQ(ids("Observation", {{"component-code-value-quantity", "8480-6$80"}}), Ids{});
  EXPECT_EQ(ids("Observation", {{"component-code-value-quantity", "8480-6$80,8462-4$80"}}), Ids{"o4"});
  EXPECT_EQ(ids("Observation", {{"code-value-quantity", "http://loinc.org|8310-5$37.5"}}), Ids{"o1"});
  EXPECT_EQ(ids("Observation", {{"code-value-quantity", "http://loinc.org|8310-5$ge40"}}), Ids{});
}

TEST_F(SearchSql, IncludesAndRevincludes) {
  auto included = [](std::string_view type, const Params& params) {
    auto page = search(type, params);
    EXPECT_TRUE(page.has_value()) << (page ? "" : page.error().issues[0].diagnostics);
    std::set<std::string> out;
    if (page)
      for (const auto& e : page->included) out.insert(e.type + "/" + e.id);
    return out;
  };
  EXPECT_EQ(included("Observation", {{"_id", "o1"}, {"_include", "Observation:subject"}}), Ids{"Patient/p1"});
  EXPECT_EQ(included("Observation", {{"_id", "o1"}, {"_include", "Observation:subject:Group"}}), Ids{});
  EXPECT_EQ(included("Observation", {{"_id", "o1"}, {"_include", "*"}}), Ids{"Patient/p1"});
  EXPECT_EQ(included("Observation", {{"_id", "o3"},
                                     {"_include", "Observation:subject"},
                                     {"_include:iterate", "Patient:general-practitioner"}}),
            (Ids{"Patient/p4", "Practitioner/pr1"}));
  // Without :iterate, the second hop is not followed.
  EXPECT_EQ(included("Observation", {{"_id", "o3"}, {"_include", "Observation:subject"}}), Ids{"Patient/p4"});
  EXPECT_EQ(included("Patient", {{"_id", "p1,p4"}, {"_revinclude", "Observation:subject"}}),
            (Ids{"Observation/o1", "Observation/o3"}));
  EXPECT_EQ(included("Practitioner",
                     {{"_revinclude", "Patient:general-practitioner"}, {"_revinclude:iterate", "Observation:subject"}}),
            (Ids{"Patient/p4", "Observation/o3"}));
  EXPECT_EQ(included("Patient", {{"_id", "p4"}, {"_revinclude", "*"}}), Ids{"Observation/o3"});
  EXPECT_EQ(included("Practitioner", {{"_revinclude", "*"}}), Ids{"Patient/p4"});
  // A match is never repeated as an include.
  EXPECT_EQ(
      included("Patient",
               {{"_id", "p1"}, {"_revinclude", "Observation:subject"}, {"_include:iterate", "Observation:subject"}}),
      Ids{"Observation/o1"});
}

TEST_F(SearchSql, PagesByCursorAndCountsOnRequest) {
  std::set<std::string> seen;
  Params params{{"_count", "1"}, {"_total", "accurate"}};
  for (int guard = 0; guard < 10; ++guard) {
    auto page = search("Patient", params);
    ASSERT_TRUE(page.has_value());
    EXPECT_EQ(page->total, 4);
    for (const auto& e : page->entries) EXPECT_TRUE(seen.insert(e.id).second) << e.id;
    if (!page->next_cursor) break;
    params = {{"_count", "1"}, {"_total", "accurate"}, {"_cursor", *page->next_cursor}};
  }
  EXPECT_EQ(seen, (Ids{"p1", "p2", "p3", "p4"}));
  auto count = search("Patient", {{"_summary", "count"}, {"gender", "male"}});
  ASSERT_TRUE(count.has_value());
  EXPECT_EQ(count->total, 2);
  EXPECT_TRUE(count->entries.empty());
}

// A count from the index rows alone (one plain criterion) equals the number of matches: a resource with several
// matching values counts once.
TEST_F(SearchSql, CountsFromTheIndexAloneMatchTheMatches) {
  const std::vector<std::pair<std::string, Params>> searches = {
      {"Patient", {{"gender", "male"}}},      {"Patient", {{"name", "m"}}},
      {"Patient", {{"birthdate", "ge1900"}}}, {"Observation", {{"subject", "Patient/p1"}}},
      {"Observation", {{"status", "final"}}}, {"Patient", {{"_id", "p1,p3,nobody"}}},
      {"Patient", {{"name:contains", "l"}}},  {"Observation", {{"value-quantity", "gt0"}}},
  };
  for (const auto& [type, params] : searches) {
    Params count_params = params, all = params;
    count_params.emplace_back("_summary", "count");
    all.emplace_back("_count", "1000");
    auto count = search(type, count_params);
    auto page = search(type, all);
    ASSERT_TRUE(count.has_value() && page.has_value()) << type;
    ASSERT_TRUE(count->total.has_value());
    EXPECT_EQ(*count->total, static_cast<std::int64_t>(page->entries.size())) << type << "?" << params[0].first;
  }
  auto q = parse_search("Observation", {{"status", "final"}}, *registry_, *defs_);
  ASSERT_TRUE(q.has_value());
  auto sql = build_search_sql(0, *q, std::nullopt, 0, true);
  ASSERT_TRUE(sql.has_value());
  EXPECT_TRUE(sql->sql.starts_with("SELECT COUNT(*) FROM (SELECT DISTINCT x.rid FROM idx_token x")) << sql->sql;
}

using Order = std::vector<std::string>;

// Patients: p1 Müller Anna, female, 1980-05-17; p2 Mueller Bob, male, 1980-05 (the whole month); p3 Smith Carol,
// male, 1950-01-01; p4 Wilson, no gender, no birth date. Rids follow the order of writing (p4 after o2).
TEST_F(SearchSql, SortsByTheLowestValueAscendingAndTheHighestDescending) {
  // name: each patient has a family and a given name (normalized). Lowest: anna, bob, carol, wilson; highest:
  // muller, mueller, smith, wilson.
  EXPECT_EQ(sorted("Patient", {{"_sort", "name"}}), (Order{"p1", "p2", "p3", "p4"}));
  EXPECT_EQ(sorted("Patient", {{"_sort", "-name"}}), (Order{"p4", "p3", "p1", "p2"}));
  // family alone: mueller < muller (the accent folded) < smith < wilson.
  EXPECT_EQ(sorted("Patient", {{"_sort", "family"}}), (Order{"p2", "p1", "p3", "p4"}));
  // Dates of different precision: p2's 1980-05 starts before p1's day and ends after it. p4 has none: last.
  EXPECT_EQ(sorted("Patient", {{"_sort", "birthdate"}}), (Order{"p3", "p2", "p1", "p4"}));
  EXPECT_EQ(sorted("Patient", {{"_sort", "-birthdate"}}), (Order{"p2", "p1", "p3", "p4"}));
  // Ties (p2 and p3 are male) by rid, in both directions; no value last in both.
  EXPECT_EQ(sorted("Patient", {{"_sort", "gender"}}), (Order{"p1", "p2", "p3", "p4"}));
  EXPECT_EQ(sorted("Patient", {{"_sort", "-gender"}}), (Order{"p2", "p3", "p1", "p4"}));
  // Two keys: the second orders within the first's ties.
  EXPECT_EQ(sorted("Patient", {{"_sort", "-gender,birthdate"}}), (Order{"p3", "p2", "p1", "p4"}));
  EXPECT_EQ(sorted("Patient", {{"_sort", "-gender,-birthdate"}}), (Order{"p2", "p3", "p1", "p4"}));
  EXPECT_EQ(sorted("Patient", {{"_sort", "-_id"}}), (Order{"p4", "p3", "p2", "p1"}));
  // With criteria, only the matches.
  EXPECT_EQ(sorted("Patient", {{"gender", "male"}, {"_sort", "birthdate"}}), (Order{"p3", "p2"}));
}

// Observations, written o1, o2, o4, o3: o1 LOINC 8310-5, 37.5 Cel, subject Patient/p1; o2 8867-4, 100 /min,
// Patient/p2; o4 85354-9 with components, no value, no subject; o3 a code with text alone, subject Patient/p4.
TEST_F(SearchSql, SortsTokensReferencesAndQuantities) {
  // Codes compare as text: 8310-5 < 85354-9 < 8867-4; o3's code has no code: last.
  EXPECT_EQ(sorted("Observation", {{"_sort", "code"}}), (Order{"o1", "o4", "o2", "o3"}));
  EXPECT_EQ(sorted("Observation", {{"_sort", "-code"}}), (Order{"o2", "o4", "o1", "o3"}));
  // o4 and o3 have no value: last, by rid (o4 was written first).
  EXPECT_EQ(sorted("Observation", {{"_sort", "value-quantity"}}), (Order{"o1", "o2", "o4", "o3"}));
  EXPECT_EQ(sorted("Observation", {{"_sort", "-value-quantity"}}), (Order{"o2", "o1", "o4", "o3"}));
  // References by their string: Patient/p1 < Patient/p2 < Patient/p4; o4 has no subject.
  EXPECT_EQ(sorted("Observation", {{"_sort", "-subject"}}), (Order{"o3", "o2", "o1", "o4"}));
  EXPECT_EQ(sorted("Observation", {{"_sort", "status,-subject"}}), (Order{"o3", "o1", "o4", "o2"}));
}

TEST_F(SearchSql, SortedPagesFollowEachOtherByCursor) {
  // One per page: the cursor carries the keys of the last row (including "no value" and ties).
  EXPECT_EQ(sorted("Patient", {{"_sort", "-gender,birthdate"}, {"_count", "1"}}), (Order{"p3", "p2", "p1", "p4"}));
  EXPECT_EQ(sorted("Patient", {{"_sort", "-name"}, {"_count", "1"}}), (Order{"p4", "p3", "p1", "p2"}));
  EXPECT_EQ(sorted("Patient", {{"_sort", "gender"}, {"_count", "3"}}), (Order{"p1", "p2", "p3", "p4"}));
  EXPECT_EQ(sorted("Observation", {{"_sort", "value-quantity"}, {"_count", "1"}}), (Order{"o1", "o2", "o4", "o3"}));
  EXPECT_EQ(sorted("Observation", {{"_sort", "-value-quantity"}, {"_count", "2"}}), (Order{"o2", "o1", "o4", "o3"}));
  EXPECT_EQ(sorted("Observation", {{"_sort", "code"}, {"_count", "1"}}), (Order{"o1", "o4", "o2", "o3"}));
  EXPECT_EQ(sorted("Patient", {{"_sort", "-_lastUpdated,_id"}, {"_count", "1"}}).size(), 4u);
}

TEST_F(SearchSql, SortCursorsAreCheckedStrictly) {
  auto first = search("Patient", {{"_sort", "birthdate"}, {"_count", "1"}});
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(first->next_cursor.has_value());
  const std::string cursor = *first->next_cursor;
  auto refused = [](const fhir::Result<SearchPage>& page) {
    return !page.has_value() && page.error().kind == fhir::ErrorKind::kInvalid &&
           page.error().issues[0].expression == "_cursor";
  };
  auto next = search("Patient", {{"_sort", "birthdate"}, {"_count", "1"}, {"_cursor", cursor}});
  ASSERT_TRUE(next.has_value());
  ASSERT_EQ(next->entries.size(), 1u);
  EXPECT_EQ(next->entries[0].id, "p2");
  // Another _sort, no _sort, a rid cursor with _sort.
  EXPECT_TRUE(refused(search("Patient", {{"_sort", "-birthdate"}, {"_cursor", cursor}})));
  EXPECT_TRUE(refused(search("Patient", {{"_sort", "birthdate,_id"}, {"_cursor", cursor}})));
  EXPECT_TRUE(refused(search("Patient", {{"_cursor", cursor}})));
  EXPECT_TRUE(refused(search("Patient", {{"_sort", "birthdate"}, {"_cursor", "12"}})));
  // Altered: every single character changed, truncated, extended, not base64url.
  for (std::size_t i = 0; i < cursor.size(); ++i) {
    std::string altered = cursor;
    altered[i] = altered[i] == 'A' ? 'B' : 'A';
    EXPECT_TRUE(refused(search("Patient", {{"_sort", "birthdate"}, {"_cursor", altered}}))) << altered;
  }
  EXPECT_TRUE(refused(search("Patient", {{"_sort", "birthdate"}, {"_cursor", cursor.substr(0, cursor.size() - 1)}})));
  EXPECT_TRUE(refused(search("Patient", {{"_sort", "birthdate"}, {"_cursor", cursor + "A"}})));
  EXPECT_TRUE(refused(search("Patient", {{"_sort", "birthdate"}, {"_cursor", cursor + "=="}})));
  EXPECT_TRUE(refused(search("Patient", {{"_sort", "birthdate"}, {"_cursor", ""}})));
  EXPECT_TRUE(refused(search("Patient", {{"_sort", "birthdate"}, {"_cursor", "%%%%"}})));
}

TEST_F(SearchSql, SortCursorsRoundTrip) {
  auto q = parse_search("Observation", {{"_sort", "-value-quantity,_id,date,-_lastUpdated"}}, *registry_, *defs_);
  ASSERT_TRUE(q.has_value());
  SortPosition p;
  p.keys = {SqlQuery::Bind{0.1 + 0.2}, SqlQuery::Bind{std::string("a\0\x01:b;N", 7)},
            SqlQuery::Bind{std::int64_t{std::numeric_limits<std::int64_t>::min()}}, SqlQuery::Bind{std::int64_t{7}}};
  p.rid = 42;
  std::string cursor = encode_sort_cursor(*q, p);
  EXPECT_EQ(cursor.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  auto back = decode_sort_cursor(*q, cursor);
  ASSERT_TRUE(back.has_value()) << back.error().issues[0].diagnostics;
  EXPECT_EQ(back->rid, 42);
  ASSERT_EQ(back->keys.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(back->keys[i], p.keys[i]) << i;
  p.keys[2] = std::nullopt;  // a date may be missing; _id and _lastUpdated may not
  back = decode_sort_cursor(*q, encode_sort_cursor(*q, p));
  ASSERT_TRUE(back.has_value());
  EXPECT_FALSE(back->keys[2].has_value());
  p.keys[1] = std::nullopt;
  EXPECT_FALSE(decode_sort_cursor(*q, encode_sort_cursor(*q, p)).has_value());
}

TEST_F(SearchSql, SortRefusesWhatItCannotSortBy) {
  std::string too_many = "date";
  for (int i = 0; i < 16; ++i) too_many += ",status";
  for (const std::string bad :
       {"nickname", "_text", "_content", "_has", "code-value-quantity", "date,", "-", "", too_many.c_str()}) {
    auto q = parse_search("Observation", {{"_sort", bad}}, *registry_, *defs_);
    ASSERT_FALSE(q.has_value()) << bad;
    EXPECT_EQ(q.error().kind, fhir::ErrorKind::kInvalid) << bad;
    EXPECT_EQ(q.error().issues[0].expression, "_sort") << bad;
  }
}

std::set<std::string> refs(const fhir::Result<SearchPage>& page) {
  EXPECT_TRUE(page.has_value()) << (page ? "" : page.error().issues[0].diagnostics);
  std::set<std::string> out;
  if (page)
    for (const auto& e : page->entries) out.insert(e.type + "/" + e.id);
  return out;
}

TEST_F(SearchSql, SearchesOverSeveralTypes) {
  auto several = [](const std::vector<std::string>& types, const Params& params) -> fhir::Result<SearchPage> {
    auto q = parse_multi_type_search(types, params, *registry_, *defs_);
    if (!q) return std::unexpected(q.error());
    EXPECT_TRUE(q->type.empty());
    return store_->search(kDefaultTenant, *q);
  };
  EXPECT_EQ(refs(several({"Patient", "Observation"}, {{"_id", "p1,o1,pr1"}})), (Ids{"Patient/p1", "Observation/o1"}));
  EXPECT_EQ(refs(several({}, {{"_id", "p4,pr1,gone"}})), (Ids{"Patient/p4", "Practitioner/pr1"}));
  // name is a string parameter of both.
  EXPECT_EQ(refs(several({"Patient", "Practitioner"}, {{"name", "house"}})), Ids{"Practitioner/pr1"});
  // _has over several types: the reference's type must be the resource's own.
  EXPECT_EQ(refs(several({"Practitioner", "Organization"}, {{"_has:Patient:general-practitioner:name", "wil"}})),
            Ids{"Practitioner/pr1"});
  // Paging by cursor across types.
  std::set<std::string> seen;
  Params params{{"_count", "2"}};
  for (int guard = 0; guard < 10; ++guard) {
    auto page = several({"Patient", "Practitioner"}, params);
    ASSERT_TRUE(page.has_value());
    for (const auto& e : page->entries) EXPECT_TRUE(seen.insert(e.type + "/" + e.id).second) << e.id;
    if (!page->next_cursor) break;
    params = {{"_count", "2"}, {"_cursor", *page->next_cursor}};
  }
  EXPECT_EQ(seen, (Ids{"Patient/p1", "Patient/p2", "Patient/p3", "Patient/p4", "Practitioner/pr1"}));
  // gender is not a parameter of Observation, nor common.
  auto gender = several({"Patient", "Observation"}, {{"gender", "male"}});
  ASSERT_FALSE(gender.has_value());
  EXPECT_EQ(gender.error().issues[0].expression, "gender");
  auto common = several({}, {{"gender", "male"}});
  ASSERT_FALSE(common.has_value());
  EXPECT_EQ(common.error().kind, fhir::ErrorKind::kInvalid);
  EXPECT_EQ(common.error().issues[0].expression, "gender");
}

TEST_F(SearchSql, CompartmentsKeepTheResourcesThatReferToTheFocalOne) {
  auto in = [](std::string type, std::string id, SearchQuery q,
               std::vector<std::pair<std::string, std::vector<std::string>>> params) {
    q.compartment = CompartmentFilter{std::move(type), std::move(id), std::move(params)};
    return refs(store_->search(kDefaultTenant, q));
  };
  auto observations = *parse_search("Observation", {}, *registry_, *defs_);
  EXPECT_EQ(in("Patient", "p1", observations, {{"Observation", {"subject", "performer"}}}), Ids{"Observation/o1"});
  EXPECT_EQ(in("Patient", "p4", observations, {{"Observation", {"subject", "performer"}}}), Ids{"Observation/o3"});
  EXPECT_EQ(in("Patient", "p3", observations, {{"Observation", {"subject", "performer"}}}), Ids{});
  auto final_only = *parse_search("Observation", {{"status", "final"}}, *registry_, *defs_);
  EXPECT_EQ(in("Patient", "p2", final_only, {{"Observation", {"subject"}}}), Ids{});
  auto both = *parse_multi_type_search({"Patient", "Observation"}, {}, *registry_, *defs_);
  EXPECT_EQ(in("Practitioner", "pr1", both, {{"Patient", {"general-practitioner"}}, {"Observation", {"performer"}}}),
            Ids{"Patient/p4"});
  EXPECT_EQ(in("Patient", "p1", both, {}), Ids{}) << "no type in the compartment: nothing";
}

TEST_F(SearchSql, TheExplainerPlansEveryStatement) {
  auto plan_of = [](std::string_view type, const Params& params) {
    auto q = parse_search(type, params, *registry_, *defs_);
    EXPECT_TRUE(q.has_value());
    auto plan = store_->explain(kDefaultTenant, *q);
    EXPECT_TRUE(plan.has_value()) << (plan ? "" : plan.error().issues[0].diagnostics);
    return plan ? *plan : SearchPlan{};
  };
  SearchPlan plan = plan_of("Patient", {{"gender", "male"}});
  ASSERT_EQ(plan.statements.size(), 2u);
  EXPECT_EQ(plan.statements[0].role, "page");
  EXPECT_EQ(plan.statements[1].role, "count");
  EXPECT_FALSE(plan.statements[1].runs);
  EXPECT_EQ(plan.statements[0].rows, 2);  // p2, p3 ('gone' is deleted)
  EXPECT_FALSE(plan.statements[0].rows_bounded);
  EXPECT_FALSE(plan.statements[0].steps.empty());
  EXPECT_NE(std::find(plan.statements[0].indexes.begin(), plan.statements[0].indexes.end(), "idx_token_value"),
            plan.statements[0].indexes.end());
  // Every parameter type and modifier: a plan with steps for the page and the count.
  const std::pair<const char*, Params> searches[] = {
      {"Patient", {{"birthdate", "ge1980"}}},
      {"RiskAssessment", {{"probability", "gt0.5"}}},
      {"Observation", {{"value-quantity", "lt40|http://unitsofmeasure.org|Cel"}}},
      {"ValueSet", {{"url:below", "http://example.org"}}},
      {"Observation", {{"code-value-quantity", "http://loinc.org|8310-5$37.5"}}},
      {"Patient", {{"name:exact", "Smith"}, {"gender:not", "male"}, {"birthdate:missing", "true"}}},
      {"Observation", {{"subject:Patient.general-practitioner:Practitioner.name", "house"}}},
      {"Practitioner", {{"_has:Patient:general-practitioner:_has:Observation:subject:code:text", "note"}}},
      {"Patient", {{"identifier", "urn:mrn|111"}, {"_lastUpdated", "gt2000"}, {"_count", "1"}, {"_cursor", "1"}}},
  };
  for (const auto& [type, params] : searches) {
    SearchPlan p = plan_of(type, params);
    ASSERT_EQ(p.statements.size(), 2u) << type;
    EXPECT_FALSE(p.statements[0].steps.empty()) << type;
    EXPECT_FALSE(p.statements[1].steps.empty()) << type;
    EXPECT_FALSE(p.statements[0].indexes.empty()) << type;
  }
  // A sorted search: the plan is of the sorted statement (its keys read through the clustered key).
  plan = plan_of("Observation", {{"_sort", "-date"}, {"status", "final"}});
  ASSERT_FALSE(plan.statements.empty());
  EXPECT_EQ(plan.statements[0].rows, 3);  // o1, o3, o4
  EXPECT_NE(plan.statements[0].sql.find("ORDER BY k0 DESC"), std::string::npos) << plan.statements[0].sql;
  EXPECT_NE(plan.statements[0].description.find("_sort=-date"), std::string::npos);
  for (const auto& n : plan.notes) EXPECT_EQ(n.find("_sort"), std::string::npos) << n;
  // Includes for the first page's ids, with the rows they return.
  plan = plan_of("Patient", {{"_id", "p1,p4"}, {"_revinclude", "Observation:subject"}});
  ASSERT_EQ(plan.statements.size(), 3u);
  EXPECT_EQ(plan.statements[2].role, "revinclude");
  EXPECT_EQ(plan.statements[2].rows, 2);  // o1, o3
}

TEST_F(SearchSql, WhatIsNotBuiltYetSaysSo) {
  auto cursor = search("Patient", {{"_cursor", "not-a-cursor"}});
  ASSERT_FALSE(cursor.has_value());
  EXPECT_EQ(cursor.error().kind, fhir::ErrorKind::kInvalid);
}

}  // namespace
}  // namespace caduceus::resources

namespace caduceus::resources {
namespace {

// The plan of a search's page query (on an empty store with the schema).
std::string plan_of(std::string_view type, const std::vector<std::pair<std::string, std::string>>& params) {
  auto defs = *Definitions::load(conformance::r4_model_json());
  auto registry = *SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  auto dir = std::filesystem::temp_directory_path() / ("caduceus-plan-" + new_resource_id());
  std::string plan;
  {
    auto store = open_store("sqlite:" + (dir / "plan.db").string());
    EXPECT_TRUE(store.has_value());
    auto query = parse_search(type, params, *registry, *defs);
    EXPECT_TRUE(query.has_value());
    if (!store || !query) return plan;
    SortPosition after;
    after.rid = 1;
    for (std::size_t i = 0; i < query->sort.size(); ++i) after.keys.emplace_back(std::string("x"));
    auto sql = query->sort.empty() ? build_search_sql(kDefaultTenant, *query, std::nullopt, 50, false)
                                   : build_sorted_search_sql(kDefaultTenant, *query, &after, 50);
    EXPECT_TRUE(sql.has_value());
    if (!sql) return plan;
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2((dir / "plan.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + sql->sql).c_str(), -1, &st, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    EXPECT_EQ(static_cast<std::size_t>(sqlite3_bind_parameter_count(st)), sql->binds.size()) << sql->sql;
    for (std::size_t i = 0; i < sql->binds.size(); ++i)
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::int64_t>)
              sqlite3_bind_int64(st, static_cast<int>(i + 1), v);
            else if constexpr (std::is_same_v<T, double>)
              sqlite3_bind_double(st, static_cast<int>(i + 1), v);
            else
              sqlite3_bind_text(st, static_cast<int>(i + 1), v.c_str(), -1, SQLITE_TRANSIENT);
          },
          sql->binds[i]);
    while (sqlite3_step(st) == SQLITE_ROW)
      plan += std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 3))) + "\n";
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  std::filesystem::remove_all(dir);
  return plan;
}

// The query plan starts from the value indexes, not from a scan of every resource of the type.
TEST(SearchSqlPlan, LookupsStartFromTheValueIndexes) {
  std::string plan = plan_of("Observation", {{"subject", "Patient/p1"}, {"code", "http://loinc.org|8310-5"}});
  RecordProperty("plan", plan);
  EXPECT_NE(plan.find("idx_reference_target"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("SCAN r"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("SEARCH r USING INDEX"), std::string::npos) << "not every Observation: " << plan;
  // The reference by id drives (one list); the code only probes each of its matches, by rid: never the list of
  // every Observation with that code.
  EXPECT_EQ(plan.find("LIST SUBQUERY"), plan.rfind("LIST SUBQUERY")) << "one list: " << plan;
  auto token = plan.find("SEARCH x USING ");
  token = plan.find("SEARCH x USING ", token + 1);
  ASSERT_NE(token, std::string::npos) << plan;
  std::string probe = plan.substr(token, plan.find('\n', token) - token);
  EXPECT_NE(probe.find("rid=?"), std::string::npos) << probe;
}

// A patient and a code: one seek in idx_patient_token over every column of its key, and nothing else to check
// but the resource rows of its matches.
TEST(SearchSqlPlan, PatientAndCodeAreOneSeek) {
  std::string plan = plan_of("Observation", {{"patient", "p1"}, {"code", "http://loinc.org|8310-5"}});
  RecordProperty("plan", plan);
  EXPECT_NE(plan.find("SEARCH x USING PRIMARY KEY (tenant=? AND target_id=? AND target_type=? AND type=? AND "
                      "param=? AND code=? AND system=?)"),
            std::string::npos)
      << plan;
  EXPECT_EQ(plan.find("idx_reference"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("idx_token"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
  // A third criterion probes the matches by rid.
  plan = plan_of("Observation", {{"patient", "Patient/p1"}, {"category", "vital-signs"}, {"status", "final"}});
  EXPECT_NE(plan.find("target_type=? AND type=? AND param=? AND code=?)"), std::string::npos) << plan;
  EXPECT_NE(plan.find("SEARCH x USING PRIMARY KEY (rid=? AND param=?"), std::string::npos) << plan;
  // Not for a modifier, a code-less value, the common parameters, identifier or status: the general plan.
  for (const Params& params : std::vector<Params>{{{"patient", "p1"}, {"code:not", "1"}},
                                                  {{"patient", "p1"}, {"code", "http://loinc.org|"}},
                                                  {{"patient", "p1"}, {"_tag", "a|b"}},
                                                  {{"patient", "p1"}, {"identifier", "a|b"}},
                                                  {{"patient", "p1"}, {"status", "final"}}})
    EXPECT_EQ(plan_of("Observation", params).find("idx_patient_token"), std::string::npos) << params[1].first;
}

// A sorted search still starts from the value index, and each sort key reads the matches' own index rows through
// the clustered key (rid, param): no index table is scanned.
TEST(SearchSqlPlan, SortKeysReadTheClusteredKey) {
  std::string plan = plan_of("Observation", {{"patient", "p1"}, {"_sort", "-date,status,-value-quantity,_id"}});
  RecordProperty("plan", plan);
  EXPECT_NE(plan.find("idx_reference_target"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("SCAN r"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("SEARCH r USING INDEX"), std::string::npos) << "not every Observation: " << plan;
  for (const char* key : {"s0", "s1", "s2"})  // idx_date, idx_token, idx_quantity
    EXPECT_NE(plan.find(std::string("SEARCH ") + key + " USING PRIMARY KEY (rid=? AND param=?)"), std::string::npos)
        << key << ": " << plan;
  EXPECT_EQ(plan.find("SCAN s"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("SCAN x"), std::string::npos) << plan;
}

// After ANALYZE, the explainer carries the sqlite_stat1 rows of the indexes it uses.
TEST(SearchSqlPlan, ExplainCarriesTheStatisticsOnceAnalyzed) {
  auto defs = *Definitions::load(conformance::r4_model_json());
  auto registry = *SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  auto indexer = *SearchIndexer::create(*defs, *registry);
  StructureChecker checker(*defs);
  auto dir = std::filesystem::temp_directory_path() / ("caduceus-stat-" + new_resource_id());
  {
    auto store = open_store("sqlite:" + (dir / "stat.db").string());
    ASSERT_TRUE(store.has_value());
    Repository repo(**store, *defs, checker, indexer.get());
    for (const char* id : {"a", "b", "c"}) {
      auto v = *json::parse(std::string(R"({"resourceType":"Patient","gender":"male","id":")") + id + "\"}");
      ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", id, v, {}).has_value());
    }
    auto query = parse_search("Patient", {{"gender", "male"}}, *registry, *defs);
    ASSERT_TRUE(query.has_value());
    auto before = (*store)->explain(kDefaultTenant, *query);
    ASSERT_TRUE(before.has_value());
    EXPECT_TRUE(before->statements[0].statistics.empty());
    ASSERT_FALSE(before->notes.empty());
    EXPECT_NE(before->notes.back().find("ANALYZE"), std::string::npos);

    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "stat.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "ANALYZE", nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);

    auto after = (*store)->explain(kDefaultTenant, *query);
    ASSERT_TRUE(after.has_value());
    EXPECT_TRUE(after->notes.empty());
    const StatementPlan& page = after->statements[0];
    EXPECT_EQ(page.rows, 3);
    bool token_stat = false;
    for (const auto& [index, stat] : page.statistics)
      if (index == "idx_token_value") token_stat = !stat.empty() && std::isdigit(static_cast<unsigned char>(stat[0]));
    EXPECT_TRUE(token_stat) << "statistics of idx_token_value";
  }
  std::filesystem::remove_all(dir);
}

// idx_patient_token follows every write: the fast plan of `patient` with a code finds what the two criteria
// find apart (intersected), through creates, updates that move a resource to another patient or code, and deletes.
TEST(SearchSqlPatientCodes, AgreeWithEachCriterionApartThroughWrites) {
  auto defs = *Definitions::load(conformance::r4_model_json());
  auto registry = *SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  auto indexer = *SearchIndexer::create(*defs, *registry);
  StructureChecker checker(*defs);
  auto store = std::move(*open_store("sqlite::memory:"));
  Repository repo(*store, *defs, checker, indexer.get());
  auto put = [&](const std::string& text) {
    auto v = *json::parse(text);
    auto out = repo.update(kDefaultTenant, v.find("resourceType")->text(), v.find("id")->text(), v, {});
    ASSERT_TRUE(out.has_value()) << out.error().issues[0].diagnostics;
  };
  auto obs = [](const std::string& id, const std::string& subject, const std::string& codings,
                const std::string& status) {
    return R"({"resourceType":"Observation","id":")" + id + R"(","status":")" + status + "\"" +
           (subject.empty() ? std::string() : R"(,"subject":{"reference":")" + subject + "\"}") +
           R"(,"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category",)"
           R"("code":"vital-signs"}]}],"code":{"coding":[)" +
           codings + "]}}";
  };
  const std::string loinc1 = R"({"system":"http://loinc.org","code":"1"})";
  const std::string loinc2 = R"({"system":"http://loinc.org","code":"2"})";
  const std::string snomed9 = R"({"system":"http://snomed.info/sct","code":"9"})";
  for (const char* id : {"a", "b"}) put(std::string(R"({"resourceType":"Patient","id":")") + id + "\"}");
  put(R"({"resourceType":"Group","id":"a","type":"person","actual":true})");
  put(obs("x1", "Patient/a", loinc1 + "," + snomed9, "final"));
  put(obs("x2", "Patient/a", loinc2, "preliminary"));
  put(obs("x3", "Patient/b", loinc1, "final"));
  put(obs("x4", "", loinc1, "final"));
  put(obs("x5", "Group/a", loinc1, "final"));  // `patient` is subject.where(resolve() is Patient): not a patient

  auto ids = [&](const Params& params) {
    Ids out;
    auto q = parse_search("Observation", params, *registry, *defs);
    EXPECT_TRUE(q.has_value()) << (q ? "" : q.error().issues[0].diagnostics);
    if (!q) return out;
    auto page = store->search(kDefaultTenant, *q);
    EXPECT_TRUE(page.has_value()) << (page ? "" : page.error().issues[0].diagnostics);
    if (page)
      for (const auto& e : page->entries) out.insert(e.id);
    return out;
  };
  auto apart = [&](const Params& params) {  // each criterion alone (no fast plan), intersected
    Ids out = ids({params[0]});
    for (std::size_t i = 1; i < params.size(); ++i) {
      Ids next = ids({params[i]}), both;
      std::set_intersection(out.begin(), out.end(), next.begin(), next.end(), std::inserter(both, both.end()));
      out = both;
    }
    return out;
  };
  struct Case {
    Params params;
    Ids expected;
  };
  auto check = [&](const std::vector<Case>& cases, const char* when) {
    for (const auto& [params, expected] : cases) {
      std::string what = when;
      for (const auto& [k, v] : params) what += " " + k + "=" + v;
      EXPECT_EQ(ids(params), expected) << what;
      EXPECT_EQ(apart(params), expected) << what << " (apart)";
    }
  };
  check({{{{"patient", "a"}, {"code", "http://loinc.org|1"}}, {"x1"}},
         {{{"patient", "a"}, {"code", "1"}}, {"x1"}},
         {{{"patient", "Patient/a"}, {"code", "http://snomed.info/sct|9"}}, {"x1"}},
         {{{"patient", "a"}, {"code", "1,http://loinc.org|2"}}, {"x1", "x2"}},
         {{{"patient:Patient", "a"}, {"code", "1"}}, {"x1"}},
         {{{"patient", "b"}, {"code", "1"}}, {"x3"}},
         {{{"patient", "Group/a"}, {"code", "1"}}, {}},
         {{{"patient", "a"}, {"code", "1"}, {"status", "final"}}, {"x1"}},
         {{{"patient", "a"}, {"code", "1"}, {"status", "preliminary"}}, {}},
         {{{"patient", "a"}, {"category", "vital-signs"}}, {"x1", "x2"}},
         {{{"patient", "a"}, {"status", "preliminary"}}, {"x2"}},
         {{{"patient", "a"}, {"status", "final,preliminary"}, {"code", "2"}}, {"x2"}},
         {{{"patient", "a"}, {"code", "|1"}}, {}},
         {{{"patient", "nobody"}, {"code", "1"}}, {}}},
        "after the creates:");

  put(obs("x1", "Patient/b", loinc2, "final"));  // another patient and another code
  ASSERT_TRUE(repo.remove(kDefaultTenant, "Observation", "x2", std::nullopt));
  put(obs("x4", "Patient/a", loinc1, "final"));  // now of a patient
  check({{{{"patient", "a"}, {"code", "1"}}, {"x4"}},
         {{{"patient", "a"}, {"code", "2"}}, {}},
         {{{"patient", "b"}, {"code", "2"}}, {"x1"}},
         {{{"patient", "b"}, {"code", "1,2"}}, {"x1", "x3"}},
         {{{"patient", "b"}, {"code", "http://snomed.info/sct|9"}}, {}},
         {{{"patient", "a"}, {"category", "vital-signs"}}, {"x4"}},
         {{{"patient", "b"}, {"status", "final"}}, {"x1", "x3"}}},
        "after the updates and the delete:");
}

}  // namespace
}  // namespace caduceus::resources
