// identifier:of-type finds its candidates through the identifier's token rows (idx_token_value) and checks them on
// idx_identifier_type's key (search_sql.cpp, Builder::of_type). That gives the same answers as reading
// idx_identifier_type by value only if every identifier-type row has a token row of the same resource whose code is
// the identifier's value, under the parameter or one of its subsets (rows the writer leaves out because a subset
// holds them: leave_out_shared_rows). Checked here on a Patient worked out by hand and on every official example.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/shared_rows.hpp"
#include "test_server.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;

class IdentifierTypeRows : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    defs_ = *Definitions::load(conformance::r4_model_json());
    registry_ = *SearchParameterRegistry::load(conformance::r4_search_parameters_json());
    indexer_ = *SearchIndexer::create(*defs_, *registry_);
  }

  // The rows as the writer gets them (ActiveSearchParameters::extract without custom parameters).
  static IndexValues rows_of(const json::Value& resource) {
    IndexValues v = indexer_->extract(resource);
    leave_out_resource_row_values(v);
    leave_out_shared_rows(v, resource.find("resourceType")->text(), *registry_);
    return v;
  }

  // Whether the identifier-type row has its token row (same value as code, the parameter or one of its subsets).
  static bool has_token_row(const IndexValues& v, const std::string& type, const IdentifierTypeIndex& row) {
    const SearchParameter* p = registry_->find(type, row.param);
    std::span<const std::string> subsets = p == nullptr ? std::span<const std::string>() : p->subsets_for(type);
    return std::ranges::any_of(v.tokens, [&](const TokenIndex& t) {
      return t.code == row.value && (t.param == row.param || std::ranges::find(subsets, t.param) != subsets.end());
    });
  }

  static inline std::shared_ptr<const Definitions> defs_;
  static inline std::shared_ptr<const SearchParameterRegistry> registry_;
  static inline std::shared_ptr<const SearchIndexer> indexer_;
};

TEST_F(IdentifierTypeRows, EachPairsATypeCodingWithTheValueOfItsIdentifier) {
  auto patient = *json::parse(R"({"resourceType":"Patient","id":"t4","identifier":[
      {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},
       "system":"urn:mrn","value":"A77"},
      {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"DL"},
                         {"system":"urn:local","code":"licence"}]},"system":"urn:dl","value":"B88"},
      {"type":{"text":"no coding"},"value":"C99"},
      {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS"}]}}]})");
  IndexValues v = rows_of(patient);
  std::vector<std::string> pairs;
  for (const IdentifierTypeIndex& r : v.identifier_types)
    pairs.push_back(r.param + " " + r.type_system + "|" + r.type_code + " " + r.value);
  std::ranges::sort(pairs);
  // One row per coding of a type, with the value of the same identifier; none without a coding or a value.
  EXPECT_EQ(pairs, (std::vector<std::string>{"identifier http://terminology.hl7.org/CodeSystem/v2-0203|DL B88",
                                             "identifier http://terminology.hl7.org/CodeSystem/v2-0203|MR A77",
                                             "identifier urn:local|licence B88"}));
  for (const IdentifierTypeIndex& r : v.identifier_types) EXPECT_TRUE(has_token_row(v, "Patient", r)) << r.value;
  // The token rows: each identifier's value as the code, under the identifier's own system.
  auto token = [&](const std::string& system, const std::string& code) {
    return std::ranges::count_if(v.tokens, [&](const TokenIndex& t) {
      return t.param == "identifier" && t.system.value_or("") == system && t.code == code;
    });
  };
  EXPECT_EQ(token("urn:mrn", "A77"), 1);
  EXPECT_EQ(token("urn:dl", "B88"), 1);
  EXPECT_EQ(token("", "C99"), 1);
}

using caduceus::test::read_file;

TEST_F(IdentifierTypeRows, EveryOneOfTheOfficialExamplesHasItsTokenRow) {
  const std::filesystem::path dir = test::r4_examples_dir();
  if (dir.empty()) GTEST_SKIP() << "the official examples are not unpacked (or set CADUCEUS_R4_EXAMPLES)";
  std::size_t rows = 0, resources = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    auto parsed = json::parse(read_file(entry.path()));
    ASSERT_TRUE(parsed.has_value()) << entry.path();
    const json::Value* type = parsed->is_object() ? parsed->find("resourceType") : nullptr;
    if (type == nullptr || !type->is_string() || defs_->type(type->text()) == nullptr) continue;
    IndexValues v = rows_of(*parsed);
    resources += v.identifier_types.empty() ? 0 : 1;
    for (const IdentifierTypeIndex& r : v.identifier_types) {
      ++rows;
      EXPECT_TRUE(has_token_row(v, type->text(), r))
          << entry.path().filename() << ": " << r.param << " " << r.type_code << " " << r.value;
    }
  }
  std::cout << rows << " identifier-type rows in " << resources << " examples\n";
  EXPECT_GE(rows, 20u);  // 22 in hl7.fhir.r4.examples 4.0.1
}

}  // namespace
}  // namespace caduceus::resources
