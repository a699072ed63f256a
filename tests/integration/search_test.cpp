// Search over HTTP (the server indexes every version and serves search over the index: on by default).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

const HeaderList kJson{{"Content-Type", "application/fhir+json"}};

using Order = std::vector<std::string>;

class SearchTest : public ServerTest {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_args = {"--search-index", "true"};
    start_server(options);  // (on both backends: see tests/CMakeLists.txt)
    if (!server_) return;
    HttpClient c(server_->host(), server_->port());
    const std::pair<const char*, const char*> resources[] = {
        {"Patient/p1", R"({"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1980-05-17",
                           "name":[{"family":"Müller","given":["Anna"]}]})"},
        {"Patient/p2", R"({"resourceType":"Patient","id":"p2","gender":"male","birthDate":"1980-05",
                           "name":[{"family":"Mueller","given":["Bob"]}]})"},
        {"Patient/p3", R"({"resourceType":"Patient","id":"p3","gender":"male","birthDate":"1950-01-01",
                           "name":[{"family":"Smith"}]})"},
        {"Observation/o1", R"({"resourceType":"Observation","id":"o1","status":"final",
                               "subject":{"reference":"Patient/p1"},
                               "code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},
                               "valueQuantity":{"value":37.50,"system":"http://unitsofmeasure.org","code":"Cel"}})"},
    };
    for (const auto& [path, body] : resources)
      ASSERT_EQ(c.put(server_->base_path() + "/" + path, body, kJson).status, 201);
  }

  Response get(const std::string& target) {
    HttpClient c(server_->host(), server_->port());
    return c.get(server_->base_path() + "/" + target);
  }

  // The ids of the matches over every page, from `target` (after the base path) following the next links, each
  // of which must carry _sort.
  Order walk(const std::string& target) {
    HttpClient c(server_->host(), server_->port());
    Order out;
    std::string path = server_->base_path() + "/" + target;
    for (int pages = 0; !path.empty(); ++pages) {
      if (pages == 20) {
        ADD_FAILURE() << "too many pages";
        break;
      }
      Response r = c.get(path);
      EXPECT_EQ(r.status, 200) << r.summary();
      if (r.status != 200) break;
      EXPECT_NE(self_link(r).find("_sort="), std::string::npos) << self_link(r);
      for (auto& id : entry_order(r)) out.push_back(std::move(id));
      std::string next = next_link(r);
      if (!next.empty()) EXPECT_NE(next.find("_sort="), std::string::npos) << next;
      path = next.empty() ? std::string() : next.substr(next.find(server_->base_path()));
    }
    return out;
  }
};

// The chart's search, patient and code (on SQLite it reads idx_patient_token alone, then the cached versions): the
// current version of each match once, nothing deleted or moved to another patient, and pages by next links that
// visit each match once, in the order of creation.
TEST_F(SearchTest, PatientAndCodeFollowUpdatesDeletesAndPages) {
  HttpClient c(server_->host(), server_->port());
  auto obs = [](const std::string& id, const std::string& patient, const std::string& codings,
                const std::string& status) {
    return R"({"resourceType":"Observation","id":")" + id + R"(","status":")" + status +
           R"(","subject":{"reference":"Patient/)" + patient + R"("},"code":{"coding":[)" + codings + "]}}";
  };
  const std::string temp = R"({"system":"http://loinc.org","code":"8310-5"})";
  const std::string heart = R"({"system":"http://loinc.org","code":"8867-4"})";
  for (const char* p : {"pc1", "pc2"})
    ASSERT_EQ(
        c.put(path(std::string("Patient/") + p), R"({"resourceType":"Patient","id":")" + std::string(p) + "\"}", kJson)
            .status,
        201);
  const std::tuple<std::string, std::string, std::string> created[] = {
      {"pca1", "pc1", temp}, {"pca2", "pc1", temp + "," + heart},
      {"pca3", "pc1", temp}, {"pca4", "pc1", heart},
      {"pca5", "pc2", temp}, {"pca6", "pc1", temp},
      {"pca7", "pc1", temp},
  };
  for (const auto& [id, patient, codings] : created)
    ASSERT_EQ(c.put(path("Observation/" + id), obs(id, patient, codings, "preliminary"), kJson).status, 201) << id;
  // Read once each, so that the versions below replace cached ones.
  EXPECT_EQ(entry_ids(get("Observation?patient=pc1&code=http://loinc.org%7C8310-5")),
            (std::set<std::string>{"pca1", "pca2", "pca3", "pca6", "pca7"}));
  ASSERT_EQ(c.del(path("Observation/pca3")).status, 200);
  ASSERT_EQ(c.put(path("Observation/pca6"), obs("pca6", "pc2", temp, "final"), kJson).status, 200);
  ASSERT_EQ(c.put(path("Observation/pca7"), obs("pca7", "pc1", temp, "final"), kJson).status, 200);

  Response r = get("Observation?patient=pc1&code=http://loinc.org%7C8310-5");
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(entry_order(r), (std::vector<std::string>{"pca1", "pca2", "pca7"}));
  auto body = r.json();
  ASSERT_TRUE(body);
  for (const auto& e : body->find("entry")->items())
    if (string_at(e, "resource.id") == "pca7") {
      EXPECT_EQ(string_at(e, "resource.status"), "final");
      EXPECT_EQ(string_at(e, "resource.meta.versionId"), "2");
    }
  // Two codes (pca2 has both: once), another patient, a reference with its type.
  EXPECT_EQ(entry_order(get("Observation?patient=pc1&code=8310-5,8867-4")),
            (std::vector<std::string>{"pca1", "pca2", "pca4", "pca7"}));
  EXPECT_EQ(entry_order(get("Observation?patient=Patient/pc2&code=http://loinc.org%7C8310-5")),
            (std::vector<std::string>{"pca5", "pca6"}));
  EXPECT_TRUE(entry_order(get("Observation?patient=pc1&code=http://snomed.info/sct%7C8310-5")).empty());
  // Pages of one: each match once, in order, then no next link.
  std::vector<std::string> paged;
  std::string next = path("Observation?patient=pc1&code=8310-5,8867-4&_count=1");
  for (int pages = 0; !next.empty(); ++pages) {
    ASSERT_LT(pages, 10) << "too many pages";
    Response page = c.get(next);
    ASSERT_EQ(page.status, 200) << page.summary();
    for (auto& id : entry_order(page)) paged.push_back(std::move(id));
    std::string link = next_link(page);
    next = link.empty() ? std::string() : link.substr(link.find(server_->base_path()));
  }
  EXPECT_EQ(paged, (std::vector<std::string>{"pca1", "pca2", "pca4", "pca7"}));
}

