// SMART on FHIR over HTTP with the real binary and --auth smart: discovery, Backend Services tokens (ES384 and
// RS384 client assertions made here with OpenSSL and libjwt), client_secret_basic, enforcement of the scopes on
// every interaction (includes, _has, compartments, Bundle entries), introspection, revocation, and the JWKS.
#include <gtest/gtest.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <chrono>
#include <cstdio>
#include <fstream>

#include "client_keys.hpp"
#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

namespace json = fhir::json;

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

constexpr const char* kSecret = "s3cret-that-is-long-enough";

class SmartTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("smart-test");
    db_ = "sqlite:" + (dir_->path() / "smart.db").string();
    es_ = new ClientKey(make_client_key("ES384", "es-key-1"));
    rs_ = new ClientKey(make_client_key("RS384", "rs-key-1"));
    std::ofstream(dir_->path() / "es.jwks") << es_->jwks();
    // backend: reads Patient and Observation, may create Observations. admin: everything (RS384).
    auto added =
        run_caduceus({"admin", "client", "add", "--db", db_, "--id", "backend", "--type", "confidential-asymmetric",
                      "--jwks", "@" + (dir_->path() / "es.jwks").string(), "--scope",
                      "system/Patient.rs system/Observation.read", "--scope", "system/Observation.c"});
    ASSERT_EQ(added.first, 0) << added.second;
    added = run_caduceus({"admin", "client", "add", "--db", db_, "--id", "admin", "--type", "confidential-asymmetric",
                          "--jwks", rs_->jwks(), "--scope", "system/*.*"});
    ASSERT_EQ(added.first, 0) << added.second;
    added = run_caduceus({"admin", "client", "add", "--db", db_, "--id", "lab", "--type", "confidential-symmetric",
                          "--secret", kSecret, "--scope", "system/Observation.rs"});
    ASSERT_EQ(added.first, 0) << added.second;
    auto listed = run_caduceus({"admin", "client", "list", "--db", db_});
    ASSERT_EQ(listed.first, 0);
    EXPECT_NE(listed.second.find("backend\tconfidential-asymmetric"), std::string::npos) << listed.second;
    EXPECT_NE(listed.second.find("lab\tconfidential-symmetric"), std::string::npos) << listed.second;
    EXPECT_EQ(listed.second.find(kSecret), std::string::npos) << "the secret is not kept";

    ServerOptions options;
    options.db = db_;
    options.extra_args = {"--auth", "smart", "--data-dir", (dir_->path() / "data").string()};
    server_ = new TestServer(options);
    client_ = new HttpClient(server_->base_url());
    origin_ = server_->base_url().substr(0, server_->base_url().size() - 5);
    token_url_ = origin_ + "/auth/token";

    // Data, written with the admin client's token.
    std::string admin = token_for(*rs_, "admin", "system/*.cruds");
    ASSERT_FALSE(admin.empty());
    auto auth = bearer(admin);
    auth.emplace_back("Content-Type", "application/fhir+json");
    for (
        auto [target, body] :
        {std::pair{"/fhir/Patient/p1", R"({"resourceType":"Patient","id":"p1","name":[{"family":"Ames"}]})"},
         std::pair{
             "/fhir/Observation/o1",
             R"({"resourceType":"Observation","id":"o1","status":"final","code":{"text":"hb"},"subject":{"reference":"Patient/p1"}})"},
         std::pair{
             "/fhir/Encounter/e1",
             R"({"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}})"}}) {
      auto r = client_->put(target, body, auth);
      ASSERT_EQ(r.status, 201) << r.summary();
    }
  }
  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    delete es_;
    delete rs_;
    delete dir_;
  }

  static HeaderList bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

  static Response token_request(const std::string& assertion, const std::string& scope) {
    std::string form = "grant_type=client_credentials&scope=" + url_encode(scope) + "&client_assertion_type=" +
                       url_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") +
                       "&client_assertion=" + assertion;
    return client_->post("/auth/token", form, {{"Content-Type", "application/x-www-form-urlencoded"}});
  }
  static AssertionClaims claims_for(const std::string& client_id) {
    return {client_id, client_id, token_url_, random_jti(), now_s() + 240};
  }
  static std::string token_for(const ClientKey& key, const std::string& client_id, const std::string& scope) {
    auto r = token_request(sign_assertion(key, claims_for(client_id)), scope);
    EXPECT_EQ(r.status, 200) << r.summary();
    auto body = r.json();
    return body ? string_at(*body, "access_token") : std::string();
  }

  static TempDir* dir_;
  static std::string db_, origin_, token_url_;
  static ClientKey *es_, *rs_;
  static TestServer* server_;
  static HttpClient* client_;
};
TempDir* SmartTest::dir_ = nullptr;
std::string SmartTest::db_, SmartTest::origin_, SmartTest::token_url_;
ClientKey* SmartTest::es_ = nullptr;
ClientKey* SmartTest::rs_ = nullptr;
TestServer* SmartTest::server_ = nullptr;
HttpClient* SmartTest::client_ = nullptr;

