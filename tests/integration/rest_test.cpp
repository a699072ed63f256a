// The REST interactions and headers of FHIR R4 (https://hl7.org/fhir/R4/http.html) over real HTTP against the
// real server: create, read, vread, update, delete, history (instance, type, system; paging, _since, _at),
// conditional headers, Prefer, content negotiation, the base URL, metadata, health, metrics and keep-alive.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using fhir::json::Value;

const std::regex kIdPattern("[A-Za-z0-9\\-\\.]{1,64}");

std::string next_id(std::string_view prefix) {
  static std::atomic<int> counter{0};
  return std::string(prefix) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

std::string patient_json(std::string_view family, std::string_view id = {}) {
  std::string s = R"({"resourceType":"Patient",)";
  if (!id.empty()) s += R"("id":")" + std::string(id) + R"(",)";
  s += R"("active":true,"name":[{"family":")" + std::string(family) +
       R"(","given":["Peter","James"]}],"gender":"male","birthDate":"1974-12-25"})";
  return s;
}

const HeaderList kRepresentation = {{"Prefer", "return=representation"}};

class RestTest : public ServerTest {
 protected:
  // POST a Patient; expects 201 with a body. Returns the parsed body (empty Value on failure).
  Value create_patient(std::string_view family, Response* response = nullptr) {
    Response r = client().post(path("Patient"), patient_json(family), kRepresentation);
    EXPECT_EQ(r.status, 201) << r.summary();
    if (response) *response = r;
    auto v = r.json();
    EXPECT_TRUE(v.has_value()) << r.summary();
    return v.value_or(Value());
  }

  // PUT a Patient with that id and family; expects `status` and returns the body.
  Value put_patient(std::string_view id, std::string_view family, int status = 200, const HeaderList& extra = {}) {
    HeaderList h = kRepresentation;
    h.insert(h.end(), extra.begin(), extra.end());
    Response r = client().put(path("Patient/" + std::string(id)), patient_json(family, id), h);
    EXPECT_EQ(r.status, status) << "PUT Patient/" << id << ": " << r.summary();
    auto v = r.json();
    EXPECT_TRUE(v.has_value()) << r.summary();
    return v.value_or(Value());
  }

  // Updates until the new version's meta.lastUpdated differs from the previous one, so that versions can be
  // told apart by time without sleeping. Returns the new version.
  Value update_with_new_timestamp(std::string_view id, std::string_view family, const std::string& previous) {
    Value v;
    for (int i = 0; i < 5000; ++i) {
      v = put_patient(id, family);
      if (HasFailure() || string_at(v, "meta.lastUpdated") != previous) break;
    }
    return v;
  }

  std::string target_of(std::string_view type, std::string_view id) {
    return path(std::string(type) + "/" + std::string(id));
  }

  std::size_t system_history_count() {
    History h = read_history(client(), path("_history?_count=100"));
    EXPECT_TRUE(h.error.empty()) << h.error;
    return h.entries.size();
  }
};

// ---- create --------------------------------------------------------------------------------------------------

TEST_F(RestTest, CreateAssignsIdVersionAndHeaders) {
  const std::string sent = patient_json("Chalmers");
  Response r = client().post(path("Patient"), sent, kRepresentation);
  ASSERT_EQ(r.status, 201) << r.summary();
  EXPECT_TRUE(IsFhirJson(r));
  auto body = r.json();
  ASSERT_TRUE(body) << r.summary();
  const std::string id = string_at(*body, "id");
  ASSERT_FALSE(id.empty()) << "the created resource has no server-assigned id: " << r.body;
  EXPECT_TRUE(std::regex_match(id, kIdPattern)) << "not a valid FHIR id: " << id;
  EXPECT_EQ(string_at(*body, "resourceType"), "Patient");
  EXPECT_EQ(string_at(*body, "meta.versionId"), "1");
  const std::string last_updated = string_at(*body, "meta.lastUpdated");
  auto instant = parse_instant(last_updated);
  ASSERT_TRUE(instant) << "meta.lastUpdated is not an instant: \"" << last_updated << "\"";

  EXPECT_EQ(r.header("Location"), server().base_url() + "/Patient/" + id + "/_history/1");
  EXPECT_EQ(r.header("ETag"), "W/\"1\"");
  auto last_modified = parse_http_date(r.header("Last-Modified"));
  ASSERT_TRUE(last_modified) << "Last-Modified is not an HTTP-date: \"" << r.header("Last-Modified") << "\"";
  // Last-Modified is meta.lastUpdated truncated to whole seconds.
  EXPECT_EQ(*last_modified, instant->micros / 1000000 - (instant->micros % 1000000 < 0 ? 1 : 0))
      << "Last-Modified " << r.header("Last-Modified") << " vs meta.lastUpdated " << last_updated;

  // Apart from id and meta, the resource is what was sent.
  auto expected = parse_json(sent);
  ASSERT_TRUE(expected);
  auto diffs = json_diff(*expected, without_server_meta(*body, /*drop_id=*/true));
  EXPECT_TRUE(diffs.empty()) << ::testing::PrintToString(diffs);
}

TEST_F(RestTest, CreateIgnoresClientIdAndMeta) {
  const std::string client_id = next_id("client-chosen");
  const std::string sent = R"({"resourceType":"Patient","id":")" + client_id +
                           R"(","meta":{"versionId":"99","lastUpdated":"2001-01-01T00:00:00Z"},"active":false})";
  Response r = client().post(path("Patient"), sent, kRepresentation);
  ASSERT_EQ(r.status, 201) << r.summary();
  auto body = r.json();
  ASSERT_TRUE(body);
  const std::string id = string_at(*body, "id");
  EXPECT_NE(id, client_id) << "a client-sent id on create must be ignored (http.html#create)";
  EXPECT_EQ(string_at(*body, "meta.versionId"), "1");
  EXPECT_NE(string_at(*body, "meta.lastUpdated"), "2001-01-01T00:00:00Z");
  EXPECT_EQ(r.header("Location"), server().base_url() + "/Patient/" + id + "/_history/1");
  EXPECT_EQ(r.header("ETag"), "W/\"1\"");
  // Nothing was stored under the client's id.
  Response other = client().get(target_of("Patient", client_id));
  EXPECT_EQ(other.status, 404) << other.summary();
}

TEST_F(RestTest, CreateTwiceGivesDistinctIds) {
  Value a = create_patient("Twice");
  Value b = create_patient("Twice");
  EXPECT_NE(string_at(a, "id"), string_at(b, "id"));
}

TEST_F(RestTest, CreateAcceptsPlainJsonAndCharset) {
  for (const char* ct :
       {"application/json", "application/fhir+json; charset=utf-8", "application/json;charset=UTF-8"}) {
    Response r = client().post(path("Patient"), patient_json("Types"), {{"Content-Type", ct}});
    EXPECT_EQ(r.status, 201) << "Content-Type " << ct << ": " << r.summary();
  }
}

// ---- read, vread ---------------------------------------------------------------------------------------------

TEST_F(RestTest, ReadReturnsCurrentVersionWithHeaders) {
  Response created;
  Value v1 = create_patient("Reader", &created);
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  Response r = client().get(target_of("Patient", id));
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_TRUE(IsFhirJson(r));
  EXPECT_EQ(r.header("ETag"), "W/\"1\"");
  EXPECT_EQ(r.header("Last-Modified"), created.header("Last-Modified"));
  auto body = r.json();
  ASSERT_TRUE(body);
  auto diffs = json_diff(v1, *body);
  EXPECT_TRUE(diffs.empty()) << "read differs from the created resource: " << ::testing::PrintToString(diffs);
}

TEST_F(RestTest, HeadReadGivesTheHeadersOfGetWithoutABody) {
  Value v = create_patient("Header");
  const std::string id = string_at(v, "id");
  ASSERT_FALSE(id.empty());
  Response get = client().get(target_of("Patient", id));
  ASSERT_EQ(get.status, 200) << get.summary();
  Response head = client().request("HEAD", target_of("Patient", id));
  EXPECT_EQ(head.status, 200) << head.summary();
  EXPECT_TRUE(head.body.empty());
  EXPECT_EQ(head.header("Content-Length"), std::to_string(get.body.size()));
  EXPECT_EQ(head.header("ETag"), get.header("ETag"));
  EXPECT_EQ(head.header("Last-Modified"), get.header("Last-Modified"));
  EXPECT_EQ(client().request("HEAD", target_of("Patient", next_id("never-created"))).status, 404);
  // The connection is still usable after a HEAD.
  EXPECT_EQ(client().get(target_of("Patient", id)).status, 200);
}

