// The PostgreSQL store where it differs from SQLite: several stores (server processes) on one database. The
// behaviour both backends share is tested by store_test.cpp, run on each (see tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/repository.hpp"
#include "caduceus/resources/store/store.hpp"
#include "pg_cluster.hpp"
#include "pg_tools.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;

json::Value parse(std::string_view text) {
  auto v = json::parse(text);
  EXPECT_TRUE(v.has_value());
  return v ? *v : json::Value();
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
    auto db = test::PgDatabase::create();
    ASSERT_TRUE(db.has_value()) << db.error();
    db_ = std::move(*db);
    auto defs = Definitions::load(conformance::r4_model_json());
    ASSERT_TRUE(defs.has_value());
    defs_ = *defs;
    checker_ = std::make_unique<StructureChecker>(*defs_);
  }

  std::unique_ptr<Store> open() {
    auto s = open_store(db_->url(), StoreOptions{.readers = 2});
    EXPECT_TRUE(s.has_value()) << s.error().issues[0].diagnostics;
    return s ? std::move(*s) : nullptr;
  }

  // Runs body(repository) on `threads` threads at once (released together), the even ones writing through store
  // a, the odd ones through store b: two server processes on one database.
  void on_two_stores(Store& a, Store& b, int threads, const std::function<void(Repository&)>& body) {
    Repository ra(a, *defs_, *checker_), rb(b, *defs_, *checker_);
    std::latch start(threads);
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t)
      running.emplace_back([&, t] {
        start.arrive_and_wait();
        body(t % 2 ? rb : ra);
      });
    for (auto& t : running) t.join();
  }

  std::unique_ptr<test::PgDatabase> db_;
  std::shared_ptr<const Definitions> defs_;
  std::unique_ptr<StructureChecker> checker_;
};

// Servers started together on an empty database: the migrations run once (under the advisory lock), and every
// server opens the migrated store.
TEST_F(PostgresStoreTest, StoresOpeningTogetherMigrateOnce) {
  constexpr int kStores = 4;
  std::latch start(kStores);
  std::vector<fhir::Result<std::unique_ptr<Store>>> opened;
  for (int i = 0; i < kStores; ++i) opened.emplace_back(std::unexpected(fhir::Error{}));
  std::vector<std::thread> threads;
  for (int i = 0; i < kStores; ++i)
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      opened[i] = open_store(db_->url(), StoreOptions{.readers = 1});
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStores; ++i) ASSERT_TRUE(opened[i].has_value()) << opened[i].error().issues[0].diagnostics;
  EXPECT_EQ(db_->query("SELECT COUNT(*) FROM schema_migrations").value_or("?"), "22");
  EXPECT_EQ(db_->query("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations").value_or("?"),
            "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22");
  // Each one works on the same data.
  Repository first(**opened[0], *defs_, *checker_);
  ASSERT_TRUE(first.update(kDefaultTenant, "Patient", "shared", parse(R"({"resourceType":"Patient","id":"shared"})"),
                           std::nullopt));
  for (int i = 1; i < kStores; ++i) {
    auto read = (*opened[i])->read(kDefaultTenant, "Patient", "shared");
    ASSERT_TRUE(read.has_value()) << i;
    EXPECT_EQ(read->version, 1);
  }
}

