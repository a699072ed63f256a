// JSON Patch (RFC 6902) over caduceus::fhir::json::Value; expected documents worked out by hand from the RFC.
#include "caduceus/fhir/json_patch.hpp"

#include <gtest/gtest.h>

#include <string>

namespace caduceus::fhir::json {
namespace {

Value parsed(std::string_view text) {
  auto v = parse(text);
  EXPECT_TRUE(v) << text;
  return v ? *v : Value();
}

// Applies patch to doc; returns the document written back compactly, or "error <status-ish kind>".
std::string patched(std::string_view doc, std::string_view patch) {
  Value d = parsed(doc);
  auto r = apply_patch(d, parsed(patch));
  if (!r) return r.error().kind == ErrorKind::kUnprocessable ? "unprocessable" : "invalid";
  return write(d);
}

TEST(JsonPatch, AddToObjectAndArray) {
  EXPECT_EQ(patched(R"({"foo":"bar"})", R"([{"op":"add","path":"/baz","value":"qux"}])"),
            R"({"foo":"bar","baz":"qux"})");
  EXPECT_EQ(patched(R"({"foo":["bar","baz"]})", R"([{"op":"add","path":"/foo/1","value":"qux"}])"),
            R"({"foo":["bar","qux","baz"]})");
  EXPECT_EQ(patched(R"({"foo":["bar"]})", R"([{"op":"add","path":"/foo/-","value":["abc","def"]}])"),
            R"({"foo":["bar",["abc","def"]]})");
  // Adding an existing member replaces it.
  EXPECT_EQ(patched(R"({"foo":1})", R"([{"op":"add","path":"/foo","value":2}])"), R"({"foo":2})");
  // The whole document.
  EXPECT_EQ(patched(R"({"foo":1})", R"([{"op":"add","path":"","value":[1]}])"), R"([1])");
  // Index past the end, parent missing, leading zero.
  EXPECT_EQ(patched(R"({"foo":["bar"]})", R"([{"op":"add","path":"/foo/2","value":1}])"), "unprocessable");
  EXPECT_EQ(patched(R"({"foo":1})", R"([{"op":"add","path":"/baz/bat","value":1}])"), "unprocessable");
  EXPECT_EQ(patched(R"({"foo":["a","b"]})", R"([{"op":"add","path":"/foo/01","value":1}])"), "unprocessable");
}

TEST(JsonPatch, RemoveReplaceMoveCopy) {
  EXPECT_EQ(patched(R"({"baz":"qux","foo":"bar"})", R"([{"op":"remove","path":"/baz"}])"), R"({"foo":"bar"})");
  EXPECT_EQ(patched(R"({"foo":["bar","qux","baz"]})", R"([{"op":"remove","path":"/foo/1"}])"),
            R"({"foo":["bar","baz"]})");
  EXPECT_EQ(patched(R"({"baz":"qux","foo":"bar"})", R"([{"op":"replace","path":"/baz","value":"boo"}])"),
            R"({"baz":"boo","foo":"bar"})");
  EXPECT_EQ(patched(R"({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}})",
                    R"([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}])"),
            R"({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}})");
  EXPECT_EQ(patched(R"({"foo":["all","grass","cows","eat"]})", R"([{"op":"move","from":"/foo/1","path":"/foo/3"}])"),
            R"({"foo":["all","cows","eat","grass"]})");
  EXPECT_EQ(patched(R"({"a":{"b":1}})", R"([{"op":"copy","from":"/a","path":"/c"}])"), R"({"a":{"b":1},"c":{"b":1}})");
  EXPECT_EQ(patched(R"({"a":{"b":1}})", R"([{"op":"move","from":"/a","path":"/a/b/c"}])"), "unprocessable");
  EXPECT_EQ(patched(R"({"a":1})", R"([{"op":"remove","path":"/b"}])"), "unprocessable");
  EXPECT_EQ(patched(R"({"a":1})", R"([{"op":"replace","path":"/b","value":2}])"), "unprocessable");
}

TEST(JsonPatch, PointerEscapes) {
  // RFC 6901: ~1 is '/', ~0 is '~' (and "~01" is "~1", not "/").
  EXPECT_EQ(patched(R"({"a/b":1,"m~n":2,"~1":3})", R"([{"op":"test","path":"/a~1b","value":1},)"
                                                   R"({"op":"test","path":"/m~0n","value":2},)"
                                                   R"({"op":"remove","path":"/~01"}])"),
            R"({"a/b":1,"m~n":2})");
  EXPECT_EQ(patched(R"({"a":1})", R"([{"op":"remove","path":"/a~2"}])"), "invalid");
  EXPECT_EQ(patched(R"({"a":1})", R"([{"op":"remove","path":"a"}])"), "invalid");
}

TEST(JsonPatch, TestComparesByValueAndIsAllOrNothing) {
  EXPECT_EQ(patched(R"({"n":1.0,"o":{"a":1,"b":[1,2]}})", R"([{"op":"test","path":"/n","value":1},)"
                                                          R"({"op":"test","path":"/o","value":{"b":[1,2],"a":1}}])"),
            R"({"n":1.0,"o":{"a":1,"b":[1,2]}})");
  EXPECT_EQ(patched(R"({"o":{"b":[1,2]}})", R"([{"op":"test","path":"/o/b","value":[2,1]}])"), "unprocessable");
  // The failed test leaves the earlier operations undone.
  Value doc = parsed(R"({"a":1})");
  auto r = apply_patch(doc, parsed(R"([{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":9}])"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().issues.at(0).expression, "/1");
  EXPECT_EQ(write(doc), R"({"a":1})");
}

TEST(JsonPatch, MalformedDocuments) {
  EXPECT_EQ(patched(R"({"a":1})", R"({"op":"remove","path":"/a"})"), "invalid");
  EXPECT_EQ(patched(R"({"a":1})", R"([{"path":"/a"}])"), "invalid");
  EXPECT_EQ(patched(R"({"a":1})", R"([{"op":"remove"}])"), "invalid");
  EXPECT_EQ(patched(R"({"a":1})", R"([{"op":"add","path":"/b"}])"), "invalid");
  EXPECT_EQ(patched(R"({"a":1})", R"([{"op":"move","path":"/b"}])"), "invalid");
  EXPECT_EQ(patched(R"({"a":1})", R"([{"op":"_get","path":"/a"}])"), "invalid");
}

}  // namespace
}  // namespace caduceus::fhir::json