TEST_F(SearchTest, SearchsetBundleWithMatches) {
  Response r = get("Patient?name=muller&_total=accurate");
  ASSERT_EQ(r.status, 200) << r.summary();
  auto v = r.json();
  ASSERT_TRUE(v);
  EXPECT_EQ(v->find("type")->text(), "searchset");
  EXPECT_EQ(v->find("total")->text(), "1");
  EXPECT_EQ(entry_ids(r), std::set<std::string>{"p1"});
  EXPECT_EQ(v->find("entry")->items()[0].find("search")->find("mode")->text(), "match");
  EXPECT_EQ(entry_ids(get("Patient?gender=male&birthdate=lt1960")), std::set<std::string>{"p3"});
  EXPECT_EQ(entry_ids(get("Patient?birthdate=1980")), (std::set<std::string>{"p1", "p2"}));
  EXPECT_EQ(entry_ids(get("Observation?patient=p1&code=http://loinc.org%7C8310-5")), std::set<std::string>{"o1"});
  EXPECT_EQ(entry_ids(get("Observation?value-quantity=37.5%7Chttp://unitsofmeasure.org%7CCel")),
            std::set<std::string>{"o1"});
  EXPECT_EQ(entry_ids(get("Observation?subject:Patient.name=anna")), std::set<std::string>{"o1"});
  EXPECT_EQ(entry_ids(get("Patient?_has:Observation:patient:code=8310-5")), std::set<std::string>{"p1"});
  // _include: the referenced patient comes as an entry with search.mode include.
  Response inc = get("Observation?_id=o1&_include=Observation:subject");
  ASSERT_EQ(inc.status, 200) << inc.summary();
  EXPECT_EQ(entry_ids(inc), (std::set<std::string>{"o1", "p1"}));
  auto bundle = inc.json();
  ASSERT_TRUE(bundle);
  std::set<std::string> modes;
  for (const auto& e : bundle->find("entry")->items()) modes.insert(e.find("search")->find("mode")->text());
  EXPECT_EQ(modes, (std::set<std::string>{"match", "include"}));
  // _elements and _summary subset the matches and mark them SUBSETTED.
  Response elements = get("Patient?_id=p1&_elements=gender");
  ASSERT_EQ(elements.status, 200) << elements.summary();
  auto eb = elements.json();
  ASSERT_TRUE(eb);
  const auto& subset = *eb->find("entry")->items()[0].find("resource");
  EXPECT_NE(subset.find("gender"), nullptr);
  EXPECT_EQ(subset.find("name"), nullptr);
  EXPECT_NE(elements.body.find("SUBSETTED"), std::string::npos);
  Response summary = get("Patient?_id=p1&_summary=true");
  ASSERT_EQ(summary.status, 200) << summary.summary();
  EXPECT_NE(summary.body.find("SUBSETTED"), std::string::npos);
  auto sb = summary.json();
  ASSERT_TRUE(sb);
  EXPECT_NE(sb->find("entry")->items()[0].find("resource")->find("name"), nullptr) << "name is a summary element";
}

TEST_F(SearchTest, PostSearchAndPagingByNextLinks) {
  HttpClient c(server_->host(), server_->port());
  Response post = c.post(server_->base_path() + "/Patient/_search", "family=mueller",
                         {{"Content-Type", "application/x-www-form-urlencoded"}});
  ASSERT_EQ(post.status, 200) << post.summary();
  EXPECT_EQ(entry_ids(post), std::set<std::string>{"p2"});

  std::set<std::string> seen;
  std::string target = server_->base_path() + "/Patient?_count=1";
  for (int pages = 0; !target.empty() && pages < 10; ++pages) {
    Response r = c.get(target);
    ASSERT_EQ(r.status, 200) << r.summary();
    for (const auto& id : entry_ids(r)) EXPECT_TRUE(seen.insert(id).second) << id;
    std::string next = next_link(r);
    target = next.empty() ? std::string() : next.substr(next.find(server_->base_path()));
  }
  EXPECT_EQ(seen, (std::set<std::string>{"p1", "p2", "p3"}));
}

TEST_F(SearchTest, BadInputAndWhatIsNotBuiltYet) {
  EXPECT_TRUE(IsOperationOutcome(get("Patient?birthdate=1970-13-45"), 400));
  EXPECT_TRUE(IsOperationOutcome(get("Patient?gender:exact=male"), 400));
  EXPECT_TRUE(IsOperationOutcome(get("Patient?_count=100000"), 400));
  EXPECT_TRUE(IsOperationOutcome(get("Patient?_cursor=xyz"), 400));
  Response bad_sort = get("Patient?_sort=nickname");
  EXPECT_TRUE(IsOperationOutcome(bad_sort, 400));
  EXPECT_TRUE(NamesElement(bad_sort, {"_sort"}));
  // Unknown parameters are ignored and left out of the self link; strict handling refuses them.
  Response lenient = get("Patient?nickname=jo&gender=female");
  ASSERT_EQ(lenient.status, 200);
  EXPECT_EQ(lenient.body.find("nickname"), std::string::npos);
  EXPECT_EQ(entry_ids(lenient), std::set<std::string>{"p1"});
  HttpClient c(server_->host(), server_->port());
  EXPECT_TRUE(
      IsOperationOutcome(c.get(server_->base_path() + "/Patient?nickname=jo", {{"Prefer", "handling=strict"}}), 400));
}

