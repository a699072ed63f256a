// Conditional create, update, delete and patch, and PATCH with JSON Patch (RFC 6902), over HTTP. Every test uses
// its own identifier system, so that the tests of the suite (one server) never match each other's resources.
#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using fhir::json::Value;

const HeaderList kJsonPatch{{"Content-Type", "application/json-patch+json"}};

// A Patient with one identifier (system|value) and one name.
std::string patient(const std::string& system, const std::string& value, const std::string& family,
                    const std::string& id = {}) {
  std::string s = R"({"resourceType":"Patient",)";
  if (!id.empty()) s += R"("id":")" + id + R"(",)";
  s += R"("identifier":[{"system":")" + system + R"(","value":")" + value + R"("}],"name":[{"family":")" + family +
       R"("}]})";
  return s;
}

// The ids of the matches of a search, in any order.
std::multiset<std::string> match_ids(const Response& r) {
  std::multiset<std::string> ids;
  auto v = r.json();
  if (!v) return ids;
  if (const Value* entries = v->find("entry"))
    for (const Value& e : entries->items())
      if (string_at(e, "search.mode") == "match") ids.insert(string_at(e, "resource.id"));
  return ids;
}

class ConditionalTest : public ServerTest {
 protected:
  // The ids that a search on identifier=system|value finds now.
  std::multiset<std::string> find(const std::string& system, const std::string& value) {
    Response r = client().get(path("Patient?identifier=" + url_encode(system + "|" + value)));
    EXPECT_EQ(r.status, 200) << r.summary();
    return match_ids(r);
  }
  std::string create_id(const std::string& body) {
    auto v = create("Patient", body);
    return v ? string_at(*v, "id") : std::string();
  }
  Response patch(const std::string& target, const std::string& body, HeaderList headers = kJsonPatch) {
    return client().request("PATCH", path(target), body, headers);
  }
};

// ---- conditional create ------------------------------------------------------------------------------------

TEST_F(ConditionalTest, CreateWithoutMatchCreates) {
  const std::string sys = "urn:test:cc-none";
  Response r =
      client().post(path("Patient"), patient(sys, "1", "First"), {{"If-None-Exist", "identifier=" + sys + "|1"}});
  ASSERT_EQ(r.status, 201) << r.summary();
  auto body = r.json();
  ASSERT_TRUE(body);
  const std::string id = string_at(*body, "id");
  EXPECT_EQ(string_at(*body, "meta.versionId"), "1");
  EXPECT_EQ(r.header("Location"), server().base_url() + "/Patient/" + id + "/_history/1");
  EXPECT_EQ(find(sys, "1"), (std::multiset<std::string>{id}));
}

TEST_F(ConditionalTest, CreateWithOneMatchAnswersIt) {
  const std::string sys = "urn:test:cc-one";
  const std::string id = create_id(patient(sys, "1", "Existing"));
  ASSERT_FALSE(id.empty());
  // The body differs (family "Newcomer"): with a match nothing is written, the existing resource is answered.
  Response r =
      client().post(path("Patient"), patient(sys, "1", "Newcomer"), {{"If-None-Exist", "identifier=" + sys + "|1"}});
  ASSERT_EQ(r.status, 200) << r.summary();
  auto body = r.json();
  ASSERT_TRUE(body);
  EXPECT_EQ(string_at(*body, "id"), id);
  EXPECT_EQ(string_at(*body, "name[0].family"), "Existing");
  EXPECT_EQ(string_at(*body, "meta.versionId"), "1");
  EXPECT_EQ(r.header("ETag"), "W/\"1\"");
  EXPECT_EQ(r.header("Location"), server().base_url() + "/Patient/" + id + "/_history/1");
  EXPECT_EQ(find(sys, "1"), (std::multiset<std::string>{id}));
  EXPECT_TRUE(match_ids(client().get(path("Patient?family=Newcomer&identifier=" + url_encode(sys + "|1")))).empty());
}

