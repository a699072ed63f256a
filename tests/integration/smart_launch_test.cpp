// SMART App Launch over HTTP with the real binary: the authorization-code flow with PKCE through the server-rendered
// sign-in pages (a small form reader here), standalone and EHR launches, the patient picker, TOTP enrolment and
// codes, consent, code and refresh-token rules, the id_token checked against the JWKS with libjwt, and discovery.
#include <gtest/gtest.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <fstream>
#include <map>
#include <regex>

#include "caduceus/fhir/json.hpp"
#include "caduceus/server/auth/credentials.hpp"
#include "caduceus/server/auth/keys.hpp"
#include "client_keys.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

namespace json = fhir::json;

constexpr const char* kPassword = "correct horse battery";
constexpr const char* kRedirect = "https://app.example/callback";
constexpr const char* kSecret = "a-client-secret-long-enough";

std::string sha256(const std::string& s) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), n);
}
std::string random_verifier() {
  unsigned char raw[32];
  RAND_bytes(raw, sizeof raw);
  return b64url(std::string(reinterpret_cast<char*>(raw), sizeof raw));  // 43 characters
}
std::string str(const json::Value& v, std::string_view name) {
  const json::Value* f = v.find(name);
  return f != nullptr && f->is_string() ? f->text() : std::string("<absent>");
}
// The claims of a JWT, read without checking it.
json::Value claims_of(const std::string& jwt) {
  auto first = jwt.find('.'), second = jwt.find('.', first + 1);
  auto parsed = json::parse(unb64url(jwt.substr(first + 1, second - first - 1)));
  return parsed ? *parsed : json::Value::object();
}
// The decoded query parameters of a URL.
std::map<std::string, std::string> query_of(const std::string& url) {
  std::map<std::string, std::string> out;
  auto q = url.find('?');
  if (q == std::string::npos) return out;
  std::string rest = url.substr(q + 1);
  for (std::size_t start = 0; start <= rest.size();) {
    auto amp = rest.find('&', start);
    if (amp == std::string::npos) amp = rest.size();
    std::string item = rest.substr(start, amp - start);
    auto eq = item.find('=');
    auto decode = [](std::string s) {
      std::string o;
      for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size()) {
          o += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
          i += 2;
        } else {
          o += s[i] == '+' ? ' ' : s[i];
        }
      }
      return o;
    };
    if (!item.empty()) out[decode(item.substr(0, eq))] = eq == std::string::npos ? "" : decode(item.substr(eq + 1));
    start = amp + 1;
  }
  return out;
}

// What a sign-in page offers: its form's hidden fields, the html lang, the step.
struct Page {
  int status = 0;
  std::string body, lang;
  std::map<std::string, std::string> hidden;
  std::string step() const { return hidden.contains("step") ? hidden.at("step") : ""; }
};
Page read_page(const Response& r) {
  Page p;
  p.status = r.status;
  p.body = r.body;
  std::smatch m;
  if (std::regex_search(r.body, m, std::regex("<html lang=\"([a-z]+)\">"))) p.lang = m[1];
  static const std::regex hidden("<input type=\"hidden\" name=\"([a-z_]+)\" value=\"([^\"]*)\">");
  for (auto it = std::sregex_iterator(r.body.begin(), r.body.end(), hidden); it != std::sregex_iterator(); ++it)
    p.hidden[(*it)[1]] = (*it)[2];
  return p;
}

std::string form(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [k, v] : fields) out += (out.empty() ? "" : "&") + url_encode(k) + "=" + url_encode(v);
  return out;
}

struct AuthRequest {
  std::string client_id = "app";
  std::string redirect_uri = kRedirect;
  std::string scope = "openid fhirUser launch/patient patient/*.rs offline_access";
  std::string state = "st-123";
  std::string aud;  // the FHIR base when empty
  std::string verifier = random_verifier();
  std::string method = "S256";
  bool pkce = true;
  std::string launch, nonce;
};

// One browser: a connection and the sign-in cookie.
class Browser {
 public:
  explicit Browser(const std::string& base) : http_(base) {}

  Response get(const std::string& target, HeaderList headers = {}) {
    add_cookie(headers);
    Response r = http_.get(target, headers);
    keep_cookie(r);
    return r;
  }
  Response post_form(const std::string& target, const std::string& body, HeaderList headers = {}) {
    add_cookie(headers);
    headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    Response r = http_.post(target, body, headers);
    keep_cookie(r);
    return r;
  }
  // Submits the form of `page` with its hidden fields and `fields`.
  Response submit(const Page& page, const std::vector<std::pair<std::string, std::string>>& fields) {
    std::vector<std::pair<std::string, std::string>> all(page.hidden.begin(), page.hidden.end());
    all.insert(all.end(), fields.begin(), fields.end());
    return post_form("/auth/authorize", form(all));
  }
  std::string cookie;

 private:
  void add_cookie(HeaderList& headers) const {
    if (!cookie.empty()) headers.emplace_back("Cookie", cookie);
  }
  void keep_cookie(const Response& r) {
    std::string set = r.header("Set-Cookie");
    if (set.empty()) return;
    std::string pair = set.substr(0, set.find(';'));
    cookie = pair.ends_with("=") ? "" : pair;
  }
  HttpClient http_;
};

class SmartLaunchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("smart-launch-test");
    db_ = "sqlite:" + (dir_->path() / "launch.db").string();
    {
      std::ofstream ndjson(dir_->path() / "people.ndjson");
      ndjson << R"({"resourceType":"Patient","id":"p1","name":[{"given":["Alice"],"family":"Ames"}]})"
             << "\n"
             << R"({"resourceType":"Patient","id":"p2","name":[{"given":["Bob"],"family":"Brown"}]})"
             << "\n"
             << R"({"resourceType":"Practitioner","id":"pr1","name":[{"family":"House"}]})"
             << "\n"
             << R"({"resourceType":"Practitioner","id":"pr2","name":[{"family":"Wilson"}]})"
             << "\n"
             << R"({"resourceType":"Practitioner","id":"pr3","name":[{"family":"Cuddy"}]})"
             << "\n"
             << R"({"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},)"
             << R"("subject":{"reference":"Patient/p1"}})"
             << "\n";
      std::ofstream(dir_->path() / "password.txt") << kPassword << "\n";
    }
    run({"import", "--db", db_, (dir_->path() / "people.ndjson").string()});
    const std::string pw = (dir_->path() / "password.txt").string();
    run({"admin", "user", "add", "alice", "--role", "patient", "--fhir-user", "Patient/p1", "--password-file", pw,
         "--db", db_});
    for (auto [user, practitioner] : {std::pair{"house", "pr1"}, std::pair{"wilson", "pr2"}, std::pair{"cuddy", "pr3"}})
      run({"admin", "user", "add", user, "--role", "physician", "--fhir-user",
           std::string("Practitioner/") + practitioner, "--password-file", pw, "--db", db_});
    // bob must choose a new password at his first sign-in; dave is the one who gets locked out.
    run({"admin", "user", "add", "bob", "--role", "patient", "--fhir-user", "Patient/p2", "--password-file", pw,
         "--must-change-password", "--db", db_});
    run({"admin", "user", "add", "dave", "--role", "patient", "--fhir-user", "Patient/p2", "--password-file", pw,
         "--db", db_});
    const std::vector<std::string> user_scopes = {
        "--scope", "openid fhirUser launch launch/patient launch/encounter offline_access online_access", "--scope",
        "patient/*.rs user/*.rs"};
    std::vector<std::string> app = {
        "admin",  "client", "add",          "--db",           db_,      "--id", "app", "--type",
        "public", "--name", "Health Diary", "--redirect-uri", kRedirect};
    app.insert(app.end(), user_scopes.begin(), user_scopes.end());
    run(app);
    std::vector<std::string> conf = {"admin",    "client", "add",
                                     "--db",     db_,      "--id",
                                     "conf",     "--type", "confidential-symmetric",
                                     "--secret", kSecret,  "--redirect-uri",
                                     kRedirect};
    conf.insert(conf.end(), user_scopes.begin(), user_scopes.end());
    run(conf);
    run({"admin", "client", "add", "--db", db_, "--id", "ehr", "--type", "confidential-symmetric", "--secret", kSecret,
         "--scope", "system/Patient.rs"});

    ServerOptions options;
    options.db = db_;
    // The third failure in a row locks the account (no slow-down before it, so nothing here depends on time).
    options.extra_args = {"--auth", "smart", "--data-dir", (dir_->path() / "data").string(), "--signin-lock-after",
                          "3"};
    server_ = new TestServer(options);
    base_ = server_->base_url();
    origin_ = base_.substr(0, base_.size() - 5);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }

  static void run(const std::vector<std::string>& args) {
    std::string cmd = "'" + ServerOptions::default_binary() + "'";
    for (const std::string& a : args) cmd += " '" + a + "'";
    cmd += " > /dev/null 2>&1 < /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }

  static std::string authorize_target(const AuthRequest& a) {
    std::vector<std::pair<std::string, std::string>> q = {
        {"response_type", "code"}, {"client_id", a.client_id}, {"redirect_uri", a.redirect_uri},
        {"scope", a.scope},        {"state", a.state},         {"aud", a.aud.empty() ? base_ : a.aud}};
    if (a.pkce) {
      q.emplace_back("code_challenge", a.method == "S256" ? b64url(sha256(a.verifier)) : a.verifier);
      if (!a.method.empty()) q.emplace_back("code_challenge_method", a.method);
    }
    if (!a.launch.empty()) q.emplace_back("launch", a.launch);
    if (!a.nonce.empty()) q.emplace_back("nonce", a.nonce);
    return "/auth/authorize?" + form(q);
  }

  // Signs in with a password (and no second factor), approves, and returns the redirect's parameters.
  static std::map<std::string, std::string> approve_as(Browser& b, const AuthRequest& a, const std::string& user,
                                                       const std::string& patient = "") {
    Page login = read_page(b.get(authorize_target(a)));
    EXPECT_EQ(login.status, 200) << login.body;
    EXPECT_EQ(login.step(), "login");
    Page next = read_page(b.submit(login, {{"username", user}, {"password", kPassword}}));
    if (next.step() == "patient") next = read_page(b.submit(next, {{"patient", patient}}));
    EXPECT_EQ(next.step(), "consent") << next.body;
    Response done = b.submit(next, {{"decision", "approve"}});
    EXPECT_EQ(done.status, 302) << done.summary();
    std::string location = done.header("Location");
    EXPECT_TRUE(location.starts_with(std::string(kRedirect) + "?")) << location;
    return query_of(location);
  }

  static Response token(const std::vector<std::pair<std::string, std::string>>& fields, HeaderList headers = {}) {
    HttpClient http(base_);
    headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    return http.post("/auth/token", form(fields), headers);
  }
  static Response exchange(const std::string& code, const AuthRequest& a) {
    return token({{"grant_type", "authorization_code"},
                  {"code", code},
                  {"redirect_uri", a.redirect_uri},
                  {"client_id", a.client_id},
                  {"code_verifier", a.verifier}});
  }
  static std::string error_of(const Response& r) {
    auto j = r.json();
    return j ? str(*j, "error") : "<not json>";
  }

  // A TOTP code of a base32 secret for the time now + `ahead` seconds.
  static std::string totp(const std::string& base32, int ahead) {
    auto raw = server::auth::base32_decode(base32);
    auto code = server::auth::totp_code(*raw, std::time(nullptr) + ahead);
    return *code;
  }

  static TempDir* dir_;
  static std::string db_;
  static TestServer* server_;
  static std::string base_, origin_;
};
TempDir* SmartLaunchTest::dir_ = nullptr;
std::string SmartLaunchTest::db_;
TestServer* SmartLaunchTest::server_ = nullptr;
std::string SmartLaunchTest::base_;
std::string SmartLaunchTest::origin_;

