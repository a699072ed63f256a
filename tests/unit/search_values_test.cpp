#include "caduceus/fhir/search_values.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>
#include <random>
#include <string>

namespace caduceus::fhir::search {
namespace {

std::string range_of(std::string_view number) {
  auto n = parse_number(number);
  if (!n) return "error";
  return std::string(to_string(n->prefix)) + " [" + n->low.to_string() + ", " + n->high.to_string() + ")";
}

TEST(SearchValues, NumberRangesFollowTheirPrecision) {
  // search.html#number: the implicit range is half a unit of the last significant digit either side.
  EXPECT_EQ(range_of("100"), "eq [99.5, 100.5)");
  EXPECT_EQ(range_of("100.00"), "eq [99.995, 100.005)");
  EXPECT_EQ(range_of("1e2"), "eq [50, 150)");
  EXPECT_EQ(range_of("1.5e2"), "eq [145, 155)");
  EXPECT_EQ(range_of("lt100"), "lt [99.5, 100.5)");
  EXPECT_EQ(range_of("ge0.1"), "ge [0.05, 0.15)");
  EXPECT_EQ(range_of("-3"), "eq [-3.5, -2.5)");
  EXPECT_EQ(range_of("0"), "eq [-0.5, 0.5)");
  EXPECT_EQ(range_of("0.00"), "eq [-0.005, 0.005)");
  EXPECT_EQ(range_of("ap5"), "ap [4.5, 5.5)");
  for (std::string_view bad :
       {"", "abc", "1.", ".", "1e", "--1", "gt", "1,5", "1 ", "0x10", "12345678901234567890123456789012"})
    EXPECT_EQ(range_of(bad), "error") << bad;
}

TEST(SearchValues, DecimalsCompareByValueNotByText) {
  auto d = [](std::string_view s) { return *Decimal::parse(s); };
  EXPECT_EQ(d("100"), d("100.00"));
  EXPECT_EQ(d("1e2"), d("100"));
  EXPECT_LT(d("99.995"), d("100"));
  EXPECT_LT(d("-1"), d("0.001"));
  EXPECT_LT(d("-2"), d("-1.5"));
  EXPECT_LT(d("1e-30"), d("1e30"));
  EXPECT_FALSE(d("5") < d("5.0"));
  EXPECT_EQ(d("0.0").to_string(), "0.0");
  EXPECT_EQ(d("1.50").to_string(), "1.50");
  EXPECT_EQ(d("-0.05").to_string(), "-0.05");
  EXPECT_EQ(d("12e3").to_string(), "12000");
}

// to_double is the nearest double, as strtod of the decimal's text gives it (the index and the query both use it).
TEST(SearchValues, DecimalsConvertToTheNearestDouble) {
  std::mt19937_64 random(42);
  for (int i = 0; i < 20000; ++i) {
    Decimal d;
    const int width = static_cast<int>(random() % 39) + 1;  // up to 39 digits
    for (int k = 0; k < width; ++k) d.digits = d.digits * 10 + static_cast<int>(random() % 10);
    if (random() % 2) d.digits = -d.digits;
    d.exponent = static_cast<int>(random() % 161) - 80;
    const std::string text = d.to_string();
    EXPECT_EQ(d.to_double(), std::strtod(text.c_str(), nullptr)) << text;
  }
  // The usual values (up to 17 digits, exponents near zero), on both sides of the fast path's bounds (2^53, 1e22).
  for (int i = 0; i < 20000; ++i) {
    Decimal d;
    const int width = static_cast<int>(random() % 17) + 1;
    for (int k = 0; k < width; ++k) d.digits = d.digits * 10 + static_cast<int>(random() % 10);
    if (random() % 2) d.digits = -d.digits;
    d.exponent = static_cast<int>(random() % 51) - 25;
    const std::string text = d.to_string();
    EXPECT_EQ(d.to_double(), std::strtod(text.c_str(), nullptr)) << text;
  }
  for (__int128 digits : {(__int128{1} << 53) - 1, __int128{1} << 53, (__int128{1} << 53) + 1})
    for (int exponent : {-23, -22, 22, 23}) {
      const Decimal d{digits, exponent};
      EXPECT_EQ(d.to_double(), std::strtod(d.to_string().c_str(), nullptr)) << d.to_string();
    }
  EXPECT_EQ(Decimal{}.to_double(), 0.0);
  EXPECT_EQ((Decimal{15, -1}).to_double(), 1.5);
  EXPECT_EQ((Decimal{-1, 400}).to_double(), -std::numeric_limits<double>::infinity());  // beyond a double
  EXPECT_EQ((Decimal{1, -400}).to_double(), 0.0);
}

TEST(SearchValues, DatesCoverTheirPrecision) {
  auto year = parse_date("2020");
  ASSERT_TRUE(year);
  EXPECT_EQ(year->prefix, Prefix::kEq);
  EXPECT_EQ(year->high_ms - year->low_ms, 366LL * 86400000);  // a leap year
  auto month = parse_date("le2021-02");
  ASSERT_TRUE(month);
  EXPECT_EQ(month->prefix, Prefix::kLe);
  EXPECT_EQ(month->high_ms - month->low_ms, 28LL * 86400000);
  auto instant = parse_date("gt2021-02-03T04:05:06.789Z");
  ASSERT_TRUE(instant);
  EXPECT_EQ(instant->high_ms - instant->low_ms, 1);
  auto zoned = parse_date("2021-02-03T04:05:06+02:00");
  auto utc = parse_date("2021-02-03T02:05:06Z");
  ASSERT_TRUE(zoned && utc);
  EXPECT_EQ(zoned->low_ms, utc->low_ms);
  for (std::string_view bad : {"2020-13", "2021-02-29", "20", "2020-1-1", "yesterday", "ge", "2020-01-01T25:00:00Z"})
    EXPECT_FALSE(parse_date(bad).has_value()) << bad;
}

TEST(SearchValues, TokensSplitSystemAndCode) {
  auto t = parse_token("http://loinc.org|8310-5");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->system, "http://loinc.org");
  EXPECT_EQ(t->code, "8310-5");
  auto code_only = parse_token("8310-5");
  ASSERT_TRUE(code_only);
  EXPECT_FALSE(code_only->system.has_value());
  auto no_system = parse_token("|abc");
  ASSERT_TRUE(no_system);
  EXPECT_EQ(no_system->system, "");
  auto system_only = parse_token("http://loinc.org|");
  ASSERT_TRUE(system_only);
  EXPECT_FALSE(system_only->code.has_value());
  auto escaped = parse_token("urn:x|a\\|b");
  ASSERT_TRUE(escaped);
  EXPECT_EQ(escaped->code, "a|b");
  EXPECT_FALSE(parse_token("a|b|c"));
  EXPECT_FALSE(parse_token("|"));
  EXPECT_FALSE(parse_token(""));
}

TEST(SearchValues, QuantitiesTakeNumberSystemAndCode) {
  auto q = parse_quantity("le5.4|http://unitsofmeasure.org|mg");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->number.prefix, Prefix::kLe);
  EXPECT_EQ(q->number.value.to_string(), "5.4");
  EXPECT_EQ(q->system, "http://unitsofmeasure.org");
  EXPECT_EQ(q->code, "mg");
  auto any_system = parse_quantity("5.4||mg");
  ASSERT_TRUE(any_system);
  EXPECT_FALSE(any_system->system.has_value());
  EXPECT_EQ(any_system->code, "mg");
  auto bare = parse_quantity("5.4");
  ASSERT_TRUE(bare);
  EXPECT_FALSE(bare->code.has_value());
  EXPECT_FALSE(parse_quantity("5.4|mg"));
  EXPECT_FALSE(parse_quantity("x|y|z"));
}