// After an import: every table of the store is analyzed (over two connections), bodies and full text without
// statistics of their own (migration 20), the columns that searches filter on with theirs.
TEST_F(PostgresStoreTest, RefreshStatisticsAnalyzesEveryTableButNotBodiesOrText) {
  auto store = open();
  ASSERT_TRUE(store);
  Repository repo(*store, *defs_, *checker_);
  for (int i = 0; i < 20; ++i) {
    const std::string id = "p" + std::to_string(i);
    ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", id,
                            parse(R"({"resourceType":"Patient","id":")" + id + R"(","gender":"female"})"),
                            std::nullopt));
  }
  EXPECT_EQ(db_->query("SELECT COUNT(*) FROM pg_stat_user_tables WHERE schemaname = current_schema() AND "
                       "last_analyze IS NOT NULL")
                .value_or("?"),
            "0");
  ASSERT_TRUE(store->refresh_statistics());
  EXPECT_EQ(db_->query("SELECT COUNT(*) FROM pg_stat_user_tables WHERE schemaname = current_schema() AND "
                       "last_analyze IS NULL")
                .value_or("?"),
            "0");
  EXPECT_EQ(db_->query("SELECT COUNT(*) FROM pg_stats WHERE tablename = 'resource_version' AND attname = 'type'")
                .value_or("?"),
            "1");
  EXPECT_EQ(db_->query("SELECT COUNT(*) FROM pg_stats WHERE (tablename, attname) IN (('resource_version', 'body'), "
                       "('idx_text', 'narrative'), ('idx_text', 'content'))")
                .value_or("?"),
            "0");
}

// A bulk load's commits do not wait for the WAL to reach the disk; sync() returns once all of them have. Its own
// cluster, whose WAL writer would flush what waits only after 10 s, crashed right after: every resource is there when
// it recovers (without the sync, the last commits are lost).
TEST_F(PostgresStoreTest, ABulkLoadIsOnDiskOnceSyncReturns) {
  auto cluster = test::PgCluster::start();
  ASSERT_TRUE(cluster.has_value()) << cluster.error();
  const std::string url = (*cluster)->url();
  ASSERT_TRUE(test::pg_tools::sql(url, "ALTER SYSTEM SET wal_writer_delay = '10s'").has_value());
  ASSERT_TRUE(test::pg_tools::sql(url, "SELECT pg_reload_conf()").has_value());
  {
    auto store = open_store(url, StoreOptions{.readers = 1, .bulk_load = true});
    ASSERT_TRUE(store.has_value()) << store.error().issues[0].diagnostics;
    Repository repo(**store, *defs_, *checker_);
    for (int i = 0; i < 30; ++i) {
      const std::string id = "b" + std::to_string(i);
      ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", id,
                              parse(R"({"resourceType":"Patient","id":")" + id + R"("})"), std::nullopt));
    }
    auto synced = (*store)->sync();
    ASSERT_TRUE(synced.has_value()) << synced.error().issues[0].diagnostics;
  }
  auto crashed = (*cluster)->crash_server();
  ASSERT_TRUE(crashed.has_value()) << crashed.error();
  auto started = (*cluster)->start_server();
  ASSERT_TRUE(started.has_value()) << started.error();
  EXPECT_EQ(test::pg_tools::sql(url, "SELECT COUNT(*) FROM resource WHERE type = 'Patient'").value_or("?"), "30");
}

// resource_version has no foreign key to resource (migration 15): its check was a query per version whose plan,
// cached on the writer's connection while the table was small, scanned the whole resource table. Versions still
// point at their resource row: every version of every resource, created, updated and deleted, has it.
TEST_F(PostgresStoreTest, VersionsKeepTheirResourceRowWithoutAForeignKey) {
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(db_->query("SELECT COUNT(*) FROM pg_constraint WHERE conrelid = 'resource_version'::regclass AND "
                       "contype = 'f'")
                .value_or("?"),
            "0");
  Repository repo(*store, *defs_, *checker_);
  for (int i = 0; i < 30; ++i) {
    std::string id = "p" + std::to_string(i);
    ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", id, parse(R"({"resourceType":"Patient","id":")" + id + R"("})"),
                            std::nullopt));
  }
  ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", "p1",
                          parse(R"({"resourceType":"Patient","id":"p1","active":true})"), std::nullopt));
  ASSERT_TRUE(repo.remove(kDefaultTenant, "Patient", "p2", std::nullopt));
  // 30 resources; 32 versions (p1 twice, p2 created then deleted), each joined to the resource row of its id.
  EXPECT_EQ(db_->query("SELECT COUNT(*) FROM resource").value_or("?"), "30");
  EXPECT_EQ(db_->query("SELECT COUNT(*) FROM resource_version v JOIN resource r ON r.rid = v.rid AND "
                       "r.tenant = v.tenant AND r.type = v.type AND r.id = v.id")
                .value_or("?"),
            "32");
  EXPECT_EQ(db_->query("SELECT string_agg(r.id || ':' || r.version || ':' || r.deleted, ',' ORDER BY r.id) FROM "
                       "resource r WHERE r.id IN ('p1', 'p2', 'p3')")
                .value_or("?"),
            "p1:2:0,p2:2:1,p3:1:0");
}

