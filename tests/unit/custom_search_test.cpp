#include "caduceus/resources/custom_search.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_query.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;

json::Value parse(std::string_view text) {
  auto v = json::parse(text);
  EXPECT_TRUE(v.has_value());
  return v ? *v : json::Value();
}

struct Fixture {
  std::shared_ptr<const Definitions> defs = *Definitions::load(conformance::r4_model_json());
  std::shared_ptr<const SearchParameterRegistry> registry =
      *SearchParameterRegistry::load(conformance::r4_search_parameters_json(), conformance::r4_compartments_json());
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

constexpr std::string_view kEyeColour = R"({"resourceType":"SearchParameter","url":"http://example.org/sp/eyecolour",
  "name":"eyecolour","status":"active","code":"eyecolour","base":["Patient"],"type":"token",
  "expression":"Patient.extension('http://example.org/eye').value","description":"eye colour"})";

SearchParameter eye_colour() {
  auto p = custom_search_parameter(parse(kEyeColour), *fixture().defs);
  EXPECT_TRUE(p.has_value() && p->has_value());
  return p && *p ? **p : SearchParameter{};
}

json::Value patient(std::string_view colour) {
  return parse(R"({"resourceType":"Patient","extension":[{"url":"http://example.org/eye","valueCode":")" +
               std::string(colour) + R"("}]})");
}

std::string expression_of(const fhir::Error& e) {
  return e.issues.empty() ? std::string() : e.issues.front().expression;
}

TEST(SearchParameterRegistryExtend, AddsCustomParametersAndLeavesTheBaseAlone) {
  const SearchParameterRegistry& base = *fixture().registry;
  const SearchParameter* gender = base.find("Patient", "gender");
  ASSERT_NE(gender, nullptr);
  std::vector<SearchParameter> custom{eye_colour()};
  auto extended = SearchParameterRegistry::extend(base, custom);
  ASSERT_TRUE(extended.has_value()) << extended.error().issues.front().diagnostics;
  const SearchParameter* eye = (*extended)->find("Patient", "eyecolour");
  ASSERT_NE(eye, nullptr);
  EXPECT_EQ(eye->type, SearchParamType::kToken);
  EXPECT_EQ(eye->expression_for("Patient"), "Patient.extension('http://example.org/eye').value");
  EXPECT_EQ((*extended)->by_url("http://example.org/sp/eyecolour"), eye);
  EXPECT_EQ(base.find("Patient", "eyecolour"), nullptr);
  EXPECT_EQ((*extended)->find("Observation", "eyecolour"), nullptr);
  EXPECT_EQ((*extended)->all().size(), base.all().size() + 1);
  EXPECT_EQ((*extended)->for_type("Patient").size(), base.for_type("Patient").size() + 1);
  auto patient_params = (*extended)->for_type("Patient");
  EXPECT_TRUE(std::ranges::is_sorted(patient_params, {}, [](const SearchParameter* p) { return p->code; }));
  // The base is untouched and its pointers still good; the new registry has its own copies.
  EXPECT_EQ(base.find("Patient", "gender"), gender);
  EXPECT_NE((*extended)->find("Patient", "gender"), gender);
  EXPECT_EQ((*extended)->find("Patient", "gender")->url, gender->url);
  // Composites are resolved within the new registry.
  const SearchParameter* composite = (*extended)->find("Observation", "code-value-quantity");
  ASSERT_NE(composite, nullptr);
  ASSERT_FALSE(composite->components.empty());
  EXPECT_EQ(composite->components[0].parameter, (*extended)->by_url(composite->components[0].definition));
  auto compartment = [](const SearchParameterRegistry& r) {
    auto s = r.compartment_params("Patient", "Observation");
    return std::vector<std::string>(s.begin(), s.end());
  };
  EXPECT_FALSE(compartment(base).empty());
  EXPECT_EQ(compartment(base), compartment(**extended));
}

TEST(SearchParameterRegistryExtend, RefusesAClash) {
  SearchParameter clash = eye_colour();
  clash.code = "gender";
  std::vector<SearchParameter> custom{clash};
  auto extended = SearchParameterRegistry::extend(*fixture().registry, custom);
  ASSERT_FALSE(extended.has_value());
  EXPECT_EQ(extended.error().kind, fhir::ErrorKind::kInvalid);
}

