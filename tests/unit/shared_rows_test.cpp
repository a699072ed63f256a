// Index rows that another parameter holds too (SearchParameter::subsets, leave_out_shared_rows): which parameters
// have subsets, which rows the writer leaves out, and that a store written with every row (as before) and one
// written without the shared rows answer the same searches, worked out by hand.
#include "caduceus/resources/shared_rows.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/custom_search.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/store/store.hpp"
#include "test_server.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;
using Codes = std::vector<std::string>;
using Ids = std::set<std::string>;
using Params = std::vector<std::pair<std::string, std::string>>;

class SharedRows : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    defs_ = *Definitions::load(conformance::r4_model_json());
    registry_ = *SearchParameterRegistry::load(conformance::r4_search_parameters_json());
    indexer_ = *SearchIndexer::create(*defs_, *registry_);
  }

  static Codes subsets(const std::string& type, const std::string& code) {
    const SearchParameter* p = registry_->find(type, code);
    EXPECT_NE(p, nullptr) << type << "." << code;
    if (p == nullptr) return {};
    auto s = p->subsets_for(type);
    return Codes(s.begin(), s.end());
  }

  // The codes of the parameters that have rows in `v`, each once.
  static std::set<std::string> params_of(const IndexValues& v) {
    std::set<std::string> out;
    for (const auto& r : v.tokens) out.insert(r.param);
    for (const auto& r : v.quantities) out.insert(r.param);
    for (const auto& r : v.composites) out.insert(r.param);
    return out;
  }

  static inline std::shared_ptr<const Definitions> defs_;
  static inline std::shared_ptr<const SearchParameterRegistry> registry_;
  static inline std::shared_ptr<const SearchIndexer> indexer_;
};

constexpr const char* kBloodPressure = R"({"resourceType":"Observation","id":"bp","status":"final",
    "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"component":[
    {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
     "valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
    {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},
     "valueQuantity":{"value":80,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]})";

TEST_F(SharedRows, TheObservationCombosAreTheUnionOfTwoParameters) {
  EXPECT_EQ(subsets("Observation", "combo-code"), (Codes{"code", "component-code"}));
  EXPECT_EQ(subsets("Observation", "combo-value-quantity"), (Codes{"component-value-quantity", "value-quantity"}));
  EXPECT_EQ(subsets("Observation", "combo-value-concept"), (Codes{"component-value-concept", "value-concept"}));
  EXPECT_EQ(subsets("Observation", "combo-data-absent-reason"),
            (Codes{"component-data-absent-reason", "data-absent-reason"}));
  EXPECT_EQ(subsets("Observation", "combo-code-value-quantity"),
            (Codes{"code-value-quantity", "component-code-value-quantity"}));
  EXPECT_EQ(subsets("Observation", "combo-code-value-concept"),
            (Codes{"code-value-concept", "component-code-value-concept"}));
  // A subset has none of its own; a single-term expression has none.
  EXPECT_EQ(subsets("Observation", "code"), Codes{});
  EXPECT_EQ(subsets("Observation", "value-quantity"), Codes{});
  // Organization.name is `name | alias`, phonetic is `name` with another usage (its rows could differ): none.
  EXPECT_EQ(subsets("Organization", "name"), Codes{});
  // References are never compacted (chains, includes and compartments read them by code).
  EXPECT_EQ(subsets("Observation", "subject"), Codes{});
}

TEST_F(SharedRows, TheCombosOfAnObservationAreNotWrittenAgain) {
  auto bp = *json::parse(kBloodPressure);
  IndexValues all = indexer_->extract(bp);
  IndexValues kept = all;
  leave_out_shared_rows(kept, "Observation", *registry_);
  std::set<std::string> before = params_of(all), after = params_of(kept);
  for (const char* combo : {"combo-code", "combo-value-quantity", "combo-code-value-quantity"}) {
    EXPECT_TRUE(before.contains(combo)) << combo;
    EXPECT_FALSE(after.contains(combo)) << combo;
  }
  // Everything else as it was: 3 codes (one per coding), 2 component values, 2 + 2 composite rows of the
  // components and 1 of the Observation's own code (no value, no item of code-value-quantity is complete).
  auto count = [](const auto& rows, const std::string& param) {
    return std::ranges::count_if(rows, [&](const auto& r) { return r.param == param; });
  };
  EXPECT_EQ(count(kept.tokens, "code"), 1);
  EXPECT_EQ(count(kept.tokens, "component-code"), 2);
  EXPECT_EQ(count(kept.quantities, "component-value-quantity"), 2);
  EXPECT_EQ(count(kept.composites, "component-code-value-quantity"),
            count(all.composites, "component-code-value-quantity"));
  EXPECT_EQ(count(kept.composites, "code-value-quantity"), count(all.composites, "code-value-quantity"));
  EXPECT_EQ(kept.tokens.size() + count(all.tokens, "combo-code"), all.tokens.size());
  EXPECT_EQ(kept.quantities.size() + 2, all.quantities.size());
}