std::vector<std::string> strings_at(const json::Value& v, std::string_view path) {
  std::vector<std::string> out;
  if (const json::Value* a = find_path(v, path); a != nullptr && a->is_array())
    for (const json::Value& s : a->items()) out.push_back(s.text());
  return out;
}

TEST_F(SmartTest, DiscoveryNamesEveryEndpoint) {
  auto r = client_->get("/fhir/.well-known/smart-configuration");
  ASSERT_EQ(r.status, 200) << r.summary();
  auto c = *r.json();
  EXPECT_EQ(string_at(c, "token_endpoint"), token_url_);
  EXPECT_EQ(string_at(c, "jwks_uri"), origin_ + "/auth/jwks");
  EXPECT_EQ(string_at(c, "introspection_endpoint"), origin_ + "/auth/introspect");
  EXPECT_EQ(string_at(c, "revocation_endpoint"), origin_ + "/auth/revoke");
  EXPECT_EQ(strings_at(c, "code_challenge_methods_supported"), std::vector<std::string>{"S256"});
  EXPECT_EQ(strings_at(c, "grant_types_supported"),
            (std::vector<std::string>{"authorization_code", "refresh_token", "client_credentials"}));
  auto methods = strings_at(c, "token_endpoint_auth_methods_supported");
  EXPECT_NE(std::find(methods.begin(), methods.end(), "private_key_jwt"), methods.end());
  auto algs = strings_at(c, "token_endpoint_auth_signing_alg_values_supported");
  for (const char* alg : {"RS384", "ES384"}) EXPECT_NE(std::find(algs.begin(), algs.end(), alg), algs.end()) << alg;
  auto caps = strings_at(c, "capabilities");
  EXPECT_NE(std::find(caps.begin(), caps.end(), "client-confidential-asymmetric"), caps.end());

  auto oidc = client_->get("/.well-known/openid-configuration");
  ASSERT_EQ(oidc.status, 200);
  EXPECT_EQ(string_at(*oidc.json(), "issuer"), origin_);
  EXPECT_EQ(string_at(*oidc.json(), "token_endpoint"), token_url_);

  // The CapabilityStatement, readable without a token, says where to get one.
  auto meta = client_->get("/fhir/metadata");
  ASSERT_EQ(meta.status, 200) << meta.summary();
  auto m = *meta.json();
  EXPECT_EQ(string_at(m, "rest[0].security.service[0].coding[0].code"), "SMART-on-FHIR");
  EXPECT_EQ(string_at(m, "rest[0].security.extension[0].url"),
            "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
  EXPECT_EQ(string_at(m, "rest[0].security.extension[0].extension[0].url"), "token");
  EXPECT_EQ(string_at(m, "rest[0].security.extension[0].extension[0].valueUri"), token_url_);
}

TEST_F(SmartTest, BackendServicesTokenIsGrantedTheAllowedSystemScopesOnly) {
  // Encounter is not allowed to this client: left out; Observation.rs is covered by its Observation.read.
  auto r = token_request(sign_assertion(*es_, claims_for("backend")),
                         "system/Patient.rs system/Observation.rs system/Encounter.rs");
  ASSERT_EQ(r.status, 200) << r.summary();
  auto body = *r.json();
  EXPECT_EQ(string_at(body, "token_type"), "bearer");
  EXPECT_EQ(string_at(body, "scope"), "system/Patient.rs system/Observation.rs");
  EXPECT_EQ(string_at(body, "expires_in"), "300");
  EXPECT_EQ(r.header("Cache-Control"), "no-store");
  std::string token = string_at(body, "access_token");

  auto read = client_->get("/fhir/Patient/p1", bearer(token));
  ASSERT_EQ(read.status, 200) << read.summary();
  EXPECT_EQ(string_at(*read.json(), "name[0].family"), "Ames");
  auto search = client_->get("/fhir/Observation?subject=Patient/p1", bearer(token));
  ASSERT_EQ(search.status, 200) << search.summary();
  EXPECT_EQ(entry_refs(search), std::set<std::string>{"Observation/o1"});

  // No allowed scope at all: invalid_scope. A granular scope within an allowed one is granted (and enforced:
  // smart_scope_test.cpp).
  auto none = token_request(sign_assertion(*es_, claims_for("backend")), "system/Encounter.rs");
  EXPECT_EQ(none.status, 400) << none.summary();
  EXPECT_EQ(string_at(*none.json(), "error"), "invalid_scope");
  auto granular =
      token_request(sign_assertion(*es_, claims_for("backend")), "system/Observation.rs?category=laboratory");
  EXPECT_EQ(granular.status, 200) << granular.summary();
  EXPECT_EQ(string_at(*granular.json(), "scope"), "system/Observation.rs?category=laboratory");
  // user/ scopes are not granted to a backend.
  auto user = token_request(sign_assertion(*es_, claims_for("backend")), "user/Patient.rs");
  EXPECT_EQ(user.status, 400) << user.summary();
}

TEST_F(SmartTest, AssertionsAreCheckedAndNeverReplayed) {
  std::string assertion = sign_assertion(*es_, claims_for("backend"));
  ASSERT_EQ(token_request(assertion, "system/Patient.rs").status, 200);
  auto replay = token_request(assertion, "system/Patient.rs");
  EXPECT_EQ(replay.status, 401) << replay.summary();
  EXPECT_EQ(string_at(*replay.json(), "error"), "invalid_client");
  EXPECT_NE(string_at(*replay.json(), "error_description").find("jti"), std::string::npos);

  AssertionClaims expired = claims_for("backend");
  expired.exp = now_s() - 5;
  EXPECT_EQ(token_request(sign_assertion(*es_, expired), "system/Patient.rs").status, 401);
  AssertionClaims too_long = claims_for("backend");
  too_long.exp = now_s() + 600;  // more than 5 minutes ahead
  EXPECT_EQ(token_request(sign_assertion(*es_, too_long), "system/Patient.rs").status, 401);
  AssertionClaims wrong_aud = claims_for("backend");
  wrong_aud.aud = server_->base_url();
  auto aud = token_request(sign_assertion(*es_, wrong_aud), "system/Patient.rs");
  EXPECT_EQ(aud.status, 401) << aud.summary();
  EXPECT_NE(string_at(*aud.json(), "error_description").find("aud"), std::string::npos);
  AssertionClaims other_sub = claims_for("backend");
  other_sub.sub = "admin";
  EXPECT_EQ(token_request(sign_assertion(*es_, other_sub), "system/Patient.rs").status, 401);
  // Signed by a key that is not the client's (same kid), and claiming to be another client.
  ClientKey stranger = make_client_key("ES384", "es-key-1");
  EXPECT_EQ(token_request(sign_assertion(stranger, claims_for("backend")), "system/Patient.rs").status, 401);
  EXPECT_EQ(token_request(sign_assertion(*es_, claims_for("admin")), "system/Patient.rs").status, 401);
  // alg none.
  std::string none = b64url(R"({"alg":"none","typ":"JWT"})") + "." +
                     b64url(R"({"iss":"backend","sub":"backend","aud":")" + token_url_ + R"(","jti":")" + random_jti() +
                            R"(","exp":)" + std::to_string(now_s() + 60) + "}") +
                     ".";
  EXPECT_EQ(token_request(none, "system/Patient.rs").status, 401);
  // The RS384 client.
  EXPECT_FALSE(token_for(*rs_, "admin", "system/Patient.rs").empty());
}