TEST_F(RestTest, ReadUnknownIsNotFound) {
  Response r = client().get(target_of("Patient", next_id("never-created")));
  EXPECT_TRUE(IsOperationOutcome(r, 404));
}

TEST_F(RestTest, VreadReturnsEachVersion) {
  Value v1 = create_patient("Version-1");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  Value v2 = put_patient(id, "Version-2");
  Value v3 = put_patient(id, "Version-3");
  const std::vector<Value> versions = {v1, v2, v3};
  for (int n = 1; n <= 3; ++n) {
    SCOPED_TRACE("version " + std::to_string(n));
    Response r = client().get(target_of("Patient", id) + "/_history/" + std::to_string(n));
    ASSERT_EQ(r.status, 200) << r.summary();
    EXPECT_TRUE(IsFhirJson(r));
    EXPECT_EQ(r.header("ETag"), weak_etag(std::to_string(n)));
    EXPECT_TRUE(parse_http_date(r.header("Last-Modified"))) << r.header("Last-Modified");
    auto body = r.json();
    ASSERT_TRUE(body);
    EXPECT_EQ(string_at(*body, "meta.versionId"), std::to_string(n));
    EXPECT_EQ(string_at(*body, "name[0].family"), "Version-" + std::to_string(n));
    auto diffs = json_diff(versions[static_cast<std::size_t>(n - 1)], *body);
    EXPECT_TRUE(diffs.empty()) << ::testing::PrintToString(diffs);
  }
  EXPECT_TRUE(IsOperationOutcome(client().get(target_of("Patient", id) + "/_history/4"), 404));
  EXPECT_TRUE(IsOperationOutcome(client().get(target_of("Patient", next_id("nobody")) + "/_history/1"), 404));
}

// ---- update --------------------------------------------------------------------------------------------------

TEST_F(RestTest, UpdateCreatesNewVersion) {
  Value v1 = create_patient("Before");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  Response r = client().put(target_of("Patient", id), patient_json("After", id), kRepresentation);
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_TRUE(IsFhirJson(r));
  EXPECT_EQ(r.header("ETag"), "W/\"2\"");
  EXPECT_TRUE(parse_http_date(r.header("Last-Modified"))) << r.header("Last-Modified");
  if (r.headers.has("Location")) {
    EXPECT_EQ(r.header("Location"), server().base_url() + "/Patient/" + id + "/_history/2");
  }
  auto body = r.json();
  ASSERT_TRUE(body);
  EXPECT_EQ(string_at(*body, "id"), id);
  EXPECT_EQ(string_at(*body, "meta.versionId"), "2");
  EXPECT_EQ(string_at(*body, "name[0].family"), "After");
  auto t1 = parse_instant(string_at(v1, "meta.lastUpdated"));
  auto t2 = parse_instant(string_at(*body, "meta.lastUpdated"));
  ASSERT_TRUE(t1 && t2);
  EXPECT_GE(t2->micros, t1->micros);

  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "meta.versionId"), "2");
  EXPECT_EQ(string_at(*current, "name[0].family"), "After");
}

TEST_F(RestTest, UpdateAsCreateWithClientId) {
  const std::string id = next_id("client-id");
  Response r = client().put(target_of("Patient", id), patient_json("Newborn", id), kRepresentation);
  ASSERT_EQ(r.status, 201) << "update of an id that does not exist creates it (201): " << r.summary();
  EXPECT_EQ(r.header("ETag"), "W/\"1\"");
  EXPECT_TRUE(parse_http_date(r.header("Last-Modified"))) << r.header("Last-Modified");
  if (r.headers.has("Location")) {
    EXPECT_EQ(r.header("Location"), server().base_url() + "/Patient/" + id + "/_history/1");
  }
  auto body = r.json();
  ASSERT_TRUE(body);
  EXPECT_EQ(string_at(*body, "id"), id);
  EXPECT_EQ(string_at(*body, "meta.versionId"), "1");
  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "name[0].family"), "Newborn");
}

TEST_F(RestTest, UpdateWithIdMismatchOrMissingIdIs400) {
  Value v1 = create_patient("Mismatch");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  Response mismatch = client().put(target_of("Patient", id), patient_json("Other", "some-other-id"));
  EXPECT_TRUE(IsOperationOutcome(mismatch, 400));
  EXPECT_TRUE(NamesElement(mismatch, {"Patient.id"}, "id"));
  Response missing = client().put(target_of("Patient", id), patient_json("Other"));
  EXPECT_TRUE(IsOperationOutcome(missing, 400));
  EXPECT_TRUE(NamesElement(missing, {"Patient.id"}, "id"));
  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "meta.versionId"), "1");
}

// ---- delete --------------------------------------------------------------------------------------------------

TEST_F(RestTest, DeleteMakesReadGoneAndKeepsHistory) {
  Value v1 = create_patient("Deleted");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  put_patient(id, "Deleted-v2");

  Response d = client().del(target_of("Patient", id));
  ASSERT_TRUE(d.status == 200 || d.status == 204) << "delete answers 200 or 204: " << d.summary();
  if (d.status == 204) {
    EXPECT_TRUE(d.body.empty()) << d.summary();
  }

  EXPECT_TRUE(IsOperationOutcome(client().get(target_of("Patient", id)), 410));
  // The delete is version 3; a vread of it is 410, the earlier versions stay readable.
  EXPECT_TRUE(IsOperationOutcome(client().get(target_of("Patient", id) + "/_history/3"), 410));
  Response old2 = client().get(target_of("Patient", id) + "/_history/2");
  EXPECT_EQ(old2.status, 200) << old2.summary();
  Response old1 = client().get(target_of("Patient", id) + "/_history/1");
  ASSERT_EQ(old1.status, 200) << old1.summary();
  auto old1_body = old1.json();
  ASSERT_TRUE(old1_body);
  EXPECT_TRUE(json_diff(v1, *old1_body).empty());

  History h = read_history(client(), target_of("Patient", id) + "/_history");
  ASSERT_TRUE(h.error.empty()) << h.error;
  ASSERT_EQ(h.entries.size(), 3u);
  const Value& del = h.entries[0];
  EXPECT_EQ(del.find("resource"), nullptr) << "a delete entry has no resource: " << fhir::json::write(del);
  EXPECT_EQ(string_at(del, "request.method"), "DELETE");
  EXPECT_EQ(string_at(del, "request.url"), "Patient/" + id);
  const std::string status = string_at(del, "response.status");
  EXPECT_TRUE(status.starts_with("200") || status.starts_with("204")) << status;
  EXPECT_EQ(string_at(del, "fullUrl"), server().base_url() + "/Patient/" + id);

  // Deleting again is fine, and so is updating after the delete (a new version 4).
  Response again = client().del(target_of("Patient", id));
  EXPECT_TRUE(again.status == 200 || again.status == 204) << again.summary();
  Response revived = client().put(target_of("Patient", id), patient_json("Revived", id), kRepresentation);
  ASSERT_TRUE(revived.status == 200 || revived.status == 201) << revived.summary();
  auto revived_body = revived.json();
  ASSERT_TRUE(revived_body);
  EXPECT_EQ(string_at(*revived_body, "meta.versionId"), "4");
  EXPECT_EQ(client().get(target_of("Patient", id)).status, 200);
}

TEST_F(RestTest, DeleteOfUnknownIdIsOkAndChangesNothing) {
  const std::size_t before = system_history_count();
  Response d = client().del(target_of("Patient", next_id("never-there")));
  EXPECT_TRUE(d.status == 200 || d.status == 204)
      << "delete of a resource that does not exist answers 200 or 204 (http.html#delete): " << d.summary();
  EXPECT_EQ(system_history_count(), before) << "deleting nothing must not add a version";
}

// ---- history -------------------------------------------------------------------------------------------------

