// Bad input, one table: each request gets the right status, an OperationOutcome whose issue names the element
// (its FHIRPath expression, or a mention in the diagnostics where there is no element), and leaves the store
// exactly as it was (system history and the seeded resources unchanged).
#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using fhir::json::Value;

// Seeded before every case: an existing Patient at version 2, and a deleted one.
constexpr std::string_view kExisting = "bad-input-existing";
constexpr std::string_view kDeleted = "bad-input-deleted";
constexpr std::string_view kNever = "bad-input-never-created";

struct BadCase {
  std::string name;
  std::string method;
  std::string target;  // relative to the FHIR base
  std::string body;
  HeaderList headers;  // Content-Type application/fhir+json is added when there is a body and none is given
  std::set<int> statuses;
  // The issue must carry one of these expressions, or mention one of `mentions` (case-insensitive) in its
  // diagnostics or expression. With neither, any non-empty diagnostics will do.
  std::vector<std::string> expressions;
  std::vector<std::string> mentions;
};

void PrintTo(const BadCase& c, std::ostream* os) {
  *os << c.name;
}

std::string patient(std::string_view members) {
  std::string s = R"({"resourceType":"Patient")";
  if (!members.empty()) {
    s += ',';
    s.append(members);
  }
  s += '}';
  return s;
}

std::string existing_patient(std::string_view members = {}) {
  std::string m = R"("id":")";
  m.append(kExisting);
  m += '"';
  if (!members.empty()) {
    m += ',';
    m.append(members);
  }
  return patient(m);
}

std::string deeply_nested(int depth) {
  std::string s = R"({"resourceType":"Patient","extension":)";
  for (int i = 0; i < depth; ++i) s += R"([{"url":"http://example.org/x","extension":)";
  s += "[]";
  for (int i = 0; i < depth; ++i) s += "}]";
  return s + "}";
}

std::string too_large_body() {
  // Valid JSON of a Patient, only too big: 17 MiB of narrative.
  std::string s =
      R"({"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">)";
  s.append(17u << 20, 'a');
  return s + R"(</div>"}})";
}

