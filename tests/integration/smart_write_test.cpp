// SMART scopes enforced on writes and on the history of deleted resources, over the real binary with --auth smart
// (both backends). Tokens follow the shared claim contract and are signed with the server's own key, as in
// SmartScopeTest.
//
// The write matrix: token profiles (a patient user with patient/*.cruds, a patient-context app without a user
// role, a patient user with a granular laboratory scope, a nurse and a physician with user/*.cruds) x writes
// (create, update, conditional create and update, PATCH, DELETE, and the same as entries of batch and transaction
// Bundles), each with the exact status expected, worked out by hand from the data below. The profiles run one
// after the other (the patients, then the nurse, then the physician, unless a row names one to run first), and
// the expectations follow that order: a write that succeeds changes what the next profile meets. Every refusal must be
// a 403 with an OperationOutcome, and must have written nothing (the system history counts the same versions before and
// after).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <vector>

#include "caduceus/fhir/json.hpp"
#include "caduceus/server/auth/keys.hpp"
#include "client_keys.hpp"
#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

namespace json = fhir::json;
namespace auth = server::auth;

constexpr const char* kConf = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

using Profile = TokenProfile;

const std::map<std::string, Profile>& profiles() {
  static const std::map<std::string, Profile> p = {
      {"nurse", {"user/*.cruds", "nurse", "Practitioner/n1", ""}},
      {"patientA", {"patient/*.cruds", "patient", "Patient/pA", "pA"}},
      {"patientA.app", {"patient/*.cruds", "", "", "pA"}},
      {"patientA.granular",
       {"patient/Observation.cruds?category=laboratory patient/Patient.rs", "patient", "Patient/pA", "pA"}},
      {"physician", {"user/*.cruds", "physician", "Practitioner/dr1", ""}},
  };
  return p;
}

std::string observation(const std::string& id, const std::string& category, const std::string& patient) {
  return std::string(R"({"resourceType":"Observation",)") + (id.empty() ? "" : R"("id":")" + id + R"(",)") +
         R"("status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":")" +
         category + R"("}]}],"code":{"text":"hb"},"subject":{"reference":"Patient/)" + patient + R"("}})";
}

std::string medication_request(const std::string& id, const std::string& label, const std::string& patient) {
  std::string meta =
      label.empty() ? ""
                    : R"("meta":{"security":[{"system":")" + std::string(kConf) + R"(","code":")" + label + "\"}]},";
  return std::string(R"({"resourceType":"MedicationRequest",)") + (id.empty() ? "" : R"("id":")" + id + R"(",)") +
         meta +
         R"("status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/)" +
         patient + R"("}})";
}

std::string json_patch_subject(const std::string& patient) {
  return R"([{"op":"replace","path":"/subject/reference","value":"Patient/)" + patient + R"("}])";
}