// Checks the common shape of history entries: fullUrl, resource (absent for deletes), request, response.
void check_history_entries(const History& h, const std::string& base_url) {
  std::optional<std::int64_t> previous;
  for (std::size_t i = 0; i < h.entries.size(); ++i) {
    const Value& e = h.entries[i];
    SCOPED_TRACE("entry " + std::to_string(i) + ": " + fhir::json::write(e).substr(0, 300));
    const std::string method = string_at(e, "request.method");
    const std::string url = string_at(e, "request.url");
    ASSERT_TRUE(method == "POST" || method == "PUT" || method == "DELETE") << method;
    EXPECT_FALSE(url.empty());
    EXPECT_FALSE(url.starts_with("http")) << "request.url is relative to the base";
    const std::string full_url = string_at(e, "fullUrl");
    EXPECT_TRUE(full_url.starts_with(base_url + "/")) << full_url;
    EXPECT_EQ(full_url.find("/_history"), std::string::npos) << "fullUrl is not version-specific (bdl-8)";
    const std::string status = string_at(e, "response.status");
    EXPECT_FALSE(status.empty()) << "history entries have response.status (bdl-4)";
    if (method == "DELETE") {
      EXPECT_EQ(e.find("resource"), nullptr);
      EXPECT_TRUE(status.starts_with("200") || status.starts_with("204")) << status;
    } else {
      const Value* resource = e.find("resource");
      ASSERT_NE(resource, nullptr);
      const std::string type = string_at(*resource, "resourceType");
      const std::string id = string_at(*resource, "id");
      EXPECT_EQ(full_url, base_url + "/" + type + "/" + id);
      const std::string vid = string_at(*resource, "meta.versionId");
      EXPECT_EQ(string_at(e, "response.etag"), weak_etag(vid));
      EXPECT_EQ(string_at(e, "response.lastModified"), string_at(*resource, "meta.lastUpdated"));
      if (method == "POST") {
        EXPECT_TRUE(status.starts_with("201")) << status;
        EXPECT_TRUE(url == type || url == type + "/" + id) << url;
      } else {
        EXPECT_TRUE(status.starts_with("200") || status.starts_with("201")) << status;
        EXPECT_EQ(url, type + "/" + id);
      }
      auto t = parse_instant(string_at(*resource, "meta.lastUpdated"));
      ASSERT_TRUE(t);
      if (previous) {
        EXPECT_LE(t->micros, *previous) << "history is newest first";
      }
      previous = t->micros;
    }
  }
}

TEST_F(RestTest, HistoryOfInstance) {
  Value v1 = create_patient("History");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  put_patient(id, "History-2");
  put_patient(id, "History-3");
  Response r = client().get(target_of("Patient", id) + "/_history");
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_TRUE(IsFhirJson(r));
  auto bundle = r.json();
  ASSERT_TRUE(bundle);
  EXPECT_EQ(string_at(*bundle, "resourceType"), "Bundle");
  EXPECT_EQ(string_at(*bundle, "type"), "history");
  if (bundle->find("total")) {
    EXPECT_EQ(string_at(*bundle, "total"), "3");
  }

  History h = read_history(client(), target_of("Patient", id) + "/_history");
  ASSERT_TRUE(h.error.empty()) << h.error;
  ASSERT_EQ(h.entries.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i)
    EXPECT_EQ(string_at(h.entries[i], "resource.meta.versionId"), std::to_string(3 - i)) << "newest first";
  EXPECT_EQ(string_at(h.entries[0], "resource.name[0].family"), "History-3");
  EXPECT_EQ(string_at(h.entries[2], "request.method"), "POST");
  EXPECT_EQ(string_at(h.entries[1], "request.method"), "PUT");
  check_history_entries(h, server().base_url());
}

TEST_F(RestTest, HistoryOfType) {
  // Basic is used by this test only.
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    Response r =
        client().post(path("Basic"), R"({"resourceType":"Basic","code":{"text":"history-type"}})", kRepresentation);
    ASSERT_EQ(r.status, 201) << r.summary();
    ids.insert(string_at(*r.json(), "id"));
  }
  const std::string first = *ids.begin();
  Response u =
      client().put(path("Basic/" + first), R"({"resourceType":"Basic","id":")" + first + R"(","code":{"text":"v2"}})");
  ASSERT_EQ(u.status, 200) << u.summary();

  History h = read_history(client(), path("Basic/_history"));
  ASSERT_TRUE(h.error.empty()) << h.error;
  EXPECT_EQ(string_at(h.pages.at(0), "type"), "history");
  std::multiset<std::string> seen;
  for (const auto& e : h.entries) {
    EXPECT_EQ(string_at(e, "resource.resourceType"), "Basic");
    if (ids.contains(string_at(e, "resource.id"))) seen.insert(string_at(e, "resource.id"));
  }
  EXPECT_EQ(seen.size(), 4u) << "3 creates and 1 update";
  EXPECT_EQ(seen.count(first), 2u);
  check_history_entries(h, server().base_url());
}

TEST_F(RestTest, HistoryOfSystem) {
  Value p = create_patient("System");
  Response o = client().post(
      path("Observation"), R"({"resourceType":"Observation","status":"final","code":{"text":"sys"}})", kRepresentation);
  ASSERT_EQ(o.status, 201) << o.summary();
  const std::string obs_id = string_at(*o.json(), "id");
  History h = read_history(client(), path("_history"));
  ASSERT_TRUE(h.error.empty()) << h.error;
  ASSERT_FALSE(h.pages.empty());
  EXPECT_EQ(string_at(h.pages[0], "type"), "history");
  if (h.total) {
    EXPECT_EQ(static_cast<std::size_t>(*h.total), h.entries.size());
  }
  ASSERT_GE(h.entries.size(), 2u);
  // The two newest versions in the whole system are the ones just made, newest first.
  EXPECT_EQ(string_at(h.entries[0], "fullUrl"), server().base_url() + "/Observation/" + obs_id);
  EXPECT_EQ(string_at(h.entries[1], "fullUrl"), server().base_url() + "/Patient/" + string_at(p, "id"));
  check_history_entries(h, server().base_url());
}

TEST_F(RestTest, HistoryPagingVisitsEveryVersionOnce) {
  Value v1 = create_patient("Paged");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  for (int i = 2; i <= 12; ++i) put_patient(id, "Paged-" + std::to_string(i));

  History h = read_history(client(), target_of("Patient", id) + "/_history?_count=5");
  ASSERT_TRUE(h.error.empty()) << h.error;
  EXPECT_EQ(h.pages.size(), 3u) << "12 versions in pages of 5";
  for (const auto& page : h.pages) {
    EXPECT_LE(size_at(page, "entry"), 5u) << "_count=5";
    EXPECT_EQ(string_at(page, "type"), "history");
  }
  if (h.total) {
    EXPECT_EQ(*h.total, 12);
  }
  std::vector<std::string> versions;
  for (const auto& e : h.entries) versions.push_back(string_at(e, "resource.meta.versionId"));
  std::vector<std::string> expected;
  for (int i = 12; i >= 1; --i) expected.push_back(std::to_string(i));
  EXPECT_EQ(versions, expected) << "every version exactly once, newest first";

  // The same across the whole system: no version twice, none missing, whatever the page size.
  History all = read_history(client(), path("_history?_count=1000"));
  ASSERT_TRUE(all.error.empty()) << all.error;
  for (int count : {1, 3, 7}) {
    History paged = read_history(client(), path("_history?_count=" + std::to_string(count)));
    ASSERT_TRUE(paged.error.empty()) << paged.error;
    std::vector<std::string> a, b;
    for (const auto& e : all.entries)
      a.push_back(string_at(e, "fullUrl") + "|" + string_at(e, "response.etag") + "|" + string_at(e, "request.method"));
    for (const auto& e : paged.entries)
      b.push_back(string_at(e, "fullUrl") + "|" + string_at(e, "response.etag") + "|" + string_at(e, "request.method"));
    EXPECT_EQ(a, b) << "_count=" << count;
    std::set<std::string> unique(b.begin(), b.end());
    EXPECT_EQ(unique.size(), b.size()) << "a version appears twice with _count=" << count;
    for (const auto& page : paged.pages) EXPECT_LE(size_at(page, "entry"), static_cast<std::size_t>(count));
  }
}