// Bodies big enough to be compressed are compressed with lz4 (migration 19), not pglz.
TEST_F(PostgresStoreTest, LargeBodiesAreCompressedWithLz4) {
  auto store = open();
  ASSERT_TRUE(store);
  Repository repo(*store, *defs_, *checker_);
  std::string text;
  for (int i = 0; i < 400; ++i) text += "note " + std::to_string(i) + " ";  // (some 4 KB, compressible)
  ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", "big",
                          parse(R"({"resourceType":"Patient","id":"big","name":[{"text":")" + text + R"("}]})"),
                          std::nullopt));
  EXPECT_EQ(db_->query("SELECT pg_column_compression(body) FROM resource_version WHERE id = 'big'").value_or("?"),
            "lz4");
}

// Two stores (two server processes) on one database: two updates with the same If-Match, at once, one through
// each: exactly one wins, the other is refused (412), round after round.
TEST_F(PostgresStoreTest, TwoStoresSameIfMatchExactlyOneWins) {
  auto a = open(), b = open();
  ASSERT_TRUE(a && b);
  Repository ra(*a, *defs_, *checker_), rb(*b, *defs_, *checker_);
  ASSERT_TRUE(ra.update(kDefaultTenant, "Patient", "race", parse(R"({"resourceType":"Patient","id":"race"})"), {}));
  constexpr int kRounds = 20;
  for (int round = 1; round <= kRounds; ++round) {
    std::latch start(2);
    fhir::Result<WriteOutcome> outcomes[2] = {std::unexpected(fhir::Error{}), std::unexpected(fhir::Error{})};
    std::thread ta([&] {
      start.arrive_and_wait();
      outcomes[0] =
          ra.update(kDefaultTenant, "Patient", "race", parse(R"({"resourceType":"Patient","id":"race"})"), round);
    });
    std::thread tb([&] {
      start.arrive_and_wait();
      outcomes[1] = rb.update(kDefaultTenant, "Patient", "race",
                              parse(R"({"resourceType":"Patient","id":"race","active":true})"), round);
    });
    ta.join();
    tb.join();
    int won = 0, refused = 0;
    for (auto& o : outcomes) {
      if (o)
        ++won;
      else if (o.error().kind == fhir::ErrorKind::kPreconditionFailed)
        ++refused;
    }
    ASSERT_EQ(won, 1) << "round " << round;
    ASSERT_EQ(refused, 1) << "round " << round;
    EXPECT_EQ(a->read(kDefaultTenant, "Patient", "race")->version, round + 1);
    EXPECT_EQ(b->read(kDefaultTenant, "Patient", "race")->version, round + 1);
  }
}

