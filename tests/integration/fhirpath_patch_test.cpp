// FHIRPath Patch (a Parameters body, https://hl7.org/fhir/R4/fhirpatch.html) over HTTP: every operation type,
// choices, primitives with extensions, backbone values given as parts, errors (status and expression) that change
// nothing, If-Match, conditional patch; and PATCH entries (FHIRPath Patch, or a Binary holding a JSON Patch) in
// transaction and batch Bundles. The expected resources are worked out by hand.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using fhir::json::Value;

const HeaderList kFhirJson{{"Content-Type", "application/fhir+json"}};

std::string unique(std::string_view prefix) {
  static std::atomic<int> counter{0};
  return std::string(prefix) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

// One operation parameter: type, path and the further parts (JSON text of part objects, comma-separated).
std::string op(const std::string& type, const std::string& path, const std::string& more = {}) {
  std::string s = R"({"name":"operation","part":[{"name":"type","valueCode":")" + type +
                  R"("},{"name":"path","valueString":")" + path + R"("})";
  if (!more.empty()) s += "," + more;
  return s + "]}";
}

std::string parameters(const std::vector<std::string>& ops) {
  std::string s = R"({"resourceType":"Parameters","parameter":[)";
  for (std::size_t i = 0; i < ops.size(); ++i) s += (i == 0 ? "" : ",") + ops[i];
  return s + "]}";
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The Patient the tests patch; `system` makes its identifiers unique to the test.
std::string chalmers(const std::string& system) {
  return R"({"resourceType":"Patient","active":true,)"
         R"("identifier":[{"system":")" +
         system + R"(","value":"a"},{"system":")" + system + R"(","value":"b"},{"system":")" + system +
         R"(","value":"c"}],)"
         R"("name":[{"family":"Chalmers","given":["Peter","James"]}],)"
         R"("telecom":[{"system":"phone","value":"555-1"}],"gender":"male","birthDate":"1974-12-25"})";
}

// The first issue's expression of an OperationOutcome (R4: issue.expression is an array).
std::string expression_of(const Value& outcome) {
  return string_at(outcome, "issue[0].expression[0]");
}

class FhirPathPatchTest : public ServerTest {
 protected:
  Response patch(const std::string& target, const std::string& body, HeaderList headers = kFhirJson) {
    return client().request("PATCH", path(target), body, headers);
  }
  std::string create_id(const std::string& type, const std::string& body) {
    auto v = create(type, body);
    return v ? string_at(*v, "id") : std::string();
  }
  // The resource now, without meta (compared with a hand-written expectation).
  Value current(const std::string& type_and_id) {
    auto v = read(type_and_id);
    if (!v) return Value();
    v->erase("meta");
    return *v;
  }
  // How many versions the store holds (system history total).
  std::int64_t versions() {
    Response r = client().get(path("_history?_count=1"));
    EXPECT_EQ(r.status, 200) << r.summary();
    auto v = r.json();
    return v ? std::atoll(string_at(*v, "total").c_str()) : -1;
  }
  Value post_bundle(const std::string& body, int status) {
    Response r = client().post(path(), body, {});
    EXPECT_EQ(r.status, status) << r.summary();
    last_ = r;
    return r.json().value_or(Value());
  }
  Response last_;
};

// ---- PATCH [type]/[id] with a FHIRPath Patch ----------------------------------------------------------------

