// Custom SearchParameters and $reindex over HTTP: a SearchParameter created at run time is indexed in the background
// and becomes searchable when its job is done, without a restart; it stays so after one.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

const HeaderList kJson{{"Content-Type", "application/fhir+json"}};
const HeaderList kStrict{{"Prefer", "handling=strict"}};

constexpr std::string_view kEyeColour = R"({"resourceType":"SearchParameter","id":"eyecolour",
  "url":"http://example.org/SearchParameter/eyecolour","name":"eyecolour","status":"active",
  "description":"The colour of the eyes","code":"eyecolour","base":["Patient"],"type":"token",
  "expression":"Patient.extension('http://example.org/eye').value"})";

std::string patient(std::string_view id, std::string_view colour) {
  // The colour as a code (the custom parameter's value) and in the name's text (full text: codes are not text).
  std::string extension = colour.empty()
                              ? std::string()
                              : R"(,"extension":[{"url":"http://example.org/eye","valueCode":")" + std::string(colour) +
                                    R"("}],"name":[{"text":")" + std::string(colour) + R"( eyes"}])";
  return R"({"resourceType":"Patient","id":")" + std::string(id) + "\"" + extension + "}";
}

// The value of the Parameters part `name` (its value[x] as text), or "".
std::string part(const Response& r, std::string_view name) {
  auto v = r.json();
  if (!v || v->find("parameter") == nullptr) return {};
  for (const auto& p : v->find("parameter")->items()) {
    if (p.find("name")->text() != name) continue;
    for (const auto& [key, value] : p.members())
      if (key.starts_with("value")) return value.is_object() ? value.find("reference")->text() : value.text();
  }
  return {};
}

class ReindexTest : public ::testing::Test {
 protected:
  // A server on a database of this test's, so that another one can take it over.
  std::unique_ptr<TestServer> start(bool search_index) {
    ServerOptions options;
    options.db = "sqlite:" + (dir_.path() / "caduceus.db").string();
    if (postgres_backend()) {  // (run on both backends: see tests/CMakeLists.txt)
      if (!pg_) {
        auto db = PgDatabase::create();
        if (!db) throw std::runtime_error("PostgreSQL test database: " + db.error());
        pg_ = std::move(*db);
      }
      options.db = pg_->url();
    }
    options.extra_args = {"--search-index", search_index ? "true" : "false"};
    return std::make_unique<TestServer>(options);
  }

  // The request target of an absolute URL ("http://127.0.0.1:1234/fhir/$reindex/1" -> "/fhir/$reindex/1"); the
  // port may be one of an earlier run of the server.
  static std::string target_of(const std::string& url) {
    const auto scheme = url.find("://");
    EXPECT_NE(scheme, std::string::npos) << url;
    return scheme == std::string::npos ? url : url.substr(url.find('/', scheme + 3));
  }