// Reads by id from many threads at once, gathered into batches (PostgresStore::read_async): each caller gets its
// own resource's current version, kNotFound for an id that does not exist (or exists under another type), and the
// deletion for a deleted one, whatever else shares its batch.
TEST_F(PostgresStoreTest, GatheredReadsAnswerEachCallerItsOwnResource) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->reads_async());
  Repository repo(*store, *defs_, *checker_);
  constexpr int kPatients = 40;
  for (int i = 0; i < kPatients; ++i) {
    std::string id = "p" + std::to_string(i);
    ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", id,
                            parse(R"({"resourceType":"Patient","id":")" + id + R"(","birthDate":"19)" +
                                  std::to_string(10 + i) + R"(-01-01"})"),
                            {}));
    if (i % 4 == 0)  // a second version
      ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", id,
                              parse(R"({"resourceType":"Patient","id":")" + id + R"(","gender":"other"})"), {}));
  }
  ASSERT_TRUE(repo.remove(kDefaultTenant, "Patient", "p7", {}));
  ASSERT_TRUE(repo.update(kDefaultTenant, "Observation", "p1",
                          parse(R"({"resourceType":"Observation","id":"p1","status":"final",)"
                                R"("code":{"text":"same id, other type"}})"),
                          {}));

  // What each read must answer, worked out from the writes above.
  struct Expect {
    std::string type, id;
    bool found = false, deleted = false;
    std::int64_t version = 0;
    std::string contains;  // in the body
  };
  std::vector<Expect> expected;
  for (int i = 0; i < kPatients; ++i) {
    std::string id = "p" + std::to_string(i);
    if (i == 7)
      expected.push_back({"Patient", id, true, true, 2, ""});
    else if (i % 4 == 0)
      expected.push_back({"Patient", id, true, false, 2, R"("gender":"other")"});
    else
      expected.push_back({"Patient", id, true, false, 1, "19" + std::to_string(10 + i) + "-01-01"});
    expected.push_back({"Patient", "missing-" + id, false});
  }
  expected.push_back({"Observation", "p1", true, false, 1, "same id, other type"});
  expected.push_back({"Observation", "p2", false});

  constexpr int kThreads = 4, kRounds = 10;
  std::atomic<int> wrong{0}, answered{0};
  std::vector<std::string> failures;
  std::mutex failures_mutex;
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      std::vector<std::promise<void>> all;
      all.reserve(expected.size() * kRounds);
      for (int round = 0; round < kRounds; ++round) {
        for (std::size_t k = 0; k < expected.size(); ++k) {
          const Expect& e = expected[(k + t * 7 + round) % expected.size()];
          auto& p = all.emplace_back();
          store->read_async(kDefaultTenant, e.type, e.id, [&, e, done = &p](fhir::Result<VersionRecord> v) {
            std::string why;
            if (!e.found) {
              if (v || v.error().kind != fhir::ErrorKind::kNotFound) why = "expected not found";
            } else if (!v) {
              why = "expected found, got " + v.error().issues[0].diagnostics;
            } else if (v->type != e.type || v->id != e.id || v->version != e.version || v->deleted != e.deleted ||
                       (!e.contains.empty() && v->body.find(e.contains) == std::string::npos)) {
              why = "got " + v->type + "/" + v->id + " version " + std::to_string(v->version) +
                    (v->deleted ? " (deleted)" : "") + ": " + v->body;
            }
            if (!why.empty()) {
              ++wrong;
              std::lock_guard lock(failures_mutex);
              if (failures.size() < 5) failures.push_back(e.type + "/" + e.id + ": " + why);
            }
            ++answered;
            done->set_value();
          });
        }
      }
      for (auto& p : all) p.get_future().wait();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(answered.load(), kThreads * kRounds * static_cast<int>(expected.size()));
  EXPECT_EQ(wrong.load(), 0) << (failures.empty() ? "" : failures[0]);
}