TEST_F(ConditionalTest, CreateWithSeveralMatchesIs412) {
  const std::string sys = "urn:test:cc-many";
  const std::string a = create_id(patient(sys, "1", "A"));
  const std::string b = create_id(patient(sys, "1", "B"));
  Response r = client().post(path("Patient"), patient(sys, "1", "C"), {{"If-None-Exist", "identifier=" + sys + "|1"}});
  EXPECT_TRUE(IsOperationOutcome(r, 412)) << r.summary();
  EXPECT_EQ(find(sys, "1"), (std::multiset<std::string>{a, b}));
}

TEST_F(ConditionalTest, CreateCriteriaMayUseSeveralParameters) {
  const std::string sys = "urn:test:cc-and";
  const std::string a = create_id(patient(sys, "1", "Alpha"));
  // identifier matches, family does not: no match, so a second resource is created.
  Response r = client().post(path("Patient"), patient(sys, "1", "Beta"),
                             {{"If-None-Exist", "identifier=" + sys + "|1&family=Beta"}});
  ASSERT_EQ(r.status, 201) << r.summary();
  const std::string b = string_at(*r.json(), "id");
  EXPECT_NE(a, b);
  // Both criteria now match b only.
  Response again = client().post(path("Patient"), patient(sys, "1", "Beta"),
                                 {{"If-None-Exist", "identifier=" + sys + "|1&family=Beta"}});
  ASSERT_EQ(again.status, 200) << again.summary();
  EXPECT_EQ(string_at(*again.json(), "id"), b);
}

TEST_F(ConditionalTest, BadCriteriaAre400NamingTheParameter) {
  const std::string body = patient("urn:test:bad", "1", "Bad");
  Response unknown = client().post(path("Patient"), body, {{"If-None-Exist", "no-such-param=1"}});
  EXPECT_TRUE(IsOperationOutcome(unknown, 400)) << unknown.summary();
  EXPECT_TRUE(NamesElement(unknown, {"no-such-param"}, "no-such-param"));
  Response bad_date = client().post(path("Patient"), body, {{"If-None-Exist", "birthdate=yesterday"}});
  EXPECT_TRUE(IsOperationOutcome(bad_date, 400)) << bad_date.summary();
  EXPECT_TRUE(NamesElement(bad_date, {"birthdate"}, "birthdate"));
  Response only_count = client().post(path("Patient"), body, {{"If-None-Exist", "_count=5"}});
  EXPECT_TRUE(IsOperationOutcome(only_count, 400)) << only_count.summary();

  Response put_unknown = client().put(path("Patient?no-such-param=1"), body);
  EXPECT_TRUE(IsOperationOutcome(put_unknown, 400)) << put_unknown.summary();
  EXPECT_TRUE(NamesElement(put_unknown, {"no-such-param"}, "no-such-param"));
  Response put_empty = client().put(path("Patient"), body);
  EXPECT_TRUE(IsOperationOutcome(put_empty, 400)) << put_empty.summary();
  Response del_empty = client().del(path("Patient"));
  EXPECT_TRUE(IsOperationOutcome(del_empty, 400)) << del_empty.summary();
  Response del_format_only = client().del(path("Patient?_format=json"));
  EXPECT_TRUE(IsOperationOutcome(del_format_only, 400)) << del_format_only.summary();
  Response del_bad = client().del(path("Patient?birthdate=yesterday"));
  EXPECT_TRUE(IsOperationOutcome(del_bad, 400)) << del_bad.summary();
  EXPECT_TRUE(NamesElement(del_bad, {"birthdate"}, "birthdate"));
  // Nothing was written by any of them.
  EXPECT_TRUE(find("urn:test:bad", "1").empty());
}

