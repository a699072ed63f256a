// Batch and transaction Bundles at POST [base] (https://hl7.org/fhir/R4/http.html#transaction) over real HTTP:
// ids and reference rewriting, conditional references, ifNoneExist, all-or-nothing, batch independence, the
// response Bundle, bad input, the entry limit, and a real Synthea transaction Bundle.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using fhir::json::Value;

std::string unique(std::string_view prefix) {
  static std::atomic<int> counter{0};
  return std::string(prefix) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

// The ids the server gives: version 7 UUIDs (RFC 9562), in lower case.
const std::regex kUuid("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");

// "Patient/abc/_history/1" -> "abc"
std::string id_of_location(const std::string& location) {
  auto first = location.find('/');
  auto second = location.find('/', first + 1);
  return location.substr(first + 1, second - first - 1);
}

class BundleTest : public ServerTest {
 protected:
  // How many versions the store holds (system history total): a failed transaction must not change it.
  std::int64_t versions() {
    Response r = client().get(path("_history?_count=1"));
    EXPECT_EQ(r.status, 200) << r.summary();
    auto v = r.json();
    return v ? std::atoll(string_at(*v, "total").c_str()) : -1;
  }

  std::int64_t count(std::string_view type_and_query) {
    std::string target = path(type_and_query);
    target += type_and_query.find('?') == std::string_view::npos ? "?" : "&";
    target += "_summary=count";
    Response r = client().get(target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.summary();
    auto v = r.json();
    return v ? std::atoll(string_at(*v, "total").c_str()) : -1;
  }

  Value post_bundle(const std::string& body, int status, const HeaderList& headers = {}) {
    Response r = client().post(path(), body, headers);
    EXPECT_EQ(r.status, status) << r.summary();
    EXPECT_TRUE(IsFhirJson(r)) << r.summary();
    auto v = r.json();
    EXPECT_TRUE(v.has_value()) << r.summary();
    last_ = r;
    return v.value_or(Value());
  }

  // Creates a Patient with identifier sys|value; returns its id.
  std::string patient_with_identifier(const std::string& value) {
    auto p =
        create("Patient", R"({"resourceType":"Patient","identifier":[{"system":"http://example.org/mrn","value":")" +
                              value + R"("}],"name":[{"family":"Existing"}]})");
    return p ? string_at(*p, "id") : std::string();
  }

  Response last_;
};

TEST_F(BundleTest, TransactionCreatesAllAndRewiresReferences) {
  const std::string mrn = unique("mrn");
  const std::string existing = patient_with_identifier(mrn);
  ASSERT_FALSE(existing.empty());
  const std::int64_t before = versions();
  const std::string bundle = R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
     "resource":{"resourceType":"Patient","name":[{"family":"Chalmers"}],"gender":"male"},
     "request":{"method":"POST","url":"Patient"}},
    {"fullUrl":"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
     "resource":{"resourceType":"Encounter","status":"finished",
                 "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
                 "subject":{"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}},
     "request":{"method":"POST","url":"Encounter"}},
    {"fullUrl":"urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
     "resource":{"resourceType":"Observation","status":"final","code":{"text":"heart rate"},
                 "subject":{"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                 "encounter":{"reference":"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
                 "extension":[{"url":"http://example.org/ext","valueReference":
                               {"reference":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}}],
                 "valueQuantity":{"value":72,"unit":"/min"}},
     "request":{"method":"POST","url":"Observation"}},
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"weight"},
                 "subject":{"reference":"Patient?identifier=http://example.org/mrn|)" +
                             mrn + R"("},
                 "performer":[{"reference":"Patient/not-rewritten"}]},
     "request":{"method":"POST","url":"Observation"}}]})";
  Value b = post_bundle(bundle, 200);
  ASSERT_EQ(string_at(b, "resourceType"), "Bundle");
  EXPECT_EQ(string_at(b, "type"), "transaction-response");
  ASSERT_EQ(size_at(b, "entry"), 4u) << last_.body;
  const char* types[] = {"Patient", "Encounter", "Observation", "Observation"};
  std::string ids[4];
  for (int i = 0; i < 4; ++i) {
    std::string e = "entry[" + std::to_string(i) + "]";
    EXPECT_EQ(string_at(b, e + ".response.status"), "201 Created");
    std::string location = string_at(b, e + ".response.location");
    ids[i] = id_of_location(location);
    EXPECT_TRUE(std::regex_match(ids[i], kUuid)) << location;
    EXPECT_EQ(location, std::string(types[i]) + "/" + ids[i] + "/_history/1");
    EXPECT_EQ(string_at(b, e + ".response.etag"), "W/\"1\"");
    EXPECT_TRUE(parse_instant(string_at(b, e + ".response.lastModified"))) << last_.body;
    EXPECT_EQ(string_at(b, e + ".fullUrl"), server().base_url() + "/" + types[i] + "/" + ids[i]);
    // Default: the resource as stored.
    EXPECT_EQ(string_at(b, e + ".resource.id"), ids[i]);
    EXPECT_EQ(string_at(b, e + ".resource.meta.versionId"), "1");
  }
  EXPECT_EQ(versions(), before + 4);

  auto enc = read("Encounter/" + ids[1]);
  ASSERT_TRUE(enc);
  EXPECT_EQ(string_at(*enc, "subject.reference"), "Patient/" + ids[0]);
  auto obs = read("Observation/" + ids[2]);
  ASSERT_TRUE(obs);
  EXPECT_EQ(string_at(*obs, "subject.reference"), "Patient/" + ids[0]);
  EXPECT_EQ(string_at(*obs, "encounter.reference"), "Encounter/" + ids[1]);
  EXPECT_EQ(string_at(*obs, "extension[0].valueReference.reference"), "Patient/" + ids[0]);
  auto cond = read("Observation/" + ids[3]);
  ASSERT_TRUE(cond);
  EXPECT_EQ(string_at(*cond, "subject.reference"), "Patient/" + existing);
  EXPECT_EQ(string_at(*cond, "performer[0].reference"), "Patient/not-rewritten");
  // The index holds the rewritten references (static and resolved in the job alike).
  EXPECT_EQ(count("Observation?subject=Patient/" + ids[0]), 1);
  EXPECT_EQ(count("Observation?subject=Patient/" + existing), 1);
  EXPECT_EQ(count("Encounter?subject=Patient/" + ids[0]), 1);
}

