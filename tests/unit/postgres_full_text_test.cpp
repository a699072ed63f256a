// Full text on PostgreSQL: the GIN index of idx_text serves the tsquery that _text and _content become.
#include <gtest/gtest.h>

#include "caduceus/resources/store/store.hpp"
#include "pg_cluster.hpp"

namespace caduceus::resources {
namespace {

TEST(PostgresFullTextTest, TheGinIndexServesTextAndContent) {
  if (test::postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
  auto db = test::PgDatabase::create();
  ASSERT_TRUE(db.has_value()) << db.error();
  {
    auto store = open_store((*db)->url(), StoreOptions{.readers = 1});  // (the migrations)
    ASSERT_TRUE(store.has_value()) << store.error().issues[0].diagnostics;
  }
  // 5,000 resources' text: a word of its own in each narrative, 100 words shared by 50 each in the content; the
  // tsvector as the writer makes it (narrative words of weight A, then the content's).
  ASSERT_TRUE(
      (*db)->query("INSERT INTO idx_text (rid, tenant, narrative, content, tsv) SELECT g, 0, 'note' || g, "
                   "'shared' || (g % 100) || ' text', ('''note' || g || ''':1A ''shared' || (g % 100) || "
                   "''':2 ''text'':3')::tsvector FROM generate_series(1, 5000) g RETURNING 1"))
      << "insert";
  // As autovacuum would: statistics, and the GIN indexes' pending lists (fastupdate) merged into them.
  ASSERT_TRUE((*db)->query("VACUUM ANALYZE idx_text"));
  ASSERT_TRUE(
      (*db)->query("CREATE FUNCTION plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS "
                   "$$ BEGIN RETURN QUERY EXECUTE 'EXPLAIN ' || q; END $$"));
  auto plan = [&](const std::string& sql) {
    auto p = (*db)->query("SELECT string_agg(p, E'\\n') FROM plan_of('" + sql + "') p");
    EXPECT_TRUE(p.has_value()) << (p ? "" : p.error());
    return p.value_or("");
  };
  // The subqueries as the dialect translation writes them (postgres_store.cpp to_postgres, pg_full_text.cpp).
  const std::string text = plan("SELECT rid FROM idx_text WHERE tsv @@ (''''''note42'''':A''::tsquery)");
  EXPECT_NE(text.find("idx_text_tsv"), std::string::npos) << text;
  const std::string content =
      plan("SELECT rid FROM idx_text WHERE tsv @@ (''''''shared7''''''::tsquery && !!''''''note7''''''::tsquery)");
  EXPECT_NE(content.find("idx_text_tsv"), std::string::npos) << content;
  // And they find what they should: note42 once in a narrative, shared7 in no narrative; shared7 in 50 rows, one
  // of which (rid 7) has note7.
  EXPECT_EQ((*db)->query("SELECT COUNT(*) FROM idx_text WHERE tsv @@ '''note42'':A'::tsquery").value_or("?"), "1");
  EXPECT_EQ((*db)->query("SELECT COUNT(*) FROM idx_text WHERE tsv @@ '''shared7'':A'::tsquery").value_or("?"), "0");
  EXPECT_EQ((*db)
                ->query("SELECT COUNT(*) FROM idx_text WHERE tsv @@ ('''shared7'''::tsquery && "
                        "!!'''note7'''::tsquery)")
                .value_or("?"),
            "49");
}

}  // namespace
}  // namespace caduceus::resources