// Writes through two stores at once: system history, read through either, lists every version once, newest
// first by seq, with lastUpdated never decreasing along seq (one clock for the database), and each resource's
// versions gapless.
TEST_F(PostgresStoreTest, HistoryOfTwoStoresIsOneOrderedFeed) {
  auto a = open(), b = open();
  ASSERT_TRUE(a && b);
  constexpr int kThreads = 4, kWrites = 15;
  std::atomic<int> failures{0};
  on_two_stores(*a, *b, kThreads, [&](Repository& repo) {
    for (int i = 0; i < kWrites; ++i) {
      const std::string id = "p" + std::to_string(i % 5);  // the threads update the same five resources
      if (!repo.update(kDefaultTenant, "Patient", id, parse(R"({"resourceType":"Patient","id":")" + id + R"("})"),
                       std::nullopt))
        ++failures;
    }
  });
  EXPECT_EQ(failures.load(), 0);
  for (Store* s : {a.get(), b.get()}) {
    HistoryQuery q;
    q.count = 7;
    std::vector<VersionRecord> all;
    for (;;) {
      auto page = s->history(kDefaultTenant, q);
      ASSERT_TRUE(page.has_value());
      for (auto& e : page->entries) all.push_back(e);
      if (!page->next_before_seq) break;
      q.before_seq = page->next_before_seq;
    }
    ASSERT_EQ(all.size(), static_cast<std::size_t>(kThreads * kWrites));
    std::map<std::string, std::vector<std::int64_t>> versions;
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (i > 0) {
        EXPECT_LT(all[i].seq, all[i - 1].seq);
        EXPECT_LE(all[i].last_updated_ms, all[i - 1].last_updated_ms);
      }
      versions[all[i].id].push_back(all[i].version);
    }
    ASSERT_EQ(versions.size(), 5u);
    for (auto& [id, v] : versions) {
      // newest first, every version from the last one down to 1
      for (std::size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], static_cast<std::int64_t>(v.size() - i)) << id;
    }
    EXPECT_EQ(*s->history_total(kDefaultTenant, HistoryQuery{}), kThreads * kWrites);
  }
}

// New resources through two stores at once: each store's writer takes rid and seq from where the identity
// sequences stand when it holds store_clock, and moves them on before its commit, so no two resources share a rid
// and no two versions a seq, and the feed's order is the commit order.
TEST_F(PostgresStoreTest, TwoStoresCreatingAtOnceGiveEachResourceItsOwnRidAndSeq) {
  auto a = open(), b = open();
  ASSERT_TRUE(a && b);
  constexpr int kThreads = 4, kCreates = 25;
  std::mutex mutex;
  std::vector<std::string> errors;
  on_two_stores(*a, *b, kThreads, [&](Repository& repo) {
    for (int i = 0; i < kCreates; ++i) {
      auto created = repo.create(kDefaultTenant, "Patient", parse(R"({"resourceType":"Patient"})"));
      if (!created) {
        std::lock_guard lock(mutex);
        errors.push_back(created.error().issues[0].diagnostics);
      }
    }
  });
  EXPECT_TRUE(errors.empty()) << errors.size() << " failed, the first: " << errors.front();
  constexpr int kAll = kThreads * kCreates;
  EXPECT_EQ(db_->query("SELECT COUNT(DISTINCT rid) FROM resource").value_or("?"), std::to_string(kAll));
  EXPECT_EQ(db_->query("SELECT COUNT(DISTINCT seq) FROM resource_version").value_or("?"), std::to_string(kAll));
  // Every version is its resource's, and the feed reads back newest first, every one once.
  EXPECT_EQ(db_->query("SELECT COUNT(*) FROM resource_version v JOIN resource r ON r.rid = v.rid AND r.id = v.id")
                .value_or("?"),
            std::to_string(kAll));
  HistoryQuery q;
  q.count = 1000;
  auto page = a->history(kDefaultTenant, q);
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->entries.size(), static_cast<std::size_t>(kAll));
  for (std::size_t i = 1; i < page->entries.size(); ++i) {
    EXPECT_LT(page->entries[i].seq, page->entries[i - 1].seq);
    EXPECT_LE(page->entries[i].last_updated_ms, page->entries[i - 1].last_updated_ms);
  }
}

// The pool survives a server-side disconnect of its connections: the next request reconnects.
TEST_F(PostgresStoreTest, ConnectionsKilledByTheServerAreReopened) {
  auto store = open();
  ASSERT_TRUE(store);
  Repository repo(*store, *defs_, *checker_);
  ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", "k", parse(R"({"resourceType":"Patient","id":"k"})"), {}));
  auto killed = db_->query("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '" +
                           db_->name() + "' AND pid <> pg_backend_pid()");
  ASSERT_TRUE(killed.has_value()) << killed.error();
  EXPECT_EQ(*killed, "3");  // the writer and two readers
  // The first use of each dead connection may fail (503), then it is reopened.
  for (int i = 0; i < 3; ++i) (void)store->read(kDefaultTenant, "Patient", "k");
  auto read = store->read(kDefaultTenant, "Patient", "k");
  ASSERT_TRUE(read.has_value()) << read.error().issues[0].diagnostics;
  (void)repo.update(kDefaultTenant, "Patient", "k", parse(R"({"resourceType":"Patient","id":"k"})"), {});
  auto again = repo.update(kDefaultTenant, "Patient", "k", parse(R"({"resourceType":"Patient","id":"k"})"), {});
  ASSERT_TRUE(again.has_value()) << again.error().issues[0].diagnostics;
  EXPECT_EQ(store->read(kDefaultTenant, "Patient", "k")->version, again->record.version);
}