TEST_F(FhirPathPatchTest, AppliesEveryOperationType) {
  const std::string sys = "urn:test:" + unique("fpp-all");
  const std::string id = create_id("Patient", chalmers(sys));
  ASSERT_FALSE(id.empty());
  const std::string body = parameters({
      op("add", "Patient",
         R"({"name":"name","valueString":"maritalStatus"},)"
         R"({"name":"value","valueCodeableConcept":{"text":"married"}})"),
      op("add", "Patient.name[0]", R"({"name":"name","valueString":"given"},{"name":"value","valueString":"Jim"})"),
      op("insert", "Patient.identifier",
         R"({"name":"index","valueInteger":1},{"name":"value","valueIdentifier":{"system":")" + sys +
             R"(","value":"x"}})"),
      op("delete", "Patient.identifier.where(value = 'c')"),
      op("replace", "Patient.gender", R"({"name":"value","valueCode":"female"})"),
      op("move", "Patient.identifier", R"({"name":"source","valueInteger":0},{"name":"destination","valueInteger":2})"),
      // A choice takes its type from the value: deceased + valueBoolean is deceasedBoolean.
      op("add", "Patient", R"({"name":"name","valueString":"deceased"},{"name":"value","valueBoolean":false})"),
      // A backbone element (Patient.contact) given as parts, one per element; telecom repeats, name does not.
      op("add", "Patient",
         R"({"name":"name","valueString":"contact"},{"name":"value","part":[)"
         R"({"name":"name","valueHumanName":{"family":"Du Marché"}},)"
         R"({"name":"telecom","valueContactPoint":{"system":"phone","value":"555-2"}}]})"),
      op("delete", "Patient.active"),
      op("delete", "Patient.photo"),  // selects nothing: no change
      op("replace", "Patient.name[0].given[0]", R"({"name":"value","valueString":"Pete"})"),
  });
  Response r = patch("Patient/" + id, body);
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(r.header("ETag"), "W/\"2\"");
  // identifier: a b c -> insert x at 1: a x b c -> delete c: a x b -> move 0 to 2: x b a.
  auto expected =
      parse_json(R"({"resourceType":"Patient","id":")" + id + R"(",)" + R"("identifier":[{"system":")" + sys +
                 R"(","value":"x"},{"system":")" + sys + R"(","value":"b"},{"system":")" + sys + R"(","value":"a"}],)" +
                 R"("name":[{"family":"Chalmers","given":["Pete","James","Jim"]}],)"
                 R"("telecom":[{"system":"phone","value":"555-1"}],"gender":"female",)"
                 R"("birthDate":"1974-12-25","maritalStatus":{"text":"married"},"deceasedBoolean":false,)"
                 R"("contact":[{"name":{"family":"Du Marché"},)"
                 R"("telecom":[{"system":"phone","value":"555-2"}]}]})");
  ASSERT_TRUE(expected);
  auto answered = r.json();
  ASSERT_TRUE(answered);
  EXPECT_EQ(string_at(*answered, "meta.versionId"), "2");
  answered->erase("meta");
  EXPECT_EQ(json_diff(*expected, *answered), std::vector<std::string>{});
  EXPECT_EQ(json_diff(*expected, current("Patient/" + id)), std::vector<std::string>{});
  // The patched version is indexed as any update.
  Response found = client().get(path("Patient?_id=" + id + "&gender=female"));
  EXPECT_EQ(entry_ids(found), (std::set<std::string>{id})) << found.summary();
}