TEST(SearchValues, ReferencesInEveryForm) {
  auto id = parse_reference("123");
  ASSERT_TRUE(id);
  EXPECT_FALSE(id->type);
  EXPECT_EQ(id->id, "123");
  auto typed = parse_reference("Patient/123");
  ASSERT_TRUE(typed);
  EXPECT_EQ(typed->type, "Patient");
  EXPECT_EQ(typed->id, "123");
  auto versioned = parse_reference("Patient/123/_history/4");
  ASSERT_TRUE(versioned);
  EXPECT_EQ(versioned->version, "4");
  auto absolute = parse_reference("http://example.org/fhir/Patient/123");
  ASSERT_TRUE(absolute);
  EXPECT_EQ(absolute->url, "http://example.org/fhir/Patient/123");
  EXPECT_EQ(absolute->type, "Patient");
  EXPECT_EQ(absolute->id, "123");
  auto canonical = parse_reference("http://hl7.org/fhir/ValueSet/x|4.0.1");
  ASSERT_TRUE(canonical);
  EXPECT_EQ(canonical->url, "http://hl7.org/fhir/ValueSet/x");
  EXPECT_EQ(canonical->version, "4.0.1");
  auto urn = parse_reference("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0");
  ASSERT_TRUE(urn);
  EXPECT_EQ(urn->id, "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0");
  EXPECT_FALSE(parse_reference(""));
  EXPECT_FALSE(parse_reference("a/b/c"));
}