// Sixteen clients post the same Patient with the same If-None-Exist at the same moment: the criteria are
// evaluated inside the write transaction, so exactly one is created and the others get it.
TEST_F(ConditionalTest, ConcurrentConditionalCreatesMakeOne) {
  const std::string sys = "urn:test:cc-race";
  constexpr int kThreads = 16;
  std::vector<Response> responses(kThreads);
  at_once(kThreads, [&](int t, HttpClient& c) {
    responses[static_cast<std::size_t>(t)] =
        c.post(path("Patient"), patient(sys, "same", "Racer"), {{"If-None-Exist", "identifier=" + sys + "|same"}});
  });
  int created = 0, found = 0;
  std::set<std::string> ids;
  for (const Response& r : responses) {
    if (r.status == 201) ++created;
    if (r.status == 200) ++found;
    EXPECT_TRUE(r.status == 201 || r.status == 200) << r.summary();
    if (auto v = r.json()) ids.insert(string_at(*v, "id"));
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(found, kThreads - 1);
  ASSERT_EQ(ids.size(), 1u) << "every answer names the same resource";
  EXPECT_EQ(find(sys, "same"), (std::multiset<std::string>{*ids.begin()}));
}

// ---- conditional update ------------------------------------------------------------------------------------

TEST_F(ConditionalTest, UpdateWithoutMatchAndIdCreates) {
  const std::string sys = "urn:test:cu-none";
  Response r = client().put(path("Patient?identifier=" + url_encode(sys + "|1")), patient(sys, "1", "New"));
  ASSERT_EQ(r.status, 201) << r.summary();
  const std::string id = string_at(*r.json(), "id");
  EXPECT_EQ(id.size(), 36u) << "a server-assigned UUID: " << id;
  EXPECT_EQ(string_at(*r.json(), "meta.versionId"), "1");
  EXPECT_EQ(r.header("Location"), server().base_url() + "/Patient/" + id + "/_history/1");
  EXPECT_EQ(find(sys, "1"), (std::multiset<std::string>{id}));
}

TEST_F(ConditionalTest, UpdateWithoutMatchWithIdCreatesThatId) {
  const std::string sys = "urn:test:cu-none-id";
  Response r = client().put(path("Patient?identifier=" + url_encode(sys + "|1")),
                            patient(sys, "1", "Given", "cond-update-given-id"));
  ASSERT_EQ(r.status, 201) << r.summary();
  EXPECT_EQ(string_at(*r.json(), "id"), "cond-update-given-id");
  auto read_back = read("Patient/cond-update-given-id");
  ASSERT_TRUE(read_back);
  EXPECT_EQ(string_at(*read_back, "name[0].family"), "Given");
  EXPECT_EQ(find(sys, "1"), (std::multiset<std::string>{"cond-update-given-id"}));
}

TEST_F(ConditionalTest, UpdateWithOneMatchUpdatesIt) {
  const std::string sys = "urn:test:cu-one";
  const std::string id = create_id(patient(sys, "1", "Before"));
  ASSERT_FALSE(id.empty());
  // Without an id in the body: the match's id is used.
  Response r = client().put(path("Patient?identifier=" + url_encode(sys + "|1")), patient(sys, "1", "After"));
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(string_at(*r.json(), "id"), id);
  EXPECT_EQ(string_at(*r.json(), "meta.versionId"), "2");
  EXPECT_EQ(r.header("ETag"), "W/\"2\"");
  // With the same id in the body.
  Response same = client().put(path("Patient?identifier=" + url_encode(sys + "|1")), patient(sys, "1", "Again", id));
  ASSERT_EQ(same.status, 200) << same.summary();
  EXPECT_EQ(string_at(*same.json(), "meta.versionId"), "3");
  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "name[0].family"), "Again");
  EXPECT_EQ(string_at(*current, "meta.versionId"), "3");
  EXPECT_EQ(find(sys, "1"), (std::multiset<std::string>{id}));
}

TEST_F(ConditionalTest, UpdateWithOneMatchAndOtherIdIs400) {
  const std::string sys = "urn:test:cu-other-id";
  const std::string id = create_id(patient(sys, "1", "Kept"));
  Response r =
      client().put(path("Patient?identifier=" + url_encode(sys + "|1")), patient(sys, "1", "Refused", "some-other-id"));
  EXPECT_TRUE(IsOperationOutcome(r, 400)) << r.summary();
  EXPECT_TRUE(NamesElement(r, {"Patient.id"}));
  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "meta.versionId"), "1");
  EXPECT_EQ(string_at(*current, "name[0].family"), "Kept");
  EXPECT_EQ(client().get(path("Patient/some-other-id")).status, 404);
}