TEST_F(RestTest, HistorySince) {
  Value v = create_patient("Since");
  const std::string id = string_at(v, "id");
  ASSERT_FALSE(id.empty());
  std::vector<std::string> stamps = {string_at(v, "meta.lastUpdated")};
  for (int i = 2; i <= 4; ++i) {
    v = update_with_new_timestamp(id, "Since-" + std::to_string(i), stamps.back());
    stamps.push_back(string_at(v, "meta.lastUpdated"));
  }
  ASSERT_FALSE(HasFailure());
  const auto versions = static_cast<std::size_t>(std::atoi(string_at(v, "meta.versionId").c_str()));
  // _since is the lastUpdated of the 2nd distinct timestamp: every version at or after it, none before.
  const std::string since = stamps[1];
  auto since_t = parse_instant(since);
  ASSERT_TRUE(since_t);
  History full = read_history(client(), target_of("Patient", id) + "/_history");
  ASSERT_TRUE(full.error.empty()) << full.error;
  ASSERT_EQ(full.entries.size(), versions);
  std::vector<std::string> expected;
  for (const auto& e : full.entries) {
    auto t = parse_instant(string_at(e, "resource.meta.lastUpdated"));
    ASSERT_TRUE(t);
    if (t->micros >= since_t->micros) expected.push_back(string_at(e, "resource.meta.versionId"));
  }
  ASSERT_FALSE(expected.empty());
  ASSERT_LT(expected.size(), versions);

  History h = read_history(client(), target_of("Patient", id) + "/_history?_since=" + url_encode(since));
  ASSERT_TRUE(h.error.empty()) << h.error;
  std::vector<std::string> got;
  for (const auto& e : h.entries) got.push_back(string_at(e, "resource.meta.versionId"));
  EXPECT_EQ(got, expected) << "_since=" << since;

  // System and type level too: nothing older than _since.
  for (const std::string& t : {path("_history"), path("Patient/_history")}) {
    History s = read_history(client(), t + "?_since=" + url_encode(since));
    ASSERT_TRUE(s.error.empty()) << s.error;
    std::size_t ours = 0;
    for (const auto& e : s.entries) {
      const std::string lu = string_at(e, "response.lastModified").empty() ? string_at(e, "resource.meta.lastUpdated")
                                                                           : string_at(e, "response.lastModified");
      auto lt = parse_instant(lu);
      if (lt) {
        EXPECT_GE(lt->micros, since_t->micros) << t << " _since=" << since << " returned " << lu;
      }
      if (string_at(e, "resource.id") == id) ++ours;
    }
    EXPECT_EQ(ours, expected.size()) << t;
  }

  // A _since after everything gives an empty history Bundle.
  History none =
      read_history(client(), target_of("Patient", id) + "/_history?_since=" + url_encode("2999-01-01T00:00:00Z"));
  ASSERT_TRUE(none.error.empty()) << none.error;
  EXPECT_TRUE(none.entries.empty());
}

TEST_F(RestTest, HistoryAt) {
  Value v = create_patient("At");
  const std::string id = string_at(v, "id");
  ASSERT_FALSE(id.empty());
  std::vector<std::string> stamps = {string_at(v, "meta.lastUpdated")};
  std::vector<std::string> vids = {string_at(v, "meta.versionId")};
  for (int i = 2; i <= 3; ++i) {
    v = update_with_new_timestamp(id, "At-" + std::to_string(i), stamps.back());
    stamps.push_back(string_at(v, "meta.lastUpdated"));
    vids.push_back(string_at(v, "meta.versionId"));
  }
  ASSERT_FALSE(HasFailure());
  // Timestamps t1 < t2 < t3. Reaching a new timestamp may take several updates, so the versions stamped t2 run
  // from vids[1] to vids[2] - 1; all but the last of them were current for no time at all. _at = t2 (a period as
  // long as its precision) overlaps only the last version stamped t2: http.html#history "current at some point
  // during the period".
  const std::string current_at_t2 = std::to_string(std::stoi(vids[2]) - 1);
  History h = read_history(client(), target_of("Patient", id) + "/_history?_at=" + url_encode(stamps[1]));
  ASSERT_TRUE(h.error.empty()) << h.error;
  std::vector<std::string> got;
  for (const auto& e : h.entries) got.push_back(string_at(e, "resource.meta.versionId"));
  EXPECT_EQ(got, std::vector<std::string>{current_at_t2})
      << "_at=" << stamps[1] << " (timestamps " << stamps[0] << ", " << stamps[1] << ", " << stamps[2] << ")";

  // _at before the resource existed: nothing. _at far in the future: the current version only.
  History before = read_history(client(), target_of("Patient", id) + "/_history?_at=2001-01-01T00:00:00Z");
  ASSERT_TRUE(before.error.empty()) << before.error;
  EXPECT_TRUE(before.entries.empty());
  History later = read_history(client(), target_of("Patient", id) + "/_history?_at=2999-01-01T00:00:00Z");
  ASSERT_TRUE(later.error.empty()) << later.error;
  ASSERT_EQ(later.entries.size(), 1u);
  EXPECT_EQ(string_at(later.entries[0], "resource.meta.versionId"), vids.back());
}

TEST_F(RestTest, HistoryParameterEdgeCasesAreAnsweredAndServerSurvives) {
  Value v1 = create_patient("Edge");
  const std::string t = target_of("Patient", string_at(v1, "id")) + "/_history";
  // Whether a server rejects odd values (400) or applies them leniently (200) is its choice; it must answer
  // with a history Bundle or an OperationOutcome, and keep serving.
  for (const char* query :
       {"_count=0", "_count=-1", "_count=abc", "_count=99999999999999999999", "_count=1&_count=2", "_since=garbage",
        "_since=", "_at=garbage", "_at=2020", "_count=1&_since=2000-01-01T00:00:00Z"}) {
    SCOPED_TRACE(query);
    for (const std::string& target : {t, path("Patient/_history"), path("_history")}) {
      Response r = client().get(target + "?" + query);
      ASSERT_NE(r.status, 0) << "GET " << target << "?" << query << " got no answer (did the server die?): " << r.error;
      ASSERT_TRUE(r.status == 200 || r.status == 400) << target << ": " << r.summary();
      if (r.status == 400) {
        EXPECT_TRUE(IsOperationOutcome(r, 400));
      } else {
        EXPECT_TRUE(IsFhirJson(r));
        auto bundle = r.json();
        ASSERT_TRUE(bundle) << r.summary();
        EXPECT_EQ(string_at(*bundle, "type"), "history");
        if (std::string_view(query) == "_count=0") {
          EXPECT_EQ(size_at(*bundle, "entry"), 0u) << "_count=0 asks for no entries";
        }
      }
    }
  }
  EXPECT_EQ(client().get(path("metadata")).status, 200);
}

// ---- conditional headers -------------------------------------------------------------------------------------

TEST_F(RestTest, IfMatchOnUpdate) {
  Value v1 = create_patient("IfMatch");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  put_patient(id, "IfMatch-2");
  Response stale = client().put(target_of("Patient", id), patient_json("IfMatch-stale", id), {{"If-Match", "W/\"1\""}});
  EXPECT_TRUE(IsOperationOutcome(stale, 412));
  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "meta.versionId"), "2") << "a failed If-Match must not write";
  EXPECT_EQ(string_at(*current, "name[0].family"), "IfMatch-2");

  Response right = client().put(target_of("Patient", id), patient_json("IfMatch-3", id),
                                {{"If-Match", "W/\"2\""}, {"Prefer", "return=representation"}});
  ASSERT_EQ(right.status, 200) << right.summary();
  EXPECT_EQ(right.header("ETag"), "W/\"3\"");
  EXPECT_EQ(string_at(*right.json(), "meta.versionId"), "3");
}

TEST_F(RestTest, IfNoneMatchOnRead) {
  Value v1 = create_patient("IfNoneMatch");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  Response same = client().get(target_of("Patient", id), {{"If-None-Match", "W/\"1\""}});
  EXPECT_EQ(same.status, 304) << same.summary();
  EXPECT_TRUE(same.body.empty()) << "a 304 has no body";
  EXPECT_EQ(same.header("ETag"), "W/\"1\"") << "a 304 carries the ETag a 200 would have (RFC 7232 4.1)";
  Response other = client().get(target_of("Patient", id), {{"If-None-Match", "W/\"7\""}});
  EXPECT_EQ(other.status, 200) << other.summary();
  put_patient(id, "IfNoneMatch-2");
  Response after = client().get(target_of("Patient", id), {{"If-None-Match", "W/\"1\""}});
  EXPECT_EQ(after.status, 200) << "changed since version 1: " << after.summary();
  EXPECT_EQ(after.header("ETag"), "W/\"2\"");
}

