#include "caduceus/fhir/search_text.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

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

// normalize_for_search's way for ASCII gives what ICU gives: every ASCII character alone and between letters, and
// strings built from letters, digits, punctuation and every kind of ASCII white space.
TEST(SearchText, AsciiAgreesWithIcu) {
  std::vector<std::string> inputs;
  for (int c = 0; c < 0x80; ++c) {
    inputs.emplace_back(1, static_cast<char>(c));
    inputs.push_back(std::string("aB") + static_cast<char>(c) + "Cd");
    inputs.push_back(std::string(2, static_cast<char>(c)) + "x" + std::string(2, static_cast<char>(c)));
  }
  const std::string alphabet = "aZ9 \t\n\v\f\r.-'_|\x1c\x1f\x7f";
  std::uint32_t seed = 12345;
  for (int n = 0; n < 2000; ++n) {
    std::string s;
    for (int k = 0; k < 12; ++k) {
      seed = seed * 1103515245u + 12345u;
      s.push_back(alphabet[(seed >> 16) % alphabet.size()]);
    }
    inputs.push_back(s);
  }
  for (const std::string& in : inputs)
    EXPECT_EQ(normalize_for_search(in), detail::normalize_for_search_unicode(in)) << in;
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
