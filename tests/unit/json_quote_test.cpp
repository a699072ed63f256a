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

// The compact writer (runs copied whole, no Writer) writes what rapidjson's Writer writes: `reformat` sends the
// indented text through rapidjson's Reader and Writer. Strings of every length up to past two 16-byte blocks, each
// byte of 0x00-0x7F at every place, as keys and as values; numbers as written, empty containers, nesting.
TEST(WriteCompact, WritesWhatRapidjsonsWriterWrites) {
  for (int b = 0; b < 0x80; ++b) {
    for (std::size_t n : {0u, 1u, 15u, 16u, 17u, 33u}) {
      for (std::size_t at = 0; at <= n; at += (n < 4 ? 1 : n / 3)) {
        std::string text(n, 'k');
        text.insert(at, 1, static_cast<char>(b));
        Value v = Value::object();
        v.set(text, Value::string(text + "é東"));
        v.set("n", Value::number("-1.50e3"));
        Value list = Value::array();
        list.push_back(Value::string(text));
        list.push_back(Value::array());
        list.push_back(Value::object());
        list.push_back(Value::boolean(false));
        list.push_back(Value::null());
        v.set("list", std::move(list));
        const std::string compact = write(v);
        EXPECT_EQ(compact, reformat(write(v, true), false)) << "byte " << b << " at " << at << " of " << n;
        auto back = parse(compact);
        ASSERT_TRUE(back.has_value()) << compact;
        EXPECT_TRUE(*back == v) << compact;
      }
    }
  }
}

}  // namespace
}  // namespace caduceus::fhir::json
