// The PostgreSQL store writes the index rows of a commit group together, in one statement at the end of the group
// (see README "PostgreSQL": speed). These tests hold the writer with a first job until the others are queued, so
// that the others form one group, and check that the rows a group defers are there for every reader that needs
// them: a search inside the group, an update of a resource written earlier in it, the commit.
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/resources/search_index.hpp"
#include "caduceus/resources/search_parameters.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/store/store.hpp"
#include "pg_cluster.hpp"

namespace caduceus::resources {
namespace {

class PostgresIndexBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
    auto db = test::PgDatabase::create();
    ASSERT_TRUE(db.has_value()) << db.error();
    db_ = std::move(*db);
    auto defs = Definitions::load(conformance::r4_model_json());
    ASSERT_TRUE(defs.has_value());
    defs_ = *defs;
    auto registry = SearchParameterRegistry::load(conformance::r4_search_parameters_json());
    ASSERT_TRUE(registry.has_value());
    registry_ = std::move(*registry);
    auto s = open_store(db_->url(), StoreOptions{.readers = 2});
    ASSERT_TRUE(s.has_value()) << s.error().issues[0].diagnostics;
    store_ = std::move(*s);
  }

  // Runs the jobs as one commit group: a first job holds the writer until all of them are queued. Returns each
  // job's result.
  std::vector<fhir::Result<void>> run_group(std::vector<Store::Work> jobs) {
    std::promise<void> queued;
    std::shared_future<void> all_queued = queued.get_future().share();
    std::promise<fhir::Result<void>> holder;
    store_->write_async(
        [all_queued](Transaction&) -> fhir::Result<void> {
          all_queued.wait();
          return {};
        },
        [&](fhir::Result<void> r) { holder.set_value(std::move(r)); });
    std::vector<std::promise<fhir::Result<void>>> done(jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i)
      store_->write_async(std::move(jobs[i]), [&, i](fhir::Result<void> r) { done[i].set_value(std::move(r)); });
    queued.set_value();
    EXPECT_TRUE(holder.get_future().get().has_value());
    std::vector<fhir::Result<void>> out;
    for (auto& d : done) out.push_back(d.get_future().get());
    return out;
  }

  static VersionRecord record(std::string type, std::string id, std::int64_t version, std::int64_t at) {
    VersionRecord r;
    r.type = std::move(type);
    r.id = std::move(id);
    r.version = version;
    r.last_updated_ms = at;
    r.method = version == 1 ? Method::kCreate : Method::kUpdate;
    r.body = R"({"resourceType":")" + r.type + R"(","id":")" + r.id + R"("})";
    return r;
  }

  // A Patient's index rows: one identifier.
  static IndexValues mrn(const std::string& value) {
    IndexValues v;
    v.tokens.push_back(TokenIndex{"identifier", std::string("urn:mrn"), value, ""});
    return v;
  }

  SearchQuery by_mrn(const std::string& value) {
    auto q = parse_search("Patient", {{"identifier", "urn:mrn|" + value}}, *registry_, *defs_);
    EXPECT_TRUE(q.has_value());
    return q ? *q : SearchQuery{};
  }

  std::string query(const std::string& sql) { return db_->query(sql).value_or("(error)"); }

  std::unique_ptr<test::PgDatabase> db_;
  std::shared_ptr<const Definitions> defs_;
  std::shared_ptr<const SearchParameterRegistry> registry_;
  std::unique_ptr<Store> store_;
};