TEST_F(RestTest, IfModifiedSinceOnRead) {
  Value v1 = create_patient("IfModifiedSince");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  Response r = client().get(target_of("Patient", id));
  ASSERT_EQ(r.status, 200);
  const std::string last_modified = r.header("Last-Modified");
  auto lm = parse_http_date(last_modified);
  ASSERT_TRUE(lm) << last_modified;
  Response not_modified = client().get(target_of("Patient", id), {{"If-Modified-Since", last_modified}});
  EXPECT_EQ(not_modified.status, 304) << not_modified.summary();
  EXPECT_TRUE(not_modified.body.empty());
  Response earlier = client().get(target_of("Patient", id), {{"If-Modified-Since", format_http_date(*lm - 86400)}});
  EXPECT_EQ(earlier.status, 200) << earlier.summary();
  EXPECT_FALSE(earlier.body.empty());
}

// ---- Prefer ----------------------------------------------------------------------------------------------------

TEST_F(RestTest, PreferReturn) {
  // minimal: no body, headers as usual.
  Response minimal = client().post(path("Patient"), patient_json("Minimal"), {{"Prefer", "return=minimal"}});
  ASSERT_EQ(minimal.status, 201) << minimal.summary();
  EXPECT_TRUE(minimal.body.empty()) << minimal.summary();
  EXPECT_EQ(minimal.header("ETag"), "W/\"1\"");
  const std::string location = minimal.header("Location");
  const std::string prefix = server().base_url() + "/Patient/";
  ASSERT_TRUE(location.starts_with(prefix) && location.ends_with("/_history/1")) << location;
  const std::string id = location.substr(prefix.size(), location.size() - prefix.size() - 11);

  Response rep =
      client().put(target_of("Patient", id), patient_json("Representation", id), {{"Prefer", "return=representation"}});
  ASSERT_EQ(rep.status, 200) << rep.summary();
  EXPECT_TRUE(IsFhirJson(rep));
  EXPECT_EQ(string_at(*rep.json(), "name[0].family"), "Representation");
  EXPECT_EQ(string_at(*rep.json(), "meta.versionId"), "2");

  Response oo =
      client().put(target_of("Patient", id), patient_json("Outcome", id), {{"Prefer", "return=OperationOutcome"}});
  ASSERT_EQ(oo.status, 200) << oo.summary();
  EXPECT_TRUE(IsFhirJson(oo));
  auto oo_body = oo.json();
  ASSERT_TRUE(oo_body) << oo.summary();
  EXPECT_EQ(string_at(*oo_body, "resourceType"), "OperationOutcome");
  EXPECT_GE(size_at(*oo_body, "issue"), 1u);
  EXPECT_EQ(oo.header("ETag"), "W/\"3\"");

  Response min_update =
      client().put(target_of("Patient", id), patient_json("Minimal-update", id), {{"Prefer", "return=minimal"}});
  ASSERT_EQ(min_update.status, 200) << min_update.summary();
  EXPECT_TRUE(min_update.body.empty()) << min_update.summary();
  EXPECT_EQ(min_update.header("ETag"), "W/\"4\"");

  Response create_oo = client().post(path("Patient"), patient_json("Outcome"), {{"Prefer", "return=OperationOutcome"}});
  ASSERT_EQ(create_oo.status, 201) << create_oo.summary();
  EXPECT_EQ(string_at(create_oo.json().value_or(Value()), "resourceType"), "OperationOutcome") << create_oo.summary();
  EXPECT_FALSE(create_oo.header("Location").empty());
}

// ---- content negotiation -------------------------------------------------------------------------------------

TEST_F(RestTest, ContentNegotiationJson) {
  Value v1 = create_patient("Negotiation");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  const std::string t = target_of("Patient", id);
  struct Case {
    std::string target;
    HeaderList headers;
    bool json_ok;
  };
  const std::vector<Case> cases = {
      {t, {{"Accept", "application/fhir+json"}}, false},
      {t, {{"Accept", "application/json"}}, true},
      {t, {{"Accept", "*/*"}}, false},
      {t, {}, false},
      {t + "?_format=json", {}, false},
      {t + "?_format=" + url_encode("application/fhir+json"), {}, false},
      {t + "?_format=" + url_encode("application/json"), {}, true},
      {t + "?_format=json", {{"Accept", "application/fhir+xml"}}, false},  // _format overrides Accept
  };
  for (const auto& c : cases) {
    Response r = client().get(c.target, c.headers);
    SCOPED_TRACE(c.target + (c.headers.empty() ? "" : " Accept: " + c.headers[0].second));
    ASSERT_EQ(r.status, 200) << r.summary();
    EXPECT_TRUE(IsFhirJson(r, c.json_ok));
    auto body = r.json();
    ASSERT_TRUE(body) << r.summary();
    EXPECT_TRUE(json_diff(v1, *body).empty());
  }
}

TEST_F(RestTest, XmlIsNotAcceptable) {
  Value v1 = create_patient("Xml");
  const std::string t = target_of("Patient", string_at(v1, "id"));
  for (const auto& [target, accept] : std::vector<std::pair<std::string, std::string>>{
           {t, "application/fhir+xml"},
           {t, "application/xml"},
           {t + "?_format=xml", ""},
           {t + "?_format=" + url_encode("application/fhir+xml"), ""},
           {path("metadata"), "application/fhir+xml"},
       }) {
    SCOPED_TRACE(target + " Accept: " + accept);
    HeaderList h;
    if (!accept.empty()) h.emplace_back("Accept", accept);
    Response r = client().get(target, h);
    EXPECT_TRUE(IsOperationOutcome(r, 406));
    EXPECT_TRUE(NamesElement(r, {}, "json")) << "the OperationOutcome says JSON only";
  }
}

TEST_F(RestTest, PrettyPrinting) {
  Value v1 = create_patient("Pretty");
  const std::string t = target_of("Patient", string_at(v1, "id"));
  Response pretty = client().get(t + "?_pretty=true");
  ASSERT_EQ(pretty.status, 200) << pretty.summary();
  EXPECT_TRUE(IsFhirJson(pretty));
  EXPECT_NE(pretty.body.find("\n  \""), std::string::npos) << "_pretty=true gives indented output: " << pretty.body;
  auto parsed = pretty.json();
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(json_diff(v1, *parsed).empty());
  Response compact = client().get(t + "?_pretty=false");
  ASSERT_EQ(compact.status, 200);
  EXPECT_EQ(compact.body.find("\n  \""), std::string::npos) << compact.body;
  Response both = client().get(t + "?_format=json&_pretty=true");
  EXPECT_NE(both.body.find("\n  \""), std::string::npos) << both.body;
}

// ---- base, metadata, operations endpoints --------------------------------------------------------------------

TEST_F(RestTest, BaseWorksWithAndWithoutTrailingSlash) {
  const std::string base = path();
  for (const char* rel : {"metadata", "_history"}) {
    Response a = client().get(base + "/" + std::string(rel));
    EXPECT_EQ(a.status, 200) << rel << ": " << a.summary();
  }
  // The base itself: whatever the interaction answers, /fhir and /fhir/ answer the same, and neither is an
  // unknown path.
  Response bare = client().get(base);
  Response slash = client().get(base + "/");
  EXPECT_EQ(bare.status, slash.status) << bare.summary() << "\n vs \n" << slash.summary();
  EXPECT_NE(bare.status, 404) << bare.summary();
  EXPECT_TRUE(IsFhirJson(bare));
  EXPECT_TRUE(IsFhirJson(slash));
  // (GET of the base is a system search: two searchset Bundles, alike but for their own id and meta.)
  auto without_id_and_meta = [](const Response& r) {
    auto v = r.json();
    if (!v || !v->is_object()) return r.body;
    v->erase("id");
    v->erase("meta");
    return fhir::json::write(*v);
  };
  EXPECT_EQ(without_id_and_meta(bare), without_id_and_meta(slash));
  // POST to the base (batch/transaction): the same answer with or without the slash, and not an unknown path.
  const std::string batch = R"({"resourceType":"Bundle","type":"batch","entry":[]})";
  Response post_bare = client().post(base, batch);
  Response post_slash = client().post(base + "/", batch);
  EXPECT_EQ(post_bare.status, post_slash.status) << post_bare.summary() << "\n vs \n" << post_slash.summary();
  EXPECT_NE(post_bare.status, 404) << post_bare.summary();
}