TEST(CustomSearchParameter, ReadsAnActiveOneAndIgnoresOthers) {
  SearchParameter p = eye_colour();
  EXPECT_EQ(p.code, "eyecolour");
  EXPECT_EQ(p.base, std::vector<std::string>{"Patient"});
  auto draft = parse(kEyeColour);
  draft.set("status", json::Value::string("draft"));
  auto read = custom_search_parameter(draft, *fixture().defs);
  ASSERT_TRUE(read.has_value());
  EXPECT_FALSE(read->has_value());
}

TEST(CustomSearchParameter, NamesTheElementThatIsWrong) {
  struct Case {
    const char* member;
    json::Value value;
    const char* expression;
  };
  const std::vector<Case> cases = {
      {"expression", json::Value::string("Patient.extension(("), "SearchParameter.expression"},
      {"expression", json::Value::string(""), "SearchParameter.expression"},
      {"type", json::Value::string("composite"), "SearchParameter.type"},
      {"type", json::Value::string("colour"), "SearchParameter.type"},
      {"code", json::Value::string("eye.colour"), "SearchParameter.code"},
      {"url", json::Value::string(""), "SearchParameter.url"},
  };
  for (const Case& c : cases) {
    auto body = parse(kEyeColour);
    body.set(c.member, c.value);
    auto read = custom_search_parameter(body, *fixture().defs);
    ASSERT_FALSE(read.has_value()) << c.member;
    EXPECT_EQ(read.error().kind, fhir::ErrorKind::kInvalid) << c.member;
    EXPECT_EQ(expression_of(read.error()), c.expression) << c.member;
  }
  auto body = parse(kEyeColour);
  auto bases = json::Value::array();
  bases.push_back(json::Value::string("Pateint"));
  body.set("base", bases);
  auto read = custom_search_parameter(body, *fixture().defs);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(expression_of(read.error()), "SearchParameter.base");
}

TEST(ActiveSearchParameters, IndexedFirstThenSearchableThenGone) {
  auto active = ActiveSearchParameters::create(*fixture().defs, fixture().registry);
  ASSERT_TRUE(active.has_value());
  ActiveSearchParameters& a = **active;
  auto before = a.search();
  EXPECT_EQ(before.get(), fixture().registry.get());

  auto put = a.put(CustomSearchParameter{"sp1", 1, eye_colour(), false});
  ASSERT_TRUE(put.has_value()) << put.error().issues.front().diagnostics;
  EXPECT_NE(*put, nullptr);  // the (empty) custom indexer in force before
  // Indexed by writes, not yet searchable.
  EXPECT_EQ(a.search()->find("Patient", "eyecolour"), nullptr);
  std::shared_ptr<const void> guard;
  IndexValues v = a.extract(patient("blue"), &guard);
  EXPECT_NE(guard, nullptr);
  std::vector<std::string> eye_codes;
  for (const TokenIndex& t : v.tokens)
    if (t.param == "eyecolour") eye_codes.push_back(t.code);
  EXPECT_EQ(eye_codes, std::vector<std::string>{"blue"});

  ASSERT_TRUE(a.make_searchable("sp1", 1));
  EXPECT_FALSE(a.make_searchable("sp1", 2));  // not that version
  auto snapshot = a.search();
  const SearchParameter* eye = snapshot->find("Patient", "eyecolour");
  ASSERT_NE(eye, nullptr);
  EXPECT_EQ(a.customs().size(), 1u);

  // Another parameter with the same code on the same base clashes; on another base it does not.
  SearchParameter same = eye_colour();
  same.url = "http://example.org/sp/other";
  auto clash = a.put(CustomSearchParameter{"sp2", 1, same, false});
  ASSERT_FALSE(clash.has_value());
  EXPECT_EQ(expression_of(clash.error()), "SearchParameter.code");
  same.base = {"Practitioner"};
  same.expressions = {{"Practitioner", "Practitioner.extension('http://example.org/eye').value"}};
  // A put hands back the indexer in force before it: the one that a write still in flight holds as its guard
  // (what a reindex waits for before it backfills).
  auto before_sp2 = a.put(CustomSearchParameter{"sp2", 1, same, false});
  ASSERT_TRUE(before_sp2.has_value());
  EXPECT_EQ(before_sp2->get(), guard.get());
  std::weak_ptr<const SearchIndexer> old = *before_sp2;
  before_sp2->reset();
  EXPECT_FALSE(old.expired());  // the write's guard keeps it
  guard.reset();
  EXPECT_TRUE(old.expired());  // the write is done: nothing extracts with it any more
  // A standard code is never taken.
  SearchParameter standard = eye_colour();
  standard.url = "http://example.org/sp/gender";
  standard.code = "gender";
  auto taken = a.check("sp3", standard);
  ASSERT_FALSE(taken.has_value());
  EXPECT_EQ(expression_of(taken.error()), "SearchParameter.code");

  a.remove("sp1");
  EXPECT_EQ(a.search()->find("Patient", "eyecolour"), nullptr);
  // A snapshot taken before stays whole while it is held.
  EXPECT_EQ(snapshot->find("Patient", "eyecolour"), eye);
  EXPECT_EQ(eye->code, "eyecolour");
  IndexValues after = a.extract(patient("blue"));
  EXPECT_TRUE(std::ranges::none_of(after.tokens, [](const TokenIndex& t) { return t.param == "eyecolour"; }));
}

class ReindexerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    checker_ = std::make_unique<StructureChecker>(*fixture().defs);
    dir_ = std::filesystem::temp_directory_path() / ("caduceus-reindex-test-" + new_resource_id());
    open();
  }
  void TearDown() override {
    close();
    std::filesystem::remove_all(dir_);
  }
  void open() {
    auto s = open_store("sqlite:" + (dir_ / "test.db").string());
    ASSERT_TRUE(s.has_value()) << s.error().issues[0].diagnostics;
    store_ = std::move(*s);
    active_ = std::move(*ActiveSearchParameters::create(*fixture().defs, fixture().registry));
    repo_ = std::make_unique<Repository>(*store_, *fixture().defs, *checker_, *active_);
    reindexer_ = std::make_unique<Reindexer>(*store_, *active_, kDefaultTenant, 2);
    auto started = reindexer_->start();
    ASSERT_TRUE(started.has_value()) << started.error().issues[0].diagnostics;
  }
  void close() {
    reindexer_.reset();
    repo_.reset();
    active_.reset();
    store_.reset();
  }

  // Polls the job until it is done or failed (at most 20 s).
  ReindexStatus wait(std::int64_t id) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      auto s = reindexer_->status(id);
      EXPECT_TRUE(s.has_value());
      if (!s || s->state == "done" || s->state == "failed" || std::chrono::steady_clock::now() > deadline)
        return s.value_or(ReindexStatus{});
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  std::set<std::string> search(const std::string& code, const std::string& value) {
    auto registry = active_->search();
    auto q = parse_search("Patient", {{code, value}, {"_count", "1000"}}, *registry, *fixture().defs,
                          SearchLimits{.strict = true});
    if (!q) return {"<" + q.error().issues.front().diagnostics + ">"};
    auto page = store_->search(kDefaultTenant, *q);
    if (!page) return {"<" + page.error().issues.front().diagnostics + ">"};
    std::set<std::string> ids;
    for (const auto& e : page->entries) ids.insert(e.id);
    return ids;
  }

  std::filesystem::path dir_;
  std::unique_ptr<StructureChecker> checker_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ActiveSearchParameters> active_;
  std::unique_ptr<Repository> repo_;
  std::unique_ptr<Reindexer> reindexer_;
};