// The issue's bad-input table: each a 400 OperationOutcome whose issue names the offending parameter, never a 500
// and never a silently wrong result.
TEST_F(SearchTest, BadInputTableNamesTheParameter) {
  const std::pair<const char*, const char*> cases[] = {
      {"Patient?birthdate=1970-13-45", "birthdate"},                           // bad date
      {"Patient?birthdate=19700", "birthdate"},                                // bad date
      {"Observation?value-quantity=12abc", "value-quantity"},                  // bad number
      {"RiskAssessment?probability=1.2.3", "probability"},                     // bad number
      {"Patient?birthdate=xx1970", "birthdate"},                               // unknown prefix
      {"Observation?value-quantity=zz5", "value-quantity"},                    // unknown prefix
      {"Patient?gender:exact=male", "gender:exact"},                           // modifier that does not fit the type
      {"Patient?birthdate:contains=1970", "birthdate:contains"},               // modifier that does not fit the type
      {"Patient?name:frobnicate=x", "name:frobnicate"},                        // no such modifier
      {"Observation?status.name=x", "status.name"},                            // chain through a non-reference
      {"Observation?subject:Patient.nickname=x", "subject:Patient.nickname"},  // chain to an unknown parameter
      {"Observation?_include=Observation:nickname", "_include"},               // _include of an unknown parameter
      {"Observation?_include=Observation:status", "_include"},                 // _include of a non-reference
      {"Patient?_revinclude=Nothing:subject", "_revinclude"},                  // _revinclude of an unknown type
      {"Patient?_count=100000", "_count"},                                     // over the maximum
      {"Patient?_count=-1", "_count"},                                         // not a count
      {"Patient?_cursor=xyz", "_cursor"},                                      // malformed cursor
      {"Patient?_sort=birthdate&_cursor=xyz", "_cursor"},                      // malformed sorted cursor
      {"Patient?_sort=nickname", "_sort"},                                     // sort on an unknown parameter
      {"Patient?_total=maybe", "_total"},                                      // bad _total
      {"Patient?_summary=some", "_summary"},                                   // bad _summary
      {"Patient?_content=%22unclosed", "_content"},                            // bad full-text expression
      {"Patient?identifier:of-type=onlyone", "identifier:of-type"},            // :of-type needs system|code|value
  };
  for (const auto& [query, parameter] : cases) {
    Response r = get(query);
    EXPECT_TRUE(IsOperationOutcome(r, 400)) << query << ": " << r.summary();
    EXPECT_TRUE(NamesElement(r, {parameter})) << query << " should name " << parameter << ": " << r.body;
  }
}

