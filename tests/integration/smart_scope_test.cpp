// SMART scopes enforced inside the queries: patient/, user/ and granular scopes, and the access policy's role rules
// (the built-in defaults), over the real binary with --auth smart. The user tokens are minted here, signed with the
// server's own key from its data folder (as the authorization-code flow will issue them), following the shared
// claim contract: client_id, scope, exp, iat, jti, sub, fhirUser, role, patient.
//
// The matrix: token profiles (scopes v1, v2, granular x roles physician, nurse, technician, patient) x interactions
// (read, vread, search, _include, _revinclude, chain, _has, history of an instance, a type and the system, batch,
// transaction), each with the exact resources expected (worked out by hand from the data below), so that a leak
// fails. Every searchset and history total must equal what the Bundle shows.
#include <gtest/gtest.h>

#include <chrono>
#include <map>

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

// The token profiles of the matrix.
const std::map<std::string, Profile>& profiles() {
  static const std::map<std::string, Profile> p = {
      {"physician.v1", {"user/*.read", "physician", "Practitioner/dr1", ""}},
      {"physician.v2", {"user/*.rs", "physician", "Practitioner/dr1", ""}},
      {"physician.granular",
       {"user/Observation.rs?category=laboratory user/Patient.rs user/MedicationRequest.rs", "physician",
        "Practitioner/dr1", ""}},
      {"nurse.v1", {"user/*.read", "nurse", "Practitioner/n1", ""}},
      {"nurse.v2", {"user/*.rs", "nurse", "Practitioner/n1", ""}},
      {"nurse.granular",
       {"user/Observation.rs?category=laboratory user/Patient.rs user/MedicationRequest.rs", "nurse", "Practitioner/n1",
        ""}},
      {"technician.v2", {"user/*.rs", "technician", "Practitioner/t1", ""}},
      {"technician.granular", {"user/Observation.rs?category=laboratory", "technician", "Practitioner/t1", ""}},
      {"patientA.v1", {"patient/*.read", "patient", "Patient/pA", "pA"}},
      {"patientA.v2", {"patient/*.rs", "patient", "Patient/pA", "pA"}},
      {"patientA.granular",
       {"patient/Observation.rs?category=laboratory patient/Patient.rs", "patient", "Patient/pA", "pA"}},
  };
  return p;
}