TEST_F(FhirPathPatchTest, PrimitivesWithExtensionsAndChoices) {
  const std::string pid = create_id(
      "Patient",
      R"({"resourceType":"Patient","name":[{"family":"Ext","given":["A","B","C"],)"
      R"("_given":[null,{"extension":[{"url":"http://example.org/b","valueString":"b"}]},null]}],)"
      R"("birthDate":"2000-01-01","_birthDate":{"extension":[{"url":"http://example.org/t","valueString":"t"}]}})");
  ASSERT_FALSE(pid.empty());
  Response r = patch("Patient/" + pid,
                     parameters({
                         op("delete", "Patient.name.given[0]"),  // A goes, and its _given item with it
                         op("move", "Patient.name.given",        // B C -> C B; _given follows
                            R"({"name":"source","valueInteger":0},{"name":"destination","valueInteger":1})"),
                         // add on a primitive goes to its `_x` sibling
                         op("add", "Patient.birthDate",
                            R"({"name":"name","valueString":"extension"},)"
                            R"({"name":"value","valueExtension":{"url":"http://example.org/u","valueString":"u"}})"),
                         // insert with an extension of its own (_valueString)
                         op("insert", "Patient.name.given",
                            R"({"name":"index","valueInteger":0},{"name":"value","valueString":"Z",)"
                            R"("_valueString":{"id":"z"}})"),
                     }));
  ASSERT_EQ(r.status, 200) << r.summary();
  auto expected = parse_json(
      R"({"resourceType":"Patient","id":")" + pid +
      R"(","name":[{"family":"Ext","given":["Z","C","B"],)"
      R"("_given":[{"id":"z"},null,{"extension":[{"url":"http://example.org/b","valueString":"b"}]}]}],)"
      R"("birthDate":"2000-01-01","_birthDate":{"extension":[{"url":"http://example.org/t","valueString":"t"},)"
      R"({"url":"http://example.org/u","valueString":"u"}]}})");
  ASSERT_TRUE(expected);
  EXPECT_EQ(json_diff(*expected, current("Patient/" + pid)), std::vector<std::string>{});

  // replace of a choice may change its type: valueQuantity -> valueString.
  const std::string oid =
      create_id("Observation", R"({"resourceType":"Observation","status":"final","code":{"text":"colour"},)"
                               R"("valueQuantity":{"value":5,"unit":"mg"}})");
  ASSERT_FALSE(oid.empty());
  Response o = patch("Observation/" + oid,
                     parameters({op("replace", "Observation.value", R"({"name":"value","valueString":"five"})")}));
  ASSERT_EQ(o.status, 200) << o.summary();
  auto expected_o = parse_json(R"({"resourceType":"Observation","id":")" + oid +
                               R"(","status":"final","code":{"text":"colour"},"valueString":"five"})");
  ASSERT_TRUE(expected_o);
  EXPECT_EQ(json_diff(*expected_o, current("Observation/" + oid)), std::vector<std::string>{});
}

TEST_F(FhirPathPatchTest, ErrorsNameTheOperationAndChangeNothing) {
  const std::string sys = "urn:test:" + unique("fpp-errors");
  const std::string id = create_id("Patient", chalmers(sys));
  ASSERT_FALSE(id.empty());
  const std::string ok_op = op("replace", "Patient.gender", R"({"name":"value","valueCode":"female"})");
  struct Case {
    const char* name;
    std::string body;
    int status;
    std::string expression;
  };
  const std::vector<Case> cases = {
      // Malformed Parameters: 400 naming the operation.
      {"NoType", parameters({ok_op, ok_op, R"({"name":"operation","part":[{"name":"path","valueString":"Patient"}]})"}),
       400, "Parameters.parameter[2]"},
      {"UnknownType", parameters({op("frobnicate", "Patient.active")}), 400, "Parameters.parameter[0]"},
      {"PathSyntax", parameters({ok_op, op("delete", "Patient.name[")}), 400, "Parameters.parameter[1]"},
      {"AddWithoutName", parameters({op("add", "Patient", R"({"name":"value","valueBoolean":true})")}), 400,
       "Parameters.parameter[0]"},
      {"InsertWithoutIndex",
       parameters({op("insert", "Patient.identifier", R"({"name":"value","valueIdentifier":{"value":"q"}})")}), 400,
       "Parameters.parameter[0]"},
      {"ReplaceWithoutValue", parameters({op("replace", "Patient.gender")}), 400, "Parameters.parameter[0]"},
      {"NotAnOperation", R"({"resourceType":"Parameters","parameter":[{"name":"op","valueString":"x"}]})", 400,
       "Parameters.parameter[0]"},
      {"NotParameters", R"({"resourceType":"Patient"})", 400, "Parameters.resourceType"},
      // Well-formed, but cannot apply: 422 naming the operation.
      {"ReplaceNothing", parameters({op("replace", "Patient.maritalStatus", R"({"name":"value","valueString":"x"})")}),
       422, "Parameters.parameter[0]"},
      {"ReplaceSeveral",
       parameters({op("replace", "Patient.identifier", R"({"name":"value","valueIdentifier":{"value":"q"}})")}), 422,
       "Parameters.parameter[0]"},
      {"DeleteSeveral", parameters({ok_op, op("delete", "Patient.identifier")}), 422, "Parameters.parameter[1]"},
      {"AddToMissingParent",
       parameters({op("add", "Patient.contact",
                      R"({"name":"name","valueString":"gender"},)"
                      R"({"name":"value","valueCode":"female"})")}),
       422, "Parameters.parameter[0]"},
      {"AddExistingSingle",
       parameters(
           {op("add", "Patient", R"({"name":"name","valueString":"gender"},{"name":"value","valueCode":"other"})")}),
       422, "Parameters.parameter[0]"},
      {"AddUnknownElement",
       parameters(
           {op("add", "Patient", R"({"name":"name","valueString":"colour"},{"name":"value","valueString":"x"})")}),
       422, "Parameters.parameter[0]"},
      {"InsertPastEnd",
       parameters({op("insert", "Patient.identifier",
                      R"({"name":"index","valueInteger":4},{"name":"value","valueIdentifier":{"value":"q"}})")}),
       422, "Parameters.parameter[0]"},
      {"InsertIntoNothing",
       parameters({op("insert", "Patient.photo",
                      R"({"name":"index","valueInteger":0},{"name":"value","valueAttachment":{"title":"q"}})")}),
       422, "Parameters.parameter[0]"},
      {"MoveOutside",
       parameters({op("move", "Patient.identifier",
                      R"({"name":"source","valueInteger":3},{"name":"destination","valueInteger":0})")}),
       422, "Parameters.parameter[0]"},
      {"ComputedValue", parameters({op("delete", "Patient.name.family.upper()")}), 422, "Parameters.parameter[0]"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Response r = patch("Patient/" + id, c.body);
    ASSERT_TRUE(IsOperationOutcome(r, c.status)) << r.summary();
    EXPECT_EQ(expression_of(*r.json()), c.expression) << r.body;
  }
  // A result that breaks the structural check (gender is a code, not a number) or the id: 422, nothing written.
  for (const std::string& body :
       {parameters({ok_op, op("replace", "Patient.birthDate", R"({"name":"value","valueInteger":1974})")}),
        parameters({op("replace", "Patient.id", R"({"name":"value","valueId":"another"})")})}) {
    Response r = patch("Patient/" + id, body);
    EXPECT_TRUE(IsOperationOutcome(r, 422)) << r.summary();
  }
  auto now = read("Patient/" + id);
  ASSERT_TRUE(now);
  EXPECT_EQ(string_at(*now, "meta.versionId"), "1") << "no failed patch wrote a version";
  EXPECT_EQ(string_at(*now, "gender"), "male");
}

TEST_F(FhirPathPatchTest, HonoursIfMatchAndConditionalPatch) {
  const std::string sys = "urn:test:" + unique("fpp-cond");
  const std::string id = create_id("Patient", chalmers(sys));
  ASSERT_FALSE(id.empty());
  const std::string female = parameters({op("replace", "Patient.gender", R"({"name":"value","valueCode":"female"})")});
  HeaderList stale = kFhirJson;
  stale.emplace_back("If-Match", "W/\"2\"");
  EXPECT_TRUE(IsOperationOutcome(patch("Patient/" + id, female, stale), 412));
  HeaderList fresh = kFhirJson;
  fresh.emplace_back("If-Match", "W/\"1\"");
  Response r = patch("Patient/" + id, female, fresh);
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(string_at(*r.json(), "gender"), "female");
  EXPECT_EQ(string_at(*r.json(), "meta.versionId"), "2");

  // Conditional: the one match (application/json holding a Parameters works too); none 404; several 412.
  const std::string other = parameters({op("replace", "Patient.name.family", R"({"name":"value","valueString":"X"})")});
  Response c = patch("Patient?identifier=" + url_encode(sys + "|b"), other, {{"Content-Type", "application/json"}});
  ASSERT_EQ(c.status, 200) << c.summary();
  EXPECT_EQ(string_at(*c.json(), "id"), id);
  EXPECT_EQ(string_at(*c.json(), "name[0].family"), "X");
  EXPECT_EQ(string_at(*c.json(), "meta.versionId"), "3");
  EXPECT_TRUE(IsOperationOutcome(patch("Patient?identifier=" + url_encode(sys + "|zz"), other), 404));
  ASSERT_FALSE(create_id("Patient", chalmers(sys)).empty());
  EXPECT_TRUE(IsOperationOutcome(patch("Patient?identifier=" + url_encode(sys + "|b"), other), 412));
  auto now = read("Patient/" + id);
  ASSERT_TRUE(now);
  EXPECT_EQ(string_at(*now, "meta.versionId"), "3");
}

TEST_F(FhirPathPatchTest, CapabilityStatementListsBothPatchFormats) {
  Response r = client().get(path("metadata"));
  ASSERT_EQ(r.status, 200) << r.summary();
  auto cs = r.json();
  ASSERT_TRUE(cs);
  EXPECT_EQ(size_at(*cs, "patchFormat"), 2u);
  EXPECT_EQ(string_at(*cs, "patchFormat[0]"), "application/json-patch+json");
  EXPECT_EQ(string_at(*cs, "patchFormat[1]"), "application/fhir+json");
}

// ---- PATCH entries in Bundles -----------------------------------------------------------------------------------

TEST_F(FhirPathPatchTest, TransactionWithPatchEntries) {
  const std::string sys = "urn:test:" + unique("fpp-txn");
  const std::string p = create_id("Patient", chalmers(sys));
  const std::string q = create_id("Patient", R"({"resourceType":"Patient","identifier":[{"system":")" + sys +
                                                 R"(","value":"q"}],"name":[{"family":"Queue","given":["Quentin"]}]})");
  const std::string s = create_id("Patient", R"({"resourceType":"Patient","name":[{"family":"Doomed"}]})");
  ASSERT_FALSE(p.empty() || q.empty() || s.empty());
  const std::string r_id = unique("fpp-put");
  const std::string json_patch = R"([{"op":"replace","path":"/name/0/family","value":"Binary"},)"
                                 R"({"op":"add","path":"/name/0/given/-","value":"Q"}])";
  const std::string bundle = R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"urn:uuid:0d8a5f3e-8f1e-4a55-9d3c-6f7b6a9a1c01",
     "resource":{"resourceType":"Patient","name":[{"family":"Newborn"}]},
     "request":{"method":"POST","url":"Patient"}},
    {"resource":)" +
                             parameters({
                                 op("replace", "Patient.gender", R"({"name":"value","valueCode":"female"})"),
                                 op("add", "Patient",
                                    R"({"name":"name","valueString":"link"},{"name":"value","part":[)"
                                    R"({"name":"other","valueReference":)"
                                    R"({"reference":"urn:uuid:0d8a5f3e-8f1e-4a55-9d3c-6f7b6a9a1c01"}},)"
                                    R"({"name":"type","valueCode":"seealso"}]})"),
                             }) +
                             R"(,"request":{"method":"PATCH","url":"Patient/)" + p + R"(","ifMatch":"W/\"1\""}},
    {"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":")" +
                             base64(json_patch) + R"("},
     "request":{"method":"PATCH","url":"Patient?identifier=)" +
                             url_encode(sys + "|q") + R"("}},
    {"resource":{"resourceType":"Patient","id":")" +
                             r_id +
                             R"(","name":[{"family":"Put"}]},
     "request":{"method":"PUT","url":"Patient/)" +
                             r_id +
                             R"("}},
    {"request":{"method":"DELETE","url":"Patient/)" +
                             s + R"("}}]})";
  Value b = post_bundle(bundle, 200);
  ASSERT_EQ(size_at(b, "entry"), 5u) << last_.body;
  EXPECT_EQ(string_at(b, "entry[0].response.status"), "201 Created");
  const std::string newborn = string_at(b, "entry[0].resource.id");
  ASSERT_FALSE(newborn.empty()) << last_.body;
  EXPECT_EQ(string_at(b, "entry[1].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[1].response.location"), "Patient/" + p + "/_history/2");
  EXPECT_EQ(string_at(b, "entry[1].response.etag"), "W/\"2\"");
  EXPECT_EQ(string_at(b, "entry[2].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[2].response.location"), "Patient/" + q + "/_history/2");
  EXPECT_EQ(string_at(b, "entry[3].response.status"), "201 Created");
  EXPECT_EQ(string_at(b, "entry[4].response.status"), "200 OK");

  // Patched with the reference to the new entry rewired.
  auto expected_p = parse_json(R"({"resourceType":"Patient","id":")" + p + R"(","active":true,)" +
                               R"("identifier":[{"system":")" + sys + R"(","value":"a"},{"system":")" + sys +
                               R"(","value":"b"},{"system":")" + sys + R"(","value":"c"}],)" +
                               R"("name":[{"family":"Chalmers","given":["Peter","James"]}],)"
                               R"("telecom":[{"system":"phone","value":"555-1"}],"gender":"female",)"
                               R"("birthDate":"1974-12-25","link":[{"other":{"reference":"Patient/)" +
                               newborn + R"("},"type":"seealso"}]})");
  ASSERT_TRUE(expected_p);
  EXPECT_EQ(json_diff(*expected_p, current("Patient/" + p)), std::vector<std::string>{});
  auto expected_q = parse_json(R"({"resourceType":"Patient","id":")" + q + R"(","identifier":[{"system":")" + sys +
                               R"(","value":"q"}],"name":[{"family":"Binary","given":["Quentin","Q"]}]})");
  ASSERT_TRUE(expected_q);
  EXPECT_EQ(json_diff(*expected_q, current("Patient/" + q)), std::vector<std::string>{});
  EXPECT_EQ(client().get(path("Patient/" + s)).status, 410);
  EXPECT_EQ(client().get(path("Patient/" + r_id)).status, 200);
  // The patched versions are indexed: the search sees the new family name.
  Response found = client().get(path("Patient?family=Binary&identifier=" + url_encode(sys + "|q")));
  EXPECT_EQ(entry_ids(found), (std::set<std::string>{q})) << found.summary();
}