// p1 1980-05-17 Müller female, p2 1980-05 Mueller male, p3 1950-01-01 Smith male.
TEST_F(SearchTest, SortsByBirthdateFamilyLastUpdatedAndTwoKeys) {
  // Ascending by each one's earliest instant, descending by its latest: p2's month starts before p1's day and
  // ends after it.
  EXPECT_EQ(entry_order(get("Patient?_sort=birthdate")), (Order{"p3", "p2", "p1"}));
  EXPECT_EQ(entry_order(get("Patient?_sort=-birthdate")), (Order{"p2", "p1", "p3"}));
  EXPECT_EQ(entry_order(get("Patient?_sort=family")), (Order{"p2", "p1", "p3"}));  // mueller < muller < smith
  EXPECT_EQ(entry_order(get("Patient?_sort=-gender,birthdate")), (Order{"p3", "p2", "p1"}));
  EXPECT_EQ(entry_order(get("Patient?gender=male&_sort=-birthdate")), (Order{"p2", "p3"}));
  // Every page, two at a time, by the next links.
  EXPECT_EQ(walk("Patient?_sort=birthdate&_count=2"), (Order{"p3", "p2", "p1"}));
  EXPECT_EQ(walk("Patient?_sort=-birthdate&_count=2"), (Order{"p2", "p1", "p3"}));
  EXPECT_EQ(walk("Patient?_sort=family&_count=2"), (Order{"p2", "p1", "p3"}));
  EXPECT_EQ(walk("Patient?_count=2&_sort=-gender,birthdate"), (Order{"p3", "p2", "p1"}));
  EXPECT_EQ(walk("Patient?_count=1&_sort=-gender,-birthdate"), (Order{"p2", "p3", "p1"}));
  // -_lastUpdated: the latest first; writes within one millisecond tie, and ties go by the order of creation.
  std::vector<std::pair<std::string, std::string>> updated;  // (lastUpdated, id), in the order of creation
  for (const char* id : {"p1", "p2", "p3"}) {
    auto v = get(std::string("Patient/") + id).json();
    ASSERT_TRUE(v);
    updated.emplace_back(v->find("meta")->find("lastUpdated")->text(), id);
  }
  std::stable_sort(updated.begin(), updated.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  Order latest_first;
  for (const auto& u : updated) latest_first.push_back(u.second);
  EXPECT_EQ(entry_order(get("Patient?_sort=-_lastUpdated")), latest_first);
  EXPECT_EQ(walk("Patient?_sort=-_lastUpdated&_count=2"), latest_first);
}

// _id and _lastUpdated are read from the resource row (they have no index rows of their own): each form of them.
// p1 female, p2 and p3 male, created in that order; o1's subject is p1.
TEST_F(SearchTest, IdAndLastUpdatedInEveryForm) {
  using Ids = std::set<std::string>;
  const std::string three = "Patient?_id=p1,p2,p3";
  EXPECT_EQ(entry_ids(get("Patient?_id=p1,p3,nobody")), (Ids{"p1", "p3"}));
  EXPECT_EQ(entry_ids(get("Patient?_id=%7Cp2")), Ids{"p2"});   // |p2: no system, and an id has none
  EXPECT_EQ(entry_ids(get("Patient?_id=urn:x%7Cp2")), Ids{});  // an id has no system
  EXPECT_EQ(entry_ids(get(three + "&_id=urn:x%7Cp1,p3")), Ids{"p3"});
  EXPECT_EQ(entry_ids(get(three + "&_id:not=p2")), (Ids{"p1", "p3"}));
  EXPECT_EQ(entry_ids(get(three + "&_id:not=p1,p3")), Ids{"p2"});
  EXPECT_EQ(entry_ids(get("Patient?_id:missing=true")), Ids{});
  EXPECT_EQ(entry_ids(get("Patient?_id=p1,p2&_id:missing=false")), (Ids{"p1", "p2"}));
  EXPECT_EQ(entry_ids(get("Patient?gender=male&_id=p1,p2,nobody")), Ids{"p2"});
  EXPECT_EQ(entry_order(get("Patient?_id=p3,p1,p2&_sort=-_id")), (Order{"p3", "p2", "p1"}));
  // In a chain, in _has, in a compartment, and in a search without a type.
  EXPECT_EQ(entry_ids(get("Observation?subject:Patient._id=p1")), Ids{"o1"});
  EXPECT_EQ(entry_ids(get("Observation?subject:Patient._id=p2,p3")), Ids{});
  EXPECT_EQ(entry_ids(get("Observation?patient._id=p1&code=8310-5")), Ids{"o1"});
  EXPECT_EQ(entry_ids(get("Patient?_has:Observation:subject:_id=o1")), Ids{"p1"});
  EXPECT_EQ(entry_ids(get("Patient?_has:Observation:subject:_id=nothing")), Ids{});
  EXPECT_EQ(entry_ids(get("Patient/p1/Observation?_id=o1")), Ids{"o1"});
  EXPECT_EQ(entry_ids(get("Patient/p2/Observation?_id=o1")), Ids{});
  EXPECT_EQ(entry_refs(get("?_id=p3,o1,nobody")), (Ids{"Patient/p3", "Observation/o1"}));

  // _lastUpdated against the patients' own instants (the server's clock, "YYYY-MM-DDThh:mm:ss.fffZ": the text
  // orders as the time does, and its first 10 and 19 characters are the day and the second).
  std::map<std::string, std::string> at;
  for (const char* id : {"p1", "p2", "p3"}) {
    auto v = get(std::string("Patient/") + id).json();
    ASSERT_TRUE(v);
    at[id] = v->find("meta")->find("lastUpdated")->text();
    ASSERT_EQ(at[id].size(), 24u) << at[id];
  }
  ASSERT_LE(at["p1"], at["p2"]);
  ASSERT_LE(at["p2"], at["p3"]);
  auto which = [&](std::size_t digits, const std::string& value, auto keep) {
    Ids out;
    for (const auto& [id, t] : at)
      if (keep(t.substr(0, digits).compare(value.substr(0, digits)))) out.insert(id);
    return out;
  };
  auto search = [&](const std::string& value) { return entry_ids(get(three + "&_lastUpdated=" + value)); };
  const auto eq = [](int c) { return c == 0; };
  const auto ne = [](int c) { return c != 0; };
  const auto gt = [](int c) { return c > 0; };
  const auto lt = [](int c) { return c < 0; };
  const auto ge = [](int c) { return c >= 0; };
  const auto le = [](int c) { return c <= 0; };
  // p2's instant at millisecond, second and day precision: a stored instant is a point, so sa is gt, eb is lt and
  // ap (overlap) is eq.
  const std::string ms = at["p2"], second = at["p2"].substr(0, 19) + "Z", day = at["p2"].substr(0, 10);
  for (const auto& [digits, value] : {std::pair<std::size_t, std::string>{23, ms}, {19, second}, {10, day}}) {
    SCOPED_TRACE(value);
    EXPECT_EQ(search(value), which(digits, value, eq));
    EXPECT_EQ(search("eq" + value), which(digits, value, eq));
    EXPECT_EQ(search("ap" + value), which(digits, value, eq));
    EXPECT_EQ(search("ne" + value), which(digits, value, ne));
    EXPECT_EQ(search("gt" + value), which(digits, value, gt));
    EXPECT_EQ(search("sa" + value), which(digits, value, gt));
    EXPECT_EQ(search("lt" + value), which(digits, value, lt));
    EXPECT_EQ(search("eb" + value), which(digits, value, lt));
    EXPECT_EQ(search("ge" + value), which(digits, value, ge));
    EXPECT_EQ(search("le" + value), which(digits, value, le));
    // Whatever else shares p2's instant, p2 is at it, p3 not before it and p1 not after it.
    EXPECT_TRUE(search(value).contains("p2"));
    EXPECT_TRUE(search("ge" + value).contains("p3"));
    EXPECT_TRUE(search("le" + value).contains("p1"));
  }
  // Every patient was written after 2000 (and before 10000).
  const Ids all{"p1", "p2", "p3"};
  EXPECT_EQ(search("2000"), Ids{});
  EXPECT_EQ(search("ne2000"), all);
  EXPECT_EQ(search("gt2000-01-01"), all);
  EXPECT_EQ(search("sa2000"), all);
  EXPECT_EQ(search("ge2000-06"), all);
  EXPECT_EQ(search("lt2000"), Ids{});
  EXPECT_EQ(search("eb2000-01-01T00:00:00Z"), Ids{});
  EXPECT_EQ(search("le2000"), Ids{});
  EXPECT_EQ(search("lt2000,gt9000"), Ids{});
  EXPECT_EQ(search("lt2000,gt2000"), all);
  EXPECT_EQ(entry_ids(get("Patient?_lastUpdated=lt2000")), Ids{});  // (alone: the resource's own index drives)
  EXPECT_EQ(entry_ids(get("Patient?_lastUpdated=gt2000&_id=p2")), Ids{"p2"});
  EXPECT_EQ(entry_ids(get("Patient?_lastUpdated:missing=true")), Ids{});
  EXPECT_EQ(entry_ids(get("Observation?_lastUpdated=ge" + day.substr(0, 4) + "&code=8310-5")), Ids{"o1"});
}

// Keyset paging: the next page starts after the last row's sort values, so writes on either side of the boundary
// between page 1 and page 2 neither skip nor repeat the resources that existed throughout.
TEST_F(SearchTest, SortedPagingIsStableUnderConcurrentWrites) {
  HttpClient c(server_->host(), server_->port());
  auto practitioner = [&](const std::string& id, const std::string& family) {
    return c.put(server_->base_path() + "/Practitioner/" + id,
                 R"({"resourceType":"Practitioner","id":")" + id + R"(","name":[{"family":")" + family + R"("}]})",
                 kJson);
  };
  for (const auto& [id, family] : std::vector<std::pair<std::string, std::string>>{
           {"adams", "Adams"}, {"clark", "Clark"}, {"evans", "Evans"}, {"grant", "Grant"}, {"irwin", "Irwin"}})
    ASSERT_EQ(practitioner(id, family).status, 201);

  Response first = get("Practitioner?_sort=family&_count=2");
  ASSERT_EQ(first.status, 200) << first.summary();
  EXPECT_EQ(entry_order(first), (Order{"adams", "clark"}));
  std::string next = next_link(first);
  ASSERT_FALSE(next.empty());

  // Before the boundary: Baker created, Adams (on page 1) deleted. After it: Davis created, Grant deleted, and a
  // second Clark (a tie with the boundary's value, written later: after it).
  ASSERT_EQ(practitioner("baker", "Baker").status, 201);
  ASSERT_EQ(practitioner("davis", "Davis").status, 201);
  ASSERT_EQ(practitioner("clark2", "Clark").status, 201);
  ASSERT_EQ(c.del(server_->base_path() + "/Practitioner/adams").status, 200);
  ASSERT_EQ(c.del(server_->base_path() + "/Practitioner/grant").status, 200);

  Order rest = walk(next.substr(next.find(server_->base_path()) + server_->base_path().size() + 1));
  EXPECT_EQ(rest, (Order{"clark2", "davis", "evans", "irwin"}));
  // Clark, Evans and Irwin existed throughout: each exactly once over both parts.
  Order all = entry_order(first);
  all.insert(all.end(), rest.begin(), rest.end());
  for (const char* id : {"clark", "evans", "irwin"}) EXPECT_EQ(std::count(all.begin(), all.end(), id), 1) << id;
  // A fresh walk sees the store as it is now.
  EXPECT_EQ(walk("Practitioner?_sort=family&_count=2"), (Order{"baker", "clark", "clark2", "davis", "evans", "irwin"}));
}

TEST_F(SearchTest, BadSortCursorsAre400NamingTheCursor) {
  Response first = get("Patient?_sort=birthdate&_count=1");
  ASSERT_EQ(first.status, 200) << first.summary();
  std::string next = next_link(first);
  ASSERT_NE(next.find("_cursor="), std::string::npos);
  std::string cursor = next.substr(next.find("_cursor=") + 8);
  auto refused = [&](const std::string& target) {
    Response r = get(target);
    EXPECT_TRUE(IsOperationOutcome(r, 400)) << target;
    EXPECT_TRUE(NamesElement(r, {"_cursor"})) << target;
  };
  EXPECT_EQ(entry_order(get("Patient?_sort=birthdate&_count=1&_cursor=" + cursor)), Order{"p2"});
  refused("Patient?_sort=birthdate&_cursor=xyz");
  refused("Patient?_sort=birthdate&_cursor=" + cursor.substr(0, cursor.size() - 2));
  std::string altered = cursor;
  altered[altered.size() / 2] = altered[altered.size() / 2] == 'a' ? 'b' : 'a';
  refused("Patient?_sort=birthdate&_cursor=" + altered);
  refused("Patient?_sort=-birthdate&_cursor=" + cursor);  // made for another _sort
  refused("Patient?_cursor=" + cursor);                   // a sorted search's cursor without _sort
}

TEST_F(SearchTest, CapabilityStatementListsTheSearchParameters) {
  Response r = get("metadata");
  ASSERT_EQ(r.status, 200);
  auto cs = r.json();
  ASSERT_TRUE(cs);
  const fhir::json::Value* patient = nullptr;
  for (const auto& res : cs->find("rest")->items()[0].find("resource")->items())
    if (res.find("type")->text() == "Patient") patient = &res;
  ASSERT_NE(patient, nullptr);
  std::set<std::string> interactions, params;
  for (const auto& i : patient->find("interaction")->items()) interactions.insert(i.find("code")->text());
  for (const auto& p : patient->find("searchParam")->items()) params.insert(p.find("name")->text());
  EXPECT_TRUE(interactions.contains("search-type"));
  for (const char* name : {"name", "birthdate", "gender", "identifier", "_id", "_lastUpdated", "general-practitioner"})
    EXPECT_TRUE(params.contains(name)) << name;
}

// _text and _content (full text: FTS5 on SQLite, tsvector on PostgreSQL) and identifier :of-type, over a small
// store of their own.
class FullTextSearchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_args = {"--search-index", "true"};
    if (postgres_backend()) {  // (run on both backends: see tests/CMakeLists.txt)
      if (postgres_skipped()) return;
      auto db = PgDatabase::create();
      ASSERT_TRUE(db.has_value()) << db.error();
      pg_database_ = std::move(*db);
      options.db = pg_database_->url();
    }
    server_ = std::make_unique<TestServer>(options);
    HttpClient c(server_->host(), server_->port());
    const std::pair<const char*, const char*> resources[] = {
        {"Patient/t1", R"({"resourceType":"Patient","id":"t1",
            "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Hélène has a <b>lung cancer</b></p></div>"},
            "identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},
                           "system":"urn:mrn","value":"12345"}],
            "name":[{"family":"Martin","given":["Hélène"]}]})"},
        {"Patient/t2", R"({"resourceType":"Patient","id":"t2",
            "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Benign tumor of the skin</div>"},
            "identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS"}]},
                           "value":"12345"}],
            "name":[{"family":"Dubois"}]})"},
        {"Patient/t3", R"({"resourceType":"Patient","id":"t3","name":[{"family":"Smith"}],
            "address":[{"city":"Zanzibar"}],
            "identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},
                           "value":"99999"}]})"},
        // Two identifiers: MR with the value A77, DL with the value B88.
        {"Patient/t4", R"({"resourceType":"Patient","id":"t4",
            "identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},
                           "system":"urn:mrn","value":"A77"},
                          {"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"DL"}]},
                           "system":"urn:dl","value":"B88"}]})"},
        {"Observation/to1", R"({"resourceType":"Observation","id":"to1","status":"final",
            "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Screening for cancer</div>"},
            "code":{"text":"lung screening"},"subject":{"reference":"Patient/t1"}})"},
    };
    for (const auto& [path, body] : resources)
      ASSERT_EQ(c.put(server_->base_path() + "/" + path, body, kJson).status, 201);
  }
  static void TearDownTestSuite() {
    server_.reset();
    pg_database_.reset();
  }
  void SetUp() override {
    if (!server_ && postgres_skipped()) GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1";
    ASSERT_TRUE(server_) << "the server did not start";
  }
  static inline std::unique_ptr<PgDatabase> pg_database_;

  // GET type?name=value, the value percent-encoded.
  Response search(const std::string& type, const std::string& name, const std::string& value) {
    HttpClient c(server_->host(), server_->port());
    return c.get(server_->base_path() + "/" + type + "?" + name + "=" + url_encode(value));
  }
  std::set<std::string> ids(const std::string& type, const std::string& name, const std::string& value) {
    Response r = search(type, name, value);
    EXPECT_EQ(r.status, 200) << name << "=" << value << ": " << r.summary();
    return entry_ids(r);
  }

  static inline std::unique_ptr<TestServer> server_;
};