// The 146 concrete resource types of R4 (StructureDefinitions of kind resource, not abstract, in 4.0.1).
// clang-format off
const std::set<std::string> kR4ResourceTypes = {
    "Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse",
    "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct", "BodyStructure", "Bundle", "CapabilityStatement",
    "CarePlan", "CareTeam", "CatalogEntry", "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse",
    "ClinicalImpression", "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition",
    "Composition", "ConceptMap", "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
    "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric", "DeviceRequest",
    "DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference", "EffectEvidenceSynthesis",
    "Encounter", "Endpoint", "EnrollmentRequest", "EnrollmentResponse", "EpisodeOfCare", "EventDefinition",
    "Evidence", "EvidenceVariable", "ExampleScenario", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal",
    "GraphDefinition", "Group", "GuidanceResponse", "HealthcareService", "ImagingStudy", "Immunization",
    "ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide", "InsurancePlan", "Invoice",
    "Library", "Linkage", "List", "Location", "Measure", "MeasureReport", "Media", "Medication",
    "MedicationAdministration", "MedicationDispense", "MedicationKnowledge", "MedicationRequest",
    "MedicationStatement", "MedicinalProduct", "MedicinalProductAuthorization", "MedicinalProductContraindication",
    "MedicinalProductIndication", "MedicinalProductIngredient", "MedicinalProductInteraction",
    "MedicinalProductManufactured", "MedicinalProductPackaged", "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect", "MessageDefinition", "MessageHeader", "MolecularSequence", "NamingSystem",
    "NutritionOrder", "Observation", "ObservationDefinition", "OperationDefinition", "OperationOutcome",
    "Organization", "OrganizationAffiliation", "Parameters", "Patient", "PaymentNotice", "PaymentReconciliation",
    "Person", "PlanDefinition", "Practitioner", "PractitionerRole", "Procedure", "Provenance", "Questionnaire",
    "QuestionnaireResponse", "RelatedPerson", "RequestGroup", "ResearchDefinition", "ResearchElementDefinition",
    "ResearchStudy", "ResearchSubject", "RiskAssessment", "RiskEvidenceSynthesis", "Schedule", "SearchParameter",
    "ServiceRequest", "Slot", "Specimen", "SpecimenDefinition", "StructureDefinition", "StructureMap",
    "Subscription", "Substance", "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein",
    "SubstanceReferenceInformation", "SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery",
    "SupplyRequest", "Task", "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet", "VerificationResult",
    "VisionPrescription"};
// clang-format on

TEST_F(RestTest, MetadataIsCapabilityStatement) {
  ASSERT_EQ(kR4ResourceTypes.size(), 146u);
  for (const std::string& target : {path("metadata"), path("metadata?_format=json")}) {
    Response r = client().get(target);
    ASSERT_EQ(r.status, 200) << r.summary();
    EXPECT_TRUE(IsFhirJson(r));
    auto cs = r.json();
    ASSERT_TRUE(cs) << r.summary();
    EXPECT_EQ(string_at(*cs, "resourceType"), "CapabilityStatement");
    EXPECT_EQ(string_at(*cs, "fhirVersion"), "4.0.1");
    EXPECT_FALSE(string_at(*cs, "status").empty()) << "status is 1..1";
    EXPECT_FALSE(string_at(*cs, "date").empty()) << "date is 1..1";
    EXPECT_EQ(string_at(*cs, "kind"), "instance");
    std::set<std::string> formats;
    if (const Value* f = cs->find("format"); f && f->is_array())
      for (const auto& x : f->items()) formats.insert(x.text());
    EXPECT_TRUE(formats.contains("json") || formats.contains("application/fhir+json"))
        << ::testing::PrintToString(formats);
    EXPECT_FALSE(formats.contains("xml") || formats.contains("application/fhir+xml")) << "XML is not served";
    ASSERT_EQ(size_at(*cs, "rest"), 1u);
    EXPECT_EQ(string_at(*cs, "rest[0].mode"), "server");

    std::set<std::string> system;
    if (const Value* list = find_path(*cs, "rest[0].interaction"); list && list->is_array())
      for (const auto& i : list->items()) system.insert(string_at(i, "code"));
    EXPECT_EQ(system, (std::set<std::string>{"transaction", "batch", "history-system", "search-system"}))
        << "claims exactly the system interactions implemented";

    const std::set<std::string> implemented = {"read",   "vread",       "update",           "patch",       "delete",
                                               "create", "search-type", "history-instance", "history-type"};
    std::set<std::string> types;
    std::vector<std::string> problems;  // one line per resource type and problem, reported together
    const Value* resources = find_path(*cs, "rest[0].resource");
    ASSERT_TRUE(resources && resources->is_array());
    for (const auto& res : resources->items()) {
      const std::string type = string_at(res, "type");
      if (!kR4ResourceTypes.contains(type)) problems.push_back("not an R4 resource type: " + type);
      if (!types.insert(type).second) problems.push_back(type + " listed twice");
      std::set<std::string> codes;
      if (const Value* list = res.find("interaction"); list && list->is_array())
        for (const auto& i : list->items()) codes.insert(string_at(i, "code"));
      if (codes != implemented)
        problems.push_back(type + ": interactions " + ::testing::PrintToString(codes) + ", expected exactly " +
                           ::testing::PrintToString(implemented));
      // If-None-Match and If-Modified-Since on read are both implemented: "full-support".
      if (string_at(res, "conditionalRead") != "full-support")
        problems.push_back(type + ".conditionalRead = \"" + string_at(res, "conditionalRead") +
                           "\", expected \"full-support\" (both If-None-Match and If-Modified-Since work)");
      // Conditional create, update and delete (If-None-Exist, PUT/DELETE [type]?criteria) work; the server
      // deletes one match at a time by default (--max-conditional-delete 1): "single".
      for (const char* flag : {"conditionalCreate", "conditionalUpdate"}) {
        const Value* f = res.find(flag);
        if (f == nullptr || !f->is_bool() || !f->as_bool())
          problems.push_back(type + "." + flag + " = " + (f ? fhir::json::write(*f) : "absent") + ", expected true");
      }
      if (string_at(res, "conditionalDelete") != "single")
        problems.push_back(type + ".conditionalDelete = \"" + string_at(res, "conditionalDelete") +
                           "\", expected \"single\"");
      if (const Value* uc = res.find("updateCreate"); uc && uc->is_bool() && !uc->as_bool())
        problems.push_back(type + ".updateCreate is false, but update-as-create works");
      // Search is served (the default): at least the common parameters of every type are listed.
      if (size_at(res, "searchParam") < 2) problems.push_back(type + ": no searchParam listed, yet search is served");
    }
    for (const auto& type : kR4ResourceTypes)
      if (type != "Parameters" && !types.contains(type)) problems.push_back("resource type missing: " + type);
    std::string report;
    for (std::size_t i = 0; i < problems.size() && i < 12; ++i) report += "\n  " + problems[i];
    EXPECT_TRUE(problems.empty()) << problems.size() << " problems in " << target << ", first:" << report;
  }
}

TEST_F(RestTest, HealthAndReadiness) {
  Response h = client().get("/healthz");
  EXPECT_EQ(h.status, 200) << h.summary();
  Response r = client().get("/readyz");
  EXPECT_EQ(r.status, 200) << r.summary();
}

TEST_F(RestTest, MetricsArePrometheusText) {
  Value v1 = create_patient("Metrics");
  ASSERT_EQ(client().get(target_of("Patient", string_at(v1, "id"))).status, 200);
  Response m = client().get("/metrics");
  ASSERT_EQ(m.status, 200) << m.summary();
  EXPECT_TRUE(m.header("Content-Type").starts_with("text/plain")) << m.header("Content-Type");
  // A counter of requests, a latency histogram, both labelled by interaction and status.
  std::set<std::string> counters, histograms;
  static const std::regex kType("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|histogram|gauge|summary|untyped)");
  std::istringstream lines(m.body);
  std::vector<std::string> samples;
  for (std::string line; std::getline(lines, line);) {
    std::smatch match;
    if (std::regex_match(line, match, kType)) {
      if (match[2] == "counter") counters.insert(match[1]);
      if (match[2] == "histogram") histograms.insert(match[1]);
    } else if (!line.empty() && line[0] != '#') {
      samples.push_back(line);
    }
  }
  bool request_counter = false;
  for (const auto& c : counters) {
    if (c.find("request") == std::string::npos) continue;
    for (const auto& s : samples) {
      if (!s.starts_with(c + "{") && !s.starts_with(c + " ")) continue;
      if (s.find("create") != std::string::npos && s.find("201") != std::string::npos &&
          std::strtod(s.substr(s.rfind(' ') + 1).c_str(), nullptr) >= 1)
        request_counter = true;
    }
  }
  EXPECT_TRUE(request_counter) << "no request counter with a sample labelled create/201 and a value >= 1:\n" << m.body;
  bool latency = false;
  for (const auto& hname : histograms)
    for (const auto& s : samples)
      if (s.starts_with(hname + "_bucket{") && s.find("le=\"+Inf\"") != std::string::npos &&
          s.find("read") != std::string::npos)
        latency = true;
  EXPECT_TRUE(latency) << "no latency histogram with a +Inf bucket for the read interaction:\n" << m.body;
}