TEST_F(SmartTest, ClientSecretBasic) {
  auto form = "grant_type=client_credentials&scope=" + url_encode("system/Observation.rs");
  std::string good = b64url(std::string("lab:") + kSecret);
  for (char& c : good) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (good.size() % 4 != 0) good += '=';
  auto r = client_->post("/auth/token", form,
                         {{"Content-Type", "application/x-www-form-urlencoded"}, {"Authorization", "Basic " + good}});
  ASSERT_EQ(r.status, 200) << r.summary();
  EXPECT_EQ(string_at(*r.json(), "scope"), "system/Observation.rs");
  std::string bad = b64url("lab:wrong-secret-0000000");
  auto refused = client_->post(
      "/auth/token", form, {{"Content-Type", "application/x-www-form-urlencoded"}, {"Authorization", "Basic " + bad}});
  EXPECT_EQ(refused.status, 401) << refused.summary();
  EXPECT_EQ(string_at(*refused.json(), "error"), "invalid_client");
  auto anonymous = client_->post("/auth/token", form, {{"Content-Type", "application/x-www-form-urlencoded"}});
  EXPECT_EQ(anonymous.status, 401);
}

TEST_F(SmartTest, NoTokenOrABadOneIs401) {
  auto none = client_->get("/fhir/Patient/p1");
  EXPECT_EQ(none.status, 401) << none.summary();
  EXPECT_TRUE(none.header("WWW-Authenticate").starts_with("Bearer realm=")) << none.header("WWW-Authenticate");
  EXPECT_EQ(string_at(*none.json(), "resourceType"), "OperationOutcome");
  auto garbage = client_->get("/fhir/Patient/p1", bearer("not.a.token"));
  EXPECT_EQ(garbage.status, 401);
  EXPECT_NE(garbage.header("WWW-Authenticate").find("error=\"invalid_token\""), std::string::npos);
  // A token whose signature was tampered with.
  std::string token = token_for(*es_, "backend", "system/Patient.rs");
  std::string forged = token.substr(0, token.rfind('.') + 1) + b64url(std::string(64, 'x'));
  EXPECT_EQ(client_->get("/fhir/Patient/p1", bearer(forged)).status, 401);
  // Search, writes and Bundles need one too.
  EXPECT_EQ(client_->get("/fhir/Patient").status, 401);
  EXPECT_EQ(client_->post("/fhir", R"({"resourceType":"Bundle","type":"batch"})").status, 401);
}