using Ids = std::set<std::string>;

TEST_F(FullTextSearchTest, ContentWordsPhrasesAndOperators) {
  EXPECT_EQ(ids("Patient", "_content", "cancer"), Ids{"t1"});
  EXPECT_EQ(ids("Patient", "_content", "lung cancer"), Ids{"t1"});  // two words: both
  EXPECT_EQ(ids("Patient", "_content", "tumor cancer"), Ids{});     // t1 has one, t2 the other
  EXPECT_EQ(ids("Patient", "_content", "cancer AND lung"), Ids{"t1"});
  EXPECT_EQ(ids("Patient", "_content", "cancer OR tumor"), (Ids{"t1", "t2"}));
  EXPECT_EQ(ids("Patient", "_content", "cancer,tumor"), (Ids{"t1", "t2"}));  // FHIR's OR
  EXPECT_EQ(ids("Patient", "_content", "tumor NOT benign"), Ids{});
  EXPECT_EQ(ids("Patient", "_content", "(cancer OR tumor) NOT benign"), Ids{"t1"});
  EXPECT_EQ(ids("Patient", "_content", "\"lung cancer\""), Ids{"t1"});
  EXPECT_EQ(ids("Patient", "_content", "\"cancer lung\""), Ids{});  // a phrase keeps its order
  // Case and accents are folded, both ways.
  EXPECT_EQ(ids("Patient", "_content", "helene"), Ids{"t1"});
  EXPECT_EQ(ids("Patient", "_content", "HÉLÈNE"), Ids{"t1"});
  EXPECT_EQ(ids("Patient", "_content", "Hélène"), Ids{"t1"});
  EXPECT_EQ(ids("Patient", "_content", "BENIGN"), Ids{"t2"});
  // The search is on the type asked for; chains reach full text too.
  EXPECT_EQ(ids("Observation", "_content", "cancer"), Ids{"to1"});
  EXPECT_EQ(ids("Observation", "subject:Patient._content", "helene"), Ids{"to1"});
  EXPECT_EQ(ids("Observation", "subject:Patient._content", "tumor"), Ids{});
  EXPECT_EQ(ids("Patient", "_has:Observation:subject:_text", "screening"), Ids{"t1"});
}

