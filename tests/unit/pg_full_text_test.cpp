// The PostgreSQL side of full text: the folded text kept in idx_text, and FTS5 expressions (as
// fts5_match_expression writes them) as tsquery SQL over bound terms.
#include "../../resources/src/store/pg_full_text.hpp"

#include <gtest/gtest.h>

#include "caduceus/resources/full_text.hpp"

namespace caduceus::resources::pg {
namespace {

struct Converted {
  std::string sql;
  std::vector<std::string> terms;
};

Converted convert(std::string_view value, int first = 1) {
  auto fts5 = fts5_match_expression(value);
  EXPECT_TRUE(fts5.has_value()) << value;
  Converted c;
  auto sql = tsquery_sql(fts5.value_or(""), first, c.terms);
  EXPECT_TRUE(sql.has_value()) << value << " -> " << fts5.value_or("");
  c.sql = sql.value_or("");
  return c;
}

constexpr const char* P1 = "phraseto_tsquery('simple', $1::text)";
constexpr const char* P2 = "phraseto_tsquery('simple', $2::text)";
constexpr const char* P3 = "phraseto_tsquery('simple', $3::text)";

TEST(PgFullTextTest, TermsBecomeBoundPhrasesFoldedAsStringSearchFolds) {
  Converted one = convert("Hélène");
  EXPECT_EQ(one.sql, P1);
  EXPECT_EQ(one.terms, std::vector<std::string>{"helene"});
  Converted phrase = convert("\"Lung  CANCER\"", 4);
  EXPECT_EQ(phrase.sql, "phraseto_tsquery('simple', $4::text)");
  EXPECT_EQ(phrase.terms, std::vector<std::string>{"lung cancer"});
  // A quote inside a term is text, never syntax (FTS5 doubles it; the tsquery gets it bound).
  Converted quote = convert("it's");
  EXPECT_EQ(quote.terms, std::vector<std::string>{"it's"});
}

TEST(PgFullTextTest, OperatorsKeepFts5Precedence) {
  EXPECT_EQ(convert("lung cancer").sql, std::string("(") + P1 + " && " + P2 + ")");
  EXPECT_EQ(convert("cancer OR tumor").sql, std::string("(") + P1 + " || " + P2 + ")");
  EXPECT_EQ(convert("tumor NOT benign").sql, std::string("(") + P1 + " && !!" + P2 + ")");
  // NOT binds tighter than AND, AND tighter than OR.
  Converted c = convert("a OR b AND c NOT d");
  EXPECT_EQ(c.sql,
            std::string("(") + P1 + " || (" + P2 + " && (" + P3 + " && !!phraseto_tsquery('simple', $4::text))))");
  EXPECT_EQ(c.terms, (std::vector<std::string>{"a", "b", "c", "d"}));
  Converted grouped = convert("(cancer OR tumor) NOT benign");
  EXPECT_EQ(grouped.sql, std::string("((") + P1 + " || " + P2 + ") && !!" + P3 + ")");
  // Lower-case operators are words.
  EXPECT_EQ(convert("and").terms, std::vector<std::string>{"and"});
}

TEST(PgFullTextTest, WhatIsNotAnFts5ExpressionOfThatFormIsRefused) {
  std::vector<std::string> terms;
  for (const char* bad : {"", "cancer", "\"cancer", "(\"a\"", "\"a\" OR", "\"a\" \"b\"", "\"a\")"})
    EXPECT_FALSE(tsquery_sql(bad, 1, terms).has_value()) << bad;
}

TEST(PgFullTextTest, DocumentsAreFoldedAndCutUnderTheTsvectorLimit) {
  EXPECT_EQ(full_text_document("  Hélène   MÜLLER has a Lung cancer "), "helene muller has a lung cancer");
  std::string words;
  while (words.size() < 3 * kMaxFullTextBytes) words += "épée ";
  const std::string cut = full_text_document(words);
  EXPECT_LE(cut.size(), kMaxFullTextBytes);
  EXPECT_GT(cut.size(), kMaxFullTextBytes - 64);
  EXPECT_TRUE(cut.ends_with("epee")) << cut.substr(cut.size() - 10);  // whole words, whole characters
}

}  // namespace
}  // namespace caduceus::resources::pg
