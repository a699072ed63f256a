#include "caduceus/resources/store/store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <latch>
#include <set>
#include <thread>
#include <tuple>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/store/oauth_tables.hpp"
#include "caduceus/resources/store/users.hpp"
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

// Runs on SQLite, and on PostgreSQL with CADUCEUS_TEST_BACKEND=postgresql (a fresh database per test).
class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto defs = Definitions::load(conformance::r4_model_json());
    ASSERT_TRUE(defs.has_value());
    defs_ = *defs;
    checker_ = std::make_unique<StructureChecker>(*defs_);
    dir_ = std::filesystem::temp_directory_path() / ("caduceus-store-test-" + new_resource_id());
    if (test::postgres_backend()) {
      if (test::postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
      auto db = test::PgDatabase::create();
      ASSERT_TRUE(db.has_value()) << db.error();
      pg_ = std::move(*db);
      url_ = pg_->url();
    } else {
      url_ = "sqlite:" + (dir_ / "test.db").string();
    }
    open();
  }
  void TearDown() override {
    repo_.reset();
    store_.reset();
    pg_.reset();
    std::filesystem::remove_all(dir_);
  }
  void open() {
    repo_.reset();
    store_.reset();
    auto s = open_store(url_);
    ASSERT_TRUE(s.has_value()) << s.error().issues[0].diagnostics;
    store_ = std::move(*s);
    repo_ = std::make_unique<Repository>(*store_, *defs_, *checker_);
  }
  bool postgres() const { return pg_ != nullptr; }
  // A Patient with one identifier in the urn:mrn system.
  static json::Value patient(const std::string& id, const std::string& mrn) {
    return parse(R"({"resourceType":"Patient","id":")" + id + R"(","identifier":[{"system":"urn:mrn","value":")" + mrn +
                 R"("}]})");
  }
  // The first column of the first row of a query on the test's database (-1 on an error, recorded).
  long long count(const std::string& sql) {
    if (pg_) {
      auto v = pg_->query(sql);
      EXPECT_TRUE(v.has_value()) << v.error();
      return v ? std::stoll(*v) : -1;
    }
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2((dir_ / "test.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    long long n = -1;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
  }
  // The full-text rows that hold `word` (FTS5 on SQLite, the tsvector on PostgreSQL).
  long long full_text_rows_holding(const std::string& word) {
    return count(postgres() ? "SELECT COUNT(*) FROM idx_text WHERE tsv @@ to_tsquery('simple', '" + word + "')"
                            : "SELECT COUNT(*) FROM idx_text WHERE idx_text MATCH '" + word + "'");
  }
  // Queues a write that holds the writer until `release` is ready, and returns once the writer runs it, alone in
  // its group (queued together, later writes could join it): the writes queued next form the group after it. The
  // future is its answer.
  std::future<fhir::Result<void>> hold_writer(std::shared_future<void> release) {
    auto running = std::make_shared<std::promise<void>>();
    auto answered = std::make_shared<std::promise<fhir::Result<void>>>();
    std::future<void> started = running->get_future();
    std::future<fhir::Result<void>> answer = answered->get_future();
    store_->write_async(
        [release, running](Transaction&) -> fhir::Result<void> {
          running->set_value();
          release.wait();
          return {};
        },
        [answered](fhir::Result<void> r) { answered->set_value(std::move(r)); });
    started.wait();
    return answer;
  }

  std::string url_;
  std::unique_ptr<test::PgDatabase> pg_;

  std::shared_ptr<const Definitions> defs_;
  std::unique_ptr<StructureChecker> checker_;
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Repository> repo_;
};

// A body serialized before the write and completed with its version and time is byte for byte what stamping and
// serializing on the writer gives, whatever the resource's own meta and wherever it has strings like meta's.
TEST(PreparedBody, CompletesToWhatStampingAndWritingGive) {
  const char* resources[] = {
      R"({"resourceType":"Patient","id":"p1","active":true})",
      R"({"active":true,"resourceType":"Patient","id":"p1"})",  // (meta goes first then)
      R"({"resourceType":"Patient","id":"p1","meta":{"versionId":"99","lastUpdated":"2001-01-01T00:00:00Z",
          "tag":[{"system":"urn:x","code":"t"}]},"name":[{"family":"\"meta\":{\"versionId\":\"0\","}]})",
      R"({"resourceType":"Observation","id":"o1","contained":[{"resourceType":"Patient","id":"c",
          "meta":{"versionId":"0","lastUpdated":"1970-01-01T00:00:00.000Z"}}],"status":"final",
          "code":{"text":"\",\"lastUpdated\":\""}})",
  };
  for (const char* text : resources) {
    for (auto [version, time] : {std::pair<std::int64_t, std::int64_t>{1, 1795700317645},
                                 {12345, 0},
                                 {7, 253402300799999}}) {  // (9999-12-31T23:59:59.999Z)
      auto resource = json::parse(text);
      ASSERT_TRUE(resource.has_value()) << text;
      json::Value stamped = *resource;
      stamp_meta(stamped, version, time);
      auto prepared = PreparedBody::make(*resource);
      ASSERT_TRUE(prepared.has_value()) << text;
      EXPECT_EQ(prepared->body(version, time), json::write(stamped)) << text;
      EXPECT_EQ(prepared->body(version, time), prepared->body(version, time));  // (run again after a rollback)
    }
  }
}

TEST_F(RepositoryTest, CreateAssignsIdVersionAndLastUpdated) {
  auto out = repo_->create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient","id":"mine","active":true})"));
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->created);
  EXPECT_NE(out->record.id, "mine");
  EXPECT_TRUE(is_valid_id(out->record.id));
  EXPECT_EQ(out->record.version, 1);
  auto body = parse(out->record.body);
  EXPECT_EQ(body.find("id")->text(), out->record.id);
  EXPECT_EQ(body.find("meta")->find("versionId")->text(), "1");
  EXPECT_NE(body.find("meta")->find("lastUpdated"), nullptr);
  // meta follows id, as FHIR JSON orders it
  EXPECT_EQ(body.members()[0].first, "resourceType");
  EXPECT_EQ(body.members()[1].first, "id");
  EXPECT_EQ(body.members()[2].first, "meta");

  auto read = store_->read(kDefaultTenant, "Patient", out->record.id);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->body, out->record.body);
}

TEST_F(RepositoryTest, UpdateKeepsClientMetaButOwnsVersion) {
  auto out = repo_->update(kDefaultTenant, "Patient", "p1",
                           parse(R"({"resourceType":"Patient","id":"p1","meta":{"versionId":"99",
                                  "tag":[{"system":"urn:x","code":"t"}]}})"),
                           std::nullopt);
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->created);
  auto body = parse(out->record.body);
  EXPECT_EQ(body.find("meta")->find("versionId")->text(), "1");
  EXPECT_EQ(body.find("meta")->find("tag")->items().size(), 1u);
  auto second =
      repo_->update(kDefaultTenant, "Patient", "p1", parse(R"({"resourceType":"Patient","id":"p1"})"), std::nullopt);
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->record.version, 2);
  EXPECT_GE(second->record.last_updated_ms, out->record.last_updated_ms);
}

TEST_F(RepositoryTest, StaleIfMatchChangesNothing) {
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "p1", parse(R"({"resourceType":"Patient","id":"p1"})"), {}));
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "p1", parse(R"({"resourceType":"Patient","id":"p1"})"), 1));
  auto stale = repo_->update(kDefaultTenant, "Patient", "p1", parse(R"({"resourceType":"Patient","id":"p1"})"), 1);
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error().kind, fhir::ErrorKind::kPreconditionFailed);
  EXPECT_EQ(store_->read(kDefaultTenant, "Patient", "p1")->version, 2);
  auto del = repo_->remove(kDefaultTenant, "Patient", "p1", 1);
  ASSERT_FALSE(del.has_value());
  EXPECT_EQ(del.error().kind, fhir::ErrorKind::kPreconditionFailed);
}

TEST_F(RepositoryTest, InvalidBodiesAreRefusedWithExpressions) {
  auto wrong_type = repo_->create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Observation"})"));
  ASSERT_FALSE(wrong_type.has_value());
  EXPECT_EQ(wrong_type.error().issues[0].expression, "Patient.resourceType");
  auto mismatch = repo_->update(kDefaultTenant, "Patient", "a", parse(R"({"resourceType":"Patient","id":"b"})"), {});
  ASSERT_FALSE(mismatch.has_value());
  EXPECT_EQ(mismatch.error().issues[0].expression, "Patient.id");
  auto no_id = repo_->update(kDefaultTenant, "Patient", "a", parse(R"({"resourceType":"Patient"})"), {});
  ASSERT_FALSE(no_id.has_value());
  EXPECT_EQ(no_id.error().issues[0].code, "required");
  auto bad_date =
      repo_->create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient","birthDate":"1970-13-45"})"));
  ASSERT_FALSE(bad_date.has_value());
  EXPECT_EQ(bad_date.error().issues[0].expression, "Patient.birthDate");
  auto total = store_->history_total(kDefaultTenant, HistoryQuery{});
  ASSERT_TRUE(total.has_value());
  EXPECT_EQ(*total, 0);
}