class SmartScopeTest : public ServerTest {
 public:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>("smart-scope");
    ServerOptions options;
    options.extra_args = {"--auth", "smart", "--data-dir", dir_->path().string()};
    start_server(std::move(options));
    if (!server_) return;
    auto ring = auth::KeyRing::open(dir_->path());
    ASSERT_TRUE(ring) << ring.error().issues.front().diagnostics;
    keys_ = std::make_unique<auth::KeyRing>(std::move(*ring));
    load_data();
  }
  static void TearDownTestSuite() {
    stop_server();
    keys_.reset();
    dir_.reset();
  }

 protected:
  // A token of the shared claim contract, signed with the server's current key.
  static std::string mint(const Profile& p, std::int64_t lifetime = 3600) {
    return mint_access_token(keys_->current(), server_->base_url(), "matrix-app", p, lifetime);
  }
  static HeaderList bearer(const std::string& token, bool json_body = false) {
    HeaderList h{{"Authorization", "Bearer " + token}};
    if (json_body) h.emplace_back("Content-Type", "application/fhir+json");
    return h;
  }

  static void load_data() {
    const std::string admin = mint({"system/*.*", "", "", ""});
    HttpClient client(server_->base_url());
    const std::string conf = kConf;
    auto lab = [](const char* code) {
      return std::string(
                 R"("category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":")") +
             code + R"("}]}])";
    };
    const std::vector<std::pair<std::string, std::string>> data = {
        {"Patient/pA", R"({"resourceType":"Patient","id":"pA","name":[{"family":"Ames"}]})"},
        {"Patient/pB", R"({"resourceType":"Patient","id":"pB","name":[{"family":"Burns"}]})"},
        {"Observation/oA1", R"({"resourceType":"Observation","id":"oA1","status":"final",)" + lab("laboratory") +
                                R"(,"code":{"text":"hb"},"subject":{"reference":"Patient/pA"}})"},
        {"Observation/oA2", R"({"resourceType":"Observation","id":"oA2","status":"final",)" + lab("vital-signs") +
                                R"(,"code":{"text":"pulse"},"subject":{"reference":"Patient/pA"}})"},
        {"Observation/oB1", R"({"resourceType":"Observation","id":"oB1","status":"final",)" + lab("laboratory") +
                                R"(,"code":{"text":"hb"},"subject":{"reference":"Patient/pB"}})"},
        {"MedicationRequest/mA1",
         R"({"resourceType":"MedicationRequest","id":"mA1","status":"active","intent":"order","medicationCodeableConcept":{"text":"amoxicillin"},"subject":{"reference":"Patient/pA"}})"},
        {"MedicationRequest/mA2",
         R"({"resourceType":"MedicationRequest","id":"mA2","meta":{"security":[{"system":")" + conf +
             R"(","code":"R"}]},"status":"active","intent":"order","medicationCodeableConcept":{"text":"methadone"},"subject":{"reference":"Patient/pA"}})"},
        {"MedicationRequest/mB1",
         R"({"resourceType":"MedicationRequest","id":"mB1","meta":{"security":[{"system":")" + conf +
             R"(","code":"V"}]},"status":"active","intent":"order","medicationCodeableConcept":{"text":"zidovudine"},"subject":{"reference":"Patient/pB"}})"},
        {"DiagnosticReport/dA1",
         R"({"resourceType":"DiagnosticReport","id":"dA1","status":"final","code":{"text":"cbc"},"subject":{"reference":"Patient/pA"},"result":[{"reference":"Observation/oA1"}]})"},
        {"Encounter/eA1",
         R"({"resourceType":"Encounter","id":"eA1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/pA"}})"},
    };
    for (const auto& [ref, body] : data) {
      auto r = client.put("/fhir/" + ref, body, bearer(admin, true));
      ASSERT_EQ(r.status, 201) << ref << ": " << r.summary();
    }
  }

  // "Type/id" of a resource.
  static std::string ref_of(const json::Value& resource) {
    return string_at(resource, "resourceType") + "/" + string_at(resource, "id");
  }

  // What a Bundle shows: "[A, B]" (sorted "Type/id" of its entries' resources). Adds a failure when its total
  // differs from the matches (searchset) or the entries (history) it holds: a total must not count hidden ones.
  static std::string bundle_summary(const json::Value& bundle, const std::string& what) {
    std::set<std::string> refs;
    std::size_t counted = 0;
    const bool searchset = string_at(bundle, "type") == "searchset";
    if (const json::Value* entries = bundle.find("entry"); entries != nullptr && entries->is_array()) {
      for (const json::Value& e : entries->items()) {
        if (const json::Value* res = e.find("resource")) refs.insert(ref_of(*res));
        if (!searchset || string_at(e, "search.mode") == "match") ++counted;
      }
    }
    if (const json::Value* total = bundle.find("total"))
      EXPECT_EQ(total->text(), std::to_string(counted)) << what << ": the total counts what is not shown";
    std::string out = "[";
    for (const std::string& r : refs) out += (out.size() > 1 ? ", " : "") + r;
    return out + "]";
  }

  // A response as the matrix states it: "403", "200 Type/id", "200 [A, B]", and for a batch or transaction each
  // entry's, joined by " | ".
  static std::string summary(const Response& r, const std::string& what) {
    if (r.status != 200) return std::to_string(r.status);
    auto body = r.json();
    if (!body) return "200 (not JSON)";
    const std::string type = string_at(*body, "resourceType");
    if (type != "Bundle") return "200 " + ref_of(*body);
    const std::string bundle_type = string_at(*body, "type");
    if (bundle_type != "batch-response" && bundle_type != "transaction-response")
      return "200 " + bundle_summary(*body, what);
    std::string out;
    const json::Value* entries = body->find("entry");
    if (entries == nullptr || !entries->is_array()) return "200 (no entries)";
    for (const json::Value& e : entries->items()) {
      if (!out.empty()) out += " | ";
      std::string status = string_at(e, "response.status").substr(0, 3);
      const json::Value* res = e.find("resource");
      if (status != "200" || res == nullptr) {
        out += status;
      } else if (string_at(*res, "resourceType") == "Bundle") {
        out += "200 " + bundle_summary(*res, what);
      } else {
        out += "200 " + ref_of(*res);
      }
    }
    return out;
  }

  struct Interaction {
    std::string name, method, target, body;
    std::map<std::string, std::string> expected;  // by profile
  };

  void run(const Interaction& in) {
    ASSERT_EQ(in.expected.size(), profiles().size()) << in.name << ": every profile needs its expectation";
    for (const auto& [name, profile] : profiles()) {
      const std::string token = mint(profile);
      Response r = in.method == "GET"    ? client().get(in.target, bearer(token))
                   : in.method == "POST" ? client().post(in.target, in.body, bearer(token, true))
                                         : Response{};
      const std::string what = in.name + " as " + name;
      auto expected = in.expected.find(name);
      ASSERT_NE(expected, in.expected.end()) << what;
      EXPECT_EQ(summary(r, what), expected->second) << what << " (" << in.method << " " << in.target << ")\n"
                                                    << r.summary();
      if (r.status == 403) EXPECT_TRUE(IsOperationOutcome(r, 403)) << what;
    }
  }

  static inline std::unique_ptr<TempDir> dir_;
  static inline std::unique_ptr<auth::KeyRing> keys_;
};