// Every row of a row-by-row text form, in order (what the writer would write).
std::vector<std::string> rows_of(const IndexValues& v) {
  std::vector<std::string> out;
  auto add = [&](const char* table, std::initializer_list<std::string> columns) {
    std::string row = table;
    for (const std::string& c : columns) row += "|" + c;
    out.push_back(std::move(row));
  };
  auto n = [](double d) {
    std::ostringstream s;
    s.precision(17);
    s << d;
    return s.str();
  };
  for (const auto& r : v.strings) add("string", {r.param, r.normalized, r.exact});
  for (const auto& r : v.tokens) add("token", {r.param, r.system.value_or("(none)"), r.code, r.text});
  for (const auto& r : v.references)
    add("reference", {r.param, r.type, r.id, r.version, r.url, r.identifier_system, r.identifier_value});
  for (const auto& r : v.dates) add("date", {r.param, std::to_string(r.low_ms), std::to_string(r.high_ms)});
  for (const auto& r : v.numbers) add("number", {r.param, n(r.low), n(r.high), r.value});
  for (const auto& r : v.quantities) add("quantity", {r.param, n(r.low), n(r.high), r.value, r.system, r.code, r.unit});
  for (const auto& r : v.uris) add("uri", {r.param, r.uri});
  for (const auto& r : v.composites)
    add("composite",
        {r.param, std::to_string(r.item), std::to_string(r.component), r.system, r.code, r.text, r.normalized, r.exact,
         n(r.low), n(r.high), r.unit, r.value, r.target_type, r.target_id, r.url, r.uri});
  for (const auto& r : v.identifier_types) add("identifier-type", {r.param, r.type_system, r.type_code, r.value});
  out.push_back("narrative|" + v.narrative);
  out.push_back("content|" + v.content);
  return out;
}

// A parameter all of whose rows are its subsets' too is not computed by the indexer of ActiveSearchParameters
// (SearchIndexer::Rows::kWritten), nor _id and _lastUpdated: which parameters those are, and that for every official
// example the rows left once the shared ones and the resource row's are out are the same, row for row, as when
// every parameter is computed.
TEST_F(SharedRows, AParameterWhoseRowsAreAllSharedNeedNotBeComputed) {
  std::vector<std::string> all_shared;
  for (const std::string& type : defs_->resource_types())
    for (const SearchParameter* p : registry_->for_type(type))
      if (std::ranges::find(p->all_rows_shared, type) != p->all_rows_shared.end())
        all_shared.push_back(type + "." + p->code);
  std::ranges::sort(all_shared);
  EXPECT_EQ(all_shared, (Codes{"Observation.combo-code", "Observation.combo-code-value-concept",
                               "Observation.combo-code-value-quantity", "Observation.combo-data-absent-reason",
                               "Observation.combo-value-concept", "Observation.combo-value-quantity"}));

  auto skipping = *SearchIndexer::create(*defs_, *registry_, {}, SearchIndexer::Rows::kWritten);
  auto same_rows = [&](const json::Value& resource, const std::string& name) {
    const std::string type(resource.find("resourceType")->text());
    IndexValues every = indexer_->extract(resource), fewer = skipping->extract(resource);
    for (IndexValues* v : {&every, &fewer}) {  // (what ActiveSearchParameters::extract does)
      leave_out_resource_row_values(*v);
      leave_out_shared_rows(*v, type, *registry_);
    }
    EXPECT_EQ(rows_of(every), rows_of(fewer)) << name;
  };
  same_rows(*json::parse(kBloodPressure), "blood pressure");
  const std::filesystem::path dir = test::r4_examples_dir();
  if (dir.empty()) GTEST_SKIP() << "the official examples are not unpacked (or set CADUCEUS_R4_EXAMPLES)";
  std::size_t observations = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    auto parsed = json::parse(test::read_file(entry.path()));
    if (!parsed || !parsed->is_object()) continue;
    const json::Value* rt = parsed->find("resourceType");
    if (rt == nullptr || !rt->is_string()) continue;
    if (rt->text() == "Observation") ++observations;
    same_rows(*parsed, entry.path().filename().string());
  }
  EXPECT_GT(observations, 50u);
}