TEST_F(ConditionalTest, UpdateWithSeveralMatchesIs412) {
  const std::string sys = "urn:test:cu-many";
  const std::string a = create_id(patient(sys, "1", "A"));
  const std::string b = create_id(patient(sys, "1", "B"));
  Response r = client().put(path("Patient?identifier=" + url_encode(sys + "|1")), patient(sys, "1", "C"));
  EXPECT_TRUE(IsOperationOutcome(r, 412)) << r.summary();
  EXPECT_EQ(string_at(*read("Patient/" + a), "meta.versionId"), "1");
  EXPECT_EQ(string_at(*read("Patient/" + b), "meta.versionId"), "1");
  EXPECT_EQ(find(sys, "1"), (std::multiset<std::string>{a, b}));
}

// ---- conditional delete ------------------------------------------------------------------------------------

TEST_F(ConditionalTest, DeleteOneMatch) {
  const std::string sys = "urn:test:cd-one";
  const std::string id = create_id(patient(sys, "1", "Doomed"));
  const std::string other = create_id(patient(sys, "2", "Spared"));
  Response r = client().del(path("Patient?identifier=" + url_encode(sys + "|1")));
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(r.header("X-Deleted-Count"), "1");
  EXPECT_EQ(r.header("ETag"), "W/\"2\"");
  EXPECT_NE(describe_outcome(r).find("Patient/" + id), std::string::npos) << describe_outcome(r);
  EXPECT_EQ(client().get(path("Patient/" + id)).status, 410);
  EXPECT_EQ(client().get(path("Patient/" + other)).status, 200);
  EXPECT_TRUE(find(sys, "1").empty());
}

TEST_F(ConditionalTest, DeleteSeveralMatchesIs412ByDefault) {
  const std::string sys = "urn:test:cd-many";
  const std::string a = create_id(patient(sys, "1", "A"));
  const std::string b = create_id(patient(sys, "1", "B"));
  Response r = client().del(path("Patient?identifier=" + url_encode(sys + "|1")));
  EXPECT_TRUE(IsOperationOutcome(r, 412)) << r.summary();
  EXPECT_EQ(client().get(path("Patient/" + a)).status, 200);
  EXPECT_EQ(client().get(path("Patient/" + b)).status, 200);
}

TEST_F(ConditionalTest, DeleteWithoutMatchDeletesNothing) {
  Response r = client().del(path("Patient?identifier=" + url_encode("urn:test:cd-none|1")));
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(r.header("X-Deleted-Count"), "0");
}

// ---- PATCH (JSON Patch) ------------------------------------------------------------------------------------

const std::string kChalmers =
    R"({"resourceType":"Patient","active":true,"name":[{"family":"Chalmers","given":["Peter"]}],)"
    R"("gender":"male","birthDate":"1974-12-25"})";

TEST_F(ConditionalTest, PatchAppliesEveryOperation) {
  const std::string id = create_id(kChalmers);
  ASSERT_FALSE(id.empty());
  const std::string ops = R"([
    {"op":"test","path":"/name/0/family","value":"Chalmers"},
    {"op":"replace","path":"/name/0/family","value":"Chalmers-Smith"},
    {"op":"add","path":"/name/0/given/-","value":"James"},
    {"op":"add","path":"/name/0/given/0","value":"Dr"},
    {"op":"remove","path":"/active"},
    {"op":"copy","from":"/name/0","path":"/name/-"},
    {"op":"replace","path":"/name/1/family","value":"Windsor"},
    {"op":"move","from":"/birthDate","path":"/deceasedDateTime"},
    {"op":"test","path":"/name/1/given","value":["Dr","Peter","James"]}
  ])";
  Response r = patch("Patient/" + id, ops);
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(r.header("ETag"), "W/\"2\"");
  auto expected = parse_json(R"({"resourceType":"Patient","id":")" + id + R"(",)" +
                             R"("name":[{"family":"Chalmers-Smith","given":["Dr","Peter","James"]},)"
                             R"({"family":"Windsor","given":["Dr","Peter","James"]}],)"
                             R"("gender":"male","deceasedDateTime":"1974-12-25"})");
  ASSERT_TRUE(expected);
  for (const Response* source : {&r}) {
    auto got = source->json();
    ASSERT_TRUE(got);
    EXPECT_EQ(string_at(*got, "meta.versionId"), "2");
    got->erase("meta");
    EXPECT_EQ(json_diff(*expected, *got), std::vector<std::string>{});
  }
  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "meta.versionId"), "2");
  current->erase("meta");
  EXPECT_EQ(json_diff(*expected, *current), std::vector<std::string>{});
  // The patched version is searchable as any update.
  EXPECT_EQ(match_ids(client().get(path("Patient?_id=" + id + "&family=Windsor"))), (std::multiset<std::string>{id}));
}