  // Polls a job's status URL until it is done or failed (or 30 s have passed); returns the last answer.
  static Response wait_for_job(const TestServer& server, const std::string& status_url) {
    HttpClient c(server.host(), server.port());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      Response r = c.get(target_of(status_url));
      std::string state = part(r, "status");
      if (r.status != 200 || state == "done" || state == "failed" || std::chrono::steady_clock::now() > deadline)
        return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  TempDir dir_{"caduceus-reindex"};
  std::unique_ptr<PgDatabase> pg_;  // with CADUCEUS_TEST_BACKEND=postgresql: the test's database

  void SetUp() override {
    if (postgres_backend() && postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
  }
};

TEST_F(ReindexTest, CustomParameterIsSearchableAfterItsReindexWithoutRestart) {
  auto server = start(true);
  HttpClient c(server->host(), server->port());
  const std::string base = server->base_path();
  for (auto [id, colour] :
       std::vector<std::pair<std::string, std::string>>{{"p1", "blue"}, {"p2", "brown"}, {"p3", "blue"}, {"p4", ""}})
    ASSERT_EQ(c.put(base + "/Patient/" + id, patient(id, colour), kJson).status, 201);
  ASSERT_EQ(c.put(base + "/Observation/o1",
                  R"({"resourceType":"Observation","id":"o1","status":"final","code":{"text":"eyes"}})", kJson)
                .status,
            201);
  // Not a parameter yet: strict search refuses it, lenient search ignores it (so every Patient matches).
  EXPECT_EQ(c.get(base + "/Patient?eyecolour=blue", kStrict).status, 400);
  EXPECT_EQ(entry_ids(c.get(base + "/Patient?eyecolour=blue")), (std::set<std::string>{"p1", "p2", "p3", "p4"}));

  Response created = c.put(base + "/SearchParameter/eyecolour", std::string(kEyeColour), kJson);
  ASSERT_EQ(created.status, 201) << created.summary();
  const std::string job_url = created.header("X-Reindex-Job");
  ASSERT_FALSE(job_url.empty());
  EXPECT_TRUE(job_url.starts_with(server->base_url() + "/$reindex/")) << job_url;

  Response status = wait_for_job(*server, job_url);
  ASSERT_EQ(status.status, 200) << status.summary();
  EXPECT_EQ(part(status, "status"), "done") << status.body;
  EXPECT_EQ(part(status, "total"), "4");  // the four Patients, not the Observation
  EXPECT_EQ(part(status, "processed"), "4");
  EXPECT_EQ(part(status, "searchParameter"), "SearchParameter/eyecolour/_history/1");

  Response found = c.get(base + "/Patient?eyecolour=blue", kStrict);
  ASSERT_EQ(found.status, 200) << found.summary();
  EXPECT_EQ(entry_ids(found), (std::set<std::string>{"p1", "p3"}));
  EXPECT_EQ(entry_ids(c.get(base + "/Patient?eyecolour=brown,green")), std::set<std::string>{"p2"});
  EXPECT_EQ(entry_ids(c.get(base + "/Patient?eyecolour:missing=true")), std::set<std::string>{"p4"});
  // The reindex of one parameter left the full text of each Patient as it was (its name has the colour).
  EXPECT_EQ(entry_ids(c.get(base + "/Patient?_content=blue", kStrict)), (std::set<std::string>{"p1", "p3"}));

  // Writes after the reindex index the parameter themselves.
  ASSERT_EQ(c.put(base + "/Patient/p5", patient("p5", "blue"), kJson).status, 201);
  ASSERT_EQ(c.put(base + "/Patient/p1", patient("p1", "green"), kJson).status, 200);
  EXPECT_EQ(entry_ids(c.get(base + "/Patient?eyecolour=blue")), (std::set<std::string>{"p3", "p5"}));
  EXPECT_EQ(entry_ids(c.get(base + "/Patient?eyecolour=green")), std::set<std::string>{"p1"});

  // The CapabilityStatement lists it.
  Response metadata = c.get(base + "/metadata");
  ASSERT_EQ(metadata.status, 200);
  EXPECT_NE(metadata.body.find(R"("name":"eyecolour","definition":"http://example.org/SearchParameter/eyecolour")"),
            std::string::npos);

  // After a restart on the same database it still works, at once.
  server->restart();
  HttpClient c2(server->host(), server->port());
  Response again = c2.get(base + "/Patient?eyecolour=blue", kStrict);
  ASSERT_EQ(again.status, 200) << again.summary();
  EXPECT_EQ(entry_ids(again), (std::set<std::string>{"p3", "p5"}));
  EXPECT_EQ(part(wait_for_job(*server, job_url), "status"), "done");

  // Retired: no longer a parameter.
  std::string retired(kEyeColour);
  retired.replace(retired.find("\"active\""), 8, "\"retired\"");
  Response updated = c2.put(base + "/SearchParameter/eyecolour", retired, kJson);
  ASSERT_EQ(updated.status, 200) << updated.summary();
  EXPECT_FALSE(updated.headers.has("X-Reindex-Job"));
  EXPECT_EQ(c2.get(base + "/Patient?eyecolour=blue", kStrict).status, 400);
}

TEST_F(ReindexTest, DeletedParameterStopsBeingSearchable) {
  auto server = start(true);
  HttpClient c(server->host(), server->port());
  const std::string base = server->base_path();
  ASSERT_EQ(c.put(base + "/Patient/p1", patient("p1", "blue"), kJson).status, 201);
  Response created = c.post(base + "/SearchParameter", std::string(kEyeColour), kJson);
  ASSERT_EQ(created.status, 201) << created.summary();
  ASSERT_EQ(part(wait_for_job(*server, created.header("X-Reindex-Job")), "status"), "done");
  EXPECT_EQ(entry_ids(c.get(base + "/Patient?eyecolour=blue", kStrict)), std::set<std::string>{"p1"});
  const std::string id = created.json()->find("id")->text();
  ASSERT_EQ(c.del(base + "/SearchParameter/" + id).status, 200);
  EXPECT_EQ(c.get(base + "/Patient?eyecolour=blue", kStrict).status, 400);
  // And not back after a restart.
  server->restart();
  HttpClient c2(server->host(), server->port());
  EXPECT_EQ(c2.get(base + "/Patient?eyecolour=blue", kStrict).status, 400);
}

TEST_F(ReindexTest, BadSearchParameterIsRefusedNamingTheElement) {
  auto server = start(true);
  HttpClient c(server->host(), server->port());
  const std::string base = server->base_path();
  struct Case {
    std::string from, to, expression;
  };
  const std::vector<Case> cases = {
      {"Patient.extension('http://example.org/eye').value", "Patient.extension(('", "SearchParameter.expression"},
      {R"("type":"token")", R"("type":"composite")", "SearchParameter.type"},
      {R"("code":"eyecolour")", R"("code":"gender")", "SearchParameter.code"},
      {R"("base":["Patient"])", R"("base":["Pateint"])", "SearchParameter.base"},
  };
  for (const Case& k : cases) {
    std::string body(kEyeColour);
    body.replace(body.find(k.from), k.from.size(), k.to);
    Response r = c.put(base + "/SearchParameter/eyecolour", body, kJson);
    EXPECT_EQ(r.status, 400) << k.to << ": " << r.summary();
    EXPECT_TRUE(NamesElement(r, {k.expression})) << r.body;
    // Nothing was stored.
    EXPECT_EQ(c.get(base + "/SearchParameter/eyecolour").status, 404);
  }
  // A draft is stored as it is, but not in force.
  std::string draft(kEyeColour);
  draft.replace(draft.find("\"active\""), 8, "\"draft\"");
  draft.replace(draft.find("Patient.extension('http://example.org/eye').value"), 49, "Patient.extension(('");
  Response stored = c.put(base + "/SearchParameter/eyecolour", draft, kJson);
  EXPECT_EQ(stored.status, 201) << stored.summary();
  EXPECT_FALSE(stored.headers.has("X-Reindex-Job"));
  EXPECT_EQ(c.get(base + "/Patient?eyecolour=blue", kStrict).status, 400);
}

TEST_F(ReindexTest, ReindexMakesDataWrittenWithoutTheIndexSearchable) {
  {
    auto plain = start(false);
    HttpClient c(plain->host(), plain->port());
    ASSERT_EQ(c.put(plain->base_path() + "/Patient/a",
                    R"({"resourceType":"Patient","id":"a","gender":"female","name":[{"family":"Ames"}]})", kJson)
                  .status,
              201);
    ASSERT_EQ(c.put(plain->base_path() + "/Observation/o",
                    R"({"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},
                        "subject":{"reference":"Patient/a"}})",
                    kJson)
                  .status,
              201);
    EXPECT_EQ(c.post(plain->base_path() + "/$reindex", "", kJson).status, 501);
  }
  auto server = start(true);
  HttpClient c(server->host(), server->port());
  const std::string base = server->base_path();
  EXPECT_TRUE(entry_ids(c.get(base + "/Patient?gender=female")).empty());