TEST_F(FullTextSearchTest, TextIsTheNarrativeOnly) {
  EXPECT_EQ(ids("Patient", "_text", "cancer"), Ids{"t1"});
  EXPECT_EQ(ids("Patient", "_text", "skin"), Ids{"t2"});
  // Zanzibar is t3's city, Martin t1's family name: not in any narrative.
  EXPECT_EQ(ids("Patient", "_text", "zanzibar"), Ids{});
  EXPECT_EQ(ids("Patient", "_content", "zanzibar"), Ids{"t3"});
  EXPECT_EQ(ids("Patient", "_text", "martin"), Ids{});
  EXPECT_EQ(ids("Patient", "_content", "martin"), Ids{"t1"});
  // Markup is not text: the tag names and the namespace URL are not found in the narrative.
  EXPECT_EQ(ids("Patient", "_text", "xhtml"), Ids{});
  EXPECT_EQ(ids("Patient", "_text", "div"), Ids{});
}

TEST_F(FullTextSearchTest, ContentIsTheTextNotTheCodesIdsOrAddresses) {
  // Identifier.value and HumanName are strings: text. Identifier.system ("urn:mrn", a uri), the type's code "MR",
  // the ids and Reference.reference ("Patient/t1") are not.
  EXPECT_EQ(ids("Patient", "_content", "12345"), (Ids{"t1", "t2"}));
  EXPECT_EQ(ids("Patient", "_content", "mrn"), Ids{});
  EXPECT_EQ(ids("Patient", "_content", "MR"), Ids{});
  EXPECT_EQ(ids("Patient", "_content", "t3"), Ids{});
  EXPECT_EQ(ids("Observation", "_content", "t1"), Ids{});
  EXPECT_EQ(ids("Observation", "_content", "final"), Ids{});      // (status, a code)
  EXPECT_EQ(ids("Observation", "_content", "lung"), Ids{"to1"});  // CodeableConcept.text
}