TEST_F(BundleTest, IfNoneExistReusesTheMatchAndItsFullUrl) {
  const std::string mrn = unique("mrn");
  const std::string existing = patient_with_identifier(mrn);
  ASSERT_FALSE(existing.empty());
  auto bundle = [&](const std::string& value) {
    return R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"fullUrl":"urn:uuid:3f1a1b7e-0000-4000-8000-000000000001",
       "resource":{"resourceType":"Patient","identifier":[{"system":"http://example.org/mrn","value":")" +
           value + R"("}]},
       "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://example.org/mrn|)" +
           value + R"("}},
      {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
                   "subject":{"reference":"urn:uuid:3f1a1b7e-0000-4000-8000-000000000001"}},
       "request":{"method":"POST","url":"Observation"}}]})";
  };
  const std::int64_t before = versions();
  Value b = post_bundle(bundle(mrn), 200);
  EXPECT_EQ(string_at(b, "entry[0].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[0].response.location"), "Patient/" + existing + "/_history/1");
  EXPECT_EQ(string_at(b, "entry[0].response.etag"), "W/\"1\"");
  EXPECT_EQ(string_at(b, "entry[1].response.status"), "201 Created");
  EXPECT_EQ(versions(), before + 1) << "only the Observation is written";
  auto obs = read("Observation/" + id_of_location(string_at(b, "entry[1].response.location")));
  ASSERT_TRUE(obs);
  EXPECT_EQ(string_at(*obs, "subject.reference"), "Patient/" + existing);

  // No match: created, and the reference points at the new one.
  const std::string fresh = unique("mrn");
  Value c = post_bundle(bundle(fresh), 200);
  EXPECT_EQ(string_at(c, "entry[0].response.status"), "201 Created");
  const std::string created = id_of_location(string_at(c, "entry[0].response.location"));
  EXPECT_NE(created, existing);
  auto obs2 = read("Observation/" + id_of_location(string_at(c, "entry[1].response.location")));
  ASSERT_TRUE(obs2);
  EXPECT_EQ(string_at(*obs2, "subject.reference"), "Patient/" + created);
  EXPECT_EQ(count("Patient?identifier=http://example.org/mrn|" + fresh), 1);
}