std::vector<BadCase> cases() {
  const std::string id65(65, 'a');
  const std::string existing = "Patient/" + std::string(kExisting);
  std::vector<BadCase> c = {
      // Malformed JSON and bodies that are not a resource.
      {"MalformedJson", "POST", "Patient", R"({"resourceType":"Patient","active":tru)", {}, {400}, {}, {}},
      {"TrailingGarbage", "POST", "Patient", R"({"resourceType":"Patient"} x)", {}, {400}, {}, {}},
      {"InvalidUtf8", "POST", "Patient", patient("\"name\":[{\"family\":\"\xff\xfe\"}]"), {}, {400}, {}, {}},
      {"DuplicateKey",
       "POST",
       "Patient",
       patient(R"("active":true,"active":false)"),
       {},
       {400},
       {"Patient.active"},
       {"active"}},
      {"TooDeep", "POST", "Patient", deeply_nested(200), {}, {400}, {}, {}},
      {"EmptyBody", "POST", "Patient", "", {{"Content-Type", "application/fhir+json"}}, {400}, {}, {}},
      {"JsonArray", "POST", "Patient", R"([{"resourceType":"Patient"}])", {}, {400}, {}, {}},
      {"JsonString", "POST", "Patient", R"("Patient")", {}, {400}, {}, {}},
      {"EmptyJsonObject",
       "POST",
       "Patient",
       "{}",
       {},
       {400},
       {"resourceType", "Patient.resourceType"},
       {"resourceType"}},
      {"ResourceTypeDiffersFromUrl",
       "POST",
       "Patient",
       R"({"resourceType":"Observation","status":"final","code":{"text":"x"}})",
       {},
       {400},
       {"Observation.resourceType", "Patient.resourceType", "resourceType"},
       {"resourceType", "Observation"}},
      {"ResourceTypeDiffersFromUrlOnPut",
       "PUT",
       existing,
       R"({"resourceType":"Observation","id":")" + std::string(kExisting) +
           R"(","status":"final","code":{"text":"x"}})",
       {},
       {400},
       {"Observation.resourceType", "Patient.resourceType", "resourceType"},
       {"resourceType", "Observation"}},

      // Unknown resource types in the URL.
      {"UnknownTypeCreate", "POST", "Patientx", patient(""), {}, {404}, {}, {"Patientx"}},
      {"UnknownTypeRead", "GET", "Foo/1", "", {}, {404}, {}, {"Foo"}},
      {"UnknownTypeHistory", "GET", "Foo/_history", "", {}, {404}, {}, {"Foo"}},
      {"AbstractTypeRead", "GET", "DomainResource/1", "", {}, {404}, {}, {"DomainResource"}},

      // Structure: unknown elements, JSON types, primitive formats, choices, contained resources.
      {"UnknownElement", "POST", "Patient", patient(R"("foo":1)"), {}, {400}, {"Patient.foo"}, {}},
      {"UnknownNestedElement",
       "POST",
       "Patient",
       patient(R"("name":[{"famly":"x"}])"),
       {},
       {400},
       {"Patient.name[0].famly"},
       {}},
      {"UnknownElementInUpdate", "PUT", existing, existing_patient(R"("foo":1)"), {}, {400}, {"Patient.foo"}, {}},
      {"WrongTypeStringForBoolean",
       "POST",
       "Patient",
       patient(R"("active":"true")"),
       {},
       {400},
       {"Patient.active"},
       {}},
      {"WrongTypeObjectForArray",
       "POST",
       "Patient",
       patient(R"("name":{"family":"x"})"),
       {},
       {400},
       {"Patient.name"},
       {}},
      {"WrongTypeArrayForSingle",
       "POST",
       "Patient",
       patient(R"("gender":["male"])"),
       {},
       {400},
       {"Patient.gender"},
       {}},
      {"WrongTypeNumberForDate",
       "POST",
       "Patient",
       patient(R"("birthDate":19700101)"),
       {},
       {400},
       {"Patient.birthDate"},
       {}},
      {"WrongTypeStringForArrayOfStrings",
       "POST",
       "Patient",
       patient(R"("name":[{"given":"Peter"}])"),
       {},
       {400},
       {"Patient.name[0].given"},
       {}},
      {"WrongTypeStringForDecimal",
       "POST",
       "Observation",
       R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1.5"}})",
       {},
       {400},
       {"Observation.valueQuantity.value", "Observation.value.value"},
       {}},
      {"NullValue", "POST", "Patient", patient(R"("active":null)"), {}, {400}, {"Patient.active"}, {}},
      {"BadDate", "POST", "Patient", patient(R"("birthDate":"1970-13-45")"), {}, {400}, {"Patient.birthDate"}, {}},
      {"BadDateInUpdate",
       "PUT",
       existing,
       existing_patient(R"("birthDate":"1970-13-45")"),
       {},
       {400},
       {"Patient.birthDate"},
       {}},
      {"BadDateTime",
       "POST",
       "Patient",
       patient(R"("deceasedDateTime":"2020-02-30T10:00:00Z")"),
       {},
       {400},
       {"Patient.deceasedDateTime", "Patient.deceased"},
       {}},
      {"BadPositiveInt",
       "POST",
       "Patient",
       patient(R"("telecom":[{"system":"phone","value":"1","rank":0}])"),
       {},
       {400},
       {"Patient.telecom[0].rank"},
       {}},
      {"BadCode", "POST", "Patient", patient(R"("gender":"male ")"), {}, {400}, {"Patient.gender"}, {}},
      {"EmptyString",
       "POST",
       "Patient",
       patient(R"("name":[{"family":""}])"),
       {},
       {400},
       {"Patient.name[0].family"},
       {}},
      {"DecimalForInteger",
       "POST",
       "Patient",
       patient(R"("multipleBirthInteger":1.5)"),
       {},
       {400},
       {"Patient.multipleBirthInteger", "Patient.multipleBirth"},
       {}},
      {"TwoChoices",
       "POST",
       "Patient",
       patient(R"("deceasedBoolean":true,"deceasedDateTime":"2020-01-01")"),
       {},
       {400},
       {"Patient.deceased", "Patient.deceased[x]", "Patient.deceasedBoolean", "Patient.deceasedDateTime"},
       {"deceased"}},
      {"ContainedUnknownElement",
       "POST",
       "Patient",
       patient(R"("contained":[{"resourceType":"Organization","id":"o1","foo":1}],)"
               R"("managingOrganization":{"reference":"#o1"})"),
       {},
       {400},
       {"Patient.contained[0].foo"},
       {"foo"}},
      {"ContainedUnknownType",
       "POST",
       "Patient",
       patient(R"("contained":[{"resourceType":"Nothing","id":"o1"}])"),
       {},
       {400},
       {"Patient.contained[0]", "Patient.contained[0].resourceType"},
       {"Nothing"}},

      // FHIR JSON rules (json.html): no empty arrays or objects, null only in primitive arrays paired with an
      // extension, `_x` is an object and lines up with `x`, resourceType only at the root of a resource.
      {"EmptyArray", "POST", "Patient", patient(R"("name":[])"), {}, {400}, {"Patient.name"}, {}},
      {"EmptyObject", "POST", "Patient", patient(R"("maritalStatus":{})"), {}, {400}, {"Patient.maritalStatus"}, {}},
      {"NullInObjectArray",
       "POST",
       "Patient",
       patient(R"("name":[null])"),
       {},
       {400},
       {"Patient.name[0]", "Patient.name"},
       {}},
      {"NullInPrimitiveArrayWithoutExtension",
       "POST",
       "Patient",
       patient(R"("name":[{"given":[null]}])"),
       {},
       {400},
       {"Patient.name[0].given[0]", "Patient.name[0].given"},
       {}},
      {"PrimitiveExtensionNotObject",
       "POST",
       "Patient",
       patient(R"("_active":"x")"),
       {},
       {400},
       {"Patient.active", "Patient._active"},
       {}},
      {"PrimitiveExtensionMisaligned",
       "POST",
       "Patient",
       patient(R"("name":[{"given":["a"],"_given":[null,{"id":"x"}]}])"),
       {},
       {400},
       {"Patient.name[0].given", "Patient.name[0]._given"},
       {}},
      {"ResourceTypeInsideDatatype",
       "POST",
       "Patient",
       patient(R"("name":[{"resourceType":"HumanName"}])"),
       {},
       {400},
       {"Patient.name[0].resourceType", "Patient.name[0]"},
       {}},

      // More primitive formats (datatypes.html).
      {"DateTimeWithoutTimeZone",
       "POST",
       "Patient",
       patient(R"("deceasedDateTime":"2020-01-01T10:00:00")"),
       {},
       {400},
       {"Patient.deceasedDateTime", "Patient.deceased"},
       {}},
      {"NoSuchLeapDay",
       "POST",
       "Patient",
       patient(R"("birthDate":"2021-02-29")"),
       {},
       {400},
       {"Patient.birthDate"},
       {}},
      {"IntegerOutOfRange",
       "POST",
       "Patient",
       patient(R"("multipleBirthInteger":2147483648)"),
       {},
       {400},
       {"Patient.multipleBirthInteger", "Patient.multipleBirth"},
       {}},
      {"UriWithSpace",
       "POST",
       "Patient",
       patient(R"("extension":[{"url":"http://exa mple.org","valueString":"x"}])"),
       {},
       {400},
       {"Patient.extension[0].url"},
       {}},
      {"BadBase64",
       "POST",
       "Patient",
       patient(R"("photo":[{"data":"!!!notbase64"}])"),
       {},
       {400},
       {"Patient.photo[0].data"},
       {}},
      {"ControlCharacterInString",
       "POST",
       "Patient",
       patient(R"("name":[{"family":"a\u0001b"}])"),
       {},
       {400},
       {"Patient.name[0].family"},
       {}},
      {"BadTime",
       "POST",
       "Observation",
       R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueTime":"25:00:00"})",
       {},
       {400},
       {"Observation.valueTime", "Observation.value"},
       {}},
      {"InstantWithoutSeconds",
       "POST",
       "Observation",
       R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"issued":"2020-01-01T10:00Z"})",
       {},
       {400},
       {"Observation.issued"},
       {}},
      {"ExtensionWithoutUrl",
       "POST",
       "Patient",
       patient(R"("extension":[{"valueString":"x"}])"),
       {},
       {400},
       {"Patient.extension[0].url", "Patient.extension[0]"},
       {}},

      // Resources inside resources are checked like the outer one.
      {"BundleEntryUnknownElement",
       "POST",
       "Bundle",
       R"({"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","foo":1}}]})",
       {},
       {400},
       {"Bundle.entry[0].resource.foo"},
       {"foo"}},
      {"ParametersResourceUnknownElement",
       "POST",
       "Parameters",
       R"({"resourceType":"Parameters","parameter":[{"name":"x","resource":{"resourceType":"Patient","foo":1}}]})",
       {},
       {400},
       {"Parameters.parameter[0].resource.foo"},
       {"foo"}},

      // Ids.
      {"InvalidIdInUrl", "PUT", "Patient/a$b", patient(R"("id":"a$b")"), {}, {400}, {"Patient.id"}, {"id"}},
      {"TooLongIdInUrl",
       "PUT",
       "Patient/" + id65,
       patient(R"("id":")" + id65 + R"(")"),
       {},
       {400},
       {"Patient.id"},
       {"id"}},
      {"TooLongIdRead", "GET", "Patient/" + id65, "", {}, {400, 404}, {"Patient.id"}, {"id", id65}},
      {"InvalidIdInBody", "PUT", existing, patient(R"("id":"a$b")"), {}, {400}, {"Patient.id"}, {"id"}},
      {"IdMismatchOnPut", "PUT", existing, patient(R"("id":"someone-else")"), {}, {400}, {"Patient.id"}, {"id"}},
      {"MissingIdOnPut", "PUT", existing, patient(R"("active":true)"), {}, {400}, {"Patient.id"}, {"id"}},

      // Versions.
      {"StaleIfMatch",
       "PUT",
       existing,
       existing_patient(R"("active":false)"),
       {{"If-Match", "W/\"1\""}},
       {412},
       {},
       {"If-Match", "version"}},

      // Methods.
      {"PostToInstance", "POST", existing, existing_patient(), {}, {405}, {}, {"POST", "method"}},
      {"TraceOnInstance", "TRACE", existing, "", {}, {405}, {}, {"TRACE", "method"}},
      {"DeleteMetadata", "DELETE", "metadata", "", {}, {405}, {}, {"DELETE", "method"}},
      {"PutToHistory", "PUT", existing + "/_history/1", existing_patient(), {}, {405}, {}, {"PUT", "method"}},

      // Media types.
      {"TextPlain",
       "POST",
       "Patient",
       patient(""),
       {{"Content-Type", "text/plain"}},
       {415},
       {},
       {"text/plain", "Content-Type", "media type"}},
      {"ApplicationXml",
       "POST",
       "Patient",
       "<Patient xmlns=\"http://hl7.org/fhir\"/>",
       {{"Content-Type", "application/xml"}},
       {415},
       {},
       {"application/xml", "Content-Type", "media type"}},
      {"FhirXmlUpdate",
       "PUT",
       existing,
       "<Patient xmlns=\"http://hl7.org/fhir\"/>",
       {{"Content-Type", "application/fhir+xml"}},
       {415},
       {},
       {"xml", "Content-Type", "media type"}},

      // Size.
      {"BodyTooLarge", "POST", "Patient", too_large_body(), {}, {413}, {}, {}},

      // Reads of what is not there.
      {"ReadDeleted", "GET", "Patient/" + std::string(kDeleted), "", {}, {410}, {}, {std::string(kDeleted)}},
      {"ReadNeverCreated", "GET", "Patient/" + std::string(kNever), "", {}, {404}, {}, {std::string(kNever)}},
      {"VreadNeverCreated",
       "GET",
       "Patient/" + std::string(kNever) + "/_history/1",
       "",
       {},
       {404},
       {},
       {std::string(kNever)}},
  };
  return c;
}