TEST_F(SmartTest, ScopesAreEnforcedOnEveryInteractionAndEverySideDoor) {
  std::string token = token_for(*es_, "backend", "system/Patient.rs system/Observation.rs");
  auto t = bearer(token);
  auto expect_403 = [&](const Response& r, const std::string& expression) {
    EXPECT_EQ(r.status, 403) << r.summary();
    auto body = r.json();
    ASSERT_TRUE(body);
    EXPECT_EQ(string_at(*body, "issue[0].code"), "forbidden");
    if (!expression.empty()) EXPECT_EQ(string_at(*body, "issue[0].expression[0]"), expression) << r.summary();
  };
  // Allowed: the types of the token, also reached through _include and chains.
  auto inc = client_->get("/fhir/Observation?_include=Observation:subject:Patient", t);
  ASSERT_EQ(inc.status, 200) << inc.summary();
  EXPECT_EQ(entry_refs(inc), (std::set<std::string>{"Observation/o1", "Patient/p1"}));
  auto chain = client_->get("/fhir/Observation?subject:Patient.family=Ames", t);
  ASSERT_EQ(chain.status, 200) << chain.summary();
  EXPECT_EQ(entry_refs(chain), std::set<std::string>{"Observation/o1"});
  auto comp = client_->get("/fhir/Patient/p1/Observation", t);
  ASSERT_EQ(comp.status, 200) << comp.summary();
  EXPECT_EQ(entry_refs(comp), std::set<std::string>{"Observation/o1"});

  // Refused: another type, directly or through a side door.
  expect_403(client_->get("/fhir/Encounter/e1", t), "Encounter");
  expect_403(client_->get("/fhir/Encounter", t), "Encounter");
  expect_403(client_->get("/fhir/Patient?_revinclude=Encounter:subject", t), "_revinclude");
  expect_403(client_->get("/fhir/Encounter?_include=Encounter:subject", t), "Encounter");
  expect_403(client_->get("/fhir/Patient?_has:Encounter:subject:status=finished", t), "_has:Encounter");
  expect_403(client_->get("/fhir/Encounter/e1/_history", t), "Encounter history");
  expect_403(client_->get("/fhir/?_type=Patient,Encounter", t), "_type");
  expect_403(client_->get("/fhir/_history", t), "_history");
  expect_403(client_->get("/fhir/Patient/p1/Encounter", t), "Encounter");
  expect_403(client_->get("/fhir/Patient/p1/*", t), "");
  // The subject of an Observation may be a Group or a Device...: an include without a type reaches them all.
  expect_403(client_->get("/fhir/Observation?_include=Observation:subject", t), "_include");
  expect_403(client_->get("/fhir/Observation?encounter:Encounter.status=finished", t),
             "encounter:Encounter.status");  // a chain
  // Writes: not in the token.
  expect_403(client_->put("/fhir/Patient/p1", R"({"resourceType":"Patient","id":"p1"})", t), "Patient");
  expect_403(client_->del("/fhir/Observation/o1", t), "Observation");
  expect_403(
      client_->post("/fhir/Observation", R"({"resourceType":"Observation","status":"final","code":{"text":"x"}})", t),
      "Observation");

  // Bundles: every entry is checked; one that is not allowed refuses the Bundle, and nothing is written.
  auto batch = client_->post("/fhir", R"({"resourceType":"Bundle","type":"batch","entry":[
      {"request":{"method":"GET","url":"Patient/p1"}},
      {"request":{"method":"GET","url":"Encounter/e1"}}]})",
                             t);
  expect_403(batch, "Bundle.entry[1].request (Encounter)");
  auto include_entry = client_->post("/fhir", R"({"resourceType":"Bundle","type":"batch","entry":[
      {"request":{"method":"GET","url":"Patient?_revinclude=Encounter:subject"}}]})",
                                     t);
  expect_403(include_entry, "Bundle.entry[0].request (_revinclude)");
  auto transaction = client_->post("/fhir", R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"resource":{"resourceType":"Observation","status":"final","code":{"text":"y"}},
       "request":{"method":"POST","url":"Observation"}}]})",
                                   t);
  expect_403(transaction, "Bundle.entry[0].request (Observation)");
  auto allowed = client_->post("/fhir", R"({"resourceType":"Bundle","type":"batch","entry":[
      {"request":{"method":"GET","url":"Patient/p1"}},
      {"request":{"method":"GET","url":"Observation?_include=Observation:subject:Patient"}}]})",
                               t);
  ASSERT_EQ(allowed.status, 200) << allowed.summary();
  EXPECT_EQ(string_at(*allowed.json(), "entry[0].response.status").substr(0, 3), "200");
  EXPECT_EQ(size_at(*allowed.json(), "entry[1].resource.entry"), 2u) << allowed.summary(2000);

  // A conditional reference in a transaction searches its type.
  std::string writer = token_for(*es_, "backend", "system/Observation.c");
  expect_403(client_->post("/fhir", R"({"resourceType":"Bundle","type":"transaction","entry":[
      {"resource":{"resourceType":"Observation","status":"final","code":{"text":"y"},
                   "subject":{"reference":"Patient?family=Ames"}},
       "request":{"method":"POST","url":"Observation"}}]})",
                           bearer(writer)),
             "Bundle.entry[0].resource (Patient?family=Ames)");
  auto created = client_->post(
      "/fhir/Observation", R"({"resourceType":"Observation","status":"final","code":{"text":"z"}})", bearer(writer));
  EXPECT_EQ(created.status, 201) << created.summary();
}