TEST_F(BundleTest, ConditionalUpdateCreatesThenUpdatesAndRefusesSeveralMatches) {
  const std::string mrn = unique("mrn");
  auto bundle = [&](const std::string& value, const std::string& family) {
    return R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"fullUrl":"urn:uuid:c0c0c0c0-0000-4000-8000-000000000001",
       "resource":{"resourceType":"Patient","identifier":[{"system":"http://example.org/mrn","value":")" +
           value + R"("}],"name":[{"family":")" + family + R"("}]},
       "request":{"method":"PUT","url":"Patient?identifier=http://example.org/mrn|)" +
           value + R"("}},
      {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
                   "subject":{"reference":"urn:uuid:c0c0c0c0-0000-4000-8000-000000000001"}},
       "request":{"method":"POST","url":"Observation"}}]})";
  };
  // No match: created with a new id; the Observation refers to it.
  Value a = post_bundle(bundle(mrn, "First"), 200);
  EXPECT_EQ(string_at(a, "entry[0].response.status"), "201 Created");
  const std::string location = string_at(a, "entry[0].response.location");
  const std::string id = id_of_location(location);
  EXPECT_TRUE(std::regex_match(id, kUuid)) << location;
  EXPECT_EQ(location, "Patient/" + id + "/_history/1");
  auto obs = read("Observation/" + id_of_location(string_at(a, "entry[1].response.location")));
  ASSERT_TRUE(obs);
  EXPECT_EQ(string_at(*obs, "subject.reference"), "Patient/" + id);

  // One match: that resource is updated (version 2, same id).
  Value b = post_bundle(bundle(mrn, "Second"), 200);
  EXPECT_EQ(string_at(b, "entry[0].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[0].response.location"), "Patient/" + id + "/_history/2");
  EXPECT_EQ(string_at(b, "entry[0].response.etag"), "W/\"2\"");
  auto p = read("Patient/" + id);
  ASSERT_TRUE(p);
  EXPECT_EQ(string_at(*p, "name[0].family"), "Second");
  EXPECT_EQ(string_at(*p, "meta.versionId"), "2");
  auto obs2 = read("Observation/" + id_of_location(string_at(b, "entry[1].response.location")));
  ASSERT_TRUE(obs2);
  EXPECT_EQ(string_at(*obs2, "subject.reference"), "Patient/" + id);
  EXPECT_EQ(count("Patient?identifier=http://example.org/mrn|" + mrn), 1);

  // A body id other than the match's: 400, nothing stored.
  std::int64_t before = versions();
  post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"resource":{"resourceType":"Patient","id":"not-the-match"},
       "request":{"method":"PUT","url":"Patient?identifier=http://example.org/mrn|)" +
                  mrn + R"("}}]})",
              400);
  EXPECT_EQ(versions(), before);

  // Two matches: 412 and nothing of the transaction is stored (not even the POST before it).
  const std::string twice = unique("mrn");
  ASSERT_FALSE(patient_with_identifier(twice).empty());
  ASSERT_FALSE(patient_with_identifier(twice).empty());
  before = versions();
  Value c = post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"resource":{"resourceType":"Patient","name":[{"family":"Posted"}]},"request":{"method":"POST","url":"Patient"}},
      {"resource":{"resourceType":"Patient","name":[{"family":"Ambiguous"}]},
       "request":{"method":"PUT","url":"Patient?identifier=http://example.org/mrn|)" +
                            twice + R"("}}]})",
                        412);
  EXPECT_EQ(string_at(c, "resourceType"), "OperationOutcome");
  EXPECT_EQ(string_at(c, "issue[0].expression[0]"), "Bundle.entry[1].request.url");
  EXPECT_EQ(versions(), before);
  EXPECT_EQ(count("Patient?family=Ambiguous"), 0);
}

TEST_F(BundleTest, ConditionalDeleteInABatch) {
  const std::string one = unique("mrn"), two = unique("mrn"), none = unique("mrn");
  const std::string target = patient_with_identifier(one);
  ASSERT_FALSE(target.empty());
  ASSERT_FALSE(patient_with_identifier(two).empty());
  ASSERT_FALSE(patient_with_identifier(two).empty());
  const std::int64_t before = versions();
  Value b = post_bundle(R"({"resourceType":"Bundle","type":"batch","entry":[
      {"request":{"method":"DELETE","url":"Patient?identifier=http://example.org/mrn|)" +
                            one + R"("}},
      {"request":{"method":"DELETE","url":"Patient?identifier=http://example.org/mrn|)" +
                            two + R"("}},
      {"request":{"method":"DELETE","url":"Patient?identifier=http://example.org/mrn|)" +
                            none + R"("}},
      {"request":{"method":"DELETE","url":"Patient?notAParameter=1"}}]})",
                        200);
  EXPECT_EQ(string_at(b, "type"), "batch-response");
  ASSERT_EQ(size_at(b, "entry"), 4u);
  EXPECT_EQ(string_at(b, "entry[0].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[0].response.location"), "Patient/" + target + "/_history/2");
  EXPECT_EQ(string_at(b, "entry[1].response.status"), "412 Precondition Failed");
  EXPECT_EQ(string_at(b, "entry[1].response.outcome.issue[0].expression[0]"), "Bundle.entry[1].request.url");
  EXPECT_EQ(string_at(b, "entry[2].response.status"), "204 No Content");
  EXPECT_EQ(string_at(b, "entry[3].response.status"), "400 Bad Request");
  EXPECT_EQ(versions(), before + 1) << "only the one match is deleted";
  EXPECT_EQ(client().get(path("Patient/" + target)).status, 410);
  EXPECT_EQ(count("Patient?identifier=http://example.org/mrn|" + two), 2);
}

