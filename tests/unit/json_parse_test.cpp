#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caduceus/fhir/json.hpp"

namespace caduceus::fhir::json {
namespace {

std::string diagnostics(const Result<Value>& r) {
  return r ? std::string() : r.error().issues[0].diagnostics;
}

// Nested arrays and objects come out whole, members and items in their order, and write back as they came.
TEST(JsonParse, NestedContainersKeepTheirOrderAndWriteBackTheSame) {
  const std::string text =
      R"({"resourceType":"Bundle","entry":[{"resource":{"a":[1,[2,{"b":null}],[]],"c":{}}},{"x":"y"},[]],)"
      R"("z":true,"n":-1.50e3})";
  auto v = parse(text);
  ASSERT_TRUE(v.has_value()) << diagnostics(v);
  ASSERT_EQ(v->members().size(), 4u);
  EXPECT_EQ(v->members()[0].first, "resourceType");
  EXPECT_EQ(v->members()[1].first, "entry");
  EXPECT_EQ(v->members()[3].first, "n");
  const Value& entry = v->members()[1].second;
  ASSERT_EQ(entry.items().size(), 3u);
  const Value* a = entry.items()[0].find("resource")->find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items().size(), 3u);
  EXPECT_EQ(a->items()[1].items()[1].find("b")->kind(), Value::Kind::kNull);
  EXPECT_TRUE(a->items()[2].items().empty());
  EXPECT_TRUE(entry.items()[2].is_array());
  EXPECT_EQ(write(*v), text);
}

// The text must be UTF-8: every malformed sequence is refused at its first byte, and every well-formed one (1 to 4
// bytes, up to U+10FFFF) kept as it is.
TEST(JsonParse, OnlyWellFormedUtf8IsAccepted) {
  const std::string good =
      "\"a\u00e9\xC3\xA9\xE2\x82\xAC\xED\x9F\xBF\xEE\x80\x80\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"
      "0123456789\"";
  auto v = parse(good);
  ASSERT_TRUE(v.has_value()) << diagnostics(v);
  EXPECT_EQ(v->text(),
            "a\xC3\xA9\xC3\xA9\xE2\x82\xAC\xED\x9F\xBF\xEE\x80\x80\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"
            "0123456789");
  const std::pair<std::string, std::size_t> bad[] = {
      {"\"abcdefghij\x80\"", 11},         // a continuation byte alone (after eight ASCII bytes)
      {"\"\xC0\x80\"", 1},                // overlong NUL
      {"\"\xC1\xBF\"", 1},                // overlong
      {"\"\xE0\x9F\xBF\"", 1},            // overlong three-byte form
      {"\"\xED\xA0\x80\"", 1},            // a surrogate (U+D800)
      {"\"\xF0\x8F\xBF\xBF\"", 1},        // overlong four-byte form
      {"\"\xF4\x90\x80\x80\"", 1},        // past U+10FFFF
      {"\"\xF5\x80\x80\x80\"", 1},        // no such lead byte
      {"\"x\xE2\x82\"", 2},               // cut short
      {"\"x\xE2\x82", 2},                 // cut short at the end of the text
      {"\"\xC3\xC3\"", 1},                // a lead byte where a continuation must be
      {"{\"k\":\"ok\",\"\xFF\":1}", 11},  // in a key
  };
  for (const auto& [text, at] : bad) {
    auto r = parse(text);
    ASSERT_FALSE(r.has_value()) << "accepted: " << text;
    EXPECT_NE(diagnostics(r).find("not UTF-8 (at byte " + std::to_string(at) + ")"), std::string::npos)
        << diagnostics(r);
  }
}

// A key repeated in one object is refused, however deep and however many members come between; the same key in
// an object and in an object inside it is not a repetition.
TEST(JsonParse, AKeyRepeatedInOneObjectIsRefusedAndOnlyThere) {
  auto nested_same_key = parse(R"({"a":{"a":{"a":1}},"b":[{"a":2},{"a":3}]})");
  EXPECT_TRUE(nested_same_key.has_value()) << diagnostics(nested_same_key);

  auto after_a_child = parse(R"({"a":1,"b":{"a":2,"c":3},"a":4})");
  ASSERT_FALSE(after_a_child.has_value());
  EXPECT_NE(diagnostics(after_a_child).find("duplicate property 'a'"), std::string::npos) << diagnostics(after_a_child);

  auto inner = parse(R"({"x":[{"k":1,"k":2}]})");
  ASSERT_FALSE(inner.has_value());
  EXPECT_NE(diagnostics(inner).find("duplicate property 'k'"), std::string::npos);

  // Past 16 members the check uses a set: the same answers.
  std::string many = "{";
  for (int i = 0; i < 40; ++i) many += "\"m" + std::to_string(i) + "\":{\"m0\":" + std::to_string(i) + "},";
  auto distinct = parse(many.substr(0, many.size() - 1) + "}");
  ASSERT_TRUE(distinct.has_value()) << diagnostics(distinct);
  EXPECT_EQ(distinct->members().size(), 40u);
  EXPECT_EQ(distinct->members()[39].first, "m39");
  auto repeated = parse(many + "\"m17\":0}");
  ASSERT_FALSE(repeated.has_value());
  EXPECT_NE(diagnostics(repeated).find("duplicate property 'm17'"), std::string::npos);

  ParseOptions lenient;
  lenient.reject_duplicate_keys = false;
  auto kept = parse(R"({"a":1,"a":2})", lenient);
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->members().size(), 2u);
}