TEST_F(SmartLaunchTest, DiscoveryAdvertisesTheAuthorizationCodeFlow) {
  HttpClient http(base_);
  auto r = http.get("/fhir/.well-known/smart-configuration");
  ASSERT_EQ(r.status, 200);
  auto c = r.json();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(str(*c, "authorization_endpoint"), origin_ + "/auth/authorize");
  EXPECT_EQ(str(*c, "token_endpoint"), origin_ + "/auth/token");
  EXPECT_EQ(json::write(*c->find("code_challenge_methods_supported")), R"(["S256"])");
  EXPECT_EQ(json::write(*c->find("response_types_supported")), R"(["code"])");
  EXPECT_EQ(json::write(*c->find("grant_types_supported")),
            R"(["authorization_code","refresh_token","client_credentials"])");
  std::string caps = json::write(*c->find("capabilities"));
  for (const char* cap :
       {"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric", "context-ehr-patient",
        "context-standalone-patient", "permission-offline", "sso-openid-connect", "permission-v1", "permission-v2"})
    EXPECT_NE(caps.find(std::string("\"") + cap + "\""), std::string::npos) << cap << " in " << caps;
  auto oidc = http.get("/.well-known/openid-configuration").json();
  ASSERT_TRUE(oidc.has_value());
  EXPECT_EQ(str(*oidc, "authorization_endpoint"), origin_ + "/auth/authorize");
  // The CapabilityStatement's oauth-uris name it too.
  auto meta = http.get("/fhir/metadata").json();
  ASSERT_TRUE(meta.has_value());
  std::string security = json::write(*meta->find("rest")->items().at(0).find("security"));
  EXPECT_NE(security.find(R"({"url":"authorize","valueUri":")" + origin_ + R"(/auth/authorize"})"), std::string::npos)
      << security;
}