TEST_F(FhirPathPatchTest, FailingPatchEntryRollsTheTransactionBack) {
  const std::string sys = "urn:test:" + unique("fpp-rollback");
  const std::string p = create_id("Patient", chalmers(sys));
  const std::string other = create_id("Patient", R"({"resourceType":"Patient","name":[{"family":"Other"}]})");
  ASSERT_FALSE(p.empty() || other.empty());
  const std::int64_t before = versions();
  const std::string post_and_put = R"(
    {"fullUrl":"urn:uuid:5b8c1d7e-2a3f-4e6d-8c9b-0a1b2c3d4e5f",
     "resource":{"resourceType":"Patient","name":[{"family":"Never"}]},"request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Patient","id":")" +
                                   other +
                                   R"(","name":[{"family":"Changed"}]},
     "request":{"method":"PUT","url":"Patient/)" +
                                   other + R"("}},)";
  struct Case {
    const char* name;
    std::string entry;  // the third entry, a PATCH of Patient p
    int status;
    std::string expression;
  };
  auto fhirpath_entry = [&](const std::string& ops, const std::string& request_extra = {}) {
    return R"({"fullUrl":"http://example.org/fhir/Patient/)" + p + R"(","resource":)" + ops +
           R"(,"request":{"method":"PATCH","url":"Patient/)" + p + "\"" + request_extra + "}}";
  };
  const std::vector<Case> cases = {
      {"ReplaceNothing",
       fhirpath_entry(parameters({op("replace", "Patient.gender", R"({"name":"value","valueCode":"female"})"),
                                  op("replace", "Patient.photo", R"({"name":"value","valueAttachment":{}})")})),
       422, "Bundle.entry[2].resource.parameter[1]"},
      {"Malformed", fhirpath_entry(parameters({op("replace", "Patient.gender")})), 400,
       "Bundle.entry[2].resource.parameter[0]"},
      {"BreaksStructure",
       fhirpath_entry(parameters({op("replace", "Patient.birthDate", R"({"name":"value","valueBoolean":true})")})), 422,
       "Bundle.entry[2]"},
      {"StaleIfMatch",
       fhirpath_entry(parameters({op("replace", "Patient.gender", R"({"name":"value","valueCode":"female"})")}),
                      R"(,"ifMatch":"W/\"7\"")"),
       412, "Bundle.entry[2].request.ifMatch"},
      {"JsonPatchFails",
       R"({"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":")" +
           base64(R"([{"op":"remove","path":"/maritalStatus"}])") +
           R"("},"request":{"method":"PATCH","url":"Patient/)" + p + R"("}})",
       422, "Bundle.entry[2].resource.data"},
      {"NotBase64",
       R"({"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"%%%"},)"
       R"("request":{"method":"PATCH","url":"Patient/)" +
           p + R"("}})",
       400, "Bundle.entry[2].resource.data"},
      {"MissingTarget",
       R"({"resource":)" + parameters({op("delete", "Patient.active")}) +
           R"(,"request":{"method":"PATCH","url":"Patient/no-such-patient"}})",
       404, "Bundle.entry[2].request.url"},
      {"ConditionalMatchesNone",
       R"({"resource":)" + parameters({op("delete", "Patient.active")}) +
           R"(,"request":{"method":"PATCH","url":"Patient?identifier=)" + url_encode(sys + "|none") + R"("}})",
       404, "Bundle.entry[2].request.url"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string bundle =
        R"({"resourceType":"Bundle","type":"transaction","entry":[)" + post_and_put + c.entry + "]}";
    Response r = client().post(path(), bundle, {});
    ASSERT_TRUE(IsOperationOutcome(r, c.status)) << r.summary();
    auto outcome = r.json();
    EXPECT_EQ(expression_of(*outcome), c.expression) << r.body;
    EXPECT_NE(string_at(*outcome, "issue[0].diagnostics").find("Bundle.entry[2]"), std::string::npos) << r.body;
  }
  // The fullUrl is named too.
  Response named = client().post(
      path(), R"({"resourceType":"Bundle","type":"transaction","entry":[)" + post_and_put + cases[0].entry + "]}", {});
  EXPECT_NE(named.body.find("(fullUrl http://example.org/fhir/Patient/" + p + ")"), std::string::npos) << named.body;
  // Nothing of any of them was stored.
  EXPECT_EQ(versions(), before);
  auto now = read("Patient/" + p);
  ASSERT_TRUE(now);
  EXPECT_EQ(string_at(*now, "meta.versionId"), "1");
  EXPECT_EQ(string_at(*now, "gender"), "male");
  auto untouched = read("Patient/" + other);
  ASSERT_TRUE(untouched);
  EXPECT_EQ(string_at(*untouched, "name[0].family"), "Other");
  EXPECT_EQ(string_at(*untouched, "meta.versionId"), "1");
}