class SmartWriteTest : public ServerTest {
 public:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>("smart-write");
    ServerOptions options;
    options.extra_args = {"--auth", "smart", "--data-dir", dir_->path().string()};
    start_server(std::move(options));
    if (!server_) return;
    auto ring = auth::KeyRing::open(dir_->path());
    ASSERT_TRUE(ring) << ring.error().issues.front().diagnostics;
    keys_ = std::make_unique<auth::KeyRing>(std::move(*ring));
    HttpClient client(server_->base_url());
    const std::vector<std::pair<std::string, std::string>> data = {
        {"Patient/pA", R"({"resourceType":"Patient","id":"pA","name":[{"family":"Ames"}]})"},
        {"Patient/pB", R"({"resourceType":"Patient","id":"pB","name":[{"family":"Burns"}]})"},
        {"Observation/oA1", observation("oA1", "laboratory", "pA")},
        {"Observation/oB1", observation("oB1", "laboratory", "pB")},
        {"Observation/oA7", observation("oA7", "laboratory", "pA")},
        {"Observation/oA8", observation("oA8", "laboratory", "pA")},
        {"Observation/oA9", observation("oA9", "laboratory", "pA")},
        {"Observation/oB7", observation("oB7", "laboratory", "pB")},
        {"Observation/oB8", observation("oB8", "laboratory", "pB")},
        {"Observation/oB9", observation("oB9", "laboratory", "pB")},
        {"MedicationRequest/mA2", medication_request("mA2", "R", "pA")},
        {"MedicationRequest/mA6", medication_request("mA6", "R", "pA")},
        {"MedicationRequest/mA7", medication_request("mA7", "V", "pA")},
        {"MedicationRequest/mA8", medication_request("mA8", "R", "pA")},
        {"MedicationRequest/mA9", medication_request("mA9", "", "pA")},
    };
    const std::string admin = mint({"system/*.*", "", "", ""});
    for (const auto& [ref, body] : data) {
      auto r = client.put("/fhir/" + ref, body, bearer(admin, "application/fhir+json"));
      ASSERT_EQ(r.status, 201) << ref << ": " << r.summary();
    }
  }
  static void TearDownTestSuite() {
    stop_server();
    keys_.reset();
    dir_.reset();
  }

 protected:
  static std::string mint(const Profile& p) {
    return mint_access_token(keys_->current(), server_->base_url(), "write-matrix-app", p);
  }
  static HeaderList bearer(const std::string& token, const std::string& content_type = {}) {
    HeaderList h{{"Authorization", "Bearer " + token}};
    if (!content_type.empty()) h.emplace_back("Content-Type", content_type);
    return h;
  }
  std::string admin() { return mint({"system/*.*", "", "", ""}); }

  // How many versions the store holds (the system history's total, as an unrestricted token sees it).
  std::int64_t versions() {
    auto r = client().get("/fhir/_history?_count=1", bearer(admin()));
    EXPECT_EQ(r.status, 200) << r.summary();
    auto body = r.json();
    if (!body) return -1;
    const json::Value* total = body->find("total");
    return total != nullptr ? std::stoll(total->text()) : -1;
  }

  // A response as the matrix states it: its status, and for a Bundle response each entry's status, joined by " | ".
  static std::string summary(const Response& r) {
    std::string out = std::to_string(r.status);
    if (r.status != 200) return out;
    auto body = r.json();
    if (!body || string_at(*body, "resourceType") != "Bundle") return out;
    const json::Value* entries = body->find("entry");
    if (entries == nullptr || !entries->is_array()) return out;
    out.clear();
    for (const json::Value& e : entries->items())
      out += (out.empty() ? "" : " | ") + string_at(e, "response.status").substr(0, 3);
    return out;
  }

  struct Write {
    std::string name, method, target, body, content_type;
    std::map<std::string, std::string> expected;  // by profile
    HeaderList headers = {};
    std::string first = {};  // a profile to run before the others (else: the patients, the nurse, the physician)
  };

  // The expectations of a write that only the staff may make: each patient profile is refused (403), the nurse gets
  // `nurse` and the physician `physician` (the same unless given).
  static std::map<std::string, std::string> staff_only(const std::string& nurse, const std::string& physician = {}) {
    return {{"nurse", nurse},
            {"patientA", "403"},
            {"patientA.app", "403"},
            {"patientA.granular", "403"},
            {"physician", physician.empty() ? nurse : physician}};
  }

  void run(const Write& w) {
    ASSERT_EQ(w.expected.size(), profiles().size()) << w.name << ": every profile needs its expectation";
    std::vector<std::string> order;
    if (!w.first.empty()) order.push_back(w.first);
    for (const char* name : {"patientA", "patientA.app", "patientA.granular", "nurse", "physician"})
      if (name != w.first) order.push_back(name);
    for (const std::string& name : order) {
      const Profile& profile = profiles().at(name);
      const std::string what = w.name + " as " + name;
      HeaderList headers = bearer(mint(profile), w.content_type);
      headers.insert(headers.end(), w.headers.begin(), w.headers.end());
      const std::int64_t before = versions();
      Response r = client().request(w.method, w.target, w.body, headers);
      EXPECT_EQ(summary(r), w.expected.at(name)) << what << " (" << w.method << " " << w.target << ")\n" << r.summary();
      if (r.status == 403) {
        EXPECT_TRUE(IsOperationOutcome(r, 403)) << what;
        EXPECT_EQ(versions(), before) << what << ": a refused write wrote something";
      }
    }
  }

  static inline std::unique_ptr<TempDir> dir_;
  static inline std::unique_ptr<auth::KeyRing> keys_;
};