TEST_F(FullTextSearchTest, UpdatesAndDeletesReplaceTheIndexedText) {
  HttpClient c(server_->host(), server_->port());
  auto put = [&](const std::string& words) {
    std::string body = R"({"resourceType":"Patient","id":"u1","text":{"status":"generated",)"
                       R"("div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">)" +
                       words + R"(</div>"}})";
    return c.put(server_->base_path() + "/Patient/u1", body, kJson).status;
  };
  ASSERT_EQ(put("alpha bravo"), 201);
  EXPECT_EQ(ids("Patient", "_content", "bravo"), Ids{"u1"});
  ASSERT_EQ(put("alpha charlie"), 200);
  EXPECT_EQ(ids("Patient", "_content", "bravo"), Ids{});
  EXPECT_EQ(ids("Patient", "_text", "charlie"), Ids{"u1"});
  EXPECT_EQ(ids("Patient", "_content", "alpha"), Ids{"u1"});
  ASSERT_EQ(c.del(server_->base_path() + "/Patient/u1").status, 200);
  EXPECT_EQ(ids("Patient", "_content", "alpha"), Ids{});
  EXPECT_EQ(ids("Patient", "_text", "charlie"), Ids{});
}

TEST_F(FullTextSearchTest, FtsSyntaxInUserTextIsNeverA500) {
  // Each is a sane answer (a 200 with the matches worked out here) or a 400 naming the parameter.
  const std::pair<std::string, std::optional<Ids>> cases[] = {
      {"\"", std::nullopt},
      {"*", std::nullopt},
      {":", std::nullopt},
      {"NEAR(", std::nullopt},
      {"cancer\"", std::nullopt},
      {"cancer OR", std::nullopt},
      {"NOT cancer", std::nullopt},
      {"(cancer", std::nullopt},
      {"cancer)", std::nullopt},
      {"\\", std::nullopt},          // a FHIR escape of nothing
      {"NEAR(cancer lung)", Ids{}},  // the word "near" and both words: t1 has no "near"
      {"cancer*", Ids{"t1"}},        // no prefix search: the word cancer
      {"narrative:cancer", Ids{}},   // a phrase "narrative cancer", not a column filter
      {"{narrative}:tumor", Ids{}},
      {"content:zanzibar", Ids{}},
      {"^cancer", Ids{"t1"}},
      {"-cancer", Ids{"t1"}},
      {"cancer + lung", std::nullopt},  // '+' alone has nothing to search for
      {"it's", Ids{}},
      {"and", Ids{}},  // lower case: a word
  };
  for (const auto& [value, expected] : cases) {
    for (const char* name : {"_content", "_text"}) {
      Response r = search("Patient", name, value);
      if (expected) {
        ASSERT_EQ(r.status, 200) << name << "=" << value << ": " << r.summary();
        // _text finds the same here: these words are all in t1's narrative, or nowhere.
        EXPECT_EQ(entry_ids(r), *expected) << name << "=" << value;
      } else {
        EXPECT_TRUE(IsOperationOutcome(r, 400)) << name << "=" << value;
        EXPECT_TRUE(NamesElement(r, {name})) << name << "=" << value;
      }
    }
  }
  // A NUL (which would end FTS5's reading of a string) separates words, or the request is refused.
  Response nul = search("Patient", "_content", std::string("cancer\0lung", 11));
  EXPECT_TRUE(nul.status == 200 || IsOperationOutcome(nul, 400)) << nul.summary();
  if (nul.status == 200) {
    EXPECT_EQ(entry_ids(nul), Ids{"t1"});
  }
  // Modifiers do not apply to free text.
  for (const char* name : {"_content:missing", "_text:missing", "_content:not", "_text:exact", "_content:contains"}) {
    Response r = search("Patient", name, "true");
    EXPECT_TRUE(IsOperationOutcome(r, 400)) << name;
    EXPECT_TRUE(NamesElement(r, {name})) << name;
  }
}

TEST_F(FullTextSearchTest, IdentifierOfType) {
  const std::string v2 = "http://terminology.hl7.org/CodeSystem/v2-0203";
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|12345"), Ids{"t1"});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|SS|12345"), Ids{"t2"});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|99999"), Ids{"t3"});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|55555"), Ids{});
  EXPECT_EQ(ids("Patient", "identifier:of-type", "http://other.org/types|MR|12345"), Ids{});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|SS|99999"), Ids{});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|12345," + v2 + "|MR|99999"), (Ids{"t1", "t3"}));
  for (const std::string& bad :
       std::vector<std::string>{"MR|12345", v2 + "|MR", v2 + "|MR|12345|x", "|MR|12345", v2 + "||12345"}) {
    Response r = search("Patient", "identifier:of-type", bad);
    EXPECT_TRUE(IsOperationOutcome(r, 400)) << bad;
    EXPECT_TRUE(NamesElement(r, {"identifier:of-type"})) << bad;
  }
}

