// Full-text search (_text, _content): the FHIR value turned into an FTS5 expression, and the text extracted
// from a resource.
#include "caduceus/resources/full_text.hpp"

#include <gtest/gtest.h>

#include "caduceus/conformance/embedded.hpp"

namespace caduceus::resources {
namespace {

namespace json = fhir::json;

std::string expr(std::string_view value) {
  auto e = fts5_match_expression(value);
  EXPECT_TRUE(e.has_value()) << value << ": " << (e ? "" : e.error().issues[0].diagnostics);
  return e ? *e : std::string();
}

TEST(FullTextQuery, TermsAreQuotedAndOperatorsKept) {
  EXPECT_EQ(expr("cancer"), "\"cancer\"");
  EXPECT_EQ(expr("cancer tumor"), "(\"cancer\" AND \"tumor\")");  // adjacent terms: AND
  EXPECT_EQ(expr("cancer AND tumor"), "(\"cancer\" AND \"tumor\")");
  EXPECT_EQ(expr("cancer OR tumor"), "(\"cancer\" OR \"tumor\")");
  EXPECT_EQ(expr("cancer NOT benign"), "(\"cancer\" NOT \"benign\")");
  EXPECT_EQ(expr("\"lung cancer\""), "\"lung cancer\"");
  // Precedence as FTS5's: NOT, then AND, then OR; parentheses group.
  EXPECT_EQ(expr("a b OR c"), "((\"a\" AND \"b\") OR \"c\")");
  EXPECT_EQ(expr("a (b OR c)"), "(\"a\" AND (\"b\" OR \"c\"))");
  EXPECT_EQ(expr("((a))"), "\"a\"");
  EXPECT_EQ(expr("a NOT b c"), "((\"a\" NOT \"b\") AND \"c\")");
  // Lower-case and/or/not are words.
  EXPECT_EQ(expr("salt and pepper"), "(\"salt\" AND \"and\" AND \"pepper\")");
}

TEST(FullTextQuery, UserTextIsNeverFts5Syntax) {
  // Everything FTS5 would read as syntax stays inside a quoted string.
  EXPECT_EQ(expr("narrative:cancer"), "\"narrative:cancer\"");
  EXPECT_EQ(expr("canc*"), "\"canc*\"");
  EXPECT_EQ(expr("NEAR"), "\"NEAR\"");
  EXPECT_EQ(expr("^start"), "\"^start\"");
  EXPECT_EQ(expr("a+b"), "\"a+b\"");
  EXPECT_EQ(expr("{narrative}"), "\"{narrative}\"");
  EXPECT_EQ(expr("it's"), "\"it's\"");
  EXPECT_EQ(expr("NEAR(a b)"), "(\"NEAR\" AND (\"a\" AND \"b\"))");
  // Control characters (a NUL would end FTS5's string) are blanks.
  EXPECT_EQ(expr(std::string_view("a\0b", 3)), "(\"a\" AND \"b\")");
  EXPECT_EQ(expr(std::string_view("\"a\0b\"", 5)), "\"a b\"");
}

TEST(FullTextQuery, MalformedValuesAreRefused) {
  for (std::string_view bad :
       {"", "   ", "OR", "AND cancer", "cancer OR", "NOT cancer", "cancer NOT", "cancer AND AND x", "\"unclosed",
        "(cancer", "cancer)", "()", "a\"b", "*", ":", "\"\"", "\"*\"", "a OR OR b", "(((((((((a)))))))))"}) {
    auto e = fts5_match_expression(bad);
    EXPECT_FALSE(e.has_value()) << "'" << bad << "' gave " << (e ? *e : "");
    if (!e) {
      EXPECT_EQ(e.error().kind, fhir::ErrorKind::kInvalid);
    }
  }
}

const Definitions& r4() {
  static const std::shared_ptr<const Definitions> defs = *Definitions::load(conformance::r4_model_json());
  return *defs;
}

TEST(FullTextExtraction, NarrativeWithoutMarkupAndTheTextOfStringElements) {
  auto v = json::parse(R"({"resourceType":"Patient","id":"p1",
      "meta":{"versionId":"7","lastUpdated":"2020-01-01T00:00:00Z","tag":[{"code":"vip","display":"Important"}]},
      "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p title=\"a>b\">H&#233;l&#xE8;ne</p><!-- hidden --><b>Fish</b>&amp;chips&nbsp;&unknown;</div>"},
      "active":true,"multipleBirthInteger":2,"birthDate":"1970-01-02",
      "_birthDate":{"extension":[{"url":"http://example.org/time","valueString":"early morning"}]},
      "name":[{"family":"Martin","given":["Hélène","Anne"]}],
      "identifier":[{"system":"urn:oid:1.2.3","value":"MRN-77"}],
      "maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M",
                                  "display":"Married"}],"text":"wed"},
      "managingOrganization":{"reference":"Organization/o","display":"Acme clinic"},
      "extension":[{"url":"http://example.org/eyes","valueString":"blue"},
                   {"url":"http://example.org/born","valueDateTime":"1970-01-02T03:04:05Z"}],
      "contained":[{"resourceType":"Organization","id":"o","name":"Acme",
                    "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Contained <i>story</i></div>"}}]})");
  ASSERT_TRUE(v.has_value());
  std::string narrative, content;
  extract_full_text(*v, r4(), narrative, content);
  EXPECT_EQ(narrative, "Hélène Fish &chips &unknown; ");
  // In the order of the JSON: only string and markdown values (Coding.display, CodeableConcept.text,
  // Identifier.value, Reference.display, an extension's valueString, a primitive's extension) and the contained
  // resource's narrative. Not the ids, codes, URIs, dates, booleans, numbers or Reference.reference.
  EXPECT_EQ(content,
            "Important early morning Martin Hélène Anne MRN-77 Married wed Acme clinic blue Acme Contained story ");
}

TEST(FullTextExtraction, ResourcesInsideResourcesAndMarkdown) {
  auto v = json::parse(R"({"resourceType":"Bundle","type":"collection","entry":[
      {"fullUrl":"urn:uuid:1","resource":{"resourceType":"CarePlan","status":"active","intent":"plan",
       "subject":{"reference":"Patient/p"},"description":"Walk **daily**",
       "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Inner</div>"}}}]})");
  ASSERT_TRUE(v.has_value());
  std::string narrative, content;
  extract_full_text(*v, r4(), narrative, content);
  EXPECT_EQ(narrative, "");
  EXPECT_EQ(content, "Walk **daily** Inner ");
}

TEST(FullTextExtraction, AnUnknownResourceTypeHasNoText) {
  auto v = json::parse(R"({"resourceType":"Nonsense","name":"x","text":{"div":"<div>y</div>"}})");
  ASSERT_TRUE(v.has_value());
  std::string narrative, content;
  extract_full_text(*v, r4(), narrative, content);
  EXPECT_EQ(narrative + content, "");
}

TEST(FullTextExtraction, XhtmlText) {
  std::string out;
  append_xhtml_text("a<br/>b &lt;c&gt; &#x1F600; &#0; &#xZZ; <a href='x\"y>'>link</a>", out);
  EXPECT_EQ(out, "a b <c> 😀   &#xZZ; link ");
}

}  // namespace
}  // namespace caduceus::resources