const std::string kFhirJson = "application/fhir+json";
const std::string kJsonPatch = "application/json-patch+json";

TEST_F(SmartWriteTest, CreateStaysInTheCompartment) {
  run({"create an Observation of another patient", "POST", "/fhir/Observation", observation("", "laboratory", "pB"),
       kFhirJson, staff_only("201")});
  run({"create a laboratory Observation of the patient",
       "POST",
       "/fhir/Observation",
       observation("", "laboratory", "pA"),
       kFhirJson,
       {{"nurse", "201"},
        {"patientA", "201"},
        {"patientA.app", "201"},
        {"patientA.granular", "201"},
        {"physician", "201"}}});
  run({"create a vital-signs Observation of the patient (outside the granular scope's query)",
       "POST",
       "/fhir/Observation",
       observation("", "vital-signs", "pA"),
       kFhirJson,
       {{"nurse", "201"},
        {"patientA", "201"},
        {"patientA.app", "201"},
        {"patientA.granular", "403"},
        {"physician", "201"}}});
  run({"create (update as create) a Patient with another id", "PUT", "/fhir/Patient/pNew",
       R"({"resourceType":"Patient","id":"pNew","name":[{"family":"New"}]})", kFhirJson, staff_only("201", "200")});
  run({"conditional create of another patient's Observation (If-None-Exist on a resource it cannot see)",
       "POST",
       "/fhir/Observation",
       observation("", "laboratory", "pB"),
       kFhirJson,
       staff_only("200"),
       {{"If-None-Exist", "_id=oB1"}}});
}

TEST_F(SmartWriteTest, UpdateAndPatchStayInTheCompartment) {
  run({"update of the patient's own Patient",
       "PUT",
       "/fhir/Patient/pA",
       R"({"resourceType":"Patient","id":"pA","name":[{"family":"Ames"}]})",
       kFhirJson,
       {{"nurse", "200"},
        {"patientA", "200"},
        {"patientA.app", "200"},
        {"patientA.granular", "403"},
        {"physician", "200"}}});
  run({"update moving the patient's Observation to another patient", "PUT", "/fhir/Observation/oA9",
       observation("oA9", "laboratory", "pB"), kFhirJson, staff_only("200")});
  run({"update moving another patient's Observation into the compartment", "PUT", "/fhir/Observation/oB9",
       observation("oB9", "laboratory", "pA"), kFhirJson, staff_only("200")});
  run({"conditional update that would match another patient's Observation", "PUT", "/fhir/Observation?_id=oB1",
       observation("", "laboratory", "pB"), kFhirJson, staff_only("200")});
  run({"patch moving the patient's Observation to another patient", "PATCH", "/fhir/Observation/oA8",
       json_patch_subject("pB"), kJsonPatch, staff_only("200")});
  run({"patch moving another patient's Observation into the compartment", "PATCH", "/fhir/Observation/oB8",
       json_patch_subject("pA"), kJsonPatch, staff_only("200")});
  run({"conditional patch of another patient's Observation (nothing it may see matches)",
       "PATCH",
       "/fhir/Observation?_id=oB1",
       json_patch_subject("pB"),
       kJsonPatch,
       {{"nurse", "200"},
        {"patientA", "404"},
        {"patientA.app", "404"},
        {"patientA.granular", "404"},
        {"physician", "200"}}});
  run({"delete of another patient's Observation", "DELETE", "/fhir/Observation/oB7", "", "", staff_only("200")});
  // What the patient tokens could not do left the resources where they were.
  auto oB1 = client().get("/fhir/Observation/oB1", bearer(admin()));
  ASSERT_EQ(oB1.status, 200) << oB1.summary();
  EXPECT_EQ(string_at(*oB1.json(), "subject.reference"), "Patient/pB");
}