TEST_F(SmartLaunchTest, StandaloneLaunchWithPkceForAPatient) {
  Browser b(base_);
  AuthRequest a;
  a.nonce = "n-42";
  Page login = read_page(b.get(authorize_target(a), {{"Accept-Language", "en-GB,en;q=0.8"}}));
  ASSERT_EQ(login.status, 200) << login.body;
  EXPECT_EQ(login.lang, "en");
  EXPECT_NE(login.body.find("<label for=\"username\">User name</label>"), std::string::npos) << login.body;
  EXPECT_NE(login.body.find("Health Diary"), std::string::npos);
  EXPECT_FALSE(b.cookie.empty());
  EXPECT_FALSE(login.hidden["csrf"].empty());
  // A patient signs in without a second factor; her own record is the patient context: straight to consent.
  Page consent = read_page(b.submit(login, {{"username", "alice"}, {"password", kPassword}}));
  ASSERT_EQ(consent.step(), "consent") << consent.body;
  EXPECT_NE(consent.body.find("Read and search all kinds of data of the patient&#39;s record"), std::string::npos)
      << consent.body;
  EXPECT_NE(consent.body.find("Alice Ames"), std::string::npos);
  Response done = b.submit(consent, {{"decision", "approve"}});
  ASSERT_EQ(done.status, 302) << done.summary();
  auto back = query_of(done.header("Location"));
  EXPECT_EQ(back["state"], "st-123");
  ASSERT_FALSE(back["code"].empty());

  Response t = exchange(back["code"], a);
  ASSERT_EQ(t.status, 200) << t.summary();
  EXPECT_EQ(t.header("Cache-Control"), "no-store");
  auto body = *t.json();
  EXPECT_EQ(str(body, "token_type"), "Bearer");
  EXPECT_EQ(json::write(*body.find("expires_in")), "3600");
  EXPECT_EQ(str(body, "scope"), "openid fhirUser launch/patient patient/*.rs offline_access");
  EXPECT_EQ(str(body, "patient"), "p1");
  EXPECT_EQ(json::write(*body.find("need_patient_banner")), "true");
  EXPECT_NE(str(body, "refresh_token"), "<absent>");
  json::Value claims = claims_of(str(body, "access_token"));
  EXPECT_EQ(str(claims, "client_id"), "app");
  EXPECT_EQ(str(claims, "sub"), "alice");
  EXPECT_EQ(str(claims, "fhirUser"), "Patient/p1");
  EXPECT_EQ(str(claims, "role"), "patient");
  EXPECT_EQ(str(claims, "patient"), "p1");
  EXPECT_EQ(str(claims, "scope"), "openid fhirUser launch/patient patient/*.rs offline_access");
  EXPECT_EQ(str(claims, "aud"), base_);
  EXPECT_NE(str(claims, "jti"), "<absent>");

  // The id_token: signed by a key of the JWKS (checked here with libjwt), for this client.
  std::string id_token = str(body, "id_token");
  HttpClient http(base_);
  auto jwks = http.get("/auth/jwks").json();
  ASSERT_TRUE(jwks.has_value());
  auto header = json::parse(unb64url(id_token.substr(0, id_token.find('.'))));
  ASSERT_TRUE(header.has_value());
  const json::Value* jwk = nullptr;
  for (const json::Value& k : jwks->find("keys")->items())
    if (str(k, "kid") == str(*header, "kid")) jwk = &k;
  ASSERT_NE(jwk, nullptr) << "the id_token's kid is in the JWKS";
  auto key = server::auth::key_from_jwk(*jwk);
  ASSERT_TRUE(key.has_value());
  auto pem = server::auth::public_pem(key->get());
  ASSERT_TRUE(pem.has_value());
  jwt_t* decoded = nullptr;
  ASSERT_EQ(jwt_decode(&decoded, id_token.c_str(), reinterpret_cast<const unsigned char*>(pem->data()),
                       static_cast<int>(pem->size())),
            0)
      << "the id_token's signature verifies with the published key";
  jwt_free(decoded);
  json::Value id = claims_of(id_token);
  EXPECT_EQ(str(id, "iss"), origin_);
  EXPECT_EQ(str(id, "sub"), "alice");
  EXPECT_EQ(str(id, "aud"), "app");
  EXPECT_EQ(str(id, "fhirUser"), base_ + "/Patient/p1");
  EXPECT_EQ(str(id, "nonce"), "n-42");
  EXPECT_NE(id.find("exp"), nullptr);
  EXPECT_NE(id.find("iat"), nullptr);

  // The access token is one of ours: introspection says active, with the user's claims.
  Response intro = http.post("/auth/introspect", "token=" + str(body, "access_token"),
                             {{"Content-Type", "application/x-www-form-urlencoded"},
                              {"Authorization", "Bearer " + str(body, "access_token")}});
  ASSERT_EQ(intro.status, 200) << intro.summary();
  EXPECT_EQ(json::write(*intro.json()->find("active")), "true");
  EXPECT_EQ(str(*intro.json(), "sub"), "alice");
}

TEST_F(SmartLaunchTest, PkceIsRequiredAndChecked) {
  Browser b(base_);
  // Missing or plain: refused at the authorization endpoint, back to the application with the state.
  AuthRequest missing;
  missing.pkce = false;
  Response r = b.get(authorize_target(missing));
  ASSERT_EQ(r.status, 302) << r.summary();
  auto q = query_of(r.header("Location"));
  EXPECT_EQ(q["error"], "invalid_request");
  EXPECT_EQ(q["state"], "st-123");
  AuthRequest plain;
  plain.method = "plain";
  r = b.get(authorize_target(plain));
  ASSERT_EQ(r.status, 302);
  q = query_of(r.header("Location"));
  EXPECT_EQ(q["error"], "invalid_request");
  EXPECT_EQ(q["error_description"], "code_challenge_method must be S256 (plain is refused)");
  AuthRequest no_method;
  no_method.method = "";
  r = b.get(authorize_target(no_method));
  ASSERT_EQ(r.status, 302);
  EXPECT_EQ(query_of(r.header("Location"))["error"], "invalid_request");

  // A wrong verifier, or none, at the token endpoint.
  AuthRequest a;
  auto back = approve_as(b, a, "alice");
  AuthRequest wrong = a;
  wrong.verifier = random_verifier();
  Response t = exchange(back["code"], wrong);
  EXPECT_EQ(t.status, 400) << t.summary();
  EXPECT_EQ(error_of(t), "invalid_grant");
  // (the code was consumed by that attempt: a second one with the right verifier is a reuse)
  Response again = exchange(back["code"], a);
  EXPECT_EQ(again.status, 400);
  EXPECT_EQ(error_of(again), "invalid_grant");

  auto back2 = approve_as(b, a, "alice");
  Response none = token({{"grant_type", "authorization_code"},
                         {"code", back2["code"]},
                         {"redirect_uri", kRedirect},
                         {"client_id", "app"}});
  EXPECT_EQ(none.status, 400);
  EXPECT_EQ(error_of(none), "invalid_request");
}

