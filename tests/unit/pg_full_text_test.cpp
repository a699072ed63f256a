// The PostgreSQL side of full text: the folded text kept in idx_text, and FTS5 expressions (as
// fts5_match_expression writes them) as tsquery SQL over bound terms; the tsvector and tsquery literals the process
// makes of the words.
#include "../../resources/src/store/pg_full_text.hpp"

#include <gtest/gtest.h>

#include "caduceus/resources/full_text.hpp"

namespace caduceus::resources::pg {
namespace {

struct Converted {
  std::string sql;
  std::vector<std::string> terms;
};

Converted convert(std::string_view value, int first = 1, bool narrative_only = false) {
  auto fts5 = fts5_match_expression(value);
  EXPECT_TRUE(fts5.has_value()) << value;
  Converted c;
  auto sql = tsquery_sql(fts5.value_or(""), first, c.terms, narrative_only);
  EXPECT_TRUE(sql.has_value()) << value << " -> " << fts5.value_or("");
  c.sql = sql.value_or("");
  return c;
}

constexpr const char* P1 = "$1::tsquery";
constexpr const char* P2 = "$2::tsquery";
constexpr const char* P3 = "$3::tsquery";

TEST(PgFullTextTest, TermsBecomeBoundPhrasesFoldedAsStringSearchFolds) {
  Converted one = convert("Hélène");
  EXPECT_EQ(one.sql, P1);
  EXPECT_EQ(one.terms, std::vector<std::string>{"'helene'"});
  Converted phrase = convert("\"Lung  CANCER\"", 4);
  EXPECT_EQ(phrase.sql, "$4::tsquery");
  EXPECT_EQ(phrase.terms, std::vector<std::string>{"'lung' <-> 'cancer'"});
  // A quote inside a term is text, never syntax: it separates words, as in FTS5's unicode61.
  Converted quote = convert("it's");
  EXPECT_EQ(quote.terms, std::vector<std::string>{"'it' <-> 's'"});
  // _text: the narrative's words only (weight A).
  Converted text = convert("\"Lung cancer\" NOT benign", 1, true);
  EXPECT_EQ(text.sql, "($1::tsquery && !!$2::tsquery)");
  EXPECT_EQ(text.terms, (std::vector<std::string>{"'lung':A <-> 'cancer':A", "'benign':A"}));
  // A term without a word is an empty tsquery (which matches nothing).
  EXPECT_EQ(tsquery_literal("-- «»", false), "");
}

TEST(PgFullTextTest, OperatorsKeepFts5Precedence) {
  EXPECT_EQ(convert("lung cancer").sql, std::string("(") + P1 + " && " + P2 + ")");
  EXPECT_EQ(convert("cancer OR tumor").sql, std::string("(") + P1 + " || " + P2 + ")");
  EXPECT_EQ(convert("tumor NOT benign").sql, std::string("(") + P1 + " && !!" + P2 + ")");
  // NOT binds tighter than AND, AND tighter than OR.
  Converted c = convert("a OR b AND c NOT d");
  EXPECT_EQ(c.sql, std::string("(") + P1 + " || (" + P2 + " && (" + P3 + " && !!$4::tsquery)))");
  EXPECT_EQ(c.terms, (std::vector<std::string>{"'a'", "'b'", "'c'", "'d'"}));
  Converted grouped = convert("(cancer OR tumor) NOT benign");
  EXPECT_EQ(grouped.sql, std::string("((") + P1 + " || " + P2 + ") && !!" + P3 + ")");
  // Lower-case operators are words.
  EXPECT_EQ(convert("and").terms, std::vector<std::string>{"'and'"});
}

TEST(PgFullTextTest, WhatIsNotAnFts5ExpressionOfThatFormIsRefused) {
  std::vector<std::string> terms;
  for (const char* bad : {"", "cancer", "\"cancer", "(\"a\"", "\"a\" OR", "\"a\" \"b\"", "\"a\")"})
    EXPECT_FALSE(tsquery_sql(bad, 1, terms, false).has_value()) << bad;
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

// The tsvector: unicode61's words (letters, digits, combining marks; everything else separates, "3.5" and an e-mail
// too), numbered from the narrative (weight A) on into the content, each lexeme once with its positions.
TEST(PgFullTextTest, TsvectorLiteralNumbersTheNarrativeThenTheContent) {
  EXPECT_EQ(tsvector_literal("lung cancer", "cancer 3.5 mg, a.b@c.org"),
            "'3':4 '5':5 'a':7 'b':8 'c':9 'cancer':2A,3 'lung':1A 'mg':6 'org':10");
  EXPECT_EQ(tsvector_literal("", "épée  x"), "'x':2 'épée':1");  // (UTF-8 letters make words; bytewise order)
  EXPECT_EQ(tsvector_literal("", "—«»"), "");                    // (punctuation only: no word)
  // PostgreSQL's limits: a lexeme under 2 KB (longer words are left out), positions up to 16,383 (later words
  // share the last), at most 256 positions of a lexeme.
  std::string many;
  for (int i = 0; i < 16390; ++i) many += "w ";
  const std::string w = tsvector_literal(std::string(3000, 'x'), many);
  EXPECT_TRUE(w.starts_with("'w':1,2,3,")) << w.substr(0, 20);
  EXPECT_TRUE(w.ends_with(",255,256")) << w.substr(w.size() - 20);
  std::string late(16383 * 2, ' ');
  for (std::size_t i = 0; i < late.size(); i += 2) late[i] = 'a';
  EXPECT_TRUE(tsvector_literal("", late + " z y").ends_with("'y':16383 'z':16383"));
}

// tsvector_binary is the same tsvector in tsvectorrecv's form: read back (count, then per lexeme its text, NUL, its
// count of positions, each position with weight A in the top two bits; all big-endian), it spells tsvector_literal.
std::string literal_of_binary(std::string_view b) {
  std::size_t at = 0;
  auto u16 = [&] {
    const auto v =
        static_cast<unsigned>(static_cast<unsigned char>(b[at]) << 8 | static_cast<unsigned char>(b[at + 1]));
    at += 2;
    return v;
  };
  EXPECT_GE(b.size(), 4u);
  std::uint32_t count = 0;
  for (; at < 4; ++at) count = count << 8 | static_cast<unsigned char>(b[at]);
  std::string out;
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::size_t nul = b.find('\0', at);
    EXPECT_NE(nul, std::string_view::npos);
    if (nul == std::string_view::npos) return out + "(no NUL)";
    out += (out.empty() ? "'" : " '") + std::string(b.substr(at, nul - at)) + "'";
    at = nul + 1;
    const unsigned positions = u16();
    for (unsigned k = 0; k < positions; ++k) {
      const unsigned p = u16();
      out += (k ? "," : ":") + std::to_string(p & 0x3FFF) + ((p >> 14) == 3 ? "A" : (p >> 14) == 0 ? "" : "?");
    }
  }
  EXPECT_EQ(at, b.size());
  return out;
}

TEST(PgFullTextTest, TsvectorBinaryIsTheLiteralsTsvector) {
  const std::pair<std::string, std::string> texts[] = {
      {"lung cancer", "cancer 3.5 mg, a.b@c.org"}, {"", "épée  x"}, {"", "—«»"}, {"only narrative", ""}};
  for (const auto& [narrative, content] : texts)
    EXPECT_EQ(literal_of_binary(tsvector_binary(narrative, content)), tsvector_literal(narrative, content))
        << narrative << " / " << content;
  std::string many;
  for (int i = 0; i < 16390; ++i) many += "w ";
  EXPECT_EQ(literal_of_binary(tsvector_binary(std::string(3000, 'x'), many)),
            tsvector_literal(std::string(3000, 'x'), many));
  std::string late(16383 * 2, ' ');
  for (std::size_t i = 0; i < late.size(); i += 2) late[i] = 'a';
  EXPECT_EQ(literal_of_binary(tsvector_binary("b", late + " z y")), tsvector_literal("b", late + " z y"));
  EXPECT_EQ(tsvector_binary("", ""), std::string(4, '\0'));  // (no lexeme: a count of 0)
}

}  // namespace
}  // namespace caduceus::resources::pg