  // One type first.
  Response started = c.post(base + "/Observation/$reindex", "", kJson);
  ASSERT_EQ(started.status, 202) << started.summary();
  ASSERT_TRUE(started.headers.has("Content-Location"));
  EXPECT_EQ(part(started, "type"), "Observation");
  Response status = wait_for_job(*server, started.header("Content-Location"));
  EXPECT_EQ(part(status, "status"), "done") << status.body;
  EXPECT_EQ(part(status, "total"), "1");
  EXPECT_EQ(entry_ids(c.get(base + "/Observation?subject=Patient/a")), std::set<std::string>{"o"});
  EXPECT_TRUE(entry_ids(c.get(base + "/Patient?gender=female")).empty());

  // Then everything.
  started = c.post(base + "/$reindex", "", kJson);
  ASSERT_EQ(started.status, 202) << started.summary();
  status = wait_for_job(*server, started.header("Content-Location"));
  EXPECT_EQ(part(status, "status"), "done") << status.body;
  EXPECT_EQ(part(status, "total"), "2");
  EXPECT_EQ(part(status, "processed"), "2");
  EXPECT_EQ(entry_ids(c.get(base + "/Patient?gender=female&name=ames")), std::set<std::string>{"a"});
  EXPECT_EQ(entry_ids(c.get(base + "/Patient?_lastUpdated=gt2000-01-01")), std::set<std::string>{"a"});
  EXPECT_EQ(entry_ids(c.get(base + "/Observation?subject=Patient/a")), std::set<std::string>{"o"});

  EXPECT_EQ(c.get(base + "/$reindex/999").status, 404);
  EXPECT_EQ(c.get(base + "/$reindex").status, 405);
}

}  // namespace
}  // namespace caduceus::test