TEST_F(SmartLaunchTest, RedirectUriMustMatchExactlyAndUnknownClientsGetAPage) {
  Browser b(base_);
  for (std::string uri : {"https://app.example/callback/", "https://app.example/callback?x=1",
                          "https://evil.example/callback", "http://app.example/callback"}) {
    AuthRequest a;
    a.redirect_uri = uri;
    Response r = b.get(authorize_target(a));
    EXPECT_EQ(r.status, 400) << uri;
    EXPECT_EQ(r.header("Location"), "") << "never a redirect to " << uri;
    EXPECT_NE(r.body.find("redirect_uri is not one registered"), std::string::npos) << r.body;
  }
  AuthRequest unknown;
  unknown.client_id = "nobody";
  Response r = b.get(authorize_target(unknown));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.header("Location"), "");
  EXPECT_NE(r.body.find("Unknown application: nobody"), std::string::npos);
  // The token endpoint wants the same redirect_uri as the request.
  AuthRequest a;
  auto back = approve_as(b, a, "alice");
  AuthRequest other = a;
  other.redirect_uri = "https://app.example/other";
  Response t = exchange(back["code"], other);
  EXPECT_EQ(t.status, 400);
  EXPECT_EQ(error_of(t), "invalid_grant");
  // Wrong audience: back to the application.
  AuthRequest aud;
  aud.aud = "https://elsewhere.example/fhir";
  r = b.get(authorize_target(aud));
  ASSERT_EQ(r.status, 302);
  EXPECT_EQ(query_of(r.header("Location"))["error"], "invalid_request");
}

TEST_F(SmartLaunchTest, ACodeIsSingleUseAndBoundToItsClient) {
  Browser b(base_);
  AuthRequest a;
  auto back = approve_as(b, a, "alice");
  // Another client cannot redeem it (the confidential one authenticates properly).
  Response stolen = token({{"grant_type", "authorization_code"},
                           {"code", back["code"]},
                           {"redirect_uri", kRedirect},
                           {"code_verifier", a.verifier},
                           {"client_id", "conf"},
                           {"client_secret", kSecret}});
  EXPECT_EQ(stolen.status, 400);
  EXPECT_EQ(error_of(stolen), "invalid_grant");

  auto back2 = approve_as(b, a, "alice");
  Response first = exchange(back2["code"], a);
  ASSERT_EQ(first.status, 200) << first.summary();
  std::string refresh = str(*first.json(), "refresh_token");
  Response second = exchange(back2["code"], a);
  EXPECT_EQ(second.status, 400);
  EXPECT_EQ(error_of(second), "invalid_grant");
  // The reuse revoked what the code had given: its refresh token.
  Response refreshed = token({{"grant_type", "refresh_token"}, {"refresh_token", refresh}, {"client_id", "app"}});
  EXPECT_EQ(refreshed.status, 400);
  EXPECT_EQ(error_of(refreshed), "invalid_grant");

  // A confidential client must authenticate: its client_id alone is not enough.
  AuthRequest c;
  c.client_id = "conf";
  auto back3 = approve_as(b, c, "alice");
  Response unauthenticated = exchange(back3["code"], c);
  EXPECT_EQ(unauthenticated.status, 401);
  EXPECT_EQ(error_of(unauthenticated), "invalid_client");
  auto back4 = approve_as(b, c, "alice");
  std::string basic = b64url(std::string("conf:") + kSecret);
  for (char& ch : basic) ch = ch == '-' ? '+' : ch == '_' ? '/' : ch;
  while (basic.size() % 4 != 0) basic += '=';
  Response ok = token({{"grant_type", "authorization_code"},
                       {"code", back4["code"]},
                       {"redirect_uri", kRedirect},
                       {"code_verifier", c.verifier}},
                      {{"Authorization", "Basic " + basic}});
  ASSERT_EQ(ok.status, 200) << ok.summary();
  EXPECT_EQ(str(claims_of(str(*ok.json(), "access_token")), "client_id"), "conf");
}