// What must not change: every version in the system, and the seeded resources as read.
struct StoreSnapshot {
  std::vector<std::string> versions;
  std::optional<std::int64_t> total;
  int existing_status = 0;
  std::string existing_body;
  int deleted_status = 0;
  int never_status = 0;

  bool operator==(const StoreSnapshot&) const = default;
};

class BadInputTest : public ServerTest, public ::testing::WithParamInterface<BadCase> {
 public:
  static void SetUpTestSuite() {
    start_server();
    if (!server_) return;
    HttpClient c(server_->host(), server_->port());
    const std::string base = server_->base_path();
    const std::string existing = base + "/Patient/" + std::string(kExisting);
    const std::string deleted = base + "/Patient/" + std::string(kDeleted);
    std::vector<Response> seeded = {
        c.put(existing, existing_patient(R"("active":true)")),
        c.put(existing, existing_patient(R"("active":true,"gender":"female")")),
        c.put(deleted, patient(R"("id":")" + std::string(kDeleted) + R"(")")),
        c.del(deleted),
    };
    const std::vector<std::set<int>> expected = {{201}, {200}, {201}, {200, 204}};
    for (std::size_t i = 0; i < seeded.size(); ++i) {
      if (!expected[i].contains(seeded[i].status)) {
        ADD_FAILURE() << "seeding request " << i << " failed: " << seeded[i].summary();
        server_.reset();
        return;
      }
    }
  }