TEST_F(ReindexerTest, ANewParameterIsBackfilledInBatchesThenSearchable) {
  std::set<std::string> blue;
  for (std::string_view colour : {"blue", "brown", "blue", "green", "blue"}) {
    auto out = repo_->create(kDefaultTenant, "Patient", patient(colour));
    ASSERT_TRUE(out.has_value());
    if (colour == "blue") blue.insert(out->record.id);
  }
  ASSERT_TRUE(repo_
                  ->create(kDefaultTenant, "Observation",
                           parse(R"({"resourceType":"Observation","status":"final","code":{"text":"x"}})"))
                  .has_value());
  auto sp = repo_->create(kDefaultTenant, "SearchParameter", parse(kEyeColour));
  ASSERT_TRUE(sp.has_value());
  auto job = reindexer_->parameter_written(sp->record);
  ASSERT_TRUE(job.has_value());
  ReindexStatus s = wait(*job);
  EXPECT_EQ(s.state, "done") << s.message;
  EXPECT_EQ(s.total, 5);  // the Patients only
  EXPECT_EQ(s.processed, 5);
  EXPECT_EQ(s.params, std::vector<std::string>{"eyecolour"});
  EXPECT_EQ(search("eyecolour", "blue"), blue);
  EXPECT_EQ(search("eyecolour", "green").size(), 1u);

  // Written after: indexed by the write itself.
  auto later = repo_->create(kDefaultTenant, "Patient", patient("blue"));
  ASSERT_TRUE(later.has_value());
  blue.insert(later->record.id);
  EXPECT_EQ(search("eyecolour", "blue"), blue);

  // After a restart on the same database: searchable at once (its job is done).
  close();
  open();
  EXPECT_EQ(search("eyecolour", "blue"), blue);
  ASSERT_EQ(reindexer_->status(*job).value_or(ReindexStatus{}).state, "done");

  // Deleted: no longer searchable.
  reindexer_->parameter_deleted(sp->record.id);
  EXPECT_EQ(search("eyecolour", "blue").size(), 1u);  // the "<unknown parameter>" message
  EXPECT_FALSE(search("eyecolour", "blue").contains(*blue.begin()));
}

TEST_F(ReindexerTest, WritesDuringTheReindexAreNeitherLostNorDoubled) {
  // Resources written while the job runs (before, during and after the switch to the new indexer) all end up
  // with exactly their current rows.
  std::vector<std::string> ids;
  for (int i = 0; i < 120; ++i) {
    auto out = repo_->create(kDefaultTenant, "Patient", patient(i % 2 == 0 ? "blue" : "brown"));
    ASSERT_TRUE(out.has_value());
    ids.push_back(out->record.id);
  }
  auto sp = repo_->create(kDefaultTenant, "SearchParameter", parse(kEyeColour));
  ASSERT_TRUE(sp.has_value());
  std::set<std::string> blue;
  std::thread writer([&] {
    for (int i = 0; i < 120; ++i) {
      // Flip every resource written before the parameter existed, and add new ones.
      const std::string& id = ids[static_cast<std::size_t>(i)];
      json::Value body = patient(i % 2 == 0 ? "brown" : "blue");
      body.set("id", json::Value::string(id));
      ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", id, body, std::nullopt).has_value());
      if (i % 2 != 0) blue.insert(id);
      auto out = repo_->create(kDefaultTenant, "Patient", patient("blue"));
      ASSERT_TRUE(out.has_value());
      blue.insert(out->record.id);
    }
  });
  auto job = reindexer_->parameter_written(sp->record);
  ASSERT_TRUE(job.has_value());
  ReindexStatus s = wait(*job);
  writer.join();
  EXPECT_EQ(s.state, "done") << s.message;
  std::set<std::string> found = search("eyecolour", "blue");
  EXPECT_EQ(found, blue);
  std::set<std::string> brown = search("eyecolour", "brown");
  EXPECT_EQ(brown.size(), 60u);
  for (const std::string& id : brown) EXPECT_FALSE(blue.contains(id));
  // One row per resource: a search for both colours gets each resource once.
  auto registry = active_->search();
  auto q = parse_search("Patient", {{"eyecolour", "blue,brown"}, {"_count", "1000"}, {"_total", "accurate"}}, *registry,
                        *fixture().defs);
  ASSERT_TRUE(q.has_value());
  auto page = store_->search(kDefaultTenant, *q);
  ASSERT_TRUE(page.has_value());
  EXPECT_EQ(page->entries.size(), 240u);
  EXPECT_EQ(page->total.value_or(-1), 240);
}

