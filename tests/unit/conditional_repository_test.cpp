// Conditional writes in the Repository: the criteria are evaluated inside the write's transaction, and a write job
// that runs again after its commit group was rolled back leaves the outcome of its last run only.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <memory>
#include <set>
#include <vector>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/search_query.hpp"
#include "pg_cluster.hpp"
#include "r4_search.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;

json::Value parse(std::string_view text) {
  auto v = json::parse(text);
  EXPECT_TRUE(v.has_value());
  return v ? *v : json::Value();
}

class ConditionalRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto defs = Definitions::load(conformance::r4_model_json());
    ASSERT_TRUE(defs.has_value());
    defs_ = *defs;
    checker_ = std::make_unique<StructureChecker>(*defs_);
    ASSERT_NO_FATAL_FAILURE(test::load_r4_search(*defs_, registry_, indexer_));
    dir_ = std::filesystem::temp_directory_path() / ("caduceus-conditional-test-" + new_resource_id());
    std::string url = "sqlite:" + (dir_ / "test.db").string();
    if (test::postgres_backend()) {  // (run on both backends: see tests/CMakeLists.txt)
      if (test::postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
      auto db = test::PgDatabase::create();
      ASSERT_TRUE(db.has_value()) << db.error();
      pg_ = std::move(*db);
      url = pg_->url();
    }
    auto s = open_store(url);
    ASSERT_TRUE(s.has_value()) << s.error().issues[0].diagnostics;
    store_ = std::move(*s);
    repo_ = std::make_unique<Repository>(*store_, *defs_, *checker_, indexer_.get());
  }
  void TearDown() override {
    repo_.reset();
    store_.reset();
    pg_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::shared_ptr<const Conditional> criteria(const std::string& name, const std::string& value) {
    auto q = parse_search("Patient", {{name, value}}, *registry_, *defs_);
    EXPECT_TRUE(q.has_value());
    auto c = std::make_shared<Conditional>();
    c->query = *q;
    c->text = name + "=" + value;
    return c;
  }

  std::shared_ptr<const Definitions> defs_;
  std::unique_ptr<StructureChecker> checker_;
  std::shared_ptr<const SearchParameterRegistry> registry_;
  std::shared_ptr<const SearchIndexer> indexer_;
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Repository> repo_;
  std::unique_ptr<test::PgDatabase> pg_;
};

const char* kPatient = R"({"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"7"}]})";

// Three conditional creates of the same identifier and one failing write form one commit group (the writer is
// held until all are queued). The group runs, fails, is rolled back and runs again: the creates must still end with
// one resource, created by the first, and found by the two others.
TEST_F(ConditionalRepositoryTest, ConditionalCreatesInARolledBackGroupMakeOne) {
  std::promise<void> queued;
  std::shared_future<void> all_queued = queued.get_future().share();
  std::promise<fhir::Result<void>> holder_done;
  store_->write_async(
      [all_queued](Transaction&) -> fhir::Result<void> {
        all_queued.wait();
        return {};
      },
      [&](fhir::Result<void> r) { holder_done.set_value(std::move(r)); });
  auto mrn = criteria("identifier", "urn:mrn|7");
  std::vector<std::promise<fhir::Result<WriteOutcome>>> outcomes(3);
  std::promise<fhir::Result<void>> failing_done;
  repo_->conditional_create_async(kDefaultTenant, "Patient", parse(kPatient), mrn,
                                  [&](fhir::Result<WriteOutcome> r) { outcomes[0].set_value(std::move(r)); });
  repo_->conditional_create_async(kDefaultTenant, "Patient", parse(kPatient), mrn,
                                  [&](fhir::Result<WriteOutcome> r) { outcomes[1].set_value(std::move(r)); });
  store_->write_async(
      [](Transaction&) -> fhir::Result<void> {
        return fhir::fail(fhir::ErrorKind::kConflict, "conflict", "fails, so the group runs again");
      },
      [&](fhir::Result<void> r) { failing_done.set_value(std::move(r)); });
  repo_->conditional_create_async(kDefaultTenant, "Patient", parse(kPatient), mrn,
                                  [&](fhir::Result<WriteOutcome> r) { outcomes[2].set_value(std::move(r)); });
  queued.set_value();
  ASSERT_TRUE(holder_done.get_future().get().has_value());
  EXPECT_FALSE(failing_done.get_future().get().has_value());
  std::vector<WriteOutcome> out;
  for (auto& p : outcomes) {
    auto r = p.get_future().get();
    ASSERT_TRUE(r.has_value()) << r.error().issues[0].diagnostics;
    out.push_back(*r);
  }
  EXPECT_TRUE(out[0].created);
  EXPECT_FALSE(out[1].created);
  EXPECT_FALSE(out[2].created);
  EXPECT_EQ(out[1].record.id, out[0].record.id);
  EXPECT_EQ(out[2].record.id, out[0].record.id);
  EXPECT_EQ(out[1].record.version, 1);
  EXPECT_EQ(out[1].record.body, out[0].record.body);
  SearchQuery q = mrn->query;
  q.count = 10;
  auto page = store_->search(kDefaultTenant, q);
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->entries[0].id, out[0].record.id);
  HistoryQuery all;
  all.type = "Patient";
  EXPECT_EQ(*store_->history_total(kDefaultTenant, all), 1) << "the rolled back run left nothing";
}