TEST_F(RestTest, KeepAliveServesManyRequestsOnOneConnection) {
  HttpClient c(server().host(), server().port());
  Response created = c.post(path("Patient"), patient_json("KeepAlive"), kRepresentation);
  ASSERT_EQ(created.status, 201) << created.summary();
  const std::string id = string_at(*created.json(), "id");
  std::vector<Response> responses;
  responses.push_back(c.get(path("metadata")));
  responses.push_back(c.get(target_of("Patient", id)));
  responses.push_back(c.put(target_of("Patient", id), patient_json("KeepAlive-2", id)));
  responses.push_back(c.get(target_of("Patient", id) + "/_history/1"));
  responses.push_back(c.get(target_of("Patient", id) + "/_history"));
  responses.push_back(c.get(target_of("Patient", next_id("missing"))));  // errors keep the connection too
  responses.push_back(c.get(target_of("Patient", id)));
  for (const auto& r : responses) {
    EXPECT_NE(r.status, 0) << r.error;
    EXPECT_NE(r.header("Connection"), "close");
  }
  EXPECT_EQ(responses[5].status, 404);
  EXPECT_EQ(c.connections_opened(), 1) << "all requests on one keep-alive connection";
}

TEST_F(RestTest, PipelinedRequestsAreAnsweredInOrder) {
  std::vector<std::string> ids;
  for (const char* family : {"Pipe-A", "Pipe-B", "Pipe-C"}) ids.push_back(string_at(create_patient(family), "id"));
  std::string raw;
  for (const auto& id : ids)
    raw += "GET " + target_of("Patient", id) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/fhir+json\r\n\r\n";
  auto rs = send_raw(server().host(), server().port(), raw, 3);
  ASSERT_EQ(rs.size(), 3u) << (rs.empty() ? "" : rs.back().error);
  const char* families[] = {"Pipe-A", "Pipe-B", "Pipe-C"};
  for (std::size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(rs[i].status, 200) << rs[i].summary();
    EXPECT_EQ(string_at(rs[i].json().value_or(Value()), "name[0].family"), families[i]) << "responses in order";
  }
}

TEST_F(RestTest, MalformedHttpIsRefusedAndServerStaysUp) {
  const std::vector<std::string> garbage = {
      "HELLO\r\n\r\n",
      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 16),  // a TLS ClientHello start
      "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n12345",
      "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(1 << 20, 'x') + "\r\n\r\n",
  };
  for (const auto& g : garbage) {
    SCOPED_TRACE(::testing::PrintToString(g.substr(0, 60)));
    auto rs = send_raw(server().host(), server().port(), g, 1);
    ASSERT_EQ(rs.size(), 1u);
    // RFC 9112 2.2/3: answer 400 (or 431 for the header) and close, or just close the connection.
    if (rs[0].status != 0) {
      EXPECT_TRUE(rs[0].status == 400 || rs[0].status == 431) << rs[0].summary();
    }
    Response ok = client().get(path("metadata"));
    ASSERT_EQ(ok.status, 200) << "the server must survive malformed HTTP: " << ok.summary();
  }
}

TEST_F(RestTest, IfMatchIsAtomicAcrossConcurrentUpdates) {
  Value v1 = create_patient("Race");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  constexpr int kRacers = 8;
  std::vector<int> statuses(kRacers);
  at_once(kRacers, [&](int t, HttpClient& c) {
    statuses[static_cast<std::size_t>(t)] =
        c.put(target_of("Patient", id), patient_json("Racer-" + std::to_string(t), id), {{"If-Match", "W/\"1\""}})
            .status;
  });
  int winners = 0;
  std::string winner;
  for (int t = 0; t < kRacers; ++t) {
    const int s = statuses[static_cast<std::size_t>(t)];
    if (s == 200) {
      ++winners;
      winner = "Racer-" + std::to_string(t);
    } else {
      EXPECT_TRUE(s == 412 || s == 409) << "a loser of the If-Match race gets 412 (or 409), got " << s;
    }
  }
  EXPECT_EQ(winners, 1) << "exactly one update may succeed against If-Match W/\"1\": "
                        << ::testing::PrintToString(statuses);
  auto current = read("Patient/" + id);
  ASSERT_TRUE(current);
  EXPECT_EQ(string_at(*current, "meta.versionId"), "2");
  EXPECT_EQ(string_at(*current, "name[0].family"), winner);
}

TEST_F(RestTest, ConcurrentWritesLoseNothing) {
  Value v1 = create_patient("Concurrent");
  const std::string id = string_at(v1, "id");
  ASSERT_FALSE(id.empty());
  constexpr int kThreads = 4, kEach = 10;
  std::mutex mutex;
  std::vector<std::string> etags, created, errors;
  at_once(kThreads, [&](int t, HttpClient& c) {
    for (int i = 0; i < kEach; ++i) {
      Response u = c.put(target_of("Patient", id), patient_json("C-" + std::to_string(t), id));
      Response p = c.post(path("Patient"), patient_json("New-" + std::to_string(t)));
      std::lock_guard lock(mutex);
      if (u.status != 200) errors.push_back("update: " + u.summary(200));
      if (p.status != 201) errors.push_back("create: " + p.summary(200));
      etags.push_back(u.header("ETag"));
      created.push_back(p.header("Location"));
    }
  });
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  // Each update got its own version: 2..41, none twice.
  std::set<std::string> unique_etags(etags.begin(), etags.end());
  EXPECT_EQ(unique_etags.size(), etags.size()) << "two updates were given the same version";
  std::set<std::string> expected;
  for (int v = 2; v <= 1 + kThreads * kEach; ++v) expected.insert(weak_etag(std::to_string(v)));
  EXPECT_EQ(unique_etags, expected);
  std::set<std::string> unique_created(created.begin(), created.end());
  EXPECT_EQ(unique_created.size(), created.size()) << "two creates were given the same id";
  History h = read_history(client(), target_of("Patient", id) + "/_history");
  ASSERT_TRUE(h.error.empty()) << h.error;
  EXPECT_EQ(h.entries.size(), static_cast<std::size_t>(1 + kThreads * kEach));
  for (std::size_t i = 0; i < h.entries.size(); ++i)
    EXPECT_EQ(string_at(h.entries[i], "resource.meta.versionId"), std::to_string(h.entries.size() - i));
}

// Reads from several connections at once (on PostgreSQL they are gathered into shared statements): each answer is
// the resource asked for, with its own ETag, and a missing id is 404 whatever it shares a batch with.
TEST_F(RestTest, ConcurrentReadsEachGetTheirOwnResource) {
  constexpr int kPatients = 12;
  std::vector<std::string> ids;
  for (int i = 0; i < kPatients; ++i) {
    Value v = create_patient("Reader" + std::to_string(i));
    ids.push_back(string_at(v, "id"));
    ASSERT_FALSE(ids.back().empty());
    if (i % 3 == 0)  // a second version for some
      ASSERT_EQ(
          client().put(target_of("Patient", ids.back()), patient_json("Reread" + std::to_string(i), ids.back())).status,
          200);
  }
  constexpr int kThreads = 6, kRounds = 5;
  std::mutex mutex;
  std::vector<std::string> errors;
  at_once(kThreads, [&](int t, HttpClient& c) {
    for (int round = 0; round < kRounds; ++round)
      for (int k = 0; k < kPatients; ++k) {
        int i = (k + t + round) % kPatients;
        Response r = c.get(target_of("Patient", ids[i]));
        Response missing = c.get(target_of("Patient", "no-such-" + std::to_string(i)));
        std::string family = (i % 3 == 0 ? "Reread" : "Reader") + std::to_string(i);
        std::string why;
        if (r.status != 200)
          why = r.summary(200);
        else if (string_at(r.json().value_or(Value()), "id") != ids[i] ||
                 string_at(r.json().value_or(Value()), "name[0].family") != family)
          why = "another resource: " + r.body;
        else if (r.header("ETag") != weak_etag(i % 3 == 0 ? "2" : "1"))
          why = "ETag " + r.header("ETag");
        else if (missing.status != 404)
          why = "missing: " + missing.summary(200);
        if (!why.empty()) {
          std::lock_guard lock(mutex);
          errors.push_back("Patient " + std::to_string(i) + ": " + why);
        }
      }
  });
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
}