TEST_F(ReindexerTest, TheBackfillWaitsForWritesExtractedWithoutTheParameter) {
  auto sp = repo_->create(kDefaultTenant, "SearchParameter", parse(kEyeColour));
  ASSERT_TRUE(sp.has_value());
  // A write in flight: its rows extracted before the parameter is in force, its commit still to come.
  json::Value body = patient("blue");
  body.set("id", json::Value::string("late"));
  std::shared_ptr<const void> guard;
  IndexValues rows = active_->extract(body, &guard);
  ASSERT_TRUE(std::ranges::none_of(rows.tokens, [](const TokenIndex& t) { return t.param == "eyecolour"; }));

  auto job = reindexer_->parameter_written(sp->record);
  ASSERT_TRUE(job.has_value());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (static_cast<const void*>(active_->custom_indexer().get()) == guard.get() &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_NE(static_cast<const void*>(active_->custom_indexer().get()), guard.get());
  // New writes index the parameter now, but the backfill has not started: it waits for the write in flight.
  EXPECT_EQ(reindexer_->status(*job)->state, "queued");

  VersionRecord late{"Patient", "late", 1, 0, false, Method::kCreate, json::write(body), 0};
  ASSERT_TRUE(store_->write([&](Transaction& txn) -> fhir::Result<void> {
    late.last_updated_ms = txn.now_ms();
    auto seq = txn.append(kDefaultTenant, late, &rows);
    if (!seq) return std::unexpected(seq.error());
    return {};
  }));
  guard.reset();  // durable: the job may go on, and its backfill covers the late write
  EXPECT_EQ(wait(*job).state, "done");
  EXPECT_EQ(search("eyecolour", "blue"), std::set<std::string>{"late"});
}

TEST_F(ReindexerTest, AtStartAStoredParameterWithoutAJobGetsOneAndAnUnfinishedJobGoesOn) {
  // Written without the index (as with --search-index false): the parameter and the data.
  Repository plain(*store_, *fixture().defs, *checker_);
  std::set<std::string> blue;
  for (std::string_view colour : {"blue", "brown", "blue"}) {
    auto out = plain.create(kDefaultTenant, "Patient", patient(colour));
    ASSERT_TRUE(out.has_value());
    if (colour == "blue") blue.insert(out->record.id);
  }
  auto sp = plain.create(kDefaultTenant, "SearchParameter", parse(kEyeColour));
  ASSERT_TRUE(sp.has_value());
  // And a job cut short: a $reindex of the Patients, stopped after nothing was done.
  ReindexJobRecord cut;
  cut.id = 7;
  cut.types = {"Patient"};
  cut.state = "running";
  cut.total = 3;
  cut.max_rid = 1000;
  ASSERT_TRUE(store_->write([&](Transaction& txn) { return txn.save_reindex_job(kDefaultTenant, cut); }));

  close();
  open();
  auto jobs = reindexer_->jobs();
  ASSERT_EQ(jobs.size(), 2u);
  const ReindexStatus* resumed = nullptr;
  const ReindexStatus* fresh = nullptr;
  for (const ReindexStatus& j : jobs) (j.id == 7 ? resumed : fresh) = &j;
  ASSERT_NE(resumed, nullptr);
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(fresh->id, 8);  // after the saved ones
  EXPECT_EQ(fresh->search_parameter, "SearchParameter/" + sp->record.id + "/_history/1");
  EXPECT_EQ(wait(7).state, "done");
  EXPECT_EQ(wait(8).state, "done");
  EXPECT_EQ(reindexer_->status(7)->processed, 3);
  EXPECT_EQ(search("eyecolour", "blue"), blue);
  // The resumed $reindex wrote the rows of the base parameters (the other job only those of eyecolour).
  EXPECT_EQ(search("_lastUpdated", "gt2000-01-01").size(), 3u);
}

TEST_F(ReindexerTest, FullReindexRewritesEveryRow) {
  // Written without any index rows (as with --search-index false).
  Repository plain(*store_, *fixture().defs, *checker_);
  auto p = plain.create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient","gender":"female"})"));
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(search("gender", "female").empty());
  std::int64_t job = reindexer_->reindex({});
  ReindexStatus s = wait(job);
  EXPECT_EQ(s.state, "done") << s.message;
  EXPECT_EQ(s.total, 1);
  EXPECT_EQ(search("gender", "female"), std::set<std::string>{p->record.id});
  EXPECT_EQ(search("_lastUpdated", "gt2000-01-01"), std::set<std::string>{p->record.id});
}

}  // namespace
}  // namespace caduceus::resources