TEST_F(FhirPathPatchTest, BatchWithOneFailingPatch) {
  const std::string sys = "urn:test:" + unique("fpp-batch");
  const std::string p = create_id("Patient", chalmers(sys));
  ASSERT_FALSE(p.empty());
  const std::string bundle =
      R"({"resourceType":"Bundle","type":"batch","entry":[
    {"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":")" +
      base64(R"([{"op":"replace","path":"/gender","value":"other"}])") +
      R"("},"request":{"method":"PATCH","url":"Patient/)" + p + R"("}},
    {"resource":)" +
      parameters({op("delete", "Patient.identifier")}) + R"(,"request":{"method":"PATCH","url":"Patient/)" + p + R"("}},
    {"resource":{"resourceType":"Patient","identifier":[{"system":")" +
      sys +
      R"(","value":"new"}]},"request":{"method":"POST","url":"Patient"}},
    {"resource":)" +
      parameters({op("move", "Patient.identifier",
                     R"({"name":"source","valueInteger":2},{"name":"destination","valueInteger":0})")}) +
      R"(,"request":{"method":"PATCH","url":"Patient?identifier=)" + url_encode(sys + "|a") + R"("}}]})";
  Value b = post_bundle(bundle, 200);
  ASSERT_EQ(size_at(b, "entry"), 4u) << last_.body;
  EXPECT_EQ(string_at(b, "type"), "batch-response");
  EXPECT_EQ(string_at(b, "entry[0].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[0].response.etag"), "W/\"2\"");
  EXPECT_EQ(string_at(b, "entry[1].response.status"), "422 Unprocessable Entity");
  EXPECT_EQ(string_at(b, "entry[1].response.outcome.issue[0].expression[0]"), "Bundle.entry[1].resource.parameter[0]");
  EXPECT_EQ(string_at(b, "entry[2].response.status"), "201 Created");
  EXPECT_EQ(string_at(b, "entry[3].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[3].response.etag"), "W/\"3\"");
  // Entries 0 and 3 applied (gender other; identifiers a b c -> c a b), entry 1 not.
  auto expected = parse_json(R"({"resourceType":"Patient","id":")" + p + R"(","active":true,)" +
                             R"("identifier":[{"system":")" + sys + R"(","value":"c"},{"system":")" + sys +
                             R"(","value":"a"},{"system":")" + sys + R"(","value":"b"}],)" +
                             R"("name":[{"family":"Chalmers","given":["Peter","James"]}],)"
                             R"("telecom":[{"system":"phone","value":"555-1"}],"gender":"other",)"
                             R"("birthDate":"1974-12-25"})");
  ASSERT_TRUE(expected);
  EXPECT_EQ(json_diff(*expected, current("Patient/" + p)), std::vector<std::string>{});
}

}  // namespace
}  // namespace caduceus::test