TEST_F(BundleTest, FailedTransactionStoresNothing) {
  const std::int64_t before = versions();
  // The last entry fails the structural check: 400 naming it, nothing stored.
  Value b = post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001","resource":{"resourceType":"Patient"},
     "request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Patient","id":"txn-put-1"},"request":{"method":"PUT","url":"Patient/txn-put-1"}},
    {"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000003",
     "resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueBoolean":"yes",
                 "subject":{"reference":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"}},
     "request":{"method":"POST","url":"Observation"}}]})",
                        400);
  EXPECT_TRUE(IsOperationOutcome(last_, 400));
  EXPECT_TRUE(NamesElement(last_, {"Bundle.entry[2].resource.valueBoolean"})) << last_.body;
  EXPECT_TRUE(NamesElement(last_, {}, "urn:uuid:aaaaaaaa-0000-4000-8000-000000000003")) << last_.body;
  EXPECT_EQ(versions(), before);
  EXPECT_EQ(client().get(path("Patient/txn-put-1")).status, 404);

  // Failing inside the write job (a conditional reference without a match): 412 naming the entry, nothing stored.
  post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Patient","id":"txn-put-2"},"request":{"method":"PUT","url":"Patient/txn-put-2"}},
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
                 "subject":{"reference":"Patient?identifier=http://example.org/mrn|nobody-has-this"}},
     "request":{"method":"POST","url":"Observation"}}]})",
              412);
  EXPECT_TRUE(IsOperationOutcome(last_, 412));
  EXPECT_TRUE(NamesElement(last_, {"Bundle.entry[1].resource"})) << last_.body;
  EXPECT_EQ(versions(), before);
  EXPECT_EQ(client().get(path("Patient/txn-put-2")).status, 404);

  // Several matches of a conditional reference: 412 too.
  const std::string mrn = unique("dup");
  patient_with_identifier(mrn);
  patient_with_identifier(mrn);
  const std::int64_t with_two = versions();
  post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
                 "subject":{"reference":"Patient?identifier=http://example.org/mrn|)" +
                  mrn + R"("}},"request":{"method":"POST","url":"Observation"}}]})",
              412);
  EXPECT_TRUE(NamesElement(last_, {"Bundle.entry[0].resource"})) << last_.body;
  EXPECT_EQ(versions(), with_two);

  // A stale ifMatch: 412 naming the entry's ifMatch.
  ASSERT_TRUE(client().put(path("Patient/txn-put-3"), R"({"resourceType":"Patient","id":"txn-put-3"})").status == 201);
  const std::int64_t with_put = versions();
  post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Patient","id":"txn-put-3","active":true},
     "request":{"method":"PUT","url":"Patient/txn-put-3","ifMatch":"W/\"7\""}}]})",
              412);
  EXPECT_TRUE(NamesElement(last_, {"Bundle.entry[1].request.ifMatch"})) << last_.body;
  EXPECT_EQ(versions(), with_put);
}

TEST_F(BundleTest, DeletePutAndGetEntries) {
  ASSERT_TRUE(client().put(path("Patient/txn-del"), R"({"resourceType":"Patient","id":"txn-del"})").status == 201);
  ASSERT_TRUE(client().put(path("Patient/txn-upd"), R"({"resourceType":"Patient","id":"txn-upd"})").status == 201);
  Value b = post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"request":{"method":"GET","url":"Patient/txn-upd"}},
    {"resource":{"resourceType":"Patient","id":"txn-upd","active":false},
     "request":{"method":"PUT","url":"Patient/txn-upd","ifMatch":"W/\"1\""}},
    {"resource":{"resourceType":"Patient","id":"txn-new"},"request":{"method":"PUT","url":"Patient/txn-new"}},
    {"request":{"method":"DELETE","url":"Patient/txn-del"}},
    {"request":{"method":"GET","url":"Patient?_id=txn-upd,txn-del"}},
    {"request":{"method":"GET","url":"Patient/txn-upd/_history/1"}}]})",
                        200, {{"Prefer", "return=minimal"}});
  EXPECT_EQ(string_at(b, "type"), "transaction-response");
  // GET entries run after the writes.
  EXPECT_EQ(string_at(b, "entry[0].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[0].resource.meta.versionId"), "2");
  EXPECT_EQ(string_at(b, "entry[0].response.etag"), "W/\"2\"");
  EXPECT_EQ(string_at(b, "entry[1].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[1].response.location"), "Patient/txn-upd/_history/2");
  EXPECT_EQ(find_path(b, "entry[1].resource"), nullptr) << "return=minimal";
  EXPECT_EQ(string_at(b, "entry[2].response.status"), "201 Created");
  EXPECT_EQ(string_at(b, "entry[2].response.location"), "Patient/txn-new/_history/1");
  EXPECT_EQ(string_at(b, "entry[3].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[3].response.etag"), "W/\"2\"");
  EXPECT_EQ(string_at(b, "entry[4].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[4].resource.type"), "searchset");
  EXPECT_EQ(size_at(b, "entry[4].resource.entry"), 1u);
  EXPECT_EQ(string_at(b, "entry[4].resource.entry[0].resource.id"), "txn-upd");
  EXPECT_EQ(string_at(b, "entry[5].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[5].resource.meta.versionId"), "1");
  EXPECT_EQ(client().get(path("Patient/txn-del")).status, 410);
  auto upd = read("Patient/txn-upd");
  ASSERT_TRUE(upd);
  const Value* active = find_path(*upd, "active");
  ASSERT_NE(active, nullptr);
  EXPECT_TRUE(active->is_bool() && !active->as_bool());
}