TEST_F(RepositoryTest, DeleteAppendsAVersionAndHistoryKeepsEverything) {
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "p1", parse(R"({"resourceType":"Patient","id":"p1"})"), {}));
  auto del = repo_->remove(kDefaultTenant, "Patient", "p1", std::nullopt);
  ASSERT_TRUE(del.has_value());
  ASSERT_TRUE(del->has_value());
  EXPECT_EQ((*del)->version, 2);
  auto again = repo_->remove(kDefaultTenant, "Patient", "p1", std::nullopt);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->has_value()) << "a second delete writes nothing";
  auto read = store_->read(kDefaultTenant, "Patient", "p1");
  ASSERT_TRUE(read.has_value());
  EXPECT_TRUE(read->deleted);
  EXPECT_FALSE(store_->vread(kDefaultTenant, "Patient", "p1", 1)->deleted);
  // Recreating after a delete continues the version sequence.
  auto back = repo_->update(kDefaultTenant, "Patient", "p1", parse(R"({"resourceType":"Patient","id":"p1"})"), {});
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(back->created);
  EXPECT_EQ(back->record.version, 3);
  HistoryQuery q;
  q.type = "Patient";
  q.id = "p1";
  auto page = store_->history(kDefaultTenant, q);
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->entries.size(), 3u);
  EXPECT_EQ(page->entries[0].version, 3);
  EXPECT_EQ(page->entries[1].method, Method::kDelete);
  EXPECT_TRUE(page->entries[1].body.empty());
}

TEST_F(RepositoryTest, HistoryPagesCoverEveryVersionOnce) {
  for (int i = 0; i < 25; ++i)
    ASSERT_TRUE(repo_->create(kDefaultTenant, i % 2 ? "Patient" : "Observation",
                              parse(i % 2 ? R"({"resourceType":"Patient"})"
                                          : R"({"resourceType":"Observation","status":"final","code":{"text":"x"}})")));
  HistoryQuery q;
  q.count = 4;
  std::set<std::int64_t> seen;
  std::int64_t last = std::numeric_limits<std::int64_t>::max();
  for (;;) {
    auto page = store_->history(kDefaultTenant, q);
    ASSERT_TRUE(page.has_value());
    for (const auto& e : page->entries) {
      EXPECT_LT(e.seq, last);
      last = e.seq;
      EXPECT_TRUE(seen.insert(e.seq).second);
    }
    if (!page->next_before_seq) break;
    q.before_seq = page->next_before_seq;
  }
  EXPECT_EQ(seen.size(), 25u);
  HistoryQuery none;
  none.count = 0;
  auto empty = store_->history(kDefaultTenant, none);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->entries.empty());
  EXPECT_FALSE(empty->next_before_seq.has_value());
  HistoryQuery patients;
  patients.type = "Patient";
  EXPECT_EQ(*store_->history_total(kDefaultTenant, patients), 12);
}

TEST_F(RepositoryTest, HistoryAtSelectsTheVersionCurrentThen) {
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "p1", parse(R"({"resourceType":"Patient","id":"p1"})"), {}));
  auto v1 = store_->read(kDefaultTenant, "Patient", "p1");
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "p1", parse(R"({"resourceType":"Patient","id":"p1"})"), {}));
  auto v2 = store_->read(kDefaultTenant, "Patient", "p1");
  HistoryQuery q;
  q.at_low_ms = v2->last_updated_ms + 1000;
  q.at_high_ms = v2->last_updated_ms + 2000;
  auto page = store_->history(kDefaultTenant, q);
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->entries[0].version, 2);
  q.at_low_ms = v1->last_updated_ms - 5000;
  q.at_high_ms = v1->last_updated_ms - 4000;
  EXPECT_TRUE(store_->history(kDefaultTenant, q)->entries.empty());
}

TEST_F(RepositoryTest, DataSurvivesReopenAndMigrationsRunOnce) {
  auto out = repo_->create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient","active":true})"));
  ASSERT_TRUE(out.has_value());
  open();
  auto read = store_->read(kDefaultTenant, "Patient", out->record.id);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->body, out->record.body);
  auto again = repo_->create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient"})"));
  ASSERT_TRUE(again.has_value());
  EXPECT_GT(again->record.seq, out->record.seq);
  EXPECT_GE(again->record.last_updated_ms, out->record.last_updated_ms);
}

TEST_F(RepositoryTest, ConcurrentIfMatchUpdatesLetExactlyOneWin) {
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "race", parse(R"({"resourceType":"Patient","id":"race"})"), {}));
  constexpr int kThreads = 16;
  std::latch start(kThreads);
  std::atomic<int> ok{0}, stale{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&] {
      start.arrive_and_wait();
      auto r = repo_->update(kDefaultTenant, "Patient", "race", parse(R"({"resourceType":"Patient","id":"race"})"), 1);
      if (r)
        ++ok;
      else if (r.error().kind == fhir::ErrorKind::kPreconditionFailed)
        ++stale;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(stale.load(), kThreads - 1);
  EXPECT_EQ(store_->read(kDefaultTenant, "Patient", "race")->version, 2);
}

TEST_F(RepositoryTest, AFailingWriteInAGroupLeavesTheOthersIntact) {
  constexpr int kThreads = 32;
  std::latch start(kThreads);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      auto r = store_->write([&](Transaction& txn) -> fhir::Result<void> {
        VersionRecord rec;
        rec.type = "Basic";
        rec.id = "b" + std::to_string(i);
        rec.version = 1;
        rec.last_updated_ms = txn.now_ms();
        rec.body = R"({"resourceType":"Basic"})";
        if (auto s = txn.append(kDefaultTenant, rec); !s) return std::unexpected(s.error());
        if (i % 2) return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "odd ones fail after writing");
        return {};
      });
      if (r) ++ok;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads / 2);
  for (int i = 0; i < kThreads; ++i) {
    auto r = store_->read(kDefaultTenant, "Basic", "b" + std::to_string(i));
    EXPECT_EQ(r.has_value(), i % 2 == 0) << i;
  }
}

// A group committed together (here: every write queued while the writer was held up by the first) runs first
// without savepoints; when one of its writes fails, the store rolls the group back and runs it again write by
// write, so the failing writes leave nothing and the others are committed once, with their effect of the
// second run.
TEST_F(RepositoryTest, AGroupWithAFailingWriteRunsAgainAndKeepsTheOthers) {
  constexpr int kWrites = 12;
  std::promise<void> queued;
  std::shared_future<void> all_queued = queued.get_future().share();
  std::future<fhir::Result<void>> first_done = hold_writer(all_queued);  // the others form the next group
  std::vector<std::atomic<int>> runs(kWrites);
  std::vector<std::promise<fhir::Result<void>>> done(kWrites);
  for (int i = 0; i < kWrites; ++i)
    store_->write_async(
        [&, i](Transaction& txn) -> fhir::Result<void> {
          ++runs[i];
          VersionRecord rec;
          rec.type = "Basic";
          rec.id = "g" + std::to_string(i);
          rec.version = 1;
          rec.last_updated_ms = txn.now_ms();
          rec.body = R"({"resourceType":"Basic"})";
          if (auto s = txn.append(kDefaultTenant, rec); !s) return std::unexpected(s.error());
          if (i == 5 || i == 9) return fhir::fail(fhir::ErrorKind::kConflict, "conflict", "fails after writing");
          return {};
        },
        [&, i](fhir::Result<void> r) { done[i].set_value(std::move(r)); });
  queued.set_value();
  ASSERT_TRUE(first_done.get().has_value());
  for (int i = 0; i < kWrites; ++i) {
    auto r = done[i].get_future().get();
    bool fails = i == 5 || i == 9;
    EXPECT_EQ(r.has_value(), !fails) << i;
    if (fails) {
      EXPECT_EQ(r.error().kind, fhir::ErrorKind::kConflict) << i;
    }
    auto read = store_->read(kDefaultTenant, "Basic", "g" + std::to_string(i));
    EXPECT_EQ(read.has_value(), !fails) << i;
    if (read) {
      EXPECT_EQ(read->version, 1) << i;
    }
  }
  // Up to the first failure the writes ran optimistically, then everything ran again with savepoints.
  for (int i = 0; i <= 5; ++i) EXPECT_EQ(runs[i].load(), 2) << i;
  for (int i = 6; i < kWrites; ++i) EXPECT_EQ(runs[i].load(), 1) << i;
  auto history = store_->history(kDefaultTenant, HistoryQuery{.type = "Basic"});
  ASSERT_TRUE(history.has_value());
  EXPECT_EQ(history->entries.size(), static_cast<std::size_t>(kWrites - 2));  // each survivor once
}