TEST_F(ConditionalRepositoryTest, ConditionalUpdateAndDeleteFollowTheMatches) {
  auto a = repo_->create(kDefaultTenant, "Patient", parse(kPatient));
  ASSERT_TRUE(a.has_value());
  auto mrn = criteria("identifier", "urn:mrn|7");
  auto updated = repo_->update(kDefaultTenant, "Patient", a->record.id,
                               parse(R"({"resourceType":"Patient","id":")" + a->record.id +
                                     R"(","identifier":[{"system":"urn:mrn","value":"7"}]})"),
                               1, false);
  ASSERT_TRUE(updated.has_value());
  std::promise<fhir::Result<WriteOutcome>> u;
  repo_->conditional_update_async(kDefaultTenant, "Patient",
                                  parse(R"({"resourceType":"Patient","active":true,)"
                                        R"("identifier":[{"system":"urn:mrn","value":"7"}]})"),
                                  mrn, [&](fhir::Result<WriteOutcome> r) { u.set_value(std::move(r)); });
  auto up = u.get_future().get();
  ASSERT_TRUE(up.has_value());
  EXPECT_FALSE(up->created);
  EXPECT_EQ(up->record.id, a->record.id);
  EXPECT_EQ(up->record.version, 3);

  ASSERT_TRUE(repo_->create(kDefaultTenant, "Patient", parse(kPatient)).has_value());
  std::promise<fhir::Result<std::vector<VersionRecord>>> d1;
  repo_->conditional_delete_async(kDefaultTenant, "Patient", mrn, 1,
                                  [&](fhir::Result<std::vector<VersionRecord>> r) { d1.set_value(std::move(r)); });
  auto refused = d1.get_future().get();
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().kind, fhir::ErrorKind::kPreconditionFailed);
  std::promise<fhir::Result<std::vector<VersionRecord>>> d2;
  repo_->conditional_delete_async(kDefaultTenant, "Patient", mrn, 2,
                                  [&](fhir::Result<std::vector<VersionRecord>> r) { d2.set_value(std::move(r)); });
  auto deleted = d2.get_future().get();
  ASSERT_TRUE(deleted.has_value());
  ASSERT_EQ(deleted->size(), 2u);
  std::set<std::string> ids;
  for (const VersionRecord& v : *deleted) {
    EXPECT_TRUE(v.deleted);
    ids.insert(v.id);
  }
  EXPECT_TRUE(ids.contains(a->record.id));
  EXPECT_TRUE(store_->read(kDefaultTenant, "Patient", a->record.id)->deleted);
  EXPECT_EQ(store_->read(kDefaultTenant, "Patient", a->record.id)->version, 4);
}

}  // namespace
}  // namespace caduceus::resources