TEST_F(BundleTest, AbsoluteFullUrlsAndRelativeReferences) {
  // R4: a relative reference in an entry whose fullUrl is absolute resolves against that fullUrl's base; when
  // that is another entry's fullUrl, it is that entry. Absolute references to a fullUrl are rewritten too.
  Value b = post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"fullUrl":"http://example.org/fhir/Patient/temp1","resource":{"resourceType":"Patient","id":"temp1"},
     "request":{"method":"POST","url":"Patient"}},
    {"fullUrl":"http://example.org/fhir/Observation/temp2",
     "resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
                 "subject":{"reference":"Patient/temp1"},
                 "performer":[{"reference":"http://example.org/fhir/Patient/temp1"},{"reference":"Patient/other"}]},
     "request":{"method":"POST","url":"Observation"}}]})",
                        200);
  const std::string patient = id_of_location(string_at(b, "entry[0].response.location"));
  EXPECT_NE(patient, "temp1") << "POST assigns a new id";
  EXPECT_EQ(string_at(b, "entry[0].resource.id"), patient);
  auto obs = read("Observation/" + id_of_location(string_at(b, "entry[1].response.location")));
  ASSERT_TRUE(obs);
  EXPECT_EQ(string_at(*obs, "subject.reference"), "Patient/" + patient);
  EXPECT_EQ(string_at(*obs, "performer[0].reference"), "Patient/" + patient);
  EXPECT_EQ(string_at(*obs, "performer[1].reference"), "Patient/other");
}

TEST_F(BundleTest, GetEntriesHonourIfNoneMatch) {
  ASSERT_TRUE(client().put(path("Patient/txn-304"), R"({"resourceType":"Patient","id":"txn-304"})").status == 201);
  Value b = post_bundle(R"({"resourceType":"Bundle","type":"batch","entry":[
    {"request":{"method":"GET","url":"Patient/txn-304","ifNoneMatch":"W/\"1\""}},
    {"request":{"method":"GET","url":"Patient/txn-304","ifNoneMatch":"W/\"7\""}}]})",
                        200);
  EXPECT_EQ(string_at(b, "entry[0].response.status"), "304 Not Modified");
  EXPECT_EQ(string_at(b, "entry[0].response.etag"), "W/\"1\"");
  EXPECT_EQ(find_path(b, "entry[0].resource"), nullptr);
  EXPECT_EQ(string_at(b, "entry[1].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[1].resource.id"), "txn-304");
}

TEST_F(BundleTest, BatchEntriesAreIndependent) {
  const std::string existing = patient_with_identifier(unique("mrn"));
  const std::int64_t before = versions();
  Value b = post_bundle(R"({"resourceType":"Bundle","type":"batch","entry":[
    {"fullUrl":"urn:uuid:bbbbbbbb-0000-4000-8000-000000000001",
     "resource":{"resourceType":"Patient","name":[{"family":"Batch"}]},"request":{"method":"POST","url":"Patient"}},
    {"resource":{"resourceType":"Patient","id":"batch-bad","gender":42},"request":{"method":"PUT","url":"Patient/batch-bad"}},
    {"request":{"method":"GET","url":"Patient/)" +
                            existing +
                            R"("}},
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
                 "subject":{"reference":"urn:uuid:bbbbbbbb-0000-4000-8000-000000000001"}},
     "request":{"method":"POST","url":"Observation"}},
    {"request":{"method":"GET","url":"Patient/does-not-exist"}},
    {"resource":{"resourceType":"Patient","id":"batch-ok"},"request":{"method":"PUT","url":"Patient/batch-ok"}}]})",
                        200);
  EXPECT_EQ(string_at(b, "type"), "batch-response");
  ASSERT_EQ(size_at(b, "entry"), 6u);
  EXPECT_EQ(string_at(b, "entry[0].response.status"), "201 Created");
  const std::string created = id_of_location(string_at(b, "entry[0].response.location"));
  EXPECT_TRUE(read("Patient/" + created));
  EXPECT_EQ(string_at(b, "entry[1].response.status"), "400 Bad Request");
  EXPECT_EQ(string_at(b, "entry[1].response.outcome.resourceType"), "OperationOutcome");
  EXPECT_EQ(string_at(b, "entry[1].response.outcome.issue[0].expression[0]"), "Bundle.entry[1].resource.gender");
  EXPECT_EQ(string_at(b, "entry[2].response.status"), "200 OK");
  EXPECT_EQ(string_at(b, "entry[2].resource.id"), existing);
  EXPECT_EQ(string_at(b, "entry[3].response.status"), "400 Bad Request");
  EXPECT_EQ(string_at(b, "entry[3].response.outcome.issue[0].expression[0]"), "Bundle.entry[3].resource");
  EXPECT_EQ(string_at(b, "entry[4].response.status"), "404 Not Found");
  EXPECT_EQ(string_at(b, "entry[4].response.outcome.resourceType"), "OperationOutcome");
  EXPECT_EQ(string_at(b, "entry[5].response.status"), "201 Created");
  EXPECT_EQ(string_at(b, "entry[5].response.location"), "Patient/batch-ok/_history/1");
  EXPECT_EQ(versions(), before + 2);
  EXPECT_EQ(client().get(path("Patient/batch-bad")).status, 404);
}