TEST_F(SharedRows, CompositeItemsCompareWholeWhateverTheirNumber) {
  IndexValues v;
  auto row = [](std::string param, std::int64_t item, std::int64_t component, std::string code, double low) {
    CompositeIndex c;
    c.param = std::move(param);
    c.item = item;
    c.component = component;
    c.code = std::move(code);
    c.low = low;
    c.high = low + 1;
    return c;
  };
  // component-code-value-quantity has items 0 (a, 1) and 1 (b, 2); combo-code-value-quantity has the same two as
  // its items 1 and 2, and an item 0 (a, 2) that pairs a with b's value: the only one kept.
  v.composites = {row("component-code-value-quantity", 0, 0, "a", 0), row("component-code-value-quantity", 0, 1, "", 1),
                  row("component-code-value-quantity", 1, 0, "b", 0), row("component-code-value-quantity", 1, 1, "", 2),
                  row("combo-code-value-quantity", 0, 0, "a", 0),     row("combo-code-value-quantity", 0, 1, "", 2),
                  row("combo-code-value-quantity", 1, 0, "a", 0),     row("combo-code-value-quantity", 1, 1, "", 1),
                  row("combo-code-value-quantity", 2, 1, "", 2),      row("combo-code-value-quantity", 2, 0, "b", 0)};
  leave_out_shared_rows(v, "Observation", *registry_);
  ASSERT_EQ(v.composites.size(), 6u);
  std::set<std::pair<std::string, std::int64_t>> items;
  for (const auto& c : v.composites) items.insert({c.param, c.item});
  EXPECT_EQ(items, (std::set<std::pair<std::string, std::int64_t>>{{"combo-code-value-quantity", 0},
                                                                   {"component-code-value-quantity", 0},
                                                                   {"component-code-value-quantity", 1}}));
  // Tokens: a row is left out only when a subset holds the very same value.
  IndexValues t;
  t.tokens = {TokenIndex{"code", "http://loinc.org", "1", ""}, TokenIndex{"combo-code", "http://loinc.org", "1", ""},
              TokenIndex{"combo-code", "http://loinc.org", "2", ""}, TokenIndex{"combo-code", std::nullopt, "1", ""},
              TokenIndex{"status", std::nullopt, "final", ""}};
  leave_out_shared_rows(t, "Observation", *registry_);
  ASSERT_EQ(t.tokens.size(), 4u);
  EXPECT_EQ(t.tokens[0].param, "code");
  EXPECT_EQ(t.tokens[1].code, "2");
  EXPECT_EQ(t.tokens[2].system, std::nullopt);
  EXPECT_EQ(t.tokens[3].param, "status");
}

// Two stores with the same resources: one written with every index row (as every store was before the shared
// rows were left out), one through ActiveSearchParameters (as the server writes now). Both answer as worked out
// by hand.
class SharedRowsSearch : public SharedRows {
 protected:
  static void SetUpTestSuite() {
    SharedRows::SetUpTestSuite();
    fill({
        R"({"resourceType":"Observation","id":"temp","status":"final","subject":{"reference":"Patient/p1"},
            "code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},
            "valueQuantity":{"value":37.5,"system":"http://unitsofmeasure.org","code":"Cel"}})",
        R"({"resourceType":"Observation","id":"bp","status":"final","subject":{"reference":"Patient/p1"},
            "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"component":[
            {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
             "valueQuantity":{"value":120,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
            {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},
             "valueQuantity":{"value":80,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]})",
        R"({"resourceType":"Observation","id":"smoke","status":"final","subject":{"reference":"Patient/p2"},
            "code":{"coding":[{"system":"http://loinc.org","code":"72166-2"}]},
            "valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"449868002"}]}})",
    });
  }

  // Writes the Observations into both stores (new ones).
  static void fill(std::initializer_list<const char*> resources) {
    checker_ = std::make_unique<StructureChecker>(*defs_);
    active_ = std::move(*ActiveSearchParameters::create(*defs_, registry_));
    full_ = std::move(*open_store("sqlite::memory:"));
    compact_ = std::move(*open_store("sqlite::memory:"));
    Repository full(*full_, *defs_, *checker_, indexer_.get());
    Repository compact(*compact_, *defs_, *checker_, *active_);
    for (const char* text : resources) {
      auto v = *json::parse(text);
      for (Repository* repo : {&full, &compact}) {
        auto out = repo->update(kDefaultTenant, "Observation", v.find("id")->text(), v, {});
        ASSERT_TRUE(out.has_value()) << out.error().issues[0].diagnostics;
      }
    }
  }
  static void TearDownTestSuite() {
    full_.reset();
    compact_.reset();
  }

  // The ids of the matches, in order, in the store written with every row and in the compact one; the test
  // expects them equal to each other and to `expected`.
  static void expect(const Params& params, const std::vector<std::string>& expected, bool ordered = false) {
    auto q = parse_search("Observation", params, *active_->search(), *defs_);
    ASSERT_TRUE(q.has_value()) << q.error().issues[0].diagnostics;
    for (Store* store : {full_.get(), compact_.get()}) {
      auto page = store->search(kDefaultTenant, *q);
      ASSERT_TRUE(page.has_value()) << page.error().issues[0].diagnostics;
      std::vector<std::string> got;
      for (const auto& e : page->entries) got.push_back(e.id);
      if (!ordered) std::ranges::sort(got);
      EXPECT_EQ(got, expected) << params.front().first << "=" << params.front().second
                               << (store == full_.get() ? " (every row)" : " (compact)");
    }
  }

  static inline std::unique_ptr<StructureChecker> checker_;
  static inline std::unique_ptr<ActiveSearchParameters> active_;
  static inline std::unique_ptr<Store> full_, compact_;
};