// The database goes away (a restart): reads, writes and ping answer kUnavailable at once (no hang), and the
// store recovers by itself when the database is back: the first read and the first write after it succeed.
// (A cluster of its own: the shared one must stay up for the other tests.)
TEST(PostgresRestartTest, ADatabaseThatGoesAwayIsUnavailableThenRecovers) {
  if (test::postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
  auto cluster = test::PgCluster::start();
  ASSERT_TRUE(cluster.has_value()) << cluster.error();
  auto defs = Definitions::load(conformance::r4_model_json());
  ASSERT_TRUE(defs.has_value());
  StructureChecker checker(**defs);
  auto store = open_store((*cluster)->url(), StoreOptions{.readers = 2});
  ASSERT_TRUE(store.has_value()) << store.error().issues[0].diagnostics;
  Repository repo(**store, **defs, checker);
  ASSERT_TRUE(repo.update(kDefaultTenant, "Patient", "r", parse(R"({"resourceType":"Patient","id":"r"})"), {}));
  ASSERT_TRUE((*store)->read(kDefaultTenant, "Patient", "r").has_value());

  auto stopped = (*cluster)->stop_server();
  ASSERT_TRUE(stopped.has_value()) << stopped.error();
  for (int i = 0; i < 3; ++i) {  // every pooled connection, whichever the pool hands out
    auto read = (*store)->read(kDefaultTenant, "Patient", "r");
    ASSERT_FALSE(read.has_value());
    EXPECT_EQ(read.error().kind, fhir::ErrorKind::kUnavailable) << read.error().issues[0].diagnostics;
  }
  auto ping = (*store)->ping();
  ASSERT_FALSE(ping.has_value());
  EXPECT_EQ(ping.error().kind, fhir::ErrorKind::kUnavailable);
  auto write = repo.update(kDefaultTenant, "Patient", "r", parse(R"({"resourceType":"Patient","id":"r"})"), {});
  ASSERT_FALSE(write.has_value());
  EXPECT_EQ(write.error().kind, fhir::ErrorKind::kUnavailable) << write.error().issues[0].diagnostics;

  auto started = (*cluster)->start_server();
  ASSERT_TRUE(started.has_value()) << started.error();
  auto again = repo.update(kDefaultTenant, "Patient", "r", parse(R"({"resourceType":"Patient","id":"r"})"), {});
  ASSERT_TRUE(again.has_value()) << again.error().issues[0].diagnostics;
  EXPECT_EQ(again->record.version, 2) << "the write refused while the database was away left nothing";
  for (int i = 0; i < 3; ++i) {
    auto read = (*store)->read(kDefaultTenant, "Patient", "r");
    ASSERT_TRUE(read.has_value()) << read.error().issues[0].diagnostics;
    EXPECT_EQ(read->version, 2);
  }
  EXPECT_TRUE((*store)->ping().has_value());
}

TEST(PostgresStoreUrlTest, AnUnreachableDatabaseIsUnavailable) {
  auto s = open_store("postgresql://postgres@/nowhere?host=/nonexistent-caduceus-dir&port=1");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().kind, fhir::ErrorKind::kUnavailable);
  EXPECT_NE(s.error().issues[0].diagnostics.find("cannot open the PostgreSQL database"), std::string::npos)
      << s.error().issues[0].diagnostics;
}

}  // namespace
}  // namespace caduceus::resources