// The nurse rule holds in writes: she can neither change nor delete a MedicationRequest labelled R or V, nor
// write one so labelled (the policy would hide it from her).
TEST_F(SmartWriteTest, TheNurseRuleHoldsInWrites) {
  run({"create of a restricted MedicationRequest",
       "POST",
       "/fhir/MedicationRequest",
       medication_request("", "R", "pA"),
       kFhirJson,
       {{"nurse", "403"},
        {"patientA", "201"},
        {"patientA.app", "201"},
        {"patientA.granular", "403"},
        {"physician", "201"}}});
  run({"update labelling a MedicationRequest very restricted",
       "PUT",
       "/fhir/MedicationRequest/mA9",
       medication_request("mA9", "V", "pA"),
       kFhirJson,
       {{"nurse", "403"},
        {"patientA", "200"},
        {"patientA.app", "200"},
        {"patientA.granular", "403"},
        {"physician", "200"}},
       {},
       "nurse"});
  run({"patch of a restricted MedicationRequest",
       "PATCH",
       "/fhir/MedicationRequest/mA2",
       R"([{"op":"replace","path":"/status","value":"active"}])",
       kJsonPatch,
       {{"nurse", "403"},
        {"patientA", "200"},
        {"patientA.app", "200"},
        {"patientA.granular", "403"},
        {"physician", "200"}}});
  run({"delete of a restricted MedicationRequest",
       "DELETE",
       "/fhir/MedicationRequest/mA8",
       "",
       "",
       {{"nurse", "403"},
        {"patientA", "200"},
        {"patientA.app", "200"},  // deleted by patientA: nothing to delete
        {"patientA.granular", "403"},
        {"physician", "200"}},
       {},
       "nurse"});
}

TEST_F(SmartWriteTest, BundleEntriesAreCheckedLikeTheInteractions) {
  const std::string put_oB1 = R"({"fullUrl":"http://example.org/fhir/Observation/oB1","resource":)" +
                              observation("oB1", "laboratory", "pB") +
                              R"(,"request":{"method":"PUT","url":"Observation/oB1"}})";
  const std::string post_own = R"({"fullUrl":"urn:uuid:0b0b0b0b-0000-4000-8000-000000000001","resource":)" +
                               observation("", "laboratory", "pA") +
                               R"(,"request":{"method":"POST","url":"Observation"}})";
  run({"transaction: a POST in the compartment, then a PUT of another patient's Observation",
       "POST",
       "/fhir",
       R"({"resourceType":"Bundle","type":"transaction","entry":[)" + post_own + "," + put_oB1 + "]}",
       kFhirJson,
       {{"nurse", "201 | 200"},
        {"patientA", "403"},
        {"patientA.app", "403"},
        {"patientA.granular", "403"},
        {"physician", "201 | 200"}}});
  run({"batch: the same entries",
       "POST",
       "/fhir",
       R"({"resourceType":"Bundle","type":"batch","entry":[)" + post_own + "," + put_oB1 + "]}",
       kFhirJson,
       {{"nurse", "201 | 200"},
        {"patientA", "201 | 403"},
        {"patientA.app", "201 | 403"},
        {"patientA.granular", "201 | 403"},
        {"physician", "201 | 200"}}});
  run({"transaction: DELETE of a very restricted MedicationRequest",
       "POST",
       "/fhir",
       R"({"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"MedicationRequest/mA7"}}]})",
       kFhirJson,
       {{"nurse", "403"},
        {"patientA", "200"},
        {"patientA.app", "204"},  // already deleted
        {"patientA.granular", "403"},
        {"physician", "204"}},
       {},
       "nurse"});
  run({"transaction: conditional DELETE matching a restricted MedicationRequest",
       "POST",
       "/fhir",
       R"({"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"MedicationRequest?_id=mA6"}}]})",
       kFhirJson,
       {{"nurse", "204"},  // she sees no match: nothing deleted
        {"patientA", "200"},
        {"patientA.app", "204"},
        {"patientA.granular", "403"},
        {"physician", "204"}},
       {},
       "nurse"});
  const std::string patch_oA7 =
      R"({"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Observation.subject"},{"name":"value","valueReference":{"reference":"Patient/pB"}}]}]},"request":{"method":"PATCH","url":"Observation/oA7"}}]})";
  run({"transaction: PATCH moving the patient's Observation to another patient", "POST", "/fhir", patch_oA7, kFhirJson,
       staff_only("200")});

  // The refusal names the entry, by index and fullUrl.
  const std::string patient = mint(profiles().at("patientA"));
  auto r = client().post("/fhir",
                         R"({"resourceType":"Bundle","type":"transaction","entry":[)" + post_own + "," + put_oB1 + "]}",
                         bearer(patient, kFhirJson));
  ASSERT_TRUE(IsOperationOutcome(r, 403)) << r.summary();
  EXPECT_TRUE(NamesElement(r, {"Bundle.entry[1]"}, "http://example.org/fhir/Observation/oB1")) << r.summary();
}