using Order = std::vector<std::string>;

TEST_F(SharedRowsSearch, CombosFindTheObservationAndItsComponents) {
  expect({{"combo-code", "8310-5"}}, Order{"temp"});
  expect({{"combo-code", "http://loinc.org|8480-6"}}, Order{"bp"});
  expect({{"combo-code", "85354-9"}}, Order{"bp"});
  expect({{"combo-code", "8462-4,72166-2"}}, (Order{"bp", "smoke"}));
  expect({{"combo-code", "9999-9"}}, Order{});
  expect({{"combo-code:not", "8310-5"}}, (Order{"bp", "smoke"}));
  expect({{"combo-code:missing", "false"}}, (Order{"bp", "smoke", "temp"}));
  expect({{"combo-code:missing", "true"}}, Order{});
  expect({{"combo-value-quantity", "37.5"}}, Order{"temp"});
  expect({{"combo-value-quantity", "80"}}, Order{"bp"});
  expect({{"combo-value-quantity", "gt100"}}, Order{"bp"});
  expect({{"combo-value-quantity", "lt50"}}, Order{"temp"});
  expect({{"combo-value-quantity:missing", "true"}}, Order{"smoke"});
  expect({{"combo-value-concept", "http://snomed.info/sct|449868002"}}, Order{"smoke"});
  // Composites pair within one item: 80 is the diastolic value, the panel's own code has no value.
  expect({{"combo-code-value-quantity", "8480-6$120"}}, Order{"bp"});
  expect({{"combo-code-value-quantity", "8480-6$80"}}, Order{});
  expect({{"combo-code-value-quantity", "85354-9$120"}}, Order{});
  expect({{"combo-code-value-quantity", "http://loinc.org|8310-5$37.5"}}, Order{"temp"});
  expect({{"combo-code-value-concept", "72166-2$449868002"}}, Order{"smoke"});
  // With the patient: idx_patient_token answers (its rows of combo-code are left out too).
  expect({{"patient", "p1"}, {"combo-code", "8480-6"}}, Order{"bp"});
  expect({{"patient", "p1"}, {"combo-code", "8310-5,72166-2"}}, Order{"temp"});
  expect({{"patient", "p2"}, {"combo-code", "72166-2"}}, Order{"smoke"});
}

TEST_F(SharedRowsSearch, CombosSortAndCount) {
  // Ascending by the lowest value (37.5, 80; smoke has none: last), descending by the highest (120, 37.5).
  expect({{"_sort", "combo-value-quantity"}}, (Order{"temp", "bp", "smoke"}), true);
  expect({{"_sort", "-combo-value-quantity"}}, (Order{"bp", "temp", "smoke"}), true);
  // Lowest codes: smoke 72166-2, temp 8310-5, bp 8462-4; highest: bp 85354-9, temp 8310-5, smoke 72166-2.
  expect({{"_sort", "combo-code"}}, (Order{"smoke", "temp", "bp"}), true);
  expect({{"_sort", "-combo-code"}}, (Order{"bp", "temp", "smoke"}), true);
  for (Store* store : {full_.get(), compact_.get()}) {
    auto q = parse_search("Observation", {{"combo-code", "8310-5,8480-6,8462-4"}, {"_summary", "count"}},
                          *active_->search(), *defs_);
    ASSERT_TRUE(q.has_value());
    auto page = store->search(kDefaultTenant, *q);
    ASSERT_TRUE(page.has_value()) << page.error().issues[0].diagnostics;
    ASSERT_TRUE(page->total.has_value());
    EXPECT_EQ(*page->total, 2);  // temp and bp, each once
  }
}