// One group: p1 created; a search for p1's identifier from a later job of the group finds it (its rows, still
// waiting, are written first), then p1 is updated to another identifier; p2 created and updated by two jobs with
// nothing in between (the update deletes the rows of the first version, which must be written before); an
// Observation of p1 with a code gets its idx_patient_token row (made in the process, not by SQL after the rows).
// After the commit: each Patient has the identifier of its last version only.
TEST_F(PostgresIndexBatchTest, AGroupSeesItsOwnIndexRowsAndReplacesThem) {
  std::vector<std::pair<std::string, std::string>> found;
  std::vector<Store::Work> jobs;
  jobs.push_back([&](Transaction& txn) -> fhir::Result<void> {
    IndexValues v = mrn("1");
    auto seq = txn.append(kDefaultTenant, record("Patient", "p1", 1, 1000), &v);
    if (!seq) return std::unexpected(seq.error());
    return {};
  });
  jobs.push_back([&](Transaction& txn) -> fhir::Result<void> {
    auto ids = txn.search_ids(kDefaultTenant, by_mrn("1"), 10);
    if (!ids) return std::unexpected(ids.error());
    found = *ids;
    IndexValues v = mrn("2");
    auto seq = txn.append(kDefaultTenant, record("Patient", "p1", 2, 1001), &v);
    if (!seq) return std::unexpected(seq.error());
    return {};
  });
  jobs.push_back([&](Transaction& txn) -> fhir::Result<void> {
    IndexValues v = mrn("3");
    auto seq = txn.append(kDefaultTenant, record("Patient", "p2", 1, 1002), &v);
    if (!seq) return std::unexpected(seq.error());
    return {};
  });
  jobs.push_back([&](Transaction& txn) -> fhir::Result<void> {
    IndexValues v = mrn("4");
    auto seq = txn.append(kDefaultTenant, record("Patient", "p2", 2, 1003), &v);
    if (!seq) return std::unexpected(seq.error());
    return {};
  });
  jobs.push_back([&](Transaction& txn) -> fhir::Result<void> {
    IndexValues v;
    v.references.push_back(ReferenceIndex{"patient", "Patient", "p1", "", "", "", ""});
    v.references.push_back(ReferenceIndex{"subject", "Patient", "p1", "", "", "", ""});
    v.tokens.push_back(TokenIndex{"code", std::string("http://loinc.org"), "1234-5", "pulse"});
    v.tokens.push_back(TokenIndex{"code", std::string("http://loinc.org"), "1234-5", "pulse"});  // (twice)
    v.tokens.push_back(TokenIndex{"identifier", std::string("urn:obs"), "o-1", ""});             // (not by patient)
    v.tokens.push_back(TokenIndex{"_tag", std::string("urn:tag"), "t", ""});                     // (not by patient)
    v.narrative = "Pulse";
    auto seq = txn.append(kDefaultTenant, record("Observation", "o1", 1, 1004), &v);
    if (!seq) return std::unexpected(seq.error());
    return {};
  });
  auto results = run_group(std::move(jobs));
  for (std::size_t i = 0; i < results.size(); ++i)
    ASSERT_TRUE(results[i].has_value()) << i << ": " << results[i].error().issues[0].diagnostics;

  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0], (std::pair<std::string, std::string>("Patient", "p1")));
  EXPECT_EQ(query("SELECT string_agg(r.id || '=' || t.code, ',' ORDER BY r.id) FROM idx_token t "
                  "JOIN resource r ON r.rid = t.rid WHERE t.param = 'identifier' AND r.type = 'Patient'"),
            "p1=2,p2=4");
  EXPECT_EQ(query("SELECT string_agg(target_type || '/' || target_id || ' ' || type || '.' || param || '=' || "
                  "system || '|' || code, ',') FROM idx_patient_token"),
            "Patient/p1 Observation.code=http://loinc.org|1234-5");
  EXPECT_EQ(query("SELECT COUNT(*) FROM idx_token t JOIN resource r ON r.rid = t.rid WHERE r.id = 'o1'"), "3");
  EXPECT_EQ(query("SELECT narrative FROM idx_text t JOIN resource r ON r.rid = t.rid WHERE r.id = 'o1'"), "pulse");
  // And search reads them as any search would.
  SearchQuery q = by_mrn("4");
  q.count = 10;
  auto page = store_->search(kDefaultTenant, q);
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->entries[0].id, "p2");
  EXPECT_EQ(page->entries[0].version, 2);
  EXPECT_TRUE(store_
                  ->search(kDefaultTenant,
                           [&] {
                             SearchQuery old = by_mrn("3");
                             old.count = 10;
                             return old;
                           }())
                  ->entries.empty());
}