TEST_F(SmartLaunchTest, RefreshTokensRotateAndAReuseRevokesTheFamily) {
  Browser b(base_);
  AuthRequest a;
  a.scope = "launch/patient patient/*.rs offline_access";
  auto back = approve_as(b, a, "alice");
  Response t = exchange(back["code"], a);
  ASSERT_EQ(t.status, 200) << t.summary();
  std::string r1 = str(*t.json(), "refresh_token");
  EXPECT_EQ(t.json()->find("id_token"), nullptr) << "no openid, no id_token";

  // (a public client need not name itself to refresh, as fhirclient does)
  Response t2 = token({{"grant_type", "refresh_token"}, {"refresh_token", r1}});
  ASSERT_EQ(t2.status, 200) << t2.summary();
  std::string r2 = str(*t2.json(), "refresh_token");
  EXPECT_NE(r2, r1) << "rotated";
  EXPECT_EQ(str(*t2.json(), "patient"), "p1");
  EXPECT_EQ(str(*t2.json(), "scope"), "launch/patient patient/*.rs offline_access");
  EXPECT_EQ(str(claims_of(str(*t2.json(), "access_token")), "sub"), "alice");

  // A narrower scope may be asked; a wider one not.
  Response wider = token({{"grant_type", "refresh_token"},
                          {"refresh_token", r2},
                          {"client_id", "app"},
                          {"scope", "user/*.rs offline_access"}});
  EXPECT_EQ(wider.status, 400);
  EXPECT_EQ(error_of(wider), "invalid_scope");
  // (a refused request leaves the token usable)
  Response t3 = token({{"grant_type", "refresh_token"},
                       {"refresh_token", r2},
                       {"client_id", "app"},
                       {"scope", "patient/*.rs offline_access"}});
  ASSERT_EQ(t3.status, 200) << t3.summary();
  EXPECT_EQ(str(*t3.json(), "scope"), "patient/*.rs offline_access");
  std::string r3 = str(*t3.json(), "refresh_token");

  // An old one again: refused, and the family is revoked (the newest one stops working too).
  Response reuse = token({{"grant_type", "refresh_token"}, {"refresh_token", r1}, {"client_id", "app"}});
  EXPECT_EQ(reuse.status, 400);
  EXPECT_EQ(error_of(reuse), "invalid_grant");
  Response newest = token({{"grant_type", "refresh_token"}, {"refresh_token", r3}, {"client_id", "app"}});
  EXPECT_EQ(newest.status, 400);
  EXPECT_EQ(error_of(newest), "invalid_grant");
  // Another client cannot use a refresh token.
  auto back3 = approve_as(b, a, "alice");
  std::string other = str(*exchange(back3["code"], a).json(), "refresh_token");
  Response foreign = token(
      {{"grant_type", "refresh_token"}, {"refresh_token", other}, {"client_id", "conf"}, {"client_secret", kSecret}});
  EXPECT_EQ(foreign.status, 400);
  EXPECT_EQ(error_of(foreign), "invalid_grant");
  // A confidential client's refresh token needs the client's authentication.
  AuthRequest c = a;
  c.client_id = "conf";
  auto back4 = approve_as(b, c, "alice");
  Response conf = token({{"grant_type", "authorization_code"},
                         {"code", back4["code"]},
                         {"redirect_uri", kRedirect},
                         {"code_verifier", c.verifier},
                         {"client_id", "conf"},
                         {"client_secret", kSecret}});
  ASSERT_EQ(conf.status, 200) << conf.summary();
  Response anonymous = token({{"grant_type", "refresh_token"}, {"refresh_token", str(*conf.json(), "refresh_token")}});
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(error_of(anonymous), "invalid_client");
}

TEST_F(SmartLaunchTest, ConsentRefusedAndCsrfChecked) {
  Browser b(base_);
  AuthRequest a;
  Page login = read_page(b.get(authorize_target(a)));
  // A form without the right CSRF token, or without the cookie, is refused.
  Page forged = login;
  forged.hidden["csrf"] = "forged";
  Response bad = b.submit(forged, {{"username", "alice"}, {"password", kPassword}});
  EXPECT_EQ(bad.status, 403);
  EXPECT_NE(bad.body.find("security check"), std::string::npos);
  Browser stranger(base_);
  Response no_cookie = stranger.submit(login, {{"username", "alice"}, {"password", kPassword}});
  EXPECT_EQ(no_cookie.status, 400);
  // A wrong password: the page again with a clear message.
  Page wrong = read_page(b.submit(login, {{"username", "alice"}, {"password", "not the password"}}));
  EXPECT_EQ(wrong.status, 400);
  EXPECT_EQ(wrong.step(), "login");
  EXPECT_NE(wrong.body.find("role=\"alert\" id=\"error\">The user name or the password is wrong."), std::string::npos)
      << wrong.body;
  Page consent = read_page(b.submit(wrong, {{"username", "alice"}, {"password", kPassword}}));
  ASSERT_EQ(consent.step(), "consent");
  Response refused = b.submit(consent, {{"decision", "deny"}});
  ASSERT_EQ(refused.status, 302);
  auto q = query_of(refused.header("Location"));
  EXPECT_EQ(q["error"], "access_denied");
  EXPECT_EQ(q["state"], "st-123");
  EXPECT_EQ(q.count("code"), 0u);
}

TEST_F(SmartLaunchTest, FrenchPagesByAcceptLanguageAndBySwitch) {
  Browser b(base_);
  AuthRequest a;
  Page fr = read_page(b.get(authorize_target(a), {{"Accept-Language", "fr-FR,fr;q=0.9,en;q=0.5"}}));
  EXPECT_EQ(fr.lang, "fr");
  EXPECT_NE(fr.body.find("<label for=\"username\">Nom d'utilisateur</label>"), std::string::npos);
  EXPECT_NE(fr.body.find("<label for=\"password\">Mot de passe</label>"), std::string::npos);
  EXPECT_NE(fr.body.find("href=\"/auth/authorize?lang=en\""), std::string::npos) << "the switch to English";
  Page en = read_page(b.get("/auth/authorize?lang=en", {{"Accept-Language", "fr"}}));
  EXPECT_EQ(en.lang, "en");
  EXPECT_EQ(en.step(), "login");
  EXPECT_NE(en.body.find("<label for=\"username\">User name</label>"), std::string::npos);
  Page in_french = en;
  in_french.hidden["lang"] = "fr";  // the form says which language it was filled in
  Page wrong = read_page(b.submit(in_french, {{"username", "alice"}, {"password", "nope"}}));
  EXPECT_EQ(wrong.lang, "fr");
  EXPECT_NE(wrong.body.find("Le nom d&#39;utilisateur ou le mot de passe est faux."), std::string::npos) << wrong.body;
}