TEST_F(RepositoryTest, ASecondProcessOrStoreCannotOpenTheSameFile) {
  if (postgres()) {
    // PostgreSQL is made for several servers on one database: a second store opens it and sees the same data.
    auto out = repo_->create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient"})"));
    ASSERT_TRUE(out.has_value());
    auto second = open_store(url_);
    ASSERT_TRUE(second.has_value()) << second.error().issues[0].diagnostics;
    auto read = (*second)->read(kDefaultTenant, "Patient", out->record.id);
    ASSERT_TRUE(read.has_value());
    EXPECT_EQ(read->body, out->record.body);
    return;
  }
  auto second = open_store("sqlite:" + (dir_ / "test.db").string());
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().kind, fhir::ErrorKind::kUnavailable);
  EXPECT_NE(second.error().issues[0].diagnostics.find("in use"), std::string::npos);
}

// A write is answered as stored only once the WAL that holds it is synced (the completion thread's fdatasync,
// after the writer's commit). Here the WAL file is removed from the folder, so that the store cannot open it to
// sync it: the create is answered with an error, not with success.
TEST_F(RepositoryTest, AWriteIsAnsweredOnlyOnceItsWalIsSynced) {
  if (postgres()) return;  // (PostgreSQL flushes its own WAL before a commit returns)
  ASSERT_TRUE(repo_->create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient"})")).has_value());
  ASSERT_TRUE(std::filesystem::remove(dir_ / "test.db-wal"));
  auto out = repo_->create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient"})"));
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().kind, fhir::ErrorKind::kUnavailable);
  EXPECT_NE(out.error().issues[0].diagnostics.find("durable"), std::string::npos) << out.error().issues[0].diagnostics;
}

// Closing the store closes every connection, the writer's last: SQLite then copies the WAL into the database and
// removes it. A statement left unfinalized keeps the writer's connection open (soci's close does not say so), and the
// WAL stays behind for the next open to read through again (a first version's statement, create_stmt_, did that).
TEST_F(RepositoryTest, AClosedStoreLeavesNoWal) {
  if (postgres()) return;
  ASSERT_TRUE(repo_->create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient"})")).has_value());
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "p", parse(R"({"resourceType":"Patient","id":"p"})"), {}));
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "p", parse(R"({"resourceType":"Patient","id":"p"})"), {}));
  ASSERT_TRUE(std::filesystem::exists(dir_ / "test.db-wal"));
  repo_.reset();
  store_.reset();
  EXPECT_FALSE(std::filesystem::exists(dir_ / "test.db-wal"));
  open();
  EXPECT_EQ(count("SELECT COUNT(*) FROM resource_version"), 3);
}

TEST_F(RepositoryTest, ReadsFollowEveryCommittedVersion) {
  // Reads by id may come from memory: they must still see each new version, and deletes, at once.
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "c", parse(R"({"resourceType":"Patient","id":"c"})"), {}));
  for (int v = 2; v <= 5; ++v) {
    ASSERT_EQ(store_->read(kDefaultTenant, "Patient", "c")->version, v - 1);
    ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "c", parse(R"({"resourceType":"Patient","id":"c"})"), {}));
  }
  EXPECT_EQ(store_->read(kDefaultTenant, "Patient", "c")->version, 5);
  ASSERT_TRUE(repo_->remove(kDefaultTenant, "Patient", "c", std::nullopt));
  EXPECT_TRUE(store_->read(kDefaultTenant, "Patient", "c")->deleted);
  // A write refused by If-Match leaves the current version as it was.
  EXPECT_FALSE(repo_->update(kDefaultTenant, "Patient", "c", parse(R"({"resourceType":"Patient","id":"c"})"), 3));
  EXPECT_EQ(store_->read(kDefaultTenant, "Patient", "c")->version, 6);
}

// The search index rows of a resource follow its current version, in the same transaction.
// A search inside the writer's transaction sees what the same transaction wrote, and only current resources.
TEST_F(RepositoryTest, SearchInsideATransactionSeesItsOwnWrites) {
  auto registry = SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  ASSERT_TRUE(registry.has_value());
  auto indexer = SearchIndexer::create(*defs_, **registry);
  ASSERT_TRUE(indexer.has_value());
  Repository indexed(*store_, *defs_, *checker_, indexer->get());
  ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", "a", patient("a", "1"), {}));
  ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", "b", patient("b", "2"), {}));
  ASSERT_TRUE(indexed.remove(kDefaultTenant, "Patient", "b", {}));
  auto query = [&](const std::string& mrn) {
    auto q = parse_search("Patient", {{"identifier", "urn:mrn|" + mrn}}, **registry, *defs_);
    EXPECT_TRUE(q.has_value());
    return *q;
  };
  const SearchQuery two = query("2"), three = query("3");
  std::vector<std::pair<std::string, std::string>> before, after, deleted;
  auto r = store_->write([&](Transaction& txn) -> fhir::Result<void> {
    auto found = txn.search_ids(kDefaultTenant, three, 2);
    if (!found) return std::unexpected(found.error());
    before = *found;
    IndexValues values = (*indexer)->extract(patient("c", "3"));
    VersionRecord rec;
    rec.type = "Patient";
    rec.id = "c";
    rec.version = 1;
    rec.last_updated_ms = txn.now_ms();
    rec.body = R"({"resourceType":"Patient","id":"c"})";
    if (auto seq = txn.append(kDefaultTenant, rec, &values); !seq) return std::unexpected(seq.error());
    found = txn.search_ids(kDefaultTenant, three, 2);
    if (!found) return std::unexpected(found.error());
    after = *found;
    found = txn.search_ids(kDefaultTenant, two, 2);
    if (!found) return std::unexpected(found.error());
    deleted = *found;
    return {};
  });
  ASSERT_TRUE(r.has_value()) << r.error().issues[0].diagnostics;
  EXPECT_TRUE(before.empty());
  EXPECT_EQ(after, (std::vector<std::pair<std::string, std::string>>{{"Patient", "c"}}));
  EXPECT_TRUE(deleted.empty()) << "b is deleted";
}

// A resource's rows of one index table go in statements of up to eight rows (SQLite's MultiRowInsert): 19 identifiers
// (8 + 8 + 3 rows) are each found, and an update that keeps 5 of them leaves only those.
TEST_F(RepositoryTest, EveryIndexRowOfAResourceIsWrittenWhateverTheirNumber) {
  std::shared_ptr<const SearchParameterRegistry> registry;
  std::shared_ptr<const SearchIndexer> indexer;
  ASSERT_NO_FATAL_FAILURE(test::load_r4_search(*defs_, registry, indexer));
  Repository indexed(*store_, *defs_, *checker_, indexer.get());
  auto with_identifiers = [](int n) {
    std::string ids;
    for (int i = 0; i < n; ++i)
      ids += std::string(i ? "," : "") + R"({"system":"urn:mrn","value":"m)" + std::to_string(i) + R"("})";
    return parse(R"({"resourceType":"Patient","id":"many","identifier":[)" + ids + "]}");
  };
  auto found = [&](int i) {
    auto q = parse_search("Patient", {{"identifier", "urn:mrn|m" + std::to_string(i)}}, *registry, *defs_);
    EXPECT_TRUE(q.has_value());
    auto page = store_->search(kDefaultTenant, *q);
    EXPECT_TRUE(page.has_value());
    return page && page->entries.size() == 1 && page->entries[0].id == "many";
  };
  ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", "many", with_identifiers(19), {}));
  for (int i = 0; i < 19; ++i) EXPECT_TRUE(found(i)) << "m" << i;
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE param = 'identifier'"), 19);
  ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", "many", with_identifiers(5), {}));
  for (int i = 0; i < 19; ++i) EXPECT_EQ(found(i), i < 5) << "m" << i;
}

// A bulk load into an empty store drops the search index tables' value indexes and builds them again at its end;
// searches meanwhile answer the same (SQLite: the first one builds them; PostgreSQL: they scan).
class BulkLoadTest : public RepositoryTest {
 protected:
  void SetUp() override {
    RepositoryTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_NO_FATAL_FAILURE(test::load_r4_search(*defs_, registry_, indexer_));
    indexed_ = std::make_unique<Repository>(*store_, *defs_, *checker_, indexer_.get());
  }
  void TearDown() override {
    indexed_.reset();
    RepositoryTest::TearDown();
  }
  void reopen() {
    indexed_.reset();
    open();
    indexed_ = std::make_unique<Repository>(*store_, *defs_, *checker_, indexer_.get());
  }
  SearchQuery by_mrn(const std::string& mrn) {
    auto q = parse_search("Patient", {{"identifier", "urn:mrn|" + mrn}}, *registry_, *defs_);
    EXPECT_TRUE(q.has_value());
    return q ? *q : SearchQuery{};
  }
  std::vector<std::string> ids_found(const std::string& mrn) {
    auto page = store_->search(kDefaultTenant, by_mrn(mrn));
    EXPECT_TRUE(page.has_value()) << page.error().issues[0].diagnostics;
    std::vector<std::string> ids;
    if (page)
      for (const auto& e : page->entries) ids.push_back(e.id);
    return ids;
  }
  long long value_indexes() {
    const std::string names = "('idx_token_value', 'idx_reference_target', 'idx_date_value', 'idx_composite_value')";
    return count(postgres()
                     ? "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname IN " + names
                     : "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name IN " + names);
  }
  long long waiting() { return count("SELECT COUNT(*) FROM deferred_index"); }