TEST_F(SmartTest, IntrospectionAndRevocation) {
  std::string a = token_for(*es_, "backend", "system/Patient.rs");
  std::string b = token_for(*es_, "backend", "system/Observation.rs");
  HeaderList form = {{"Content-Type", "application/x-www-form-urlencoded"}};
  auto with = [&](const std::string& token) {
    HeaderList h = bearer(token);
    h.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    return h;
  };
  auto active = client_->post("/auth/introspect", "token=" + a, with(b));
  ASSERT_EQ(active.status, 200) << active.summary();
  auto info = *active.json();
  ASSERT_NE(find_path(info, "active"), nullptr) << active.summary();
  EXPECT_TRUE(find_path(info, "active")->as_bool());
  EXPECT_EQ(string_at(info, "client_id"), "backend");
  EXPECT_EQ(string_at(info, "scope"), "system/Patient.rs");
  EXPECT_EQ(std::stoll(string_at(info, "exp")) - std::stoll(string_at(info, "iat")), 300);
  EXPECT_EQ(client_->post("/auth/introspect", "token=" + a, form).status, 401) << "the caller authenticates";

  ASSERT_EQ(client_->get("/fhir/Patient/p1", bearer(a)).status, 200);
  auto revoked = client_->post("/auth/revoke", "token=" + a, with(a));
  EXPECT_EQ(revoked.status, 200) << revoked.summary();
  auto after = client_->get("/fhir/Patient/p1", bearer(a));
  EXPECT_EQ(after.status, 401) << after.summary();
  EXPECT_NE(after.header("WWW-Authenticate").find("revoked"), std::string::npos);
  auto inactive = client_->post("/auth/introspect", "token=" + a, with(b));
  ASSERT_EQ(inactive.status, 200);
  EXPECT_EQ(json::write(*inactive.json()), R"({"active":false})");
  EXPECT_EQ(client_->post("/auth/introspect", "token=garbage", with(b)).body, R"({"active":false})");
  // The other token still works; a revoked token cannot authenticate anything.
  EXPECT_EQ(client_->get("/fhir/Observation/o1", bearer(b)).status, 200);
  EXPECT_EQ(client_->post("/auth/revoke", "token=" + b, with(a)).status, 401);
  EXPECT_EQ(client_->get("/fhir/Observation/o1", bearer(b)).status, 200);
}