// History of deleted resources: a deletion is visible to whom its last live version was visible (the index rows of
// that version are kept aside at deletion), and to no one else.
TEST_F(SmartWriteTest, HistoryOfDeletedResources) {
  const std::string adm = admin();
  auto first = client().put("/fhir/Observation/oA5", observation("oA5", "vital-signs", "pA"), bearer(adm, kFhirJson));
  ASSERT_EQ(first.status, 201) << first.summary();
  const std::string since = string_at(*first.json(), "meta.lastUpdated");
  ASSERT_EQ(
      client().put("/fhir/Observation/oB5", observation("oB5", "laboratory", "pB"), bearer(adm, kFhirJson)).status,
      201);
  ASSERT_EQ(client().del("/fhir/Observation/oA5", bearer(adm)).status, 200);
  ASSERT_EQ(client().del("/fhir/Observation/oB5", bearer(adm)).status, 200);

  // "status: entries (total)" of a history, or the status.
  auto history = [&](const std::string& who, const std::string& target) -> std::string {
    auto r = client().get(target, bearer(mint(profiles().at(who))));
    if (r.status != 200) return std::to_string(r.status);
    auto body = r.json();
    std::vector<std::string> entries;
    if (const json::Value* es = body->find("entry"); es != nullptr && es->is_array())
      for (const json::Value& e : es->items()) {
        std::string url = string_at(e, "fullUrl");
        entries.push_back(url.substr(url.rfind('/', url.rfind('/') - 1) + 1) + " " + string_at(e, "request.method"));
      }
    std::sort(entries.begin(), entries.end());
    std::string out;
    for (const std::string& e : entries) out += (out.empty() ? "" : ", ") + e;
    return out + " (" + string_at(*body, "total") + ")";
  };
  const std::string a = "Observation/oA5 DELETE, Observation/oA5 PUT (2)";
  const std::string both =
      "Observation/oA5 DELETE, Observation/oA5 PUT, Observation/oB5 DELETE, Observation/oB5 PUT (4)";
  const std::string since_q = "?_since=" + since;
  EXPECT_EQ(history("patientA", "/fhir/Observation/oA5/_history"), a);
  EXPECT_EQ(history("patientA.app", "/fhir/Observation/oA5/_history"), a);
  EXPECT_EQ(history("patientA.granular", "/fhir/Observation/oA5/_history"), "403");  // vital signs
  EXPECT_EQ(history("patientA", "/fhir/Observation/oB5/_history"), "403");
  EXPECT_EQ(history("nurse", "/fhir/Observation/oB5/_history"), "Observation/oB5 DELETE, Observation/oB5 PUT (2)");
  EXPECT_EQ(history("patientA", "/fhir/Observation/_history" + since_q), a);
  EXPECT_EQ(history("patientA.granular", "/fhir/Observation/_history" + since_q), " (0)");
  EXPECT_EQ(history("patientA", "/fhir/_history" + since_q), a);
  EXPECT_EQ(history("nurse", "/fhir/Observation/_history" + since_q), both);
  EXPECT_EQ(history("physician", "/fhir/_history" + since_q), both);

  // The deletion itself: 410 to whom may see it, 403 to the others.
  const std::string patient = mint(profiles().at("patientA"));
  EXPECT_TRUE(IsOperationOutcome(client().get("/fhir/Observation/oA5/_history/2", bearer(patient)), 410));
  EXPECT_TRUE(IsOperationOutcome(client().get("/fhir/Observation/oB5/_history/2", bearer(patient)), 403));
  EXPECT_TRUE(IsOperationOutcome(client().get("/fhir/Observation/oB5/_history/1", bearer(patient)), 403));
  // Another patient's deleted resource cannot be taken over (its history would follow); one's own comes back.
  auto take = client().put("/fhir/Observation/oB5", observation("oB5", "laboratory", "pA"), bearer(patient, kFhirJson));
  EXPECT_TRUE(IsOperationOutcome(take, 403)) << take.summary();
  auto back = client().put("/fhir/Observation/oA5", observation("oA5", "laboratory", "pA"), bearer(patient, kFhirJson));
  EXPECT_EQ(back.status, 201) << back.summary();
  EXPECT_EQ(history("patientA", "/fhir/Observation/oA5/_history"),
            "Observation/oA5 DELETE, Observation/oA5 PUT, Observation/oA5 PUT (3)");
}