  std::shared_ptr<const SearchParameterRegistry> registry_;
  std::shared_ptr<const SearchIndexer> indexer_;
  std::unique_ptr<Repository> indexed_;
};

TEST_F(BulkLoadTest, AnEmptyStoreBuildsItsValueIndexesOnceAndSearchesMeanwhileAnswerTheSame) {
  auto deferred = store_->defer_search_indexes();
  ASSERT_TRUE(deferred.has_value()) << deferred.error().issues[0].diagnostics;
  EXPECT_TRUE(*deferred);
  EXPECT_EQ(value_indexes(), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM deferred_index WHERE name = 'idx_token_value' AND sql LIKE 'CREATE INDEX%'"),
            1);
  if (postgres()) {
    EXPECT_EQ(count("SELECT COUNT(*) FROM pg_indexes WHERE indexname IN ('idx_text_tsv', 'idx_patient_token_value', "
                    "'resource_updated', 'resource_version_instance', 'idx_token_rid', 'idx_patient_token_pkey', "
                    "'resource_tenant_type_id_key', 'resource_version_rid_version_key')"),
              3)
        << "the full text's GIN, the (patient, code) index, _lastUpdated's, history's and those on rid wait too; the "
           "keys stay";
  } else {
    EXPECT_EQ(count("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name IN ('resource_updated', "
                    "'resource_version_type', 'resource_version_updated')"),
              3)
        << "_lastUpdated's and history's indexes stay (their entries go in at the end of each type's part)";
  }
  ASSERT_TRUE(indexed_->update(kDefaultTenant, "Patient", "a", patient("a", "1"), {}));
  ASSERT_TRUE(indexed_->update(kDefaultTenant, "Patient", "b", patient("b", "2"), {}));
  EXPECT_EQ(ids_found("2"), std::vector<std::string>{"b"});  // (SQLite: this search built them; PostgreSQL: a scan)
  if (!postgres()) {
    EXPECT_EQ(value_indexes(), 4);
    EXPECT_EQ(waiting(), 0);
    EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token INDEXED BY idx_token_value WHERE tenant = 0 AND type = "
                    "'Patient' AND param = 'identifier' AND code = '1'"),
              1)
        << "the rebuilt index holds the rows written while it was away";
  } else {
    EXPECT_EQ(value_indexes(), 0);
    EXPECT_GT(waiting(), 0);
  }
  ASSERT_TRUE(store_->restore_search_indexes().has_value());  // (SQLite: nothing left to build)
  EXPECT_EQ(value_indexes(), 4);
  EXPECT_EQ(waiting(), 0);
  ASSERT_TRUE(indexed_->update(kDefaultTenant, "Patient", "c", patient("c", "3"), {}));
  EXPECT_EQ(ids_found("3"), std::vector<std::string>{"c"});
  EXPECT_EQ(ids_found("1"), std::vector<std::string>{"a"});
  auto again = store_->defer_search_indexes();
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(*again) << "a store that holds resources keeps its indexes";
  EXPECT_EQ(value_indexes(), 4);
}

// While the indexes wait, an update replaces the resource's index rows (deleted by rid), and history answers the
// same (SQLite: it builds them first; PostgreSQL: it scans resource_version), before and after they are built.
TEST_F(BulkLoadTest, UpdatesAndHistoryMeanwhileAnswerTheSame) {
  ASSERT_EQ(store_->defer_search_indexes().value_or(false), true);
  ASSERT_TRUE(indexed_->update(kDefaultTenant, "Patient", "a", patient("a", "1"), {}));
  ASSERT_TRUE(indexed_->update(kDefaultTenant, "Patient", "b", patient("b", "2"), {}));
  if (postgres()) {  // the new resources' writes did without the indexes on rid
    EXPECT_EQ(count("SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'idx_token_rid'"), 0);
    EXPECT_EQ(count("SELECT COUNT(*) FROM deferred_index WHERE sql LIKE '% (rid)'"), 9);
  }
  ASSERT_TRUE(indexed_->update(kDefaultTenant, "Patient", "a", patient("a", "3"), {}));
  if (postgres()) {  // the first new version (its rows replace the previous version's, found by rid) built them
    EXPECT_EQ(count("SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'idx_token_rid'"), 1);
    EXPECT_EQ(count("SELECT COUNT(*) FROM deferred_index WHERE sql LIKE '% (rid)'"), 0);
    EXPECT_GT(waiting(), 0) << "the others still wait";
  }
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass ? "indexes built" : "indexes waiting");
    HistoryQuery of_a;
    of_a.type = "Patient";
    of_a.id = "a";
    auto page = store_->history(kDefaultTenant, of_a);
    ASSERT_TRUE(page.has_value()) << page.error().issues[0].diagnostics;
    ASSERT_EQ(page->entries.size(), 2u);
    EXPECT_EQ(page->entries[0].version, 2);
    EXPECT_EQ(page->entries[1].version, 1);
    HistoryQuery patients;
    patients.type = "Patient";
    EXPECT_EQ(store_->history_total(kDefaultTenant, patients).value_or(-1), 3);
    if (!postgres()) EXPECT_EQ(waiting(), 0) << "SQLite: the history built them first";
    EXPECT_EQ(ids_found("1"), std::vector<std::string>{});
    EXPECT_EQ(ids_found("3"), std::vector<std::string>{"a"});
    ASSERT_TRUE(store_->restore_search_indexes().has_value());
  }
  EXPECT_EQ(waiting(), 0);
}

TEST_F(BulkLoadTest, ALoadStoppedBeforeItsEndGetsItsIndexesWhenTheStoreOpensAgain) {
  ASSERT_EQ(store_->defer_search_indexes().value_or(false), true);
  ASSERT_TRUE(indexed_->update(kDefaultTenant, "Patient", "a", patient("a", "1"), {}));
  reopen();  // (no restore_search_indexes: as if the import had been killed)
  EXPECT_EQ(value_indexes(), 4);
  EXPECT_EQ(waiting(), 0);
  EXPECT_EQ(ids_found("1"), std::vector<std::string>{"a"});
}

// SQLite builds the indexes for a search made inside a write, in that write's transaction; PostgreSQL's search
// scans, and the indexes wait for restore_search_indexes.
TEST_F(BulkLoadTest, ASearchInsideAWriteBuildsTheIndexesInItsTransaction) {
  ASSERT_EQ(store_->defer_search_indexes().value_or(false), true);
  ASSERT_TRUE(indexed_->update(kDefaultTenant, "Patient", "a", patient("a", "1"), {}));
  const SearchQuery one = by_mrn("1");
  // A write that searches (building the indexes) and then fails: rolled back with it, they are still waiting.
  auto failed = store_->write([&](Transaction& txn) -> fhir::Result<void> {
    auto found = txn.search_ids(kDefaultTenant, one, 2);
    if (!found) return std::unexpected(found.error());
    EXPECT_EQ(found->size(), 1u);
    return fhir::fail(fhir::ErrorKind::kConflict, "conflict", "rolled back on purpose");
  });
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(value_indexes(), 0);
  EXPECT_GT(waiting(), 0);
  std::vector<std::pair<std::string, std::string>> found_inside;
  auto written = store_->write([&](Transaction& txn) -> fhir::Result<void> {
    auto found = txn.search_ids(kDefaultTenant, one, 2);
    if (!found) return std::unexpected(found.error());
    found_inside = *found;
    return {};
  });
  ASSERT_TRUE(written.has_value()) << written.error().issues[0].diagnostics;
  EXPECT_EQ(found_inside, (std::vector<std::pair<std::string, std::string>>{{"Patient", "a"}}));
  EXPECT_EQ(value_indexes(), postgres() ? 0 : 4);
  EXPECT_EQ(waiting() == 0, !postgres());
  EXPECT_EQ(ids_found("1"), std::vector<std::string>{"a"});
}