constexpr const char* kTemperature = R"({"resourceType":"Observation","id":"temp","status":"final",
    "code":{"coding":[{"system":"http://loinc.org","code":"8310-5","display":"Body temperature"}],
            "text":"Body Temperature"},
    "valueQuantity":{"value":37.5,"system":"http://unitsofmeasure.org","code":"Cel"}})";

TEST_F(SharedRows, AConceptTextThatACodingDisplaysIsNotWrittenAgain) {
  auto count = [](const auto& rows, const std::string& param) {
    return std::ranges::count_if(rows, [&](const auto& r) { return r.param == param; });
  };
  auto temp = *json::parse(kTemperature);
  IndexValues all = indexer_->extract(temp);
  IndexValues kept = all;
  leave_out_shared_rows(kept, "Observation", *registry_);
  // The coding's row (with its display, normalized) and the text's own row; then the coding's alone.
  EXPECT_EQ(count(all.tokens, "code"), 2);
  ASSERT_EQ(count(kept.tokens, "code"), 1);
  auto code = std::ranges::find_if(kept.tokens, [](const TokenIndex& t) { return t.param == "code"; });
  EXPECT_EQ(code->code, "8310-5");
  EXPECT_EQ(code->text, "body temperature");
  // code-value-quantity: the coded row and the value; the text's row of the code component goes.
  EXPECT_EQ(count(all.composites, "code-value-quantity"), 3);
  EXPECT_EQ(count(kept.composites, "code-value-quantity"), 2);
  for (const CompositeIndex& c : kept.composites)
    if (c.param == "code-value-quantity" && c.component == 0) EXPECT_EQ(c.code, "8310-5");

  // A text other than every display keeps its row; so does a text with no coding (in a composite too).
  temp.find("code")->set("text", json::Value::string("Temp"));
  IndexValues other = indexer_->extract(temp);
  leave_out_shared_rows(other, "Observation", *registry_);
  EXPECT_EQ(count(other.tokens, "code"), 2);
  EXPECT_EQ(count(other.composites, "code-value-quantity"), 2);  // (composites never read the text)
  temp.find("code")->erase("coding");
  IndexValues text_only = indexer_->extract(temp);
  leave_out_shared_rows(text_only, "Observation", *registry_);
  EXPECT_EQ(count(text_only.tokens, "code"), 1);
  EXPECT_EQ(count(text_only.composites, "code-value-quantity"), 2);
}

// Searches on codes with text, in a store with every row and in one without the repeated texts.
class TextRowsSearch : public SharedRowsSearch {
 protected:
  static void SetUpTestSuite() {
    SharedRows::SetUpTestSuite();
    fill({
        kTemperature,
        R"({"resourceType":"Observation","id":"glucose","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"2339-0","display":"Glucose"}],
                    "text":"Blood sugar"},
            "valueQuantity":{"value":5.1,"system":"http://unitsofmeasure.org","code":"mmol/L"}})",
        R"({"resourceType":"Observation","id":"note","status":"final","code":{"text":"Body weight, by hand"},
            "valueQuantity":{"value":70,"system":"http://unitsofmeasure.org","code":"kg"}})",
    });
  }
};

TEST_F(TextRowsSearch, TextCodesAndCompositesFindTheSame) {
  expect({{"code:text", "body"}}, (Order{"note", "temp"}));
  expect({{"code:text", "Body Temp"}}, Order{"temp"});
  expect({{"code:text", "glucose"}}, Order{"glucose"});
  expect({{"code:text", "blood"}}, Order{"glucose"});
  expect({{"code:text", "sugar"}}, Order{});  // (a prefix of the whole text)
  expect({{"code", "8310-5"}}, Order{"temp"});
  expect({{"code:missing", "false"}}, (Order{"glucose", "note", "temp"}));
  expect({{"code:not", "8310-5"}}, (Order{"glucose", "note"}));
  expect({{"code-value-quantity", "http://loinc.org|8310-5$37.5"}}, Order{"temp"});
  expect({{"code-value-quantity", "2339-0$gt5"}}, Order{"glucose"});
  expect({{"code-value-quantity:missing", "false"}}, (Order{"glucose", "note", "temp"}));
  expect({{"combo-code:text", "body"}}, (Order{"note", "temp"}));
  // By code: glucose 2339-0, temp 8310-5; note has no code and comes last.
  expect({{"_sort", "code"}}, (Order{"glucose", "temp", "note"}), true);
}

}  // namespace
}  // namespace caduceus::resources