// ES256 from the JWKS, checked with OpenSSL alone (not the server's code): r||s made DER for EVP_DigestVerify.
bool verify_es256(const json::Value& jwk, const std::string& token) {
  std::string x = unb64url(string_at(jwk, "x")), y = unb64url(string_at(jwk, "y"));
  std::string point = "\x04" + x + y;
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
  OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* key = nullptr;
  EVP_PKEY_fromdata_init(ctx);
  EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
  std::string signing_input = token.substr(0, token.rfind('.'));
  std::string sig = unb64url(token.substr(token.rfind('.') + 1));
  bool ok = false;
  if (key != nullptr && sig.size() == 64) {
    ECDSA_SIG* es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), 32, nullptr),
                   BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + 32, 32, nullptr));
    unsigned char* der = nullptr;
    int der_len = i2d_ECDSA_SIG(es, &der);
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    ok = EVP_DigestVerifyInit(md, nullptr, EVP_sha256(), nullptr, key) == 1 &&
         EVP_DigestVerify(md, der, static_cast<size_t>(der_len),
                          reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
  }
  EVP_PKEY_free(key);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  return ok;
}

TEST_F(SmartTest, TheJwksVerifiesTheAccessToken) {
  std::string token = token_for(*es_, "backend", "system/Patient.rs");
  auto header = *parse_json(unb64url(token.substr(0, token.find('.'))));
  auto claims = *parse_json(unb64url(token.substr(token.find('.') + 1, token.rfind('.') - token.find('.') - 1)));
  EXPECT_EQ(string_at(header, "alg"), "ES256");
  EXPECT_EQ(string_at(claims, "client_id"), "backend");
  EXPECT_EQ(string_at(claims, "scope"), "system/Patient.rs");
  EXPECT_EQ(string_at(claims, "aud"), server_->base_url());
  EXPECT_EQ(string_at(claims, "iss"), origin_);
  EXPECT_FALSE(string_at(claims, "jti").empty());
  EXPECT_EQ(std::stoll(string_at(claims, "exp")) - std::stoll(string_at(claims, "iat")), 300);

  auto jwks = client_->get("/auth/jwks");
  ASSERT_EQ(jwks.status, 200) << jwks.summary();
  const json::Value set = *jwks.json();
  const json::Value* keys = find_path(set, "keys");
  ASSERT_TRUE(keys != nullptr && keys->is_array());
  const json::Value* match = nullptr;
  for (const json::Value& k : keys->items())
    if (string_at(k, "kid") == string_at(header, "kid")) match = &k;
  ASSERT_NE(match, nullptr) << "the token's kid is published: " << json::write(header) << " " << jwks.body;
  EXPECT_EQ(string_at(*match, "crv"), "P-256");
  EXPECT_TRUE(verify_es256(*match, token));
  std::string tampered = token;
  tampered[tampered.find('.') + 5] ^= 1;
  EXPECT_FALSE(verify_es256(*match, tampered));
}