TEST_F(BundleTest, BadInputIsRefusedAndNothingStored) {
  const std::int64_t before = versions();
  struct Case {
    std::string name, bundle, expression;
    int status = 400;
  };
  const std::string patient = R"({"resourceType":"Patient"})";
  const Case cases[] = {
      {"collection", R"({"resourceType":"Bundle","type":"collection","entry":[]})", "Bundle.type"},
      {"not a Bundle", R"({"resourceType":"Patient"})", "Bundle.resourceType"},
      {"entry without request",
       R"({"resourceType":"Bundle","type":"transaction","entry":[
           {"resource":)" +
           patient + R"(,"request":{"method":"POST","url":"Patient"}},{"resource":)" + patient + "}]}",
       "Bundle.entry[1].request"},
      {"duplicate fullUrl",
       R"({"resourceType":"Bundle","type":"transaction","entry":[
           {"fullUrl":"urn:uuid:cccccccc-0000-4000-8000-000000000001","resource":)" +
           patient + R"(,"request":{"method":"POST","url":"Patient"}},
           {"fullUrl":"urn:uuid:cccccccc-0000-4000-8000-000000000001","resource":)" +
           patient + R"(,"request":{"method":"POST","url":"Patient"}}]})",
       "Bundle.entry[1].fullUrl"},
      {"reference to a urn:uuid not in the Bundle",
       R"({"resourceType":"Bundle","type":"transaction","entry":[
           {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
            "subject":{"reference":"urn:uuid:cccccccc-0000-4000-8000-00000000dead"}},
            "request":{"method":"POST","url":"Observation"}}]})",
       "Bundle.entry[0].resource"},
      {"structure",
       R"({"resourceType":"Bundle","type":"transaction","entry":[
           {"resource":{"resourceType":"Patient","birthDate":"yesterday"},"request":{"method":"POST","url":"Patient"}}]})",
       "Bundle.entry[0].resource.birthDate"},
      {"resourceType differs from the url",
       R"({"resourceType":"Bundle","type":"transaction","entry":[
           {"resource":)" +
           patient + R"(,"request":{"method":"POST","url":"Observation"}}]})",
       "Bundle.entry[0].resource.resourceType"},
      {"create and delete the same resource",
       R"({"resourceType":"Bundle","type":"transaction","entry":[
           {"resource":{"resourceType":"Patient","id":"bad-1"},"request":{"method":"PUT","url":"Patient/bad-1"}},
           {"request":{"method":"DELETE","url":"Patient/bad-1"}}]})",
       "Bundle.entry[1].request.url"},
      {"the same resource updated twice",
       R"({"resourceType":"Bundle","type":"transaction","entry":[
           {"resource":{"resourceType":"Patient","id":"bad-2"},"request":{"method":"PUT","url":"Patient/bad-2"}},
           {"resource":{"resourceType":"Patient","id":"bad-2"},"request":{"method":"PUT","url":"Patient/bad-2"}}]})",
       "Bundle.entry[1].request.url"},
      {"unknown method",
       R"({"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"FETCH","url":"Patient"}}]})",
       "Bundle.entry[0].request.method"},
      {"PUT id differs",
       R"({"resourceType":"Bundle","type":"transaction","entry":[
           {"resource":{"resourceType":"Patient","id":"x-1"},"request":{"method":"PUT","url":"Patient/x-2"}}]})",
       "Bundle.entry[0].resource.id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    post_bundle(c.bundle, c.status);
    EXPECT_TRUE(IsOperationOutcome(last_, c.status));
    EXPECT_TRUE(NamesElement(last_, {c.expression})) << last_.body;
  }
  EXPECT_EQ(versions(), before);
}