// split_reference (a resource's own Reference.reference, no search escapes) finds the segments from the end; the
// reference here splits the whole text first, as parse_reference did. Random texts from pieces of references.
std::optional<ReferenceValue> split_whole(std::string_view s) {
  if (s.empty()) return std::nullopt;
  ReferenceValue r;
  std::string_view path = s;
  if (s.find("://") != std::string_view::npos || s.starts_with("urn:")) {
    r.url = std::string(s);
    if (auto bar = s.find('|'); bar != std::string_view::npos) {
      r.version = std::string(s.substr(bar + 1));
      r.url = std::string(s.substr(0, bar));
    }
    path = *r.url;
  }
  std::vector<std::string_view> segs;
  for (std::size_t start = 0;;) {
    auto slash = path.find('/', start);
    segs.push_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  auto is_type = [](std::string_view t) { return !t.empty() && t[0] >= 'A' && t[0] <= 'Z'; };
  const std::size_t n = segs.size();
  if (n >= 4 && segs[n - 2] == "_history" && is_type(segs[n - 4])) {
    r.type = std::string(segs[n - 4]);
    r.id = std::string(segs[n - 3]);
    r.version = std::string(segs[n - 1]);
  } else if (n >= 2 && is_type(segs[n - 2]) && !segs[n - 1].empty()) {
    r.type = std::string(segs[n - 2]);
    r.id = std::string(segs[n - 1]);
  } else if (n == 1) {
    r.id = std::string(segs[0]);
  } else if (r.url) {
    r.id = *r.url;
  } else {
    return std::nullopt;
  }
  return r;
}

TEST(SearchValues, AStoredReferenceSplitsAsAWholeSplitWould) {
  const std::vector<std::string> pieces = {
      "/",           "/", "Patient", "123", "_history", "4", "http://x.org", "urn:uuid:",
      "urn:oid:1.2", "|", "4.0.1",   "",    "a",        "B", "://",          "fhir"};
  std::mt19937 random(7);
  std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1), length(0, 7);
  for (int i = 0; i < 50000; ++i) {
    std::string text;
    for (std::size_t k = length(random); k > 0; --k) text += pieces[pick(random)];
    auto got = split_reference(text);
    auto want = split_whole(text);
    ASSERT_EQ(got.has_value(), want.has_value()) << text;
    if (!got) continue;
    EXPECT_EQ(got->type, want->type) << text;
    EXPECT_EQ(got->id, want->id) << text;
    EXPECT_EQ(got->version, want->version) << text;
    EXPECT_EQ(got->url, want->url) << text;
  }
  // Unlike a search value, a stored reference has no escapes: a backslash is part of it.
  EXPECT_EQ(split_reference("Patient/a\\,b")->id, "a\\,b");
  EXPECT_EQ(parse_reference("Patient/a\\,b")->id, "a,b");  // (in a search value, an escaped comma)
}

TEST(SearchValues, OrValuesSplitOnUnescapedCommasOnly) {
  auto parts = split_or("a,b\\,c,d\\$e,f\\|g,h\\\\");
  ASSERT_TRUE(parts);
  EXPECT_EQ(*parts, (std::vector<std::string>{"a", "b,c", "d$e", "f|g", "h\\"}));
  EXPECT_FALSE(split_or("bad\\escape"));
  EXPECT_FALSE(split_or("trailing\\"));
  auto composite = split_unescaped("http://loinc.org|8480-6$gt100\\$x", '$');
  ASSERT_EQ(composite.size(), 2u);
  EXPECT_EQ(composite[0], "http://loinc.org|8480-6");
  EXPECT_EQ(composite[1], "gt100\\$x");
}

}  // namespace
}  // namespace caduceus::fhir::search