TEST_F(ConditionalTest, PatchThatFailsChangesNothing) {
  const std::string id = create_id(kChalmers);
  ASSERT_FALSE(id.empty());
  struct Case {
    const char* name;
    std::string ops;
    int status;
  };
  const std::vector<Case> cases = {
      {"FailedTest",
       R"([{"op":"replace","path":"/gender","value":"female"},)"
       R"({"op":"test","path":"/name/0/family","value":"Nobody"}])",
       422},
      {"MissingTarget", R"([{"op":"remove","path":"/name/3"}])", 422},
      {"ReplaceAbsent", R"([{"op":"replace","path":"/maritalStatus/text","value":"x"}])", 422},
      {"ArrayIndexPastEnd", R"([{"op":"add","path":"/name/0/given/5","value":"x"}])", 422},
      {"MoveIntoChild", R"([{"op":"move","from":"/name","path":"/name/0/x"}])", 422},
      {"InvalidResource", R"([{"op":"replace","path":"/gender","value":42}])", 422},
      {"UnknownElement", R"([{"op":"add","path":"/colour","value":"blue"}])", 422},
      {"ChangesId", R"([{"op":"replace","path":"/id","value":"another"}])", 422},
      {"RemovesId", R"([{"op":"remove","path":"/id"}])", 422},
      {"ChangesType", R"([{"op":"replace","path":"/resourceType","value":"Group"}])", 422},
      {"NotAnArray", R"({"op":"remove","path":"/active"})", 400},
      {"UnknownOp", R"([{"op":"frobnicate","path":"/active"}])", 400},
      {"PointerSyntax", R"([{"op":"remove","path":"active"}])", 400},
      {"BadEscape", R"([{"op":"remove","path":"/a~2b"}])", 400},
      {"NoValue", R"([{"op":"add","path":"/active"}])", 400},
      {"NotJson", R"([{"op":)", 400},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Response r = patch("Patient/" + id, c.ops);
    EXPECT_TRUE(IsOperationOutcome(r, c.status)) << r.summary();
  }
  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "meta.versionId"), "1") << "no failed patch wrote a version";
  EXPECT_EQ(string_at(*current, "gender"), "male");
}

TEST_F(ConditionalTest, PatchEscapesInPointers) {
  // An extension's url holds slashes; tokens with ~1 and ~0 are unescaped, so "a~1b" is the key "a/b". FHIR has
  // no such keys, so a pointer to one finds nothing (422), while the escaped path to real elements works.
  const std::string id = create_id(kChalmers);
  Response missing = patch("Patient/" + id, R"([{"op":"remove","path":"/name~1family"}])");
  EXPECT_TRUE(IsOperationOutcome(missing, 422)) << missing.summary();
  Response ok = patch("Patient/" + id, R"([{"op":"test","path":"/name/0/family","value":"Chalmers"},)"
                                       R"({"op":"add","path":"/name/0/text","value":"a/b ~ c"}])");
  ASSERT_EQ(ok.status, 200) << ok.summary();
  EXPECT_EQ(string_at(*ok.json(), "name[0].text"), "a/b ~ c");
}