TEST_F(BundleTest, CustomSearchParameterIsCheckedAsOnItsOwn) {
  const std::int64_t before = versions();
  post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"SearchParameter","url":"http://example.org/sp/broken","name":"broken",
                 "status":"active","description":"d","code":"broken","base":["Patient"],"type":"token",
                 "expression":"Patient.where("},
     "request":{"method":"POST","url":"SearchParameter"}}]})",
              400);
  EXPECT_TRUE(IsOperationOutcome(last_, 400));
  EXPECT_TRUE(NamesElement(last_, {"Bundle.entry[0].resource.expression"})) << last_.body;
  EXPECT_EQ(versions(), before);
}

TEST_F(BundleTest, CapabilityStatementListsTransactionAndBatch) {
  auto cs = client().get(path("metadata")).json();
  ASSERT_TRUE(cs);
  std::set<std::string> codes;
  if (const Value* list = find_path(*cs, "rest[0].interaction"))
    for (const Value& i : list->items()) codes.insert(string_at(i, "code"));
  EXPECT_TRUE(codes.contains("transaction"));
  EXPECT_TRUE(codes.contains("batch"));
}

class BundleLimitTest : public BundleTest {
 public:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_args = {"--max-bundle-entries", "2"};
    start_server(options);
  }
};

TEST_F(BundleLimitTest, TooManyEntriesIs413) {
  const std::string e = R"({"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}})";
  const std::int64_t before = versions();
  post_bundle(R"({"resourceType":"Bundle","type":"transaction","entry":[)" + e + "," + e + "," + e + "]}", 413);
  EXPECT_TRUE(IsOperationOutcome(last_, 413));
  EXPECT_TRUE(NamesElement(last_, {"Bundle.entry"})) << last_.body;
  EXPECT_EQ(versions(), before);
  Value b = post_bundle(R"({"resourceType":"Bundle","type":"batch","entry":[)" + e + "," + e + "]}", 200);
  EXPECT_EQ(size_at(b, "entry"), 2u);
  EXPECT_EQ(versions(), before + 2);
}

// A real Synthea transaction Bundle (one patient), on a fresh server: every resource stored, references rewired.
class SyntheaBundleTest : public BundleTest {
 public:
  static void SetUpTestSuite() { start_server(); }
};

TEST_F(SyntheaBundleTest, LoadsAndCountsByType) {
  std::ifstream in(std::string(CADUCEUS_BENCH_DATA) + "/synthea-bundle.json");
  ASSERT_TRUE(in) << "bench/data/synthea-bundle.json";
  std::stringstream text;
  text << in.rdbuf();
  auto source = parse_json(text.str());
  ASSERT_TRUE(source);
  std::map<std::string, std::int64_t> expected;
  for (const Value& e : find_path(*source, "entry")->items()) ++expected[string_at(e, "resource.resourceType")];
  ASSERT_EQ(expected["Observation"], 33);  // (the file as checked in)

  Value b = post_bundle(text.str(), 200, {{"Prefer", "return=minimal"}});
  ASSERT_EQ(size_at(b, "entry"), find_path(*source, "entry")->items().size()) << last_.body.substr(0, 2000);
  std::string patient;
  for (const Value& e : find_path(b, "entry")->items()) {
    EXPECT_EQ(string_at(e, "response.status"), "201 Created");
    std::string location = string_at(e, "response.location");
    if (location.starts_with("Patient/")) patient = id_of_location(location);
  }
  for (const auto& [type, n] : expected) EXPECT_EQ(count(type), n) << type;
  ASSERT_FALSE(patient.empty());
  EXPECT_EQ(count("Observation?subject=Patient/" + patient), expected["Observation"]);
  EXPECT_EQ(count("Encounter?subject=Patient/" + patient), expected["Encounter"]);
}

}  // namespace
}  // namespace caduceus::test