// A new resource's row and version wait with its index rows for the end of the group too (they go in the same
// statement): a later job of the group that reads the resource finds it, and updates it. The seqs each append gave
// are the versions' seqs in the table, in job order, and both identity sequences stand past what the group took
// (a writer that draws from them next, as an older server would, gets a new value).
TEST_F(PostgresIndexBatchTest, ANewResourceWaitsForTheGroupYetItsJobsReadIt) {
  std::vector<std::int64_t> seqs;
  std::optional<CurrentInfo> seen;
  std::optional<VersionRecord> seen_record;
  auto append = [&](Transaction& txn, VersionRecord r, const std::string& value) -> fhir::Result<void> {
    IndexValues v = mrn(value);
    auto seq = txn.append(kDefaultTenant, r, &v);
    if (!seq) return std::unexpected(seq.error());
    seqs.push_back(*seq);
    return {};
  };
  std::vector<Store::Work> jobs;
  jobs.push_back([&](Transaction& txn) { return append(txn, record("Patient", "n1", 1, 3000), "21"); });
  jobs.push_back([&](Transaction& txn) { return append(txn, record("Patient", "n2", 1, 3001), "22"); });
  jobs.push_back([&](Transaction& txn) -> fhir::Result<void> {
    auto cur = txn.current(kDefaultTenant, "Patient", "n1");
    if (!cur) return std::unexpected(cur.error());
    seen = *cur;
    auto rec = txn.current_record(kDefaultTenant, "Patient", "n2");
    if (!rec) return std::unexpected(rec.error());
    seen_record = *rec;
    return append(txn, record("Patient", "n1", 2, 3002), "23");
  });
  jobs.push_back([&](Transaction& txn) { return append(txn, record("Patient", "n3", 1, 3003), "24"); });
  auto results = run_group(std::move(jobs));
  for (std::size_t i = 0; i < results.size(); ++i)
    ASSERT_TRUE(results[i].has_value()) << i << ": " << results[i].error().issues[0].diagnostics;
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->version, 1);
  ASSERT_TRUE(seen_record.has_value());
  EXPECT_EQ(seen_record->version, 1);
  EXPECT_EQ(seen_record->body, R"({"resourceType":"Patient","id":"n2"})");
  ASSERT_EQ(seqs.size(), 4u);
  std::string expected;
  for (std::int64_t s : seqs) expected += (expected.empty() ? "" : ",") + std::to_string(s);
  EXPECT_EQ(query("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM resource_version"), expected);
  EXPECT_EQ(query("SELECT string_agg(id || ':' || version, ',' ORDER BY seq) FROM resource_version"),
            "n1:1,n2:1,n1:2,n3:1");
  EXPECT_EQ(query("SELECT string_agg(r.id || '=' || t.code, ',' ORDER BY r.id) FROM idx_token t "
                  "JOIN resource r ON r.rid = t.rid WHERE t.param = 'identifier'"),
            "n1=23,n2=22,n3=24");
  EXPECT_EQ(query("SELECT nextval(pg_get_serial_sequence('resource_version', 'seq')) > MAX(seq) FROM "
                  "resource_version"),
            "t");
  EXPECT_EQ(query("SELECT nextval(pg_get_serial_sequence('resource', 'rid')) > MAX(rid) FROM resource"), "t");
}

// A group with a failing job runs again, each job in a savepoint: the rows of the failed job are not written, the
// others' are.
TEST_F(PostgresIndexBatchTest, TheRowsOfAFailedJobAreNotWritten) {
  std::vector<Store::Work> jobs;
  jobs.push_back([&](Transaction& txn) -> fhir::Result<void> {
    IndexValues v = mrn("10");
    auto seq = txn.append(kDefaultTenant, record("Patient", "a", 1, 2000), &v);
    if (!seq) return std::unexpected(seq.error());
    return {};
  });
  jobs.push_back([&](Transaction& txn) -> fhir::Result<void> {
    IndexValues v = mrn("11");
    auto seq = txn.append(kDefaultTenant, record("Patient", "b", 1, 2001), &v);
    if (!seq) return std::unexpected(seq.error());
    return fhir::fail(fhir::ErrorKind::kConflict, "conflict", "fails after its append");
  });
  jobs.push_back([&](Transaction& txn) -> fhir::Result<void> {
    IndexValues v = mrn("12");
    auto seq = txn.append(kDefaultTenant, record("Patient", "c", 1, 2002), &v);
    if (!seq) return std::unexpected(seq.error());
    return {};
  });
  auto results = run_group(std::move(jobs));
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].has_value());
  ASSERT_FALSE(results[1].has_value());
  EXPECT_EQ(results[1].error().kind, fhir::ErrorKind::kConflict);
  EXPECT_TRUE(results[2].has_value());
  EXPECT_EQ(query("SELECT string_agg(code, ',' ORDER BY code) FROM idx_token WHERE param = 'identifier'"), "10,12");
  EXPECT_EQ(query("SELECT string_agg(id, ',' ORDER BY id) FROM resource"), "a,c");
}

