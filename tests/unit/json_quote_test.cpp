// json::append_quoted: strings that need no escape are copied as they are; the others are escaped as JSON wants.
#include <gtest/gtest.h>

#include <string>

#include "caduceus/fhir/json.hpp"

namespace caduceus::fhir::json {
namespace {

std::string quote_after_x(std::string_view text) {
  std::string out = "x";  // appends to what is there
  append_quoted(out, text);
  return out;
}

TEST(AppendQuoted, CopiesPlainStringsAndEscapesTheRest) {
  EXPECT_EQ(quote_after_x(""), "x\"\"");
  EXPECT_EQ(quote_after_x("Patient/p-1.a"), "x\"Patient/p-1.a\"");
  EXPECT_EQ(quote_after_x("http://h/fhir/Observation?code=a%7Cb&x=1"), "x\"http://h/fhir/Observation?code=a%7Cb&x=1\"");
  EXPECT_EQ(quote_after_x("Müller ñ 東京"), "x\"Müller ñ 東京\"");  // UTF-8 kept as it is
  EXPECT_EQ(quote_after_x("a\"b"), "x\"a\\\"b\"");
  EXPECT_EQ(quote_after_x("a\\b"), "x\"a\\\\b\"");
  EXPECT_EQ(quote_after_x("line\nnext\ttab\r"), "x\"line\\nnext\\ttab\\r\"");
  EXPECT_EQ(quote_after_x(std::string("a\x01z", 3)), "x\"a\\u0001z\"");
  EXPECT_EQ(quote_after_x(std::string("\0", 1)), "x\"\\u0000\"");
  EXPECT_EQ(quote_after_x("\x7f"), "x\"\x7f\"");  // DEL is not escaped by JSON
  // Every byte, alone between two letters: escaped exactly when JSON requires it, and the result parses back.
  for (int b = 0; b < 0x80; ++b) {
    std::string text = std::string("a") + static_cast<char>(b) + "z";
    std::string out;
    append_quoted(out, text);
    const bool escaped = b < 0x20 || b == '"' || b == '\\';
    EXPECT_EQ(out.size() > text.size() + 2, escaped) << b;
    auto back = parse("{\"s\":" + out + "}");
    ASSERT_TRUE(back.has_value()) << b;
    ASSERT_NE(back->find("s"), nullptr);
    EXPECT_EQ(back->find("s")->text(), text) << b;
  }
}

}  // namespace
}  // namespace caduceus::fhir::json
