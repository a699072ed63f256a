// The Bundle processor (server/src/bundle.hpp) against the Store contract that a write job may run twice: a store
// that rolls back the first run of every job and runs it again must give the same result as one run.
#include <gtest/gtest.h>

#include <atomic>

#include "bundle.hpp"
#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/datetime.hpp"
#include "caduceus/resources/custom_search.hpp"
#include "caduceus/resources/search_query.hpp"

namespace caduceus::server {
namespace {

namespace json = fhir::json;
using resources::Store;

// Runs every write job once in a transaction that is then rolled back, and then again for real.
class ReplayingStore : public Store {
 public:
  explicit ReplayingStore(Store& inner) : inner_(inner) {}
  fhir::Result<resources::VersionRecord> read(resources::TenantId t, std::string_view type,
                                              std::string_view id) override {
    return inner_.read(t, type, id);
  }
  fhir::Result<resources::VersionRecord> vread(resources::TenantId t, std::string_view type, std::string_view id,
                                               std::int64_t v) override {
    return inner_.vread(t, type, id, v);
  }
  fhir::Result<resources::HistoryPage> history(resources::TenantId t, const resources::HistoryQuery& q) override {
    return inner_.history(t, q);
  }
  fhir::Result<std::int64_t> history_total(resources::TenantId t, const resources::HistoryQuery& q) override {
    return inner_.history_total(t, q);
  }
  void write_async(Work work, Done done) override {
    auto first = inner_.write([&](resources::Transaction& txn) -> fhir::Result<void> {
      auto ran = work(txn);
      ++runs;
      if (!ran) return ran;
      return fhir::fail(fhir::ErrorKind::kConflict, "conflict", "rolled back on purpose");
    });
    if (first || first.error().issues.empty() || first.error().issues[0].diagnostics != "rolled back on purpose")
      return done(first);  // the job failed by itself
    inner_.write_async(
        [this, work](resources::Transaction& txn) {
          ++runs;
          return work(txn);
        },
        std::move(done));
  }
  fhir::Result<resources::SearchPage> search(resources::TenantId t, const resources::SearchQuery& q) override {
    return inner_.search(t, q);
  }
  fhir::Result<void> ping() override { return inner_.ping(); }

  std::atomic<int> runs{0};