// ---- data fidelity ---------------------------------------------------------------------------------------------

TEST_F(RestTest, DecimalsRoundTripExactly) {
  const std::string sent = R"({"resourceType":"Observation","status":"final","code":{"text":"decimals"},
    "valueQuantity":{"value":1.50,"unit":"mg"},
    "referenceRange":[{"low":{"value":0.010},"high":{"value":1e3}},
                      {"low":{"value":-0.0},"high":{"value":3.14159265358979323846264338327950288419716939937510}},
                      {"low":{"value":1E-7},"high":{"value":100000000000000000000000000.1}}],
    "component":[{"code":{"text":"int"},"valueInteger":2147483647},
                 {"code":{"text":"neg"},"valueInteger":-2147483648}]})";
  Response r = client().post(path("Observation"), sent, kRepresentation);
  ASSERT_EQ(r.status, 201) << r.summary();
  const std::string id = string_at(*r.json(), "id");
  for (const std::string& target : {target_of("Observation", id), target_of("Observation", id) + "/_history/1"}) {
    Response got = client().get(target);
    ASSERT_EQ(got.status, 200) << got.summary();
    auto body = got.json();
    ASSERT_TRUE(body) << got.summary();
    EXPECT_NE(got.body.find("1.50"), std::string::npos) << got.body;
    EXPECT_EQ(string_at(*body, "valueQuantity.value"), "1.50");
    EXPECT_EQ(string_at(*body, "referenceRange[0].low.value"), "0.010");
    // 1e3 stays a valid JSON number worth 1000 (and the exact text is kept best of all).
    const Value* e3 = find_path(*body, "referenceRange[0].high.value");
    ASSERT_TRUE(e3 && e3->is_number()) << got.body;
    EXPECT_EQ(std::strtod(e3->text().c_str(), nullptr), 1000.0) << e3->text();
    EXPECT_EQ(string_at(*body, "referenceRange[1].low.value"), "-0.0");
    EXPECT_EQ(string_at(*body, "referenceRange[1].high.value"), "3.14159265358979323846264338327950288419716939937510");
    const Value* small = find_path(*body, "referenceRange[2].low.value");
    ASSERT_TRUE(small && small->is_number());
    EXPECT_EQ(std::strtod(small->text().c_str(), nullptr), 1e-7) << small->text();
    EXPECT_EQ(string_at(*body, "referenceRange[2].high.value"), "100000000000000000000000000.1");
    EXPECT_EQ(string_at(*body, "component[0].valueInteger"), "2147483647");
    EXPECT_EQ(string_at(*body, "component[1].valueInteger"), "-2147483648");
  }
}

TEST_F(RestTest, UnicodeRoundTrips) {
  // Written both as raw UTF-8 and as JSON escapes (including a surrogate pair).
  const std::string sent = R"({"resourceType":"Patient","name":[{"family":"王","given":["小明","Zoë"],
    "text":"Ñandú مرحبا 👩‍⚕️ \u00e9\ud83d\ude00"}],"address":[{"city":"Zürich","line":["Straße 1 \/ 2"]}]})";
  Response r = client().post(path("Patient"), sent, kRepresentation);
  ASSERT_EQ(r.status, 201) << r.summary();
  const std::string id = string_at(*r.json(), "id");
  Response got = client().get(target_of("Patient", id));
  ASSERT_EQ(got.status, 200) << got.summary();
  auto body = got.json();
  ASSERT_TRUE(body) << got.summary();
  EXPECT_EQ(string_at(*body, "name[0].family"), "王");
  EXPECT_EQ(string_at(*body, "name[0].given[0]"), "小明");
  EXPECT_EQ(string_at(*body, "name[0].given[1]"), "Zoë");
  EXPECT_EQ(string_at(*body, "name[0].text"), "Ñandú مرحبا 👩‍⚕️ é😀");
  EXPECT_EQ(string_at(*body, "address[0].city"), "Zürich");
  EXPECT_EQ(string_at(*body, "address[0].line[0]"), "Straße 1 / 2");
  auto expected = parse_json(sent);
  ASSERT_TRUE(expected);
  EXPECT_TRUE(json_diff(*expected, without_server_meta(*body, true)).empty())
      << ::testing::PrintToString(json_diff(*expected, without_server_meta(*body, true)));
}

TEST_F(RestTest, PrimitiveExtensionsAreKept) {
  const std::string sent = R"({"resourceType":"Patient","birthDate":"1970-03-30",
    "_birthDate":{"id":"bd","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                           "valueDateTime":"1970-03-30T14:35:45-05:00"}]},
    "name":[{"given":["Alice",null,"Carol"],
             "_given":[null,{"extension":[{"url":"http://example.org/no-value","valueCode":"masked"}]},
                       {"id":"g3"}]}],
    "_active":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                             "valueCode":"unknown"}]}})";
  Response r = client().post(path("Patient"), sent, kRepresentation);
  ASSERT_EQ(r.status, 201) << r.summary();
  const std::string id = string_at(*r.json(), "id");
  Response got = client().get(target_of("Patient", id));
  ASSERT_EQ(got.status, 200) << got.summary();
  auto body = got.json();
  ASSERT_TRUE(body);
  auto expected = parse_json(sent);
  ASSERT_TRUE(expected);
  auto diffs = json_diff(*expected, without_server_meta(*body, true));
  EXPECT_TRUE(diffs.empty()) << ::testing::PrintToString(diffs);
}

// ---- process lifecycle -----------------------------------------------------------------------------------------

TEST(ServerProcessTest, SigtermExitsZeroKeepsDataAndLogsJsonWithoutContent) {
  std::unique_ptr<TestServer> server;
  try {
    server = std::make_unique<TestServer>();
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  const std::string secret = "Zyxwvutsrq" + std::to_string(::getpid());
  std::string id;
  int requests = 0;
  {
    HttpClient c(server->host(), server->port());
    Response r = c.post(server->base_path() + "/Patient", patient_json(secret), kRepresentation);
    ++requests;
    ASSERT_EQ(r.status, 201) << r.summary();
    id = string_at(*r.json(), "id");
    for (int i = 0; i < 4; ++i, ++requests) ASSERT_EQ(c.get(server->base_path() + "/Patient/" + id).status, 200);
  }
  EXPECT_EQ(server->stop(), 0) << "SIGTERM drains and exits 0; stderr:\n" << server->stderr_text();

  // One JSON object per request on stdout, and no resource content in it.
  int json_lines = 0;
  for (const auto& line : server->log_lines()) {
    EXPECT_EQ(line.find(secret), std::string::npos) << "resource content in the log: " << line;
    auto v = parse_json(line);
    if (v && v->is_object()) ++json_lines;
  }
  EXPECT_GE(json_lines, requests) << "one JSON log line per request";

  ASSERT_NO_THROW(server->restart()) << server->stderr_text();
  HttpClient c(server->host(), server->port());
  Response r = c.get(server->base_path() + "/Patient/" + id);
  ASSERT_EQ(r.status, 200) << "data kept across a restart: " << r.summary();
  EXPECT_EQ(string_at(*r.json(), "name[0].family"), secret);
  Response u = c.put(server->base_path() + "/Patient/" + id, patient_json("After-restart", id));
  EXPECT_EQ(u.status, 200) << u.summary();
  EXPECT_EQ(u.header("ETag"), "W/\"2\"") << "version numbering continues after a restart";
  c.close();
  EXPECT_EQ(server->stop(), 0);
}

TEST(ServerProcessTest, StartFailureIsReportedWithTheServersMessage) {
  ServerOptions options;
  options.extra_args = {"--no-such-option"};
  options.start_timeout = std::chrono::seconds(10);
  try {
    TestServer server(options);
    ADD_FAILURE() << "the server started with an unknown option";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("exited with code"), std::string::npos) << what;
    EXPECT_EQ(what.find("exited with code 0"), std::string::npos) << "an unknown option is an error: " << what;
  }
}

}  // namespace
}  // namespace caduceus::test