// A job with many new resources has its rows sent ahead while the next jobs run (run_jobs). When that statement
// fails (here: a "new" resource that exists), the next statement of the group reports it, the group runs again job
// by job, and only the failing job fails: the others' resources are all written, none of its own.
TEST_F(PostgresIndexBatchTest, RowsSentAheadThatFailFailOnlyTheirJob) {
  auto first = run_group({[&](Transaction& txn) -> fhir::Result<void> {
    IndexValues v = mrn("dup");
    auto seq = txn.append(kDefaultTenant, record("Patient", "taken", 1, 4000), &v);
    if (!seq) return std::unexpected(seq.error());
    return {};
  }});
  ASSERT_TRUE(first[0].has_value()) << first[0].error().issues[0].diagnostics;
  auto many = [&](const std::string& prefix, bool with_taken) {
    return [&, prefix, with_taken](Transaction& txn) -> fhir::Result<void> {
      for (int i = 0; i < 100; ++i) {
        IndexValues v = mrn(prefix + std::to_string(i));
        auto seq = txn.append(kDefaultTenant, record("Patient", prefix + std::to_string(i), 1, 4001), &v);
        if (!seq) return std::unexpected(seq.error());
      }
      if (!with_taken) return {};
      IndexValues v = mrn("again");  // (version 1 of a resource that has one)
      auto seq = txn.append(kDefaultTenant, record("Patient", "taken", 1, 4002), &v);
      if (!seq) return std::unexpected(seq.error());
      return {};
    };
  };
  auto results = run_group({many("a", true), many("b", false), many("c", false)});
  ASSERT_EQ(results.size(), 3u);
  EXPECT_FALSE(results[0].has_value());
  EXPECT_TRUE(results[1].has_value()) << results[1].error().issues[0].diagnostics;
  EXPECT_TRUE(results[2].has_value()) << results[2].error().issues[0].diagnostics;
  EXPECT_EQ(query("SELECT COUNT(*) FROM resource WHERE id LIKE 'a%'"), "0");
  EXPECT_EQ(query("SELECT COUNT(*) FROM resource WHERE id LIKE 'b%' OR id LIKE 'c%'"), "200");
  EXPECT_EQ(query("SELECT COUNT(*) FROM idx_token WHERE param = 'identifier'"), "201");  // (b, c and taken's)
  EXPECT_EQ(query("SELECT code FROM idx_token t JOIN resource r ON r.rid = t.rid WHERE r.id = 'taken'"), "dup");

  // The same, and the next job fails by itself before any statement: the group's ROLLBACK is the first statement
  // after the rows sent ahead, and must run whatever became of them (else the connection stays in the aborted
  // transaction and every job of the group fails).
  auto second = run_group({many("d", true),
                           [](Transaction&) -> fhir::Result<void> {
                             return fhir::fail(fhir::ErrorKind::kConflict, "conflict", "fails by itself");
                           },
                           many("e", false)});
  ASSERT_EQ(second.size(), 3u);
  EXPECT_FALSE(second[0].has_value());
  ASSERT_FALSE(second[1].has_value());
  EXPECT_EQ(second[1].error().kind, fhir::ErrorKind::kConflict);
  EXPECT_TRUE(second[2].has_value()) << second[2].error().issues[0].diagnostics;
  EXPECT_EQ(query("SELECT COUNT(*) FROM resource WHERE id LIKE 'd%'"), "0");
  EXPECT_EQ(query("SELECT COUNT(*) FROM resource WHERE id LIKE 'e%'"), "100");
}

// A group of one job whose rows cannot even be sent ahead (the connection is gone: here the job's own backend is
// terminated before it returns, so preparing the statement fails): the job is answered with that failure, not as
// written, and nothing of it is stored.
TEST_F(PostgresIndexBatchTest, AJobWhoseRowsCannotBeSentAheadIsNotAnsweredAsWritten) {
  std::promise<fhir::Result<void>> done;
  store_->write_async(
      [&](Transaction& txn) -> fhir::Result<void> {
        for (int i = 0; i < 100; ++i) {
          IndexValues v = mrn("g" + std::to_string(i));
          auto seq = txn.append(kDefaultTenant, record("Patient", "g" + std::to_string(i), 1, 5000), &v);
          if (!seq) return std::unexpected(seq.error());
        }
        // (The writer's connection is the one idle inside a transaction; until its backend is gone.)
        const std::string writer =
            "FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'";
        if (query("SELECT COUNT(pg_terminate_backend(pid)) " + writer) != "1")
          return fhir::fail(fhir::ErrorKind::kInternal, "exception", "the writer's backend is not found");
        while (query("SELECT COUNT(*) " + writer) != "0") std::this_thread::yield();
        return {};
      },
      [&](fhir::Result<void> r) { done.set_value(std::move(r)); });
  auto result = done.get_future().get();
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().kind, fhir::ErrorKind::kUnavailable);
  EXPECT_EQ(query("SELECT COUNT(*) FROM resource WHERE id LIKE 'g%'"), "0");
}

}  // namespace
}  // namespace caduceus::resources