 private:
  Store& inner_;
};

struct Fixture {
  std::shared_ptr<const resources::Definitions> defs = *resources::Definitions::load(conformance::r4_model_json());
  std::shared_ptr<const resources::SearchParameterRegistry> registry = *resources::SearchParameterRegistry::load(
      conformance::r4_search_parameters_json(), conformance::r4_compartments_json());
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

json::Value parse(std::string_view text) {
  auto v = json::parse(text);
  EXPECT_TRUE(v.has_value()) << text;
  return v ? *v : json::Value();
}

std::string string_at(const json::Value& v, std::initializer_list<std::string_view> path) {
  const json::Value* at = &v;
  for (std::string_view key : path) {
    if (at->is_array()) {
      std::size_t i = static_cast<std::size_t>(std::stoul(std::string(key)));
      if (i >= at->items().size()) return {};
      at = &at->items()[i];
    } else {
      at = at->is_object() ? at->find(key) : nullptr;
    }
    if (at == nullptr) return {};
  }
  return at->is_string() ? at->text() : std::string();
}

TEST(BundleProcessorTest, AJobRunTwiceGivesTheResultOfOneRun) {
  auto store = resources::open_store("sqlite::memory:");
  ASSERT_TRUE(store);
  ReplayingStore replaying(**store);
  resources::StructureChecker checker(*fixture().defs);
  auto active = resources::ActiveSearchParameters::create(*fixture().defs, fixture().registry);
  ASSERT_TRUE(active);
  resources::Repository repo(replaying, *fixture().defs, checker, **active);
  BundleOptions options;
  options.base_url = "http://example.org/fhir";
  BundleProcessor processor(repo, fixture().registry, options);

  ASSERT_TRUE(repo.update(resources::kDefaultTenant, "Patient", "existing",
                          parse(R"({"resourceType":"Patient","id":"existing",
                                   "identifier":[{"system":"http://example.org/mrn","value":"7"}]})"),
                          std::nullopt, true));
  ASSERT_TRUE(repo.update(resources::kDefaultTenant, "Patient", "gone",
                          parse(R"({"resourceType":"Patient","id":"gone"})"), std::nullopt, true));
  replaying.runs = 0;
  BundleOutcome out = processor.process(parse(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"urn:uuid:11111111-0000-4000-8000-000000000001",
     "resource":{"resourceType":"Patient","identifier":[{"system":"http://example.org/mrn","value":"7"}]},
     "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://example.org/mrn|7"}},
    {"fullUrl":"urn:uuid:11111111-0000-4000-8000-000000000002",
     "resource":{"resourceType":"Patient","name":[{"family":"New"}]},"request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
                 "subject":{"reference":"urn:uuid:11111111-0000-4000-8000-000000000001"},
                 "focus":[{"reference":"urn:uuid:11111111-0000-4000-8000-000000000002"},
                          {"reference":"Patient?identifier=http://example.org/mrn|7"}]},
     "request":{"method":"POST","url":"Observation"}},
    {"resource":{"resourceType":"Patient","id":"existing","active":true,
                 "identifier":[{"system":"http://example.org/mrn","value":"7"}]},
     "request":{"method":"PUT","url":"Patient/existing","ifMatch":"W/\"1\""}},
    {"request":{"method":"DELETE","url":"Patient/gone"}}]})"));
  ASSERT_EQ(out.status, 200) << out.body;
  EXPECT_EQ(replaying.runs, 2) << "one job, run twice";
  auto response = json::parse(out.body);
  ASSERT_TRUE(response);
  EXPECT_EQ(string_at(*response, {"entry", "0", "response", "status"}), "200 OK");
  EXPECT_EQ(string_at(*response, {"entry", "0", "response", "location"}), "Patient/existing/_history/1");
  EXPECT_EQ(string_at(*response, {"entry", "1", "response", "status"}), "201 Created");
  EXPECT_EQ(string_at(*response, {"entry", "2", "response", "status"}), "201 Created");
  EXPECT_EQ(string_at(*response, {"entry", "3", "response", "status"}), "200 OK");
  EXPECT_EQ(string_at(*response, {"entry", "3", "response", "location"}), "Patient/existing/_history/2");
  EXPECT_EQ(string_at(*response, {"entry", "4", "response", "status"}), "200 OK");
  EXPECT_EQ(string_at(*response, {"entry", "4", "response", "etag"}), "W/\"2\"");

  // Exactly one version per write: 2 before, then the Patient, the Observation, the update and the delete.
  resources::HistoryQuery all;
  auto total = (*store)->history_total(resources::kDefaultTenant, all);
  ASSERT_TRUE(total);
  EXPECT_EQ(*total, 6);
  std::string location = string_at(*response, {"entry", "2", "response", "location"});
  std::string obs_id = location.substr(std::string("Observation/").size(), 36);
  auto obs = (*store)->read(resources::kDefaultTenant, "Observation", obs_id);
  ASSERT_TRUE(obs);
  EXPECT_EQ(obs->version, 1);
  auto body = json::parse(obs->body);
  ASSERT_TRUE(body);
  std::string created = string_at(*response, {"entry", "1", "response", "location"}).substr(8, 36);
  EXPECT_EQ(string_at(*body, {"subject", "reference"}), "Patient/existing");
  EXPECT_EQ(string_at(*body, {"focus", "0", "reference"}), "Patient/" + created);
  EXPECT_EQ(string_at(*body, {"focus", "1", "reference"}), "Patient/existing");
  // The index rows were written once, with the resolved references.
  auto q =
      resources::parse_search("Observation", {{"subject", "Patient/existing"}}, *fixture().registry, *fixture().defs);
  ASSERT_TRUE(q);
  auto page = (*store)->search(resources::kDefaultTenant, *q);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->entries[0].id, obs_id);
  // Bodies serialized before the job (the new Patient, the update) carry the version and time the job gave them.
  for (const auto& [type, id] : {std::pair<std::string, std::string>{"Patient", created}, {"Patient", "existing"}}) {
    auto rec = (*store)->read(resources::kDefaultTenant, type, id);
    ASSERT_TRUE(rec) << id;
    auto stored = json::parse(rec->body);
    ASSERT_TRUE(stored) << rec->body;
    EXPECT_EQ(string_at(*stored, {"id"}), id);
    EXPECT_EQ(string_at(*stored, {"meta", "versionId"}), std::to_string(rec->version)) << rec->body;
    EXPECT_EQ(string_at(*stored, {"meta", "lastUpdated"}), fhir::format_instant(rec->last_updated_ms)) << rec->body;
    EXPECT_NE(rec->last_updated_ms, 0);
  }
}

}  // namespace
}  // namespace caduceus::server