 protected:
  StoreSnapshot snapshot() {
    StoreSnapshot s;
    History h = read_history(client(), path("_history?_count=50"));
    EXPECT_TRUE(h.error.empty()) << h.error;
    for (const auto& e : h.entries)
      s.versions.push_back(string_at(e, "request.method") + " " + string_at(e, "fullUrl") + " " +
                           string_at(e, "response.etag") + " " + string_at(e, "response.lastModified"));
    s.total = h.total;
    Response existing = client().get(path("Patient/" + std::string(kExisting)));
    s.existing_status = existing.status;
    s.existing_body = existing.body;
    s.deleted_status = client().get(path("Patient/" + std::string(kDeleted))).status;
    s.never_status = client().get(path("Patient/" + std::string(kNever))).status;
    return s;
  }
};

TEST_P(BadInputTest, AnswersWithOutcomeAndLeavesStoreUnchanged) {
  const BadCase& c = GetParam();
  const StoreSnapshot before = snapshot();
  ASSERT_EQ(before.existing_status, 200);
  ASSERT_EQ(before.deleted_status, 410);
  ASSERT_EQ(before.never_status, 404);

  HeaderList headers = c.headers;
  const bool has_content_type =
      std::any_of(headers.begin(), headers.end(), [](const auto& h) { return h.first == "Content-Type"; });
  if (!c.body.empty() && !has_content_type) headers.emplace_back("Content-Type", "application/fhir+json");
  Response r = client().request(c.method, path(c.target), c.body, headers);
  SCOPED_TRACE(c.method + " " + path(c.target));

  ASSERT_TRUE(c.statuses.contains(r.status))
      << "expected " << ::testing::PrintToString(c.statuses) << ", got " << r.summary();
  EXPECT_TRUE(IsOperationOutcome(r, r.status));
  if (!c.expressions.empty() || !c.mentions.empty()) {
    bool named = false;
    for (const auto& m : c.mentions.empty() ? std::vector<std::string>{""} : c.mentions)
      named = named || NamesElement(r, c.expressions, m);
    EXPECT_TRUE(named) << "no issue names the element: expected expression " << ::testing::PrintToString(c.expressions)
                       << " or a mention of " << ::testing::PrintToString(c.mentions) << "; got " << r.body;
  } else {
    bool explained = false;
    if (auto body = r.json(); body && body->find("issue") && body->find("issue")->is_array())
      for (const auto& issue : body->find("issue")->items())
        explained = explained || !string_at(issue, "diagnostics").empty();
    EXPECT_TRUE(explained) << "an issue explains what is wrong in its diagnostics: " << r.body;
  }
  if (r.status == 405) {
    EXPECT_FALSE(r.header("Allow").empty()) << "a 405 lists the allowed methods (RFC 7231 6.5.5)";
  }

  const StoreSnapshot after = snapshot();
  EXPECT_EQ(after.versions, before.versions) << "the store changed";
  EXPECT_EQ(after.total, before.total);
  EXPECT_EQ(after.existing_body, before.existing_body) << "Patient/" << kExisting << " changed";
  EXPECT_EQ(after.deleted_status, 410);
  EXPECT_EQ(after.never_status, 404);
}

INSTANTIATE_TEST_SUITE_P(Table, BadInputTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

}  // namespace
}  // namespace caduceus::test