// A store search (not the transaction's) made by a write job while the indexes wait: built in the job's transaction
// rather than by a write of their own, which the writer, busy with this job, would never run (SQLite).
TEST_F(BulkLoadTest, AStoreSearchFromAWriteJobBuildsTheIndexesInItsTransaction) {
  ASSERT_EQ(store_->defer_search_indexes().value_or(false), true);
  ASSERT_TRUE(indexed_->update(kDefaultTenant, "Patient", "a", patient("a", "1"), {}));
  std::vector<std::string> found_inside;
  auto written = store_->write([&](Transaction&) -> fhir::Result<void> {
    found_inside = ids_found("1");
    return {};
  });
  ASSERT_TRUE(written.has_value()) << written.error().issues[0].diagnostics;
  EXPECT_EQ(found_inside, std::vector<std::string>{"a"});
  EXPECT_EQ(value_indexes(), postgres() ? 0 : 4);
  EXPECT_EQ(waiting() == 0, !postgres());
}

// search_shared answers what search answers, its records shared: on SQLite, the cached current versions themselves
// (the same objects from one search to the next, a newer version once it is written).
TEST_F(RepositoryTest, SharedSearchPagesAgreeWithSearch) {
  auto registry = SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  ASSERT_TRUE(registry.has_value());
  auto indexer = SearchIndexer::create(*defs_, **registry);
  ASSERT_TRUE(indexer.has_value());
  Repository indexed(*store_, *defs_, *checker_, indexer->get());
  auto patient = [](const std::string& id, const std::string& family) {
    return parse(R"({"resourceType":"Patient","id":")" + id +
                 R"(","identifier":[{"system":"urn:mrn","value":"1"}],"name":[{"family":")" + family + R"("}]})");
  };
  for (const char* id : {"a", "b", "c"})
    ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", id, patient(id, "X"), {}));
  ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", "b", patient("b", "Y"), {}));
  auto q = parse_search("Patient", {{"identifier", "urn:mrn|"}, {"_count", "2"}}, **registry, *defs_);
  ASSERT_TRUE(q.has_value());
  auto copied = store_->search(kDefaultTenant, *q);
  auto shared = store_->search_shared(kDefaultTenant, *q);
  ASSERT_TRUE(copied.has_value());
  ASSERT_TRUE(shared.has_value());
  ASSERT_EQ(shared->entries.size(), 2u);
  ASSERT_EQ(copied->entries.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(shared->entries[i]->id, copied->entries[i].id);
    EXPECT_EQ(shared->entries[i]->version, copied->entries[i].version);
    EXPECT_EQ(shared->entries[i]->body, copied->entries[i].body);
  }
  EXPECT_EQ(shared->entries[0]->id, "a");
  EXPECT_EQ(shared->entries[1]->id, "b");
  EXPECT_EQ(shared->entries[1]->version, 2);
  EXPECT_NE(shared->entries[1]->body.find("\"Y\""), std::string::npos) << shared->entries[1]->body;
  EXPECT_EQ(shared->next_cursor, copied->next_cursor);
  ASSERT_TRUE(shared->next_cursor.has_value());
  EXPECT_TRUE(shared->included.empty());
  EXPECT_FALSE(shared->total.has_value());
  // The next page: c alone, and no further cursor.
  q->cursor = shared->next_cursor;
  auto next = store_->search_shared(kDefaultTenant, *q);
  ASSERT_TRUE(next.has_value());
  ASSERT_EQ(next->entries.size(), 1u);
  EXPECT_EQ(next->entries[0]->id, "c");
  EXPECT_FALSE(next->next_cursor.has_value());
  if (postgres()) return;
  q->cursor.reset();
  auto again = store_->search_shared(kDefaultTenant, *q);
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(again->entries.size(), 2u);
  EXPECT_EQ(again->entries[0].get(), shared->entries[0].get()) << "the cached record, not a copy";
  EXPECT_EQ(again->entries[1].get(), shared->entries[1].get());
  // A new version replaces the cached record; the one handed out before stays as it was.
  ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", "b", patient("b", "Z"), {}));
  auto after = store_->search_shared(kDefaultTenant, *q);
  ASSERT_TRUE(after.has_value());
  ASSERT_EQ(after->entries.size(), 2u);
  EXPECT_EQ(after->entries[1]->version, 3);
  EXPECT_NE(after->entries[1]->body.find("\"Z\""), std::string::npos);
  EXPECT_EQ(shared->entries[1]->version, 2);
  EXPECT_NE(shared->entries[1]->body.find("\"Y\""), std::string::npos);
}

TEST_F(RepositoryTest, IndexRowsFollowTheCurrentVersion) {
  auto registry = SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  ASSERT_TRUE(registry.has_value());
  auto indexer = SearchIndexer::create(*defs_, **registry);
  ASSERT_TRUE(indexer.has_value());
  Repository indexed(*store_, *defs_, *checker_, indexer->get());
  auto obs = [](std::string code) {
    return parse(
        R"({"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":")" +
        code + R"("}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-01-02"})");
  };
  ASSERT_TRUE(indexed.update(kDefaultTenant, "Observation", "o1", obs("8310-5"), {}));
  EXPECT_EQ(
      count("SELECT COUNT(*) FROM idx_token WHERE param = 'code' AND system = 'http://loinc.org' AND code = '8310-5'"),
      1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_reference WHERE param = 'subject' AND target_type = 'Patient' AND "
                  "target_id = 'p1'"),
            1);
  // _id and _lastUpdated have no rows: the resource row holds them (search reads them there).
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_date WHERE param = '_lastUpdated'"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE param = '_id'"), 0);

  ASSERT_TRUE(indexed.update(kDefaultTenant, "Observation", "o1", obs("8867-4"), {}));
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE param = 'code' AND code = '8310-5'"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE param = 'code' AND code = '8867-4'"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_date WHERE param = '_lastUpdated'"), 0);

  // A write refused by If-Match leaves the rows as they were.
  EXPECT_FALSE(indexed.update(kDefaultTenant, "Observation", "o1", obs("0000-0"), 1));
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE param = 'code' AND code = '0000-0'"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE param = 'code' AND code = '8867-4'"), 1);

  // A delete sets the rows aside (tenant -1 - tenant), out of every search: history under an access filter decides
  // by them whether the deletion is visible.
  ASSERT_TRUE(indexed.remove(kDefaultTenant, "Observation", "o1", std::nullopt));
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE tenant = 0"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_date WHERE tenant = 0"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE tenant = -1 AND param = 'code' AND code = '8867-4'"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_reference WHERE tenant = -1 AND param = 'subject' AND target_id = 'p1'"),
            1);
  // Written again, the resource has its own rows only.
  ASSERT_TRUE(indexed.update(kDefaultTenant, "Observation", "o1", obs("8310-5"), {}));
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE tenant = -1"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_token WHERE param = 'code' AND code = '8310-5'"), 1);
}

// The full-text row and the identifier-type rows follow the current version too: an update that drops a word
// drops it from the index, a delete drops the row.
TEST_F(RepositoryTest, FullTextAndIdentifierTypeRowsFollowTheCurrentVersion) {
  auto registry = SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  ASSERT_TRUE(registry.has_value());
  auto indexer = SearchIndexer::create(*defs_, **registry);
  ASSERT_TRUE(indexer.has_value());
  Repository indexed(*store_, *defs_, *checker_, indexer->get());
  auto patient = [](std::string family, std::string type_code) {
    return parse(R"({"resourceType":"Patient","id":"ft","text":{"status":"generated",
        "div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Hélène <b>)" +
                 family + R"(</b></div>"},
        "identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":")" +
                 type_code + R"("}]},"value":"12345"}],"name":[{"family":")" + family + R"("}]})");
  };
  ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", "ft", patient("Dupont", "MR"), {}));
  if (postgres()) {
    // The text is kept folded (case and accents), under one tsvector: the narrative's words of weight A (_text),
    // then the other strings' (_content), numbered on from the narrative's.
    EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE narrative = 'helene dupont' AND "
                    "strpos(content, 'dupont') > 0 AND strpos(content, 'helene') = 0 AND "
                    "ts_filter(tsv, '{a}')::text = '''dupont'':2A ''helene'':1A' AND "
                    "tsv @@ to_tsquery('simple', 'dupont:D') AND NOT tsv @@ to_tsquery('simple', 'helene:D') AND "
                    "tsv @@ to_tsquery('simple', 'helene:A <-> dupont:A')"),
              1);
    EXPECT_EQ(count("SELECT COUNT(*) FROM idx_identifier_type WHERE param = 'identifier' AND type_code = 'MR' AND "
                    "type_system = 'http://terminology.hl7.org/CodeSystem/v2-0203' AND value = '12345'"),
              1);
    ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", "ft", patient("Durand", "SS"), {}));
    EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE tsv @@ to_tsquery('simple', 'dupont')"), 0);
    EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE tsv @@ to_tsquery('simple', 'durand:A')"), 1);
    EXPECT_EQ(count("SELECT COUNT(*) FROM idx_identifier_type WHERE type_code = 'MR'"), 0);
    EXPECT_EQ(count("SELECT COUNT(*) FROM idx_identifier_type WHERE type_code = 'SS'"), 1);
    ASSERT_TRUE(indexed.remove(kDefaultTenant, "Patient", "ft", std::nullopt));
    EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text"), 0);
    EXPECT_EQ(count("SELECT COUNT(*) FROM idx_identifier_type WHERE tenant = 0"), 0);
    return;
  }
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE idx_text MATCH 'helene'"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE narrative MATCH 'dupont'"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE content MATCH 'dupont'"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE content MATCH 'helene'"), 0) << "only in the narrative";
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_identifier_type WHERE param = 'identifier' AND type_code = 'MR' AND "
                  "type_system = 'http://terminology.hl7.org/CodeSystem/v2-0203' AND value = '12345'"),
            1);

  ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", "ft", patient("Durand", "SS"), {}));
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE idx_text MATCH 'dupont'"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE idx_text MATCH 'durand'"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_identifier_type WHERE type_code = 'MR'"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_identifier_type WHERE type_code = 'SS'"), 1);

  ASSERT_TRUE(indexed.remove(kDefaultTenant, "Patient", "ft", std::nullopt));
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text WHERE idx_text MATCH 'durand'"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_identifier_type WHERE tenant = 0"), 0);
}

