#include "caduceus/fhir/search_text.hpp"

#include <gtest/gtest.h>

namespace caduceus::fhir::search {
namespace {

TEST(SearchText, FoldsCaseAccentsAndWhiteSpace) {
  struct Case {
    std::string_view in, out;
  };
  const Case cases[] = {
      {"Élodie", "elodie"},
      {"  Élodie   MÜLLER ", "elodie muller"},
      {"Straße", "strasse"},
      {"Ångström", "angstrom"},
      {"ﬁnance", "finance"},    // a ligature decomposes (NFKD)
      {"Ｐｅｔｅｒ", "peter"},  // full-width letters
      {"Nguyễn", "nguyen"},
      {"Łukasz", "łukasz"},  // Ł has no decomposition: only its case folds
      {"张伟", "张伟"},
      {"o'brien-smith", "o'brien-smith"},
      {"tab\tand\nnewline", "tab and newline"},
      {"", ""},
  };
  for (const auto& c : cases) EXPECT_EQ(normalize_for_search(c.in), c.out) << c.in;
}

TEST(SearchText, InvalidUtf8DoesNotCrash) {
  std::string bad =
      "ab\xff\xfe"
      "cd";
  std::string out = normalize_for_search(bad);
  EXPECT_NE(out.find("ab"), std::string::npos);
  EXPECT_NE(out.find("cd"), std::string::npos);
}

}  // namespace
}  // namespace caduceus::fhir::search