TEST(SmartKeyRotation, OldKeysStayPublishedAndNewTokensUseTheNewKey) {
  TempDir dir("smart-rotate");
  std::string data = (dir.path() / "data").string();
  std::string db = "sqlite:" + (dir.path() / "rotate.db").string();
  auto added = run_caduceus({"admin", "client", "add", "--db", db, "--id", "lab", "--type", "confidential-symmetric",
                             "--secret", kSecret, "--scope", "system/Observation.rs"});
  ASSERT_EQ(added.first, 0) << added.second;
  ServerOptions options;
  options.db = db;
  options.extra_args = {"--auth", "smart", "--data-dir", data};
  TestServer server(options);
  HttpClient client(server.base_url());
  // The kid in the header of a token the server issues now (client_secret_basic).
  auto issued_kid = [&]() {
    std::string basic = b64url(std::string("lab:") + kSecret);
    for (char& c : basic) c = c == '-' ? '+' : c == '_' ? '/' : c;
    while (basic.size() % 4 != 0) basic += '=';
    auto r = client.post("/auth/token", "grant_type=client_credentials&scope=" + url_encode("system/Observation.rs"),
                         {{"Content-Type", "application/x-www-form-urlencoded"}, {"Authorization", "Basic " + basic}});
    EXPECT_EQ(r.status, 200) << r.summary();
    auto body = r.json();
    std::string token = body ? string_at(*body, "access_token") : std::string();
    auto header = parse_json(unb64url(token.substr(0, token.find('.'))));
    return header ? std::pair{string_at(*header, "kid"), string_at(*header, "alg")}
                  : std::pair<std::string, std::string>{};
  };
  auto before = client.get("/auth/jwks");
  ASSERT_EQ(before.status, 200);
  ASSERT_EQ(size_at(*before.json(), "keys"), 1u);
  std::string old_kid = string_at(*before.json(), "keys[0].kid");
  EXPECT_EQ(issued_kid(), (std::pair<std::string, std::string>{old_kid, "ES256"}));
  server.stop();
  auto rotated = run_caduceus({"admin", "key", "rotate", "--alg", "RS256", "--data-dir", data});
  ASSERT_EQ(rotated.first, 0) << rotated.second;
  auto listed = run_caduceus({"admin", "key", "list", "--data-dir", data});
  EXPECT_NE(listed.second.find("  " + old_kid + " ES256"), std::string::npos) << listed.second;
  EXPECT_NE(listed.second.find("* "), std::string::npos) << listed.second;
  server.restart();
  client.reconnect_to(server.host(), server.port());
  auto after = client.get("/auth/jwks");
  ASSERT_EQ(size_at(*after.json(), "keys"), 2u) << after.body;
  std::set<std::string> kinds{string_at(*after.json(), "keys[0].kty"), string_at(*after.json(), "keys[1].kty")};
  EXPECT_EQ(kinds, (std::set<std::string>{"EC", "RSA"}));
  EXPECT_NE(after.body.find(old_kid), std::string::npos);
  // Tokens are now signed by the new RS256 key, whose kid is the other one published.
  std::string new_kid = string_at(*after.json(), "keys[0].kid") == old_kid ? string_at(*after.json(), "keys[1].kid")
                                                                           : string_at(*after.json(), "keys[0].kid");
  EXPECT_NE(new_kid, old_kid);
  EXPECT_EQ(issued_kid(), (std::pair<std::string, std::string>{new_kid, "RS256"}));
  EXPECT_NE(run_caduceus({"admin", "key", "remove", "--data-dir", data, "nope"}).first, 0);
}

// --auth off is for development: only on a loopback address.
TEST(SmartAuthOff, RefusesANonLoopbackAddress) {
  for (const char* listen : {"0.0.0.0:0", "[::]:0", "192.0.2.1:0"}) {
    auto refused = run_caduceus({"serve", "--listen", listen, "--db", "sqlite::memory:", "--auth", "off"});
    EXPECT_NE(refused.first, 0) << listen;
    EXPECT_NE(refused.second.find("--auth off opens the FHIR API to anyone"), std::string::npos)
        << listen << ": " << refused.second;
    EXPECT_NE(refused.second.find(std::string("to listen on ") + listen + ", start with --auth smart"),
              std::string::npos)
        << refused.second;
  }
}

}  // namespace
}  // namespace caduceus::test