// :of-type matches one identifier that has both the type and the value: t4's MR identifier is A77 and its DL one
// B88, so MR|B88 and DL|A77 find nothing. The same whether :of-type drives the search (found through the
// identifier's token rows, checked on idx_identifier_type's key), checks what another criterion found, or is
// reached through a chain.
TEST_F(FullTextSearchTest, IdentifierOfTypePairsTheTypeWithTheValueOfOneIdentifier) {
  const std::string v2 = "http://terminology.hl7.org/CodeSystem/v2-0203";
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|A77"), Ids{"t4"});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|DL|B88"), Ids{"t4"});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|B88"), Ids{});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|DL|A77"), Ids{});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|B88," + v2 + "|DL|A77"), Ids{});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|B88," + v2 + "|MR|A77"), Ids{"t4"});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|DL|B88," + v2 + "|MR|99999"), (Ids{"t3", "t4"}));
  // The plain token search still finds either value (its own system, not the type's).
  EXPECT_EQ(ids("Patient", "identifier", "urn:dl|B88"), Ids{"t4"});
  EXPECT_EQ(ids("Patient", "identifier", "urn:mrn|B88"), Ids{});
  // _id drives (listed first, equally selective), :of-type checks its match.
  HttpClient c(server_->host(), server_->port());
  auto both = [&](const std::string& of_type) {
    Response r = c.get(server_->base_path() + "/Patient?_id=t4,t1&identifier:of-type=" + url_encode(of_type));
    EXPECT_EQ(r.status, 200) << of_type << ": " << r.summary();
    return entry_ids(r);
  };
  EXPECT_EQ(both(v2 + "|MR|A77"), Ids{"t4"});
  EXPECT_EQ(both(v2 + "|MR|B88"), Ids{});
  EXPECT_EQ(both(v2 + "|MR|12345"), Ids{"t1"});
  // Through a chain: to1's subject is t1 (MR 12345); t2 has SS 12345 and no Observation.
  EXPECT_EQ(ids("Observation", "subject:Patient.identifier:of-type", v2 + "|MR|12345"), Ids{"to1"});
  EXPECT_EQ(ids("Observation", "subject:Patient.identifier:of-type", v2 + "|SS|12345"), Ids{});
  // An update replaces the pairs: u2's value X5 is MR, then DL.
  auto put = [&](const std::string& type, int status) {
    std::string body = R"({"resourceType":"Patient","id":"u2","identifier":[{"type":{"coding":[{"system":")" + v2 +
                       R"(","code":")" + type + R"("}]},"value":"X5"}]})";
    ASSERT_EQ(c.put(server_->base_path() + "/Patient/u2", body, kJson).status, status) << type;
  };
  put("MR", 201);
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|X5"), Ids{"u2"});
  put("DL", 200);
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|MR|X5"), Ids{});
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|DL|X5"), Ids{"u2"});
  ASSERT_EQ(c.del(server_->base_path() + "/Patient/u2").status, 200);
  EXPECT_EQ(ids("Patient", "identifier:of-type", v2 + "|DL|X5"), Ids{});
}

TEST_F(FullTextSearchTest, TerminologyModifiersAnswer501) {
  for (const char* name : {"code:in", "code:not-in", "code:above", "code:below"}) {
    Response r = search("Observation", name, "http://loinc.org|8310-5");
    EXPECT_TRUE(IsOperationOutcome(r, 501)) << name << ": " << r.summary();
    EXPECT_TRUE(NamesElement(r, {name})) << name << ": " << r.body;
    EXPECT_NE(r.body.find("terminology"), std::string::npos) << r.body;
  }
}

TEST_F(FullTextSearchTest, CapabilityStatementListsTextAndContent) {
  HttpClient c(server_->host(), server_->port());
  Response r = c.get(server_->base_path() + "/metadata");
  ASSERT_EQ(r.status, 200);
  auto cs = r.json();
  ASSERT_TRUE(cs);
  std::set<std::string> params;
  for (const auto& res : cs->find("rest")->items()[0].find("resource")->items())
    if (res.find("type")->text() == "Patient")
      for (const auto& p : res.find("searchParam")->items()) params.insert(p.find("name")->text());
  EXPECT_TRUE(params.contains("_text"));
  EXPECT_TRUE(params.contains("_content"));
}

TEST(SearchDisabledTest, WithoutTheIndexSearchAnswers501) {
  ServerOptions options;
  options.extra_args = {"--search-index", "false"};
  TestServer server(options);
  HttpClient c(server.host(), server.port());
  EXPECT_TRUE(IsOperationOutcome(c.get(server.base_path() + "/Patient?name=x"), 501));
}

// Search is on by default: a server started without options finds what it stored.
TEST(SearchDisabledTest, SearchIsServedByDefault) {
  TestServer server;
  HttpClient c(server.host(), server.port());
  ASSERT_EQ(
      c.put(server.base_path() + "/Patient/d1", R"({"resourceType":"Patient","id":"d1","name":[{"family":"Default"}]})",
            {{"Content-Type", "application/fhir+json"}})
          .status,
      201);
  Response found = c.get(server.base_path() + "/Patient?name=default");
  ASSERT_EQ(found.status, 200) << found.summary();
  EXPECT_NE(found.body.find("\"id\":\"d1\""), std::string::npos) << found.body;
}

}  // namespace
}  // namespace caduceus::test
