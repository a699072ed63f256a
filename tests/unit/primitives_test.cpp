#include "caduceus/fhir/primitives.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace caduceus::fhir {
namespace {

using json::Value;

struct Case {
  Primitive type;
  Value value;
  bool valid;
};

std::string describe(const Case& c) {
  std::string out(primitive_name(c.type));
  out += " ";
  switch (c.value.kind()) {
    case Value::Kind::kString: out += "\"" + c.value.text() + "\""; break;
    case Value::Kind::kNumber: out += c.value.text(); break;
    case Value::Kind::kBool: out += c.value.as_bool() ? "true" : "false"; break;
    default: out += "(non-scalar)"; break;
  }
  return out + (c.valid ? " should be valid" : " should be invalid");
}

Value s(std::string text) {
  return Value::string(std::move(text));
}
Value n(std::string literal) {
  return Value::number(std::move(literal));
}

const std::vector<Case>& cases() {
  using P = Primitive;
  static const std::vector<Case> kCases = {
      // boolean: JSON true/false only.
      {P::kBoolean, Value::boolean(true), true},
      {P::kBoolean, Value::boolean(false), true},
      {P::kBoolean, s("true"), false},
      {P::kBoolean, n("1"), false},
      {P::kBoolean, Value::null(), false},

      // integer: JSON number, 32-bit signed, no fraction or exponent.
      {P::kInteger, n("0"), true},
      {P::kInteger, n("-0"), true},
      {P::kInteger, n("42"), true},
      {P::kInteger, n("-2147483648"), true},
      {P::kInteger, n("2147483647"), true},
      {P::kInteger, n("2147483648"), false},
      {P::kInteger, n("-2147483649"), false},
      {P::kInteger, n("99999999999999999999999"), false},
      {P::kInteger, n("1.0"), false},
      {P::kInteger, n("1e3"), false},
      {P::kInteger, s("5"), false},
      {P::kInteger, Value::boolean(true), false},

      // unsignedInt and positiveInt.
      {P::kUnsignedInt, n("0"), true},
      {P::kUnsignedInt, n("2147483647"), true},
      {P::kUnsignedInt, n("-1"), false},
      {P::kUnsignedInt, n("2147483648"), false},
      {P::kPositiveInt, n("1"), true},
      {P::kPositiveInt, n("0"), false},
      {P::kPositiveInt, n("-5"), false},
      {P::kPositiveInt, s("1"), false},

      // decimal: any JSON number literal, exponents included.
      {P::kDecimal, n("0"), true},
      {P::kDecimal, n("1.50"), true},
      {P::kDecimal, n("-0.001"), true},
      {P::kDecimal, n("1e3"), true},
      {P::kDecimal, n("1.5E-10"), true},
      {P::kDecimal, n("123456789012345678901234567890.123"), true},
      {P::kDecimal, s("1.50"), false},
      {P::kDecimal, Value::boolean(false), false},

      // string and markdown: a non-empty JSON string, no control characters but tab, CR, LF.
      {P::kString, s("hello"), true},
      {P::kString, s("two\nlines\twith tab"), true},
      {P::kString, s(" "), true},
      {P::kString, s(""), false},
      {P::kString, s("bell\x07"), false},
      {P::kString, n("5"), false},
      {P::kString, s(std::string(1024 * 1024 + 1, 'x')), false},
      {P::kMarkdown, s("# Title\n\n*emphasis*"), true},
      {P::kMarkdown, s(""), false},

      // id: [A-Za-z0-9\-\.]{1,64}.
      {P::kId, s("example"), true},
      {P::kId, s("a-b.C-9"), true},
      {P::kId, s(std::string(64, 'a')), true},
      {P::kId, s(std::string(65, 'a')), false},
      {P::kId, s("under_score"), false},
      {P::kId, s("with space"), false},
      {P::kId, s("slash/"), false},
      {P::kId, s(""), false},
      {P::kId, n("123"), false},

      // date.
      {P::kDate, s("2020"), true},
      {P::kDate, s("2020-02"), true},
      {P::kDate, s("2020-02-29"), true},
      {P::kDate, s("2000-02-29"), true},
      {P::kDate, s("2019-02-29"), false},
      {P::kDate, s("1900-02-29"), false},
      {P::kDate, s("1970-13-45"), false},
      {P::kDate, s("1970-12-32"), false},
      {P::kDate, s("1970-04-31"), false},
      {P::kDate, s("1970-00"), false},
      {P::kDate, s("0000"), false},
      {P::kDate, s("70-01-01"), false},
      {P::kDate, s("1970-1-1"), false},
      {P::kDate, s("1970-01-01T00:00:00Z"), false},
      {P::kDate, s("19700101"), false},

      // dateTime: a time needs seconds and a time zone.
      {P::kDateTime, s("2015"), true},
      {P::kDateTime, s("2015-02"), true},
      {P::kDateTime, s("2015-02-07"), true},
      {P::kDateTime, s("2015-02-07T13:28:17-05:00"), true},
      {P::kDateTime, s("2015-02-07T13:28:17.239+02:00"), true},
      {P::kDateTime, s("2017-01-01T00:00:00Z"), true},
      {P::kDateTime, s("2017-01-01T00:00:00+14:00"), true},
      {P::kDateTime, s("2017-01-01T00:00:00"), false},
      {P::kDateTime, s("2017-01-01T00:00Z"), false},
      {P::kDateTime, s("2017-01-01T24:00:00Z"), false},
      {P::kDateTime, s("2017-01-01T23:60:00Z"), false},
      {P::kDateTime, s("2017-01-01T23:59:61Z"), false},
      {P::kDateTime, s("2017-01-01T12:00:00+15:00"), false},
      {P::kDateTime, s("2017-01-01T12:00:00.Z"), false},
      {P::kDateTime, s("2017-01T12:00:00Z"), false},
      {P::kDateTime, s("2019-02-29T12:00:00Z"), false},
      {P::kDateTime, s("2017-01-01 12:00:00Z"), false},

      // instant: always full precision with a time zone.
      {P::kInstant, s("2015-02-07T13:28:17.239+02:00"), true},
      {P::kInstant, s("2017-01-01T00:00:00Z"), true},
      {P::kInstant, s("2017-01-01"), false},
      {P::kInstant, s("2017-01-01T00:00:00"), false},
      {P::kInstant, s("2017-02-30T00:00:00Z"), false},

      // time.
      {P::kTime, s("00:00:00"), true},
      {P::kTime, s("23:59:59.999"), true},
      {P::kTime, s("24:00:00"), false},
      {P::kTime, s("12:00"), false},
      {P::kTime, s("12:00:00Z"), false},

      // uri, url, canonical: no whitespace.
      {P::kUri, s("http://example.org/fhir"), true},
      {P::kUri, s("urn:oid:1.2.3"), true},
      {P::kUri, s("#local"), true},
      {P::kUri, s("http://example.org/a b"), false},
      {P::kUri, s(""), false},
      {P::kUrl, s("https://example.org/x?y=z"), true},
      {P::kUrl, s("https://example.org/\tx"), false},
      {P::kCanonical, s("http://hl7.org/fhir/ValueSet/example|4.0.1"), true},
      {P::kCanonical, s(" http://hl7.org/fhir"), false},

      // code: no leading or trailing whitespace, single whitespace between tokens.
      {P::kCode, s("final"), true},
      {P::kCode, s("two words"), true},
      {P::kCode, s(" leading"), false},
      {P::kCode, s("trailing "), false},
      {P::kCode, s("two  spaces"), false},
      {P::kCode, s(""), false},

      // oid.
      {P::kOid, s("urn:oid:2.16.840.1.113883"), true},
      {P::kOid, s("urn:oid:1.0"), true},
      {P::kOid, s("urn:oid:3.1"), false},
      {P::kOid, s("urn:oid:1"), false},
      {P::kOid, s("urn:oid:1.02"), false},
      {P::kOid, s("urn:oid:1..2"), false},
      {P::kOid, s("2.16.840"), false},

      // uuid: lower-case hex only.
      {P::kUuid, s("urn:uuid:c757873d-ec9a-4326-a141-556f43239520"), true},
      {P::kUuid, s("urn:uuid:C757873D-EC9A-4326-A141-556F43239520"), false},
      {P::kUuid, s("c757873d-ec9a-4326-a141-556f43239520"), false},
      {P::kUuid, s("urn:uuid:c757873d-ec9a-4326-a141-556f4323952"), false},

      // base64Binary.
      {P::kBase64Binary, s("SGVsbG8="), true},
      {P::kBase64Binary, s("SGVs\nbG8h"), true},
      {P::kBase64Binary, s("SGVsbG8"), false},
      {P::kBase64Binary, s("SGV*bG8="), false},
      {P::kBase64Binary, s("SG=sbG8="), false},

      // xhtml: a div element (basic check).
      {P::kXhtml, s("<div xmlns=\"http://www.w3.org/1999/xhtml\">text</div>"), true},
      {P::kXhtml, s("<div>text</div>"), true},
      {P::kXhtml, s("<p>text</p>"), false},
      {P::kXhtml, s("plain text"), false},
      {P::kXhtml, s("<divx>text</divx>"), false},
  };
  return kCases;
}

TEST(Primitives, TableOfValidAndInvalidValues) {
  for (const Case& c : cases()) {
    const auto result = check_primitive(c.type, c.value);
    if (c.valid) {
      EXPECT_FALSE(result.has_value()) << describe(c) << ": " << result.value_or("");
    } else {
      EXPECT_TRUE(result.has_value()) << describe(c);
    }
  }
}

TEST(Primitives, DiagnosticsQuoteTheValueAndSayWhy) {
  const auto result = check_primitive(Primitive::kDate, Value::string("1970-13-45"));
  ASSERT_TRUE(result.has_value());
  EXPECT_NE(result->find("'1970-13-45'"), std::string::npos) << *result;
  EXPECT_NE(result->find("date"), std::string::npos) << *result;
  EXPECT_NE(result->find("month"), std::string::npos) << *result;

  const auto wrong_type = check_primitive(Primitive::kInteger, Value::string("5"));
  ASSERT_TRUE(wrong_type.has_value());
  EXPECT_NE(wrong_type->find("number"), std::string::npos) << *wrong_type;
}

TEST(Primitives, NamesRoundTrip) {
  for (const auto name : {"boolean",      "integer",  "string",      "decimal",     "uri",  "url",  "canonical",
                          "base64Binary", "instant",  "date",        "dateTime",    "time", "code", "oid",
                          "id",           "markdown", "unsignedInt", "positiveInt", "uuid", "xhtml"}) {
    const auto p = primitive_from_name(name);
    ASSERT_TRUE(p.has_value()) << name;
    EXPECT_EQ(primitive_name(*p), name);
  }
  EXPECT_FALSE(primitive_from_name("HumanName").has_value());
  EXPECT_FALSE(primitive_from_name("").has_value());
}

}  // namespace
}  // namespace caduceus::fhir