// Shorthand for the expectations of the profiles that see everything of these types.
const std::string kAllMedicationRequests = "200 [MedicationRequest/mA1, MedicationRequest/mA2, MedicationRequest/mB1]";

TEST_F(SmartScopeTest, Read) {
  run({"read of a restricted MedicationRequest",
       "GET",
       "/fhir/MedicationRequest/mA2",
       "",
       {{"physician.v1", "200 MedicationRequest/mA2"},
        {"physician.v2", "200 MedicationRequest/mA2"},
        {"physician.granular", "200 MedicationRequest/mA2"},
        {"nurse.v1", "403"},
        {"nurse.v2", "403"},
        {"nurse.granular", "403"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 MedicationRequest/mA2"},
        {"patientA.v2", "200 MedicationRequest/mA2"},
        {"patientA.granular", "403"}}});
  run({"read of another patient's laboratory Observation",
       "GET",
       "/fhir/Observation/oB1",
       "",
       {{"physician.v1", "200 Observation/oB1"},
        {"physician.v2", "200 Observation/oB1"},
        {"physician.granular", "200 Observation/oB1"},
        {"nurse.v1", "200 Observation/oB1"},
        {"nurse.v2", "200 Observation/oB1"},
        {"nurse.granular", "200 Observation/oB1"},
        {"technician.v2", "200 Observation/oB1"},
        {"technician.granular", "200 Observation/oB1"},
        {"patientA.v1", "403"},
        {"patientA.v2", "403"},
        {"patientA.granular", "403"}}});
  run({"read of a vital-signs Observation",
       "GET",
       "/fhir/Observation/oA2",
       "",
       {{"physician.v1", "200 Observation/oA2"},
        {"physician.v2", "200 Observation/oA2"},
        {"physician.granular", "403"},
        {"nurse.v1", "200 Observation/oA2"},
        {"nurse.v2", "200 Observation/oA2"},
        {"nurse.granular", "403"},
        {"technician.v2", "200 Observation/oA2"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 Observation/oA2"},
        {"patientA.v2", "200 Observation/oA2"},
        {"patientA.granular", "403"}}});
  run({"vread of a restricted MedicationRequest",
       "GET",
       "/fhir/MedicationRequest/mA2/_history/1",
       "",
       {{"physician.v1", "200 MedicationRequest/mA2"},
        {"physician.v2", "200 MedicationRequest/mA2"},
        {"physician.granular", "200 MedicationRequest/mA2"},
        {"nurse.v1", "403"},
        {"nurse.v2", "403"},
        {"nurse.granular", "403"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 MedicationRequest/mA2"},
        {"patientA.v2", "200 MedicationRequest/mA2"},
        {"patientA.granular", "403"}}});
}

TEST_F(SmartScopeTest, Search) {
  run({"search of MedicationRequests",
       "GET",
       "/fhir/MedicationRequest?_total=accurate",
       "",
       {{"physician.v1", kAllMedicationRequests},
        {"physician.v2", kAllMedicationRequests},
        {"physician.granular", kAllMedicationRequests},
        {"nurse.v1", "200 [MedicationRequest/mA1]"},
        {"nurse.v2", "200 [MedicationRequest/mA1]"},
        {"nurse.granular", "200 [MedicationRequest/mA1]"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 [MedicationRequest/mA1, MedicationRequest/mA2]"},
        {"patientA.v2", "200 [MedicationRequest/mA1, MedicationRequest/mA2]"},
        {"patientA.granular", "403"}}});
  const std::string all = "200 [Observation/oA1, Observation/oA2, Observation/oB1]";
  const std::string lab = "200 [Observation/oA1, Observation/oB1]";
  run({"search of Observations",
       "GET",
       "/fhir/Observation?_total=accurate",
       "",
       {{"physician.v1", all},
        {"physician.v2", all},
        {"physician.granular", lab},
        {"nurse.v1", all},
        {"nurse.v2", all},
        {"nurse.granular", lab},
        {"technician.v2", all},
        {"technician.granular", lab},
        {"patientA.v1", "200 [Observation/oA1, Observation/oA2]"},
        {"patientA.v2", "200 [Observation/oA1, Observation/oA2]"},
        {"patientA.granular", "200 [Observation/oA1]"}}});
  // Paging counts only what is visible: one per page, as many pages as visible matches.
  const std::string nurse = mint(profiles().at("nurse.v2"));
  auto first = client().get("/fhir/MedicationRequest?_count=1&_total=accurate", bearer(nurse));
  ASSERT_EQ(first.status, 200) << first.summary();
  EXPECT_EQ(entry_refs(first), std::set<std::string>{"MedicationRequest/mA1"});
  EXPECT_EQ(next_link(first), "") << "no second page: the nurse sees one MedicationRequest";
}

TEST_F(SmartScopeTest, IncludeAndRevinclude) {
  const std::string every =
      "200 [MedicationRequest/mA1, MedicationRequest/mA2, MedicationRequest/mB1, Patient/pA, "
      "Patient/pB]";
  run({"_include",
       "GET",
       "/fhir/MedicationRequest?_include=MedicationRequest:subject:Patient",
       "",
       {{"physician.v1", every},
        {"physician.v2", every},
        {"physician.granular", every},
        {"nurse.v1", "200 [MedicationRequest/mA1, Patient/pA]"},
        {"nurse.v2", "200 [MedicationRequest/mA1, Patient/pA]"},
        {"nurse.granular", "200 [MedicationRequest/mA1, Patient/pA]"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 [MedicationRequest/mA1, MedicationRequest/mA2, Patient/pA]"},
        {"patientA.v2", "200 [MedicationRequest/mA1, MedicationRequest/mA2, Patient/pA]"},
        {"patientA.granular", "403"}}});
  run({"_revinclude",
       "GET",
       "/fhir/Patient?_revinclude=MedicationRequest:subject&_total=accurate",
       "",
       {{"physician.v1", every},
        {"physician.v2", every},
        {"physician.granular", every},
        {"nurse.v1", "200 [MedicationRequest/mA1, Patient/pA, Patient/pB]"},
        {"nurse.v2", "200 [MedicationRequest/mA1, Patient/pA, Patient/pB]"},
        {"nurse.granular", "200 [MedicationRequest/mA1, Patient/pA, Patient/pB]"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 [MedicationRequest/mA1, MedicationRequest/mA2, Patient/pA]"},
        {"patientA.v2", "200 [MedicationRequest/mA1, MedicationRequest/mA2, Patient/pA]"},
        {"patientA.granular", "403"}}});
  // An _include of what the scope does not cover by its query: the vital-signs Observation stays out.
  run({"_include of a DiagnosticReport's results",
       "GET",
       "/fhir/DiagnosticReport?_include=DiagnosticReport:result",
       "",
       {{"physician.v1", "200 [DiagnosticReport/dA1, Observation/oA1]"},
        {"physician.v2", "200 [DiagnosticReport/dA1, Observation/oA1]"},
        {"physician.granular", "403"},
        {"nurse.v1", "200 [DiagnosticReport/dA1, Observation/oA1]"},
        {"nurse.v2", "200 [DiagnosticReport/dA1, Observation/oA1]"},
        {"nurse.granular", "403"},
        {"technician.v2", "200 [DiagnosticReport/dA1, Observation/oA1]"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 [DiagnosticReport/dA1, Observation/oA1]"},
        {"patientA.v2", "200 [DiagnosticReport/dA1, Observation/oA1]"},
        {"patientA.granular", "403"}}});
}

TEST_F(SmartScopeTest, ChainAndHas) {
  run({"chain through the Patient",
       "GET",
       "/fhir/Observation?subject:Patient.name=Burns&_total=accurate",
       "",
       {{"physician.v1", "200 [Observation/oB1]"},
        {"physician.v2", "200 [Observation/oB1]"},
        {"physician.granular", "200 [Observation/oB1]"},
        {"nurse.v1", "200 [Observation/oB1]"},
        {"nurse.v2", "200 [Observation/oB1]"},
        {"nurse.granular", "200 [Observation/oB1]"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 []"},
        {"patientA.v2", "200 []"},
        {"patientA.granular", "200 []"}}});
  run({"_has of a restricted MedicationRequest",
       "GET",
       std::string("/fhir/Patient?_total=accurate&_has:MedicationRequest:subject:_security=") + kConf + "%7CR",
       "",
       {{"physician.v1", "200 [Patient/pA]"},
        {"physician.v2", "200 [Patient/pA]"},
        {"physician.granular", "200 [Patient/pA]"},
        {"nurse.v1", "200 []"},
        {"nurse.v2", "200 []"},
        {"nurse.granular", "200 []"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 [Patient/pA]"},
        {"patientA.v2", "200 [Patient/pA]"},
        {"patientA.granular", "403"}}});
}

TEST_F(SmartScopeTest, History) {
  run({"history of a restricted MedicationRequest",
       "GET",
       "/fhir/MedicationRequest/mA2/_history",
       "",
       {{"physician.v1", "200 [MedicationRequest/mA2]"},
        {"physician.v2", "200 [MedicationRequest/mA2]"},
        {"physician.granular", "200 [MedicationRequest/mA2]"},
        {"nurse.v1", "403"},
        {"nurse.v2", "403"},
        {"nurse.granular", "403"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 [MedicationRequest/mA2]"},
        {"patientA.v2", "200 [MedicationRequest/mA2]"},
        {"patientA.granular", "403"}}});
  run({"history of the MedicationRequests",
       "GET",
       "/fhir/MedicationRequest/_history",
       "",
       {{"physician.v1", kAllMedicationRequests},
        {"physician.v2", kAllMedicationRequests},
        {"physician.granular", kAllMedicationRequests},
        {"nurse.v1", "200 [MedicationRequest/mA1]"},
        {"nurse.v2", "200 [MedicationRequest/mA1]"},
        {"nurse.granular", "200 [MedicationRequest/mA1]"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 [MedicationRequest/mA1, MedicationRequest/mA2]"},
        {"patientA.v2", "200 [MedicationRequest/mA1, MedicationRequest/mA2]"},
        {"patientA.granular", "403"}}});
  const std::string everything =
      "200 [DiagnosticReport/dA1, Encounter/eA1, MedicationRequest/mA1, MedicationRequest/mA2, "
      "MedicationRequest/mB1, Observation/oA1, Observation/oA2, Observation/oB1, Patient/pA, Patient/pB]";
  const std::string nurse =
      "200 [DiagnosticReport/dA1, Encounter/eA1, MedicationRequest/mA1, Observation/oA1, Observation/oA2, "
      "Observation/oB1, Patient/pA, Patient/pB]";
  const std::string own =
      "200 [DiagnosticReport/dA1, Encounter/eA1, MedicationRequest/mA1, MedicationRequest/mA2, Observation/oA1, "
      "Observation/oA2, Patient/pA]";
  run({"history of the system",
       "GET",
       "/fhir/_history",
       "",
       {{"physician.v1", everything},
        {"physician.v2", everything},
        {"physician.granular", "403"},
        {"nurse.v1", nurse},
        {"nurse.v2", nurse},
        {"nurse.granular", "403"},
        {"technician.v2", "200 [DiagnosticReport/dA1, Observation/oA1, Observation/oA2, Observation/oB1]"},
        {"technician.granular", "403"},
        {"patientA.v1", own},
        {"patientA.v2", own},
        {"patientA.granular", "403"}}});
}

TEST_F(SmartScopeTest, BatchAndTransaction) {
  run({"batch",
       "POST",
       "/fhir",
       R"({"resourceType":"Bundle","type":"batch","entry":[
           {"request":{"method":"GET","url":"MedicationRequest/mA2"}},
           {"request":{"method":"GET","url":"Observation?subject=Patient/pB"}}]})",
       {{"physician.v1", "200 MedicationRequest/mA2 | 200 [Observation/oB1]"},
        {"physician.v2", "200 MedicationRequest/mA2 | 200 [Observation/oB1]"},
        {"physician.granular", "200 MedicationRequest/mA2 | 200 [Observation/oB1]"},
        {"nurse.v1", "403 | 200 [Observation/oB1]"},
        {"nurse.v2", "403 | 200 [Observation/oB1]"},
        {"nurse.granular", "403 | 200 [Observation/oB1]"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 MedicationRequest/mA2 | 200 []"},
        {"patientA.v2", "200 MedicationRequest/mA2 | 200 []"},
        {"patientA.granular", "403"}}});
  run({"transaction",
       "POST",
       "/fhir",
       R"({"resourceType":"Bundle","type":"transaction","entry":[
           {"request":{"method":"GET","url":"MedicationRequest?_id=mA2,mB1&_total=accurate"}},
           {"request":{"method":"GET","url":"Patient/pB"}}]})",
       {{"physician.v1", "200 [MedicationRequest/mA2, MedicationRequest/mB1] | 200 Patient/pB"},
        {"physician.v2", "200 [MedicationRequest/mA2, MedicationRequest/mB1] | 200 Patient/pB"},
        {"physician.granular", "200 [MedicationRequest/mA2, MedicationRequest/mB1] | 200 Patient/pB"},
        {"nurse.v1", "200 [] | 200 Patient/pB"},
        {"nurse.v2", "200 [] | 200 Patient/pB"},
        {"nurse.granular", "200 [] | 200 Patient/pB"},
        {"technician.v2", "403"},
        {"technician.granular", "403"},
        {"patientA.v1", "200 [MedicationRequest/mA2] | 403"},
        {"patientA.v2", "200 [MedicationRequest/mA2] | 403"},
        {"patientA.granular", "403"}}});
}

// The technician's role rule: a search over every type of a patient's compartment answers the technician's types
// only (no 403 for the part left out), while naming another type is refused.
TEST_F(SmartScopeTest, PartlyAllowedSearchesAnswerTheAllowedPart) {
  const std::string tech = mint(profiles().at("technician.v2"));
  auto r = client().get("/fhir?_type=Observation,DiagnosticReport&_total=accurate", bearer(tech));
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(entry_refs(r),
            (std::set<std::string>{"DiagnosticReport/dA1", "Observation/oA1", "Observation/oA2", "Observation/oB1"}));
  auto everything = client().get("/fhir?_id=pA,oA1,mA1,eA1,dA1&_total=accurate", bearer(tech));
  ASSERT_EQ(everything.status, 200) << everything.summary();
  EXPECT_EQ(entry_refs(everything), (std::set<std::string>{"DiagnosticReport/dA1", "Observation/oA1"}));
  EXPECT_EQ(summary(everything, "system search"), "200 [DiagnosticReport/dA1, Observation/oA1]");
  auto named = client().get("/fhir/Encounter", bearer(tech));
  EXPECT_TRUE(IsOperationOutcome(named, 403)) << named.summary();
}

// Writes: a hidden resource can be neither updated, patched nor deleted, and a conditional operation does not
// see it; no token, or a bad one, is 401 with WWW-Authenticate.
TEST_F(SmartScopeTest, WritesAndTokens) {
  const std::string nurse = mint({"user/*.cruds", "nurse", "Practitioner/n1", ""});
  auto del = client().del("/fhir/MedicationRequest/mA2", bearer(nurse));
  EXPECT_TRUE(IsOperationOutcome(del, 403)) << del.summary();
  auto patch = client().request(
      "PATCH", "/fhir/MedicationRequest/mA2", R"([{"op":"replace","path":"/status","value":"stopped"}])",
      {{"Authorization", "Bearer " + nurse}, {"Content-Type", "application/json-patch+json"}});
  EXPECT_TRUE(IsOperationOutcome(patch, 403)) << patch.summary();
  auto put = client().put(
      "/fhir/MedicationRequest/mA2",
      R"({"resourceType":"MedicationRequest","id":"mA2","status":"stopped","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/pA"}})",
      bearer(nurse, true));
  EXPECT_TRUE(IsOperationOutcome(put, 403)) << put.summary();
  auto in_transaction = client().post("/fhir", R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"resource":{"resourceType":"MedicationRequest","id":"mA2","status":"stopped","intent":"order",
                   "medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/pA"}},
       "request":{"method":"PUT","url":"MedicationRequest/mA2"}}]})",
                                      bearer(nurse, true));
  EXPECT_TRUE(IsOperationOutcome(in_transaction, 403)) << in_transaction.summary();
  EXPECT_TRUE(NamesElement(in_transaction, {"Bundle.entry[0]"}, "MedicationRequest/mA2")) << in_transaction.summary();
  auto conditional = client().del("/fhir/MedicationRequest?_id=mA2", bearer(nurse));
  EXPECT_EQ(conditional.status, 200) << conditional.summary();  // nothing it may see matched: nothing deleted
  const std::string physician = mint(profiles().at("physician.v2"));
  auto still = client().get("/fhir/MedicationRequest/mA2", bearer(physician));
  ASSERT_EQ(still.status, 200) << still.summary();
  EXPECT_EQ(string_at(*still.json(), "status"), "active");
  EXPECT_EQ(string_at(*still.json(), "meta.versionId"), "1");

  auto none = client().get("/fhir/Observation");
  EXPECT_EQ(none.status, 401);
  EXPECT_NE(none.headers.value("www-authenticate").find("Bearer"), std::string::npos);
  auto bad = client().get("/fhir/Observation", bearer(physician + "x"));
  EXPECT_EQ(bad.status, 401);
  EXPECT_NE(bad.headers.value("www-authenticate").find("invalid_token"), std::string::npos);
}

}  // namespace
}  // namespace caduceus::test