TEST_F(SmartLaunchTest, TotpEnrolmentThenWrongAndReusedCodes) {
  Browser b(base_);
  AuthRequest a;
  a.scope = "openid fhirUser user/*.rs";
  Page login = read_page(b.get(authorize_target(a)));
  // house is a physician: a second factor is required and none is enrolled yet.
  Page enrol = read_page(b.submit(login, {{"username", "house"}, {"password", kPassword}}));
  ASSERT_EQ(enrol.step(), "enrol") << enrol.body;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(enrol.body, m, std::regex("<code id=\"secret\">([A-Z2-7]+)</code>")));
  std::string secret = m[1];
  EXPECT_NE(enrol.body.find("otpauth://totp/Caduceus:house?secret=" + secret), std::string::npos) << enrol.body;
  Page wrong = read_page(b.submit(enrol, {{"code", "000000" == totp(secret, 0) ? "111111" : "000000"}}));
  EXPECT_EQ(wrong.step(), "enrol");
  EXPECT_NE(wrong.body.find("This code does not match the key."), std::string::npos);
  const std::string first_code = totp(secret, 0);
  Page consent = read_page(b.submit(wrong, {{"code", first_code}}));
  ASSERT_EQ(consent.step(), "consent") << consent.body;
  auto back = query_of(b.submit(consent, {{"decision", "approve"}}).header("Location"));
  Response t = exchange(back["code"], a);
  ASSERT_EQ(t.status, 200) << t.summary();
  json::Value claims = claims_of(str(*t.json(), "access_token"));
  EXPECT_EQ(str(claims, "role"), "physician");
  EXPECT_EQ(str(claims, "fhirUser"), "Practitioner/pr1");
  EXPECT_EQ(claims.find("patient"), nullptr);

  // The next sign-in asks for a code; the one used at enrolment is refused, a wrong one too; a fresh one works.
  Browser b2(base_);
  Page login2 = read_page(b2.get(authorize_target(a)));
  Page code_page = read_page(b2.submit(login2, {{"username", "house"}, {"password", kPassword}}));
  ASSERT_EQ(code_page.step(), "totp") << code_page.body;
  Page reused = read_page(b2.submit(code_page, {{"code", first_code}}));
  EXPECT_EQ(reused.step(), "totp");
  EXPECT_NE(reused.body.find("This code is wrong or was used already."), std::string::npos) << reused.body;
  const std::string next_code = totp(secret, 30);
  Page bad = read_page(b2.submit(reused, {{"code", next_code == "123456" ? "654321" : "123456"}}));
  EXPECT_EQ(bad.step(), "totp");
  Page consent2 = read_page(b2.submit(bad, {{"code", next_code}}));
  EXPECT_EQ(consent2.step(), "consent") << consent2.body;
}

TEST_F(SmartLaunchTest, EhrLaunchCarriesPatientAndEncounter) {
  // The EHR (a system client that reads Patient) creates the launch.
  std::string basic = b64url(std::string("ehr:") + kSecret);
  for (char& ch : basic) ch = ch == '-' ? '+' : ch == '_' ? '/' : ch;
  while (basic.size() % 4 != 0) basic += '=';
  Response sys = token({{"grant_type", "client_credentials"}, {"scope", "system/Patient.rs"}},
                       {{"Authorization", "Basic " + basic}});
  ASSERT_EQ(sys.status, 200) << sys.summary();
  HttpClient http(base_);
  HeaderList auth = {{"Authorization", "Bearer " + str(*sys.json(), "access_token")},
                     {"Content-Type", "application/json"}};
  Response missing = http.post("/auth/launch", R"({"patient":"nope"})", auth);
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("no Patient/nope"), std::string::npos);
  Response no_token = http.post("/auth/launch", R"({"patient":"p1"})", {{"Content-Type", "application/json"}});
  EXPECT_EQ(no_token.status, 401);
  Response created = http.post("/auth/launch", R"({"patient":"p1","encounter":"e1"})", auth);
  ASSERT_EQ(created.status, 201) << created.summary();
  std::string launch = str(*created.json(), "launch");

  // wilson (a physician) opens the app from the EHR: enrols his second factor, then approves.
  Browser b(base_);
  AuthRequest a;
  a.client_id = "conf";
  a.scope = "launch patient/*.rs openid fhirUser";
  a.launch = launch;
  Page login = read_page(b.get(authorize_target(a)));
  ASSERT_EQ(login.step(), "login") << login.body;
  Page enrol = read_page(b.submit(login, {{"username", "wilson"}, {"password", kPassword}}));
  ASSERT_EQ(enrol.step(), "enrol");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(enrol.body, m, std::regex("<code id=\"secret\">([A-Z2-7]+)</code>")));
  Page consent = read_page(b.submit(enrol, {{"code", totp(m[1], 0)}}));
  ASSERT_EQ(consent.step(), "consent") << consent.body;
  EXPECT_NE(consent.body.find("Alice Ames"), std::string::npos);
  auto back = query_of(b.submit(consent, {{"decision", "approve"}}).header("Location"));
  Response t = token({{"grant_type", "authorization_code"},
                      {"code", back["code"]},
                      {"redirect_uri", kRedirect},
                      {"code_verifier", a.verifier},
                      {"client_id", "conf"},
                      {"client_secret", kSecret}});
  ASSERT_EQ(t.status, 200) << t.summary();
  auto body = *t.json();
  EXPECT_EQ(str(body, "patient"), "p1");
  EXPECT_EQ(str(body, "encounter"), "e1");
  EXPECT_EQ(json::write(*body.find("need_patient_banner")), "false");
  EXPECT_EQ(body.find("refresh_token"), nullptr) << "no offline_access, no refresh token";
  json::Value claims = claims_of(str(body, "access_token"));
  EXPECT_EQ(str(claims, "patient"), "p1");
  EXPECT_EQ(str(claims, "encounter"), "e1");
  EXPECT_EQ(str(claims, "sub"), "wilson");
  EXPECT_EQ(str(claims, "role"), "physician");

  // An unknown launch id goes back to the application.
  AuthRequest bogus = a;
  bogus.launch = "not-a-launch";
  Response r = b.get(authorize_target(bogus));
  ASSERT_EQ(r.status, 302);
  EXPECT_EQ(query_of(r.header("Location"))["error"], "invalid_request");
}