// The text of many commits is found (on SQLite each commit writes an FTS5 segment of its own, merged eight of
// a level at a time, migration 18, instead of four).
TEST_F(RepositoryTest, FullTextOfManyCommitsIsFoundAndSqliteMergesEightSegmentsAtATime) {
  if (!postgres()) EXPECT_EQ(count("SELECT v FROM idx_text_config WHERE k = 'automerge'"), 8);
  auto registry = SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  ASSERT_TRUE(registry.has_value());
  auto indexer = SearchIndexer::create(*defs_, **registry);
  ASSERT_TRUE(indexer.has_value());
  Repository indexed(*store_, *defs_, *checker_, indexer->get());
  for (int i = 0; i < 40; ++i) {
    std::string id = "m" + std::to_string(i);
    ASSERT_TRUE(indexed.update(kDefaultTenant, "Patient", id,
                               parse(R"({"resourceType":"Patient","id":")" + id + R"(","name":[{"family":"Word)" +
                                     std::to_string(i) + R"(","given":["Common"]}]})"),
                               {}));
  }
  EXPECT_EQ(full_text_rows_holding("common"), 40);
  EXPECT_EQ(full_text_rows_holding("word7"), 1);
}

// The full-text rows wait for the end of their job group: a rolled-back job leaves none, a later version replaces
// an earlier one of the same group, and a search inside the transaction sees the text of the jobs before it.
TEST_F(RepositoryTest, FullTextRowsOfAGroupFollowItsJobs) {
  auto registry = SearchParameterRegistry::load(conformance::r4_search_parameters_json());
  ASSERT_TRUE(registry.has_value());
  auto write = [](Transaction& txn, const std::string& id, std::int64_t version,
                  const std::string& words) -> fhir::Result<void> {
    VersionRecord rec;
    rec.type = "Basic";
    rec.id = id;
    rec.version = version;
    rec.last_updated_ms = txn.now_ms();
    rec.body = R"({"resourceType":"Basic"})";
    IndexValues index;
    index.narrative = words;
    if (auto s = txn.append(kDefaultTenant, rec, &index); !s) return std::unexpected(s.error());
    return {};
  };
  auto group = [&](std::vector<Store::Work> works) {
    std::promise<void> queued;
    std::shared_future<void> all_queued = queued.get_future().share();
    std::future<fhir::Result<void>> first_done = hold_writer(all_queued);  // the others form the next group
    std::vector<std::promise<bool>> done(works.size());
    for (std::size_t i = 0; i < works.size(); ++i)
      store_->write_async(std::move(works[i]), [&, i](fhir::Result<void> r) { done[i].set_value(r.has_value()); });
    queued.set_value();
    first_done.get();
    std::vector<bool> ok;
    for (auto& d : done) ok.push_back(d.get_future().get());
    return ok;
  };
  auto ok = group({
      [&](Transaction& t) { return write(t, "t0", 1, "alpha0"); },
      [&](Transaction& t) { return write(t, "t1", 1, "alpha1"); },
      [&](Transaction& t) -> fhir::Result<void> {
        if (auto w = write(t, "t3", 1, "alpha3"); !w) return w;
        return fhir::fail(fhir::ErrorKind::kConflict, "conflict", "fails after writing");
      },
      [&](Transaction& t) { return write(t, "t0", 2, "beta0"); },
  });
  EXPECT_EQ(ok, (std::vector<bool>{true, true, false, true}));
  EXPECT_EQ(full_text_rows_holding("alpha3"), 0) << "rolled back";
  EXPECT_EQ(full_text_rows_holding("alpha0"), 0) << "replaced";
  EXPECT_EQ(full_text_rows_holding("beta0"), 1);
  EXPECT_EQ(full_text_rows_holding("alpha1"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM idx_text"), 2);

  auto query = parse_search("Basic", {{"_text", "gamma"}}, **registry, *defs_);
  ASSERT_TRUE(query.has_value());
  std::vector<std::pair<std::string, std::string>> seen;
  ok = group({
      [&](Transaction& t) { return write(t, "t4", 1, "gamma"); },
      [&](Transaction& t) -> fhir::Result<void> {
        auto ids = t.search_ids(kDefaultTenant, *query, 10);
        if (!ids) return std::unexpected(ids.error());
        seen = *ids;
        return {};
      },
  });
  EXPECT_EQ(ok, (std::vector<bool>{true, true}));
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::string>>{{"Basic", "t4"}}));
}

// The users table through Transaction::users(), on both backends: insert (a second one of the same name is a
// conflict), find, update (an unknown one is not found), list in name order, count, each per tenant.
TEST_F(RepositoryTest, UserRowsKeepAccountsPerTenant) {
  auto run = [&](std::function<fhir::Result<void>(UserRows&)> f) {
    return store_->write([&](Transaction& txn) -> fhir::Result<void> {
      auto rows = txn.users();
      if (!rows) return std::unexpected(rows.error());
      return f(**rows);
    });
  };
  UserRecord house;
  house.username = "house";
  house.role = "physician";
  house.fhir_user = "Practitioner/1";
  house.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
  house.must_change_password = true;
  house.totp_secret = "plain:JBSWY3DPEHPK3PXP";
  house.totp_last_step = 58'000'000'000;
  house.created_ms = house.updated_ms = 1'764'000'000'000;
  UserRecord amy = house;
  amy.username = "amy";
  amy.role = "nurse";
  amy.must_change_password = false;
  ASSERT_TRUE(run([&](UserRows& u) { return u.insert(kDefaultTenant, house); }));
  ASSERT_TRUE(run([&](UserRows& u) { return u.insert(kDefaultTenant, amy); }));
  ASSERT_TRUE(run([&](UserRows& u) { return u.insert(7, house); }));  // another tenant: another account
  auto again = run([&](UserRows& u) { return u.insert(kDefaultTenant, house); });
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().kind, fhir::ErrorKind::kConflict);

  house.disabled = true;
  house.failed_count = 3;
  house.locked_until_ms = 1'764'000'900'000;
  house.last_sign_in_ms = 1'764'000'000'500;
  ASSERT_TRUE(run([&](UserRows& u) { return u.update(kDefaultTenant, house); }));
  UserRecord nobody = house;
  nobody.username = "nobody";
  auto missing = run([&](UserRows& u) { return u.update(kDefaultTenant, nobody); });
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind, fhir::ErrorKind::kNotFound);

  std::optional<UserRecord> found, absent;
  std::vector<UserRecord> listed;
  std::int64_t count = -1, other_count = -1;
  ASSERT_TRUE(run([&](UserRows& u) -> fhir::Result<void> {
    auto f = u.find(kDefaultTenant, "house");
    auto a = u.find(kDefaultTenant, "nobody");
    auto l = u.list(kDefaultTenant);
    auto c = u.count(kDefaultTenant);
    auto o = u.count(7);
    if (!f || !a || !l || !c || !o) return fhir::fail(fhir::ErrorKind::kUnavailable, "exception", "a read failed");
    found = *f;
    absent = *a;
    listed = *l;
    count = *c;
    other_count = *o;
    return {};
  }));
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(absent.has_value());
  EXPECT_EQ(found->role, "physician");
  EXPECT_EQ(found->fhir_user, "Practitioner/1");
  EXPECT_EQ(found->password_hash, house.password_hash);
  EXPECT_TRUE(found->must_change_password);
  EXPECT_TRUE(found->disabled);
  EXPECT_EQ(found->totp_secret, "plain:JBSWY3DPEHPK3PXP");
  EXPECT_EQ(found->totp_last_step, 58'000'000'000);
  EXPECT_EQ(found->failed_count, 3);
  EXPECT_EQ(found->locked_until_ms, 1'764'000'900'000);
  EXPECT_EQ(found->last_sign_in_ms, 1'764'000'000'500);
  EXPECT_EQ(found->created_ms, 1'764'000'000'000);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].username, "amy");
  EXPECT_EQ(listed[1].username, "house");
  EXPECT_FALSE(listed[0].disabled);
  EXPECT_EQ(count, 2);
  EXPECT_EQ(other_count, 1);
}