TEST(JsonParse, DocumentsDeeperThanTheLimitAreRefused) {
  ParseOptions options;
  options.max_depth = 4;
  EXPECT_TRUE(parse(R"([[[{"a":1}]]])", options).has_value());
  auto deep = parse(R"([[[[{"a":1}]]]])", options);
  ASSERT_FALSE(deep.has_value());
  EXPECT_NE(diagnostics(deep).find("deeper than 4"), std::string::npos) << diagnostics(deep);
}

// White space is skipped sixteen bytes at a time where there are that many: runs of every length up to and past
// two blocks, of each kind, before and after every token, and at the end of the text.
TEST(JsonParse, WhiteSpaceRunsOfEveryLengthAreSkipped) {
  const std::string kinds = " \n\r\t";
  for (std::size_t n = 0; n <= 40; ++n) {
    std::string ws;
    for (std::size_t i = 0; i < n; ++i) ws.push_back(kinds[(i * 7 + n) % kinds.size()]);
    const std::string text = ws + "{" + ws + "\"a\"" + ws + ":" + ws + "[" + ws + "1" + ws + "," + ws + "\"x\"" + ws +
                             "]" + ws + "," + ws + "\"b\"" + ws + ":" + ws + "true" + ws + "}" + ws;
    auto v = parse(text);
    ASSERT_TRUE(v.has_value()) << "run of " << n << ": " << diagnostics(v);
    EXPECT_EQ(write(*v), R"({"a":[1,"x"],"b":true})") << "run of " << n;
    // Anything but white space after the value is still refused, wherever the run ends.
    auto trailing = parse(text + "x");
    ASSERT_FALSE(trailing.has_value()) << "run of " << n;
    EXPECT_NE(diagnostics(trailing).find("at byte " + std::to_string(text.size())), std::string::npos)
        << diagnostics(trailing);
  }
}

// Strings are copied sixteen bytes at a time up to their end or first escape: every length, with an escape (or a
// multi-byte character) at every place, comes out exactly; a control character anywhere is refused, and so is a
// string the text ends in (the text in a buffer of its own size: nothing past it is read).
TEST(JsonParse, StringsOfEveryLengthWithEscapesAnywhereComeOutExactly) {
  const std::vector<std::pair<std::string, std::string>> escapes = {
      {"\\\"", "\""}, {"\\\\", "\\"}, {"\\n", "\n"}, {"\\u00e9", "\u00e9"}, {"\u00e9", "\u00e9"}, {"\\/", "/"}};
  for (std::size_t n = 0; n <= 40; ++n) {
    std::string plain;
    for (std::size_t i = 0; i < n; ++i) plain.push_back(static_cast<char>('a' + i % 26));
    auto v = parse("[\"" + plain + "\"]");
    ASSERT_TRUE(v.has_value()) << diagnostics(v);
    EXPECT_EQ(v->items()[0].text(), plain);
    for (std::size_t at = 0; at <= n; ++at) {
      for (const auto& [written, meant] : escapes) {
        const std::string text = "{\"" + plain.substr(0, at) + written + plain.substr(at) + "\":\"" + plain.substr(at) +
                                 written + plain.substr(0, at) + "\"}";
        auto e = parse(text);
        ASSERT_TRUE(e.has_value()) << text << ": " << diagnostics(e);
        EXPECT_EQ(e->members()[0].first, plain.substr(0, at) + meant + plain.substr(at)) << text;
        EXPECT_EQ(e->members()[0].second.text(), plain.substr(at) + meant + plain.substr(0, at)) << text;
      }
      std::string control = "[\"" + plain + "\"]";
      control[2 + at] = '\x01';
      auto c = parse(control);
      ASSERT_FALSE(c.has_value()) << "control character at " << at << " of " << n;
    }
    const std::string cut = "[\"" + plain;
    std::unique_ptr<char[]> exact(new char[cut.size()]);
    std::memcpy(exact.get(), cut.data(), cut.size());
    auto unterminated = parse(std::string_view(exact.get(), cut.size()));
    ASSERT_FALSE(unterminated.has_value()) << "unterminated string of " << n;
  }
}

}  // namespace
}  // namespace caduceus::fhir::json