// Side doors of reads: a page link made for one token shows another token only its own rights; _summary=count
// counts what the token sees; _include:iterate and _revinclude:iterate add only visible resources.
TEST_F(SmartWriteTest, PageLinksCountsAndIterateIncludesFollowTheToken) {
  const std::string physician = mint(profiles().at("physician"));
  const std::string nurse = mint(profiles().at("nurse"));
  const std::string patient = mint(profiles().at("patientA.granular"));
  auto all_pages = [&](std::string target, const std::string& token) {
    std::set<std::string> refs;
    for (int page = 0; !target.empty() && page < 100; ++page) {
      auto r = client().get(target, bearer(token));
      EXPECT_EQ(r.status, 200) << target << ": " << r.summary();
      if (r.status != 200) break;
      for (const std::string& ref : entry_refs(r)) refs.insert(ref);
      target = next_link(r);
      if (auto at = target.find("/fhir"); at != std::string::npos) target = target.substr(at);
    }
    return refs;
  };
  const std::set<std::string> nurse_sees = all_pages("/fhir/MedicationRequest?_count=100", nurse);
  const std::set<std::string> physician_sees = all_pages("/fhir/MedicationRequest?_count=100", physician);
  EXPECT_FALSE(nurse_sees.contains("MedicationRequest/mA2")) << "labelled R";
  EXPECT_TRUE(physician_sees.contains("MedicationRequest/mA2"));
  // The physician's first page link, opened by the nurse: only what the nurse sees, page after page.
  auto first = client().get("/fhir/MedicationRequest?_count=1", bearer(physician));
  ASSERT_EQ(first.status, 200) << first.summary();
  std::string link = next_link(first);
  ASSERT_FALSE(link.empty());
  for (const std::string& ref : all_pages(link.substr(link.find("/fhir")), nurse))
    EXPECT_TRUE(nurse_sees.contains(ref)) << ref << " reached through another token's page link";
  // _summary=count: the nurse's own count, not the physician's.
  auto count = [&](const std::string& token) {
    auto r = client().get("/fhir/MedicationRequest?_summary=count", bearer(token));
    EXPECT_EQ(r.status, 200) << r.summary();
    return r.json() ? string_at(*r.json(), "total") : std::string();
  };
  EXPECT_EQ(count(nurse), std::to_string(nurse_sees.size()));
  EXPECT_EQ(count(physician), std::to_string(physician_sees.size()));
  // Iterated includes: from the patient's laboratory Observation to the Patient, and back to the Observations of
  // that Patient: only those of the granular scope (laboratory, in the compartment), as the token's own search.
  const std::set<std::string> own = all_pages("/fhir/Observation?_count=100", patient);
  auto iterated = client().get(
      "/fhir/Observation?_id=oA1&_include:iterate=Observation:subject:Patient&_revinclude:iterate=Observation:subject",
      bearer(patient));
  ASSERT_EQ(iterated.status, 200) << iterated.summary();
  std::set<std::string> expected = own;
  expected.insert("Patient/pA");
  EXPECT_EQ(entry_refs(iterated), expected);
}

}  // namespace
}  // namespace caduceus::test