TEST_F(SmartLaunchTest, StandaloneLaunchOfAClinicianShowsThePatientPicker) {
  Browser b(base_);
  AuthRequest a;
  a.scope = "launch/patient patient/*.rs";
  Page login = read_page(b.get(authorize_target(a)));
  Page enrol = read_page(b.submit(login, {{"username", "cuddy"}, {"password", kPassword}}));
  ASSERT_EQ(enrol.step(), "enrol");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(enrol.body, m, std::regex("<code id=\"secret\">([A-Z2-7]+)</code>")));
  Page picker = read_page(b.submit(enrol, {{"code", totp(m[1], 0)}}));
  ASSERT_EQ(picker.step(), "patient") << picker.body;
  EXPECT_NE(picker.body.find("<label style=\"display:inline\" for=\"p-p1\">Alice Ames (p1)</label>"), std::string::npos)
      << picker.body;
  EXPECT_NE(picker.body.find("Bob Brown (p2)"), std::string::npos);
  Page unknown = read_page(b.submit(picker, {{"patient_id", "p9"}}));
  EXPECT_EQ(unknown.step(), "patient");
  EXPECT_NE(unknown.body.find("role=\"alert\""), std::string::npos);
  Page consent = read_page(b.submit(unknown, {{"patient", "p2"}}));
  ASSERT_EQ(consent.step(), "consent");
  auto back = query_of(b.submit(consent, {{"decision", "approve"}}).header("Location"));
  Response t = exchange(back["code"], a);
  ASSERT_EQ(t.status, 200) << t.summary();
  EXPECT_EQ(str(*t.json(), "patient"), "p2");
  EXPECT_EQ(str(claims_of(str(*t.json(), "access_token")), "patient"), "p2");
}

TEST_F(SmartLaunchTest, ThirdFailureLocksTheAccount) {
  Browser b(base_);
  AuthRequest a;
  Page page = read_page(b.get(authorize_target(a)));
  for (int i = 0; i < 2; ++i) {
    page = read_page(b.submit(page, {{"username", "dave"}, {"password", "wrong password " + std::to_string(i)}}));
    EXPECT_NE(page.body.find("The user name or the password is wrong."), std::string::npos) << page.body;
  }
  page = read_page(b.submit(page, {{"username", "dave"}, {"password", "wrong password 2"}}));
  EXPECT_EQ(page.status, 400);
  EXPECT_NE(page.body.find("Too many failed attempts: the account is locked. Try again in 15 minute(s)."),
            std::string::npos)
      << page.body;
  // Even the right password is refused while locked.
  page = read_page(b.submit(page, {{"username", "dave"}, {"password", kPassword}}));
  EXPECT_EQ(page.step(), "login");
  EXPECT_NE(page.body.find("the account is locked"), std::string::npos) << page.body;
}

TEST_F(SmartLaunchTest, APasswordToChangeIsChangedBeforeConsent) {
  Browser b(base_);
  AuthRequest a;
  Page login = read_page(b.get(authorize_target(a)));
  Page change = read_page(b.submit(login, {{"username", "bob"}, {"password", kPassword}}));
  ASSERT_EQ(change.step(), "password") << change.body;
  EXPECT_NE(change.body.find("autocomplete=\"new-password\""), std::string::npos);
  Page mismatch = read_page(
      b.submit(change, {{"current", kPassword}, {"new", "a brand new secret"}, {"confirm", "something else"}}));
  EXPECT_EQ(mismatch.step(), "password");
  EXPECT_NE(mismatch.body.find("The two new passwords differ."), std::string::npos);
  Page same = read_page(b.submit(mismatch, {{"current", kPassword}, {"new", kPassword}, {"confirm", kPassword}}));
  EXPECT_NE(same.body.find("The new password must differ from the current one."), std::string::npos) << same.body;
  Page consent = read_page(
      b.submit(same, {{"current", kPassword}, {"new", "a brand new secret"}, {"confirm", "a brand new secret"}}));
  ASSERT_EQ(consent.step(), "consent") << consent.body;
  auto back = query_of(b.submit(consent, {{"decision", "approve"}}).header("Location"));
  Response t = exchange(back["code"], a);
  ASSERT_EQ(t.status, 200) << t.summary();
  EXPECT_EQ(str(*t.json(), "patient"), "p2");
  // The new password is the one now.
  Browser again(base_);
  Page login2 = read_page(again.get(authorize_target(a)));
  Page next = read_page(again.submit(login2, {{"username", "bob"}, {"password", "a brand new secret"}}));
  EXPECT_EQ(next.step(), "consent") << next.body;
}

}  // namespace
}  // namespace caduceus::test