TEST_F(ConditionalTest, PatchHonoursIfMatch) {
  const std::string id = create_id(kChalmers);
  const std::string ops = R"([{"op":"replace","path":"/gender","value":"female"}])";
  HeaderList stale = kJsonPatch;
  stale.emplace_back("If-Match", "W/\"2\"");
  Response refused = patch("Patient/" + id, ops, stale);
  EXPECT_TRUE(IsOperationOutcome(refused, 412)) << refused.summary();
  HeaderList current = kJsonPatch;
  current.emplace_back("If-Match", "W/\"1\"");
  Response r = patch("Patient/" + id, ops, current);
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(string_at(*r.json(), "gender"), "female");
  EXPECT_EQ(string_at(*r.json(), "meta.versionId"), "2");
  Response again = patch("Patient/" + id, ops, current);
  EXPECT_TRUE(IsOperationOutcome(again, 412)) << again.summary();
}

TEST_F(ConditionalTest, PatchOfMissingOrDeletedOrWithOtherMedia) {
  Response none = patch("Patient/no-such-patient", R"([{"op":"remove","path":"/active"}])");
  EXPECT_TRUE(IsOperationOutcome(none, 404)) << none.summary();
  const std::string id = create_id(kChalmers);
  // A Parameters body is a FHIRPath Patch (fhirpath_patch_test.cpp): here one without parts, 400.
  Response fhirpath = patch("Patient/" + id, R"({"resourceType":"Parameters","parameter":[{"name":"operation"}]})",
                            {{"Content-Type", "application/fhir+json"}});
  EXPECT_TRUE(IsOperationOutcome(fhirpath, 400)) << fhirpath.summary();
  Response text = patch("Patient/" + id, "[]", {{"Content-Type", "text/plain"}});
  EXPECT_TRUE(IsOperationOutcome(text, 415)) << text.summary();
  ASSERT_EQ(client().del(path("Patient/" + id)).status, 200);
  Response gone = patch("Patient/" + id, R"([{"op":"remove","path":"/active"}])");
  EXPECT_TRUE(IsOperationOutcome(gone, 410)) << gone.summary();
}

// Concurrent patches that each append a given name: none is lost, as each read-patch-write is retried when
// another write came between its read and its write.
TEST_F(ConditionalTest, ConcurrentPatchesLoseNothing) {
  const std::string id = create_id(R"({"resourceType":"Patient","name":[{"family":"Many","given":["Start"]}]})");
  ASSERT_FALSE(id.empty());
  constexpr int kThreads = 8;
  std::vector<int> statuses(kThreads);
  at_once(kThreads, [&](int t, HttpClient& c) {
    statuses[static_cast<std::size_t>(t)] =
        c.request("PATCH", path("Patient/" + id),
                  R"([{"op":"add","path":"/name/0/given/-","value":"T)" + std::to_string(t) + R"("}])", kJsonPatch)
            .status;
  });
  EXPECT_EQ(statuses, std::vector<int>(kThreads, 200));
  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "meta.versionId"), std::to_string(1 + kThreads));
  std::multiset<std::string> given;
  for (const Value& g : find_path(*current, "name[0].given")->items()) given.insert(g.text());
  std::multiset<std::string> expected{"Start"};
  for (int t = 0; t < kThreads; ++t) expected.insert("T" + std::to_string(t));
  EXPECT_EQ(given, expected);
  EXPECT_EQ(string_at(*current, "name[0].given[0]"), "Start");
}

TEST_F(ConditionalTest, ConditionalPatch) {
  const std::string sys = "urn:test:cp";
  const std::string id = create_id(patient(sys, "1", "Before"));
  const std::string ops = R"([{"op":"replace","path":"/name/0/family","value":"After"}])";
  Response r = patch("Patient?identifier=" + url_encode(sys + "|1"), ops);
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(string_at(*r.json(), "id"), id);
  EXPECT_EQ(string_at(*r.json(), "name[0].family"), "After");
  EXPECT_EQ(string_at(*r.json(), "meta.versionId"), "2");
  Response none = patch("Patient?identifier=" + url_encode(sys + "|2"), ops);
  EXPECT_TRUE(IsOperationOutcome(none, 404)) << none.summary();
  create_id(patient(sys, "1", "Second"));
  Response many = patch("Patient?identifier=" + url_encode(sys + "|1"), ops);
  EXPECT_TRUE(IsOperationOutcome(many, 412)) << many.summary();
}