// The authorization server's tables through Transaction::oauth_tables(), on both backends: clients (a second one
// of the same id is a conflict), client-assertion ids never accepted twice until they expire, revoked tokens.
TEST_F(RepositoryTest, OAuthTablesKeepClientsJtisAndRevocations) {
  auto run = [&](std::function<fhir::Result<void>(OAuthTables&)> f) {
    return store_->write([&](Transaction& txn) -> fhir::Result<void> {
      OAuthTables* t = txn.oauth_tables();
      if (t == nullptr) return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported", "no OAuth tables");
      return f(*t);
    });
  };
  ClientRecord lab;
  lab.client_id = "lab";
  lab.name = "The lab";
  lab.kind = "confidential-asymmetric";
  lab.jwks = R"({"keys":[]})";
  lab.redirect_uris = {"https://lab.example/cb", "https://lab.example/cb2"};
  lab.scopes = {"system/Observation.rs", "system/Patient.rs"};
  lab.created_ms = 1'764'000'000'000;
  ClientRecord app = lab;
  app.client_id = "app";
  app.kind = "public";
  app.scopes = {};
  ClientRecord mtls = lab;  // mutual TLS: the subject its certificate must carry
  mtls.client_id = "mtls";
  mtls.kind = "tls-client-auth";
  mtls.jwks.clear();
  mtls.tls_subject = R"(CN=lab.example,O=Lab\, Inc.)";
  ASSERT_TRUE(run([&](OAuthTables& t) { return t.add_client(kDefaultTenant, lab); }));
  ASSERT_TRUE(run([&](OAuthTables& t) { return t.add_client(kDefaultTenant, app); }));
  ASSERT_TRUE(run([&](OAuthTables& t) { return t.add_client(kDefaultTenant, mtls); }));
  auto again = run([&](OAuthTables& t) { return t.add_client(kDefaultTenant, lab); });
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().kind, fhir::ErrorKind::kConflict);

  std::optional<ClientRecord> found;
  std::vector<ClientRecord> all;
  std::vector<bool> used;
  std::vector<std::string> revoked;
  bool removed = false, removed_again = true;
  ASSERT_TRUE(run([&](OAuthTables& t) -> fhir::Result<void> {
    auto f = t.client(kDefaultTenant, "lab");
    auto a = t.clients(kDefaultTenant);
    if (!f || !a) return fhir::fail(fhir::ErrorKind::kUnavailable, "exception", "a read failed");
    found = *f;
    all = *a;
    // A jti is accepted once; another client's same jti is its own; an expired one may come again.
    for (auto [client, jti, expires, now] :
         std::vector<std::tuple<std::string, std::string, std::int64_t, std::int64_t>>{{"lab", "j1", 2'000, 1'000},
                                                                                       {"lab", "j1", 2'000, 1'500},
                                                                                       {"app", "j1", 2'000, 1'500},
                                                                                       {"lab", "j1", 4'000, 2'500}}) {
      auto u = t.use_jti(kDefaultTenant, client, jti, expires, now);
      if (!u) return std::unexpected(u.error());
      used.push_back(*u);
    }
    if (auto r = t.revoke_token(kDefaultTenant, "t1", 5'000); !r) return r;
    if (auto r = t.revoke_token(kDefaultTenant, "t1", 5'000); !r) return r;  // twice is fine
    if (auto r = t.revoke_token(kDefaultTenant, "t0", 1'000); !r) return r;
    auto rv = t.revoked_tokens(kDefaultTenant, 2'000);  // t0 has expired
    if (!rv) return std::unexpected(rv.error());
    revoked = *rv;
    auto rm = t.remove_client(kDefaultTenant, "app");
    auto rm2 = t.remove_client(kDefaultTenant, "app");
    if (!rm || !rm2) return fhir::fail(fhir::ErrorKind::kUnavailable, "exception", "a removal failed");
    removed = *rm;
    removed_again = *rm2;
    return {};
  }));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->name, "The lab");
  EXPECT_EQ(found->kind, "confidential-asymmetric");
  EXPECT_EQ(found->jwks, R"({"keys":[]})");
  EXPECT_EQ(found->redirect_uris, lab.redirect_uris);
  EXPECT_EQ(found->scopes, lab.scopes);
  EXPECT_EQ(found->created_ms, 1'764'000'000'000);
  EXPECT_EQ(found->tls_subject, "");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].client_id, "app");
  EXPECT_TRUE(all[0].scopes.empty());
  EXPECT_EQ(all[2].client_id, "mtls");
  EXPECT_EQ(all[2].kind, "tls-client-auth");
  EXPECT_EQ(all[2].tls_subject, R"(CN=lab.example,O=Lab\, Inc.)");
  EXPECT_EQ(used, (std::vector<bool>{true, false, true, true}));
  EXPECT_EQ(revoked, std::vector<std::string>{"t1"});
  EXPECT_TRUE(removed);
  EXPECT_FALSE(removed_again);
}

// Inbound HL7 v2 messages through the Transaction, on both backends: stored with their raw bytes (binary kept),
// found again by sender and control id (the key of duplicates), updated, and a second one with the same key is a
// conflict while messages without a control id never are.
TEST_F(RepositoryTest, InboundMessagesAreKeptOncePerSenderAndControlId) {
  InboundMessageRecord m;
  m.sending_application = "LAB";
  m.sending_facility = "NORTH";
  m.control_id = "MSG0001";
  m.message_type = "ADT^A01^ADT_A01";
  m.received_ms = 1'764'000'000'000;
  m.raw = std::string("MSH|^~\\&|LAB|NORTH\r\x0b\x00\xe9", 22);
  m.status = "received";
  m.updated_ms = m.received_ms;
  std::int64_t id = 0;
  ASSERT_TRUE(store_->write([&](Transaction& t) -> fhir::Result<void> {
    auto inserted = t.insert_inbound_message(kDefaultTenant, m);
    if (!inserted) return std::unexpected(inserted.error());
    id = *inserted;
    return {};
  }));
  auto duplicate = store_->write([&](Transaction& t) -> fhir::Result<void> {
    auto again = t.insert_inbound_message(kDefaultTenant, m);
    if (!again) return std::unexpected(again.error());
    return {};
  });
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_EQ(duplicate.error().kind, fhir::ErrorKind::kConflict);
  InboundMessageRecord anonymous = m;
  anonymous.control_id = "";
  ASSERT_TRUE(store_->write([&](Transaction& t) -> fhir::Result<void> {
    for (int i = 0; i < 2; ++i)
      if (auto r = t.insert_inbound_message(kDefaultTenant, anonymous); !r) return std::unexpected(r.error());
    return {};
  }));

  m.id = id;
  m.status = "processed";
  m.ack = "MSH|^~\\&|CADUCEUS\rMSA|AA|MSG0001";
  m.resources = {"Patient/p1/_history/1", "Provenance/v1/_history/1"};
  m.updated_ms = m.received_ms + 5;
  ASSERT_TRUE(store_->write([&](Transaction& t) { return t.update_inbound_message(kDefaultTenant, m); }));
  InboundMessageRecord ghost = m;
  ghost.id = id + 1000;
  auto missing = store_->write([&](Transaction& t) { return t.update_inbound_message(kDefaultTenant, ghost); });
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind, fhir::ErrorKind::kNotFound);

  std::optional<InboundMessageRecord> by_key, by_id, other_tenant;
  ASSERT_TRUE(store_->write([&](Transaction& t) -> fhir::Result<void> {
    auto k = t.find_inbound_message(kDefaultTenant, "LAB", "NORTH", "MSG0001");
    auto i = t.inbound_message(kDefaultTenant, id);
    auto o = t.find_inbound_message(7, "LAB", "NORTH", "MSG0001");
    if (!k || !i || !o) return fhir::fail(fhir::ErrorKind::kUnavailable, "exception", "a read failed");
    by_key = *k;
    by_id = *i;
    other_tenant = *o;
    return {};
  }));
  ASSERT_TRUE(by_key.has_value());
  ASSERT_TRUE(by_id.has_value());
  EXPECT_FALSE(other_tenant.has_value());
  EXPECT_EQ(by_key->id, id);
  EXPECT_EQ(by_id->raw, m.raw);
  EXPECT_EQ(by_id->raw.size(), 22u);
  EXPECT_EQ(by_id->message_type, "ADT^A01^ADT_A01");
  EXPECT_EQ(by_id->status, "processed");
  EXPECT_EQ(by_id->ack, m.ack);
  EXPECT_EQ(by_id->resources, m.resources);
  EXPECT_EQ(by_id->received_ms, 1'764'000'000'000);
  EXPECT_EQ(by_id->updated_ms, 1'764'000'000'005);
}

// Transaction::current_record (a PATCH entry's read inside the write job): the current version with its body, the
// job's own earlier writes included; a deleted one without body; nullopt for one that never existed.
TEST_F(RepositoryTest, CurrentRecordInsideATransactionSeesItsOwnWrites) {
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "a", parse(R"({"resourceType":"Patient","id":"a"})"), {}));
  ASSERT_TRUE(repo_->update(kDefaultTenant, "Patient", "d", parse(R"({"resourceType":"Patient","id":"d"})"), {}));
  ASSERT_TRUE(repo_->remove(kDefaultTenant, "Patient", "d", {}));
  std::optional<VersionRecord> first, second, deleted, never;
  auto r = store_->write([&](Transaction& txn) -> fhir::Result<void> {
    auto got = txn.current_record(kDefaultTenant, "Patient", "a");
    if (!got) return std::unexpected(got.error());
    first = *got;
    VersionRecord rec;
    rec.type = "Patient";
    rec.id = "a";
    rec.version = 2;
    rec.last_updated_ms = txn.now_ms();
    rec.method = Method::kUpdate;
    rec.body = R"({"resourceType":"Patient","id":"a","active":true})";
    if (auto seq = txn.append(kDefaultTenant, rec); !seq) return std::unexpected(seq.error());
    for (auto [id, out] : {std::pair{"a", &second}, std::pair{"d", &deleted}, std::pair{"zz", &never}}) {
      got = txn.current_record(kDefaultTenant, "Patient", id);
      if (!got) return std::unexpected(got.error());
      *out = *got;
    }
    return {};
  });
  ASSERT_TRUE(r.has_value()) << r.error().issues[0].diagnostics;
  ASSERT_TRUE(first);
  EXPECT_EQ(first->version, 1);
  EXPECT_FALSE(first->deleted);
  auto body = json::parse(first->body);
  ASSERT_TRUE(body);
  EXPECT_EQ(body->find("id")->text(), "a");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->version, 2);
  EXPECT_EQ(second->method, Method::kUpdate);
  EXPECT_EQ(second->body, R"({"resourceType":"Patient","id":"a","active":true})");
  ASSERT_TRUE(deleted);
  EXPECT_TRUE(deleted->deleted);
  EXPECT_EQ(deleted->version, 2);
  EXPECT_TRUE(deleted->body.empty());
  EXPECT_FALSE(never);
}