namespace caduceus::test {
namespace {

// The first column of the first row of `sql` on the SQLite database at `path` (-1 when there is none).
long long sqlite_value(const std::filesystem::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  long long n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

// `caduceus import`: NDJSON and Bundle files into a database, then served by a server on that database.
TEST(ImportTest, LoadsNdjsonAndBundlesAndReportsBadLines) {
  TempDir dir("caduceus-import");
  const std::string db = "sqlite:" + (dir.path() / "import.db").string();
  const auto ndjson = dir.path() / "resources.ndjson";
  {
    std::ofstream out(ndjson);
    out << R"({"resourceType":"Patient","id":"imp-1","name":[{"family":"One"}]})"
        << "\n"
        << "\n"
        << R"({"resourceType":"Patient","birthDate":"yesterday"})"
        << "\n"
        << "not json\n"
        << R"({"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/imp-1"}})"
        << "\n";
  }
  const auto output = dir.path() / "output.txt";
  const std::string command = "'" + ServerOptions::default_binary() + "' import --db '" + db + "' '" + ndjson.string() +
                              "' '" + std::string(CADUCEUS_BENCH_DATA) + "/synthea-bundle.json' > '" + output.string() +
                              "' 2>&1";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << "errors make the exit status 1";
  std::ifstream in(output);
  std::stringstream text;
  text << in.rdbuf();
  const std::string report = text.str();
  // 1 + 1 from the NDJSON file, 66 from the Synthea Bundle (1 Patient, 33 Observations).
  EXPECT_NE(report.find("Imported 68 resource version(s)"), std::string::npos) << report;
  EXPECT_NE(report.find("Observation 34"), std::string::npos) << report;
  EXPECT_NE(report.find("Patient 2"), std::string::npos) << report;
  EXPECT_NE(report.find(ndjson.string() + ":3: "), std::string::npos) << report;
  EXPECT_NE(report.find(ndjson.string() + ":4: "), std::string::npos) << report;
  EXPECT_EQ(report.find(ndjson.string() + ":5: "), std::string::npos) << report;
  // Into the empty store the search index's value indexes were built once, after the last file: all there again,
  // none waiting.
  const auto file = dir.path() / "import.db";
  EXPECT_EQ(sqlite_value(file,
                         "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name IN "
                         "('idx_token_value', 'idx_reference_target', 'idx_date_value', 'idx_string_value')"),
            4);
  EXPECT_EQ(sqlite_value(file, "SELECT COUNT(*) FROM deferred_index"), 0);

  ServerOptions options;
  options.db = db;
  TestServer server(options);
  HttpClient client(server.host(), server.port());
  Response p = client.get(server.base_path() + "/Patient/imp-1");
  EXPECT_EQ(p.status, 200) << p.summary();
  Response obs = client.get(server.base_path() + "/Observation?subject=Patient/imp-1&_summary=count");
  ASSERT_EQ(obs.status, 200) << obs.summary();
  auto v = obs.json();
  ASSERT_TRUE(v);
  EXPECT_EQ(string_at(*v, "total"), "1");
  Response all = client.get(server.base_path() + "/Observation?_summary=count");
  auto w = all.json();
  ASSERT_TRUE(w);
  EXPECT_EQ(string_at(*w, "total"), "34");
}

// A file whose transaction refers (by a conditional reference) to what a later file creates is refused in its
// turn, then tried again after the others and stored; a file that cannot be stored is reported once.
TEST(ImportTest, RetriesAFileThatNeedsALaterOneAndReportsAFailureOnce) {
  TempDir dir("caduceus-import-order");
  const std::string db = "sqlite:" + (dir.path() / "import.db").string();
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.path() / name) << text;
    return (dir.path() / name).string();
  };
  const std::string needs = write("a-needs.json", R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Observation","status":"final","code":{"text":"hb"},
                 "subject":{"reference":"Patient?identifier=urn:mrn|77"}},
     "request":{"method":"POST","url":"Observation"}}]})");
  const std::string gives = write("b-gives.json", R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"77"}]},
     "request":{"method":"POST","url":"Patient"}}]})");
  const std::string broken = write("c-broken.json", R"({"resourceType":"Bundle","type":"transaction","entry":[
    {"resource":{"resourceType":"Patient","birthDate":"never"},"request":{"method":"POST","url":"Patient"}}]})");
  const auto output = dir.path() / "output.txt";
  const std::string command = "'" + ServerOptions::default_binary() + "' import --jobs 1 --db '" + db + "' '" + needs +
                              "' '" + gives + "' '" + broken + "' > '" + output.string() + "' 2>&1";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::stringstream text;
  text << std::ifstream(output).rdbuf();
  const std::string report = text.str();
  EXPECT_NE(report.find("Imported 2 resource version(s): Observation 1, Patient 1"), std::string::npos) << report;
  EXPECT_EQ(report.find(needs), std::string::npos) << report;
  auto first = report.find(broken + ": ");
  ASSERT_NE(first, std::string::npos) << report;
  EXPECT_EQ(report.find(broken + ": ", first + 1), std::string::npos) << "reported once: " << report;
  EXPECT_NE(report.find("1 error(s)"), std::string::npos) << report;

  ServerOptions options;
  options.db = db;
  TestServer server(options);
  HttpClient client(server.host(), server.port());
  Response obs = client.get(server.base_path() + "/Observation?subject:Patient.identifier=urn:mrn|77&_summary=count");
  ASSERT_EQ(obs.status, 200) << obs.summary();
  auto v = obs.json();
  ASSERT_TRUE(v);
  EXPECT_EQ(string_at(*v, "total"), "1");
}

}  // namespace
}  // namespace caduceus::test