// ---- several deletes allowed -------------------------------------------------------------------------------

class MultipleDeleteTest : public ServerTest {
 public:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_args = {"--max-conditional-delete", "3"};
    start_server(options);
  }
};

TEST_F(MultipleDeleteTest, DeletesUpToTheLimit) {
  const std::string sys = "urn:test:cd-multi";
  std::set<std::string> ids;
  for (const char* family : {"A", "B", "C"}) {
    auto v = create("Patient", patient(sys, "three", family));
    ASSERT_TRUE(v);
    ids.insert(string_at(*v, "id"));
  }
  for (const char* family : {"A", "B", "C", "D"}) ASSERT_TRUE(create("Patient", patient(sys, "four", family)));

  Response four = client().del(path("Patient?identifier=" + url_encode(sys + "|four")));
  EXPECT_TRUE(IsOperationOutcome(four, 412)) << four.summary();
  Response still = client().get(path("Patient?identifier=" + url_encode(sys + "|four")));
  EXPECT_EQ(match_ids(still).size(), 4u);

  Response three = client().del(path("Patient?identifier=" + url_encode(sys + "|three")));
  ASSERT_EQ(three.status, 200) << three.summary();
  EXPECT_EQ(three.header("X-Deleted-Count"), "3");
  for (const std::string& id : ids) EXPECT_EQ(client().get(path("Patient/" + id)).status, 410) << id;
  EXPECT_TRUE(match_ids(client().get(path("Patient?identifier=" + url_encode(sys + "|three")))).empty());

  Response meta = client().get(path("metadata"));
  ASSERT_EQ(meta.status, 200);
  EXPECT_EQ(string_at(*meta.json(), "rest[0].resource[0].conditionalDelete"), "multiple");
}

// Without the search index the criteria cannot be evaluated: conditional writes answer 501 and the
// CapabilityStatement does not claim them; PATCH needs no search and still works.
TEST(ConditionalWithoutSearchTest, ConditionalWritesAre501AndNotClaimed) {
  ServerOptions options;
  options.extra_args = {"--search-index", "false"};
  TestServer server(options);
  HttpClient c(server.host(), server.port());
  const std::string base = server.base_path();
  const std::string body = patient("urn:test:off", "1", "Off");
  EXPECT_TRUE(
      IsOperationOutcome(c.post(base + "/Patient", body, {{"If-None-Exist", "identifier=urn:test:off|1"}}), 501));
  EXPECT_TRUE(IsOperationOutcome(c.put(base + "/Patient?identifier=urn:test:off|1", body), 501));
  EXPECT_TRUE(IsOperationOutcome(c.del(base + "/Patient?identifier=urn:test:off|1"), 501));
  Response meta = c.get(base + "/metadata");
  ASSERT_EQ(meta.status, 200);
  auto cs = meta.json();
  ASSERT_TRUE(cs);
  EXPECT_EQ(fhir::json::write(*find_path(*cs, "rest[0].resource[0].conditionalCreate")), "false");
  EXPECT_EQ(fhir::json::write(*find_path(*cs, "rest[0].resource[0].conditionalUpdate")), "false");
  EXPECT_EQ(string_at(*cs, "rest[0].resource[0].conditionalDelete"), "not-supported");
  Response created = c.post(base + "/Patient", body);
  ASSERT_EQ(created.status, 201) << created.summary();
  const std::string id = string_at(*created.json(), "id");
  Response patched = c.request("PATCH", base + "/Patient/" + id,
                               R"([{"op":"replace","path":"/name/0/family","value":"Patched"}])", kJsonPatch);
  ASSERT_EQ(patched.status, 200) << patched.summary();
  EXPECT_EQ(string_at(*patched.json(), "name[0].family"), "Patched");
  EXPECT_EQ(string_at(*patched.json(), "meta.versionId"), "2");
}

}  // namespace
}  // namespace caduceus::test