// The grants of the SMART App Launch (codes, refresh tokens, launches, sign-ins) on both backends: replaced by key,
// consumed once (the second consume returns it marked consumed: a reuse), a family revoked at once, expired ones
// neither found nor consumed, and each tenant apart.
TEST_F(RepositoryTest, OAuthGrantsAreConsumedOnceAndRevokedByFamily) {
  auto run = [&](std::function<fhir::Result<void>(OAuthTables&)> f) {
    return store_->write([&](Transaction& txn) -> fhir::Result<void> {
      OAuthTables* t = txn.oauth_tables();
      if (t == nullptr) return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported", "no OAuth tables");
      return f(*t);
    });
  };
  auto grant = [](std::string kind, std::string key, std::string family, std::string data, std::int64_t expires) {
    GrantRecord g;
    g.kind = std::move(kind);
    g.key = std::move(key);
    g.family = std::move(family);
    g.data = std::move(data);
    g.expires_ms = expires;
    return g;
  };
  std::vector<std::string> seen;
  auto r = run([&](OAuthTables& t) -> fhir::Result<void> {
    for (const GrantRecord& g :
         {grant("code", "k1", "f1", R"({"a":1})", 10'000), grant("refresh", "r1", "f1", "{}", 10'000),
          grant("refresh", "r2", "f2", "{}", 10'000), grant("refresh", "old", "f3", "{}", 1'000),
          grant("code", "k1", "f1", R"({"a":2})", 10'000)})
      if (auto p = t.put_grant(kDefaultTenant, g, 500); !p) return p;
    if (auto p = t.put_grant(7, grant("code", "k1", "f9", R"({"tenant":7})", 10'000), 500); !p) return p;
    auto describe = [&](const fhir::Result<std::optional<GrantRecord>>& g) {
      if (!g) return std::string("error");
      if (!*g) return std::string("none");
      return (*g)->kind + "/" + (*g)->key + " " + (*g)->family + " " + (*g)->data + " " +
             std::to_string((*g)->expires_ms) + ((*g)->consumed ? " consumed" : " fresh");
    };
    seen.push_back(describe(t.find_grant(kDefaultTenant, "code", "k1", 2'000)));
    seen.push_back(describe(t.find_grant(kDefaultTenant, "refresh", "k1", 2'000)));   // another kind
    seen.push_back(describe(t.find_grant(kDefaultTenant, "refresh", "old", 2'000)));  // expired
    seen.push_back(describe(t.consume_grant(kDefaultTenant, "refresh", "old", 2'000)));
    seen.push_back(describe(t.consume_grant(kDefaultTenant, "code", "k1", 2'000)));
    seen.push_back(describe(t.consume_grant(kDefaultTenant, "code", "k1", 2'000)));  // a reuse
    seen.push_back(describe(t.find_grant(7, "code", "k1", 2'000)));                  // the other tenant's
    if (auto v = t.revoke_grant_family(kDefaultTenant, "f1"); !v) return v;
    seen.push_back(describe(t.consume_grant(kDefaultTenant, "refresh", "r1", 2'000)));  // revoked with f1
    seen.push_back(describe(t.consume_grant(kDefaultTenant, "refresh", "r2", 2'000)));  // f2 untouched
    return {};
  });
  ASSERT_TRUE(r.has_value()) << r.error().issues[0].diagnostics;
  EXPECT_EQ(seen, (std::vector<std::string>{
                      R"(code/k1 f1 {"a":2} 10000 fresh)",
                      "none",
                      "none",
                      "none",
                      R"(code/k1 f1 {"a":2} 10000 fresh)",
                      R"(code/k1 f1 {"a":2} 10000 consumed)",
                      R"(code/k1 f9 {"tenant":7} 10000 fresh)",
                      "refresh/r1 f1 {} 10000 consumed",
                      "refresh/r2 f2 {} 10000 fresh",
                  }));
}

TEST(StoreUrlTest, UnknownSchemesAreRefused) {
  auto s = open_store("mysql://x");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().kind, fhir::ErrorKind::kInvalid);
}

TEST(StoreUrlTest, AReadDatabaseIsForPostgresqlOnly) {
  auto s = open_store("sqlite::memory:", StoreOptions{.read_url = "postgresql://postgres@/standby"});
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().kind, fhir::ErrorKind::kInvalid);
  EXPECT_NE(s.error().issues[0].diagnostics.find("--db-read"), std::string::npos);
}

TEST(StoreUrlTest, MemoryStoreIsThrowaway) {
  auto s = open_store("sqlite::memory:");
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE((*s)->ping().has_value());
}

// New ids are version 7 UUIDs: the Unix time in milliseconds first, so that ids made one after another sort in
// the order they were made (and a create adds to the end of the id index), the rest random.
TEST(NewResourceIdTest, IsAVersion7UuidThatStartsWithTheTime) {
  auto before =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  std::string id = new_resource_id();
  auto after =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  ASSERT_EQ(id.size(), 36u);
  EXPECT_TRUE(is_valid_id(id));
  EXPECT_EQ(id[8], '-');
  EXPECT_EQ(id[13], '-');
  EXPECT_EQ(id[14], '7');                                          // version
  EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos);  // RFC 9562 variant
  long long ms = std::stoll(id.substr(0, 8) + id.substr(9, 4), nullptr, 16);
  EXPECT_GE(ms, before);
  EXPECT_LE(ms, after);
}

TEST(NewResourceIdTest, IdsMadeInLaterMillisecondsSortAfterAndNoneRepeats) {
  std::set<std::string> seen;
  std::string previous = new_resource_id();
  seen.insert(previous);
  for (int i = 0; i < 3; ++i) {
    // Wait (without sleeping) for the clock to move on to a later millisecond.
    std::string prefix = previous.substr(0, 13);
    std::string next;
    do {
      next = new_resource_id();
      EXPECT_TRUE(seen.insert(next).second);
    } while (next.substr(0, 13) == prefix);
    EXPECT_LT(previous, next);
    previous = next;
  }
  for (int i = 0; i < 10000; ++i) EXPECT_TRUE(seen.insert(new_resource_id()).second);
}

}  // namespace
}  // namespace caduceus::resources
