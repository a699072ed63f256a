#include "caduceus/server/auth/smart_auth.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "../url.hpp"
#include "caduceus/fhir/string_map.hpp"
#include "caduceus/fhir/thread_name.hpp"
#include "caduceus/resources/search_query.hpp"
#include "caduceus/resources/store/oauth_tables.hpp"
#include "caduceus/server/errors.hpp"
#include "jwks_fetch.hpp"
#include "oauth_store.hpp"
#include "smart_launch.hpp"

namespace caduceus::server::auth {

using fhir::ErrorKind;
namespace json = fhir::json;

namespace {

constexpr std::string_view kAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
constexpr std::size_t kTokenCacheSize = 10'000;
// On a store shared by several servers (PostgreSQL), how long a token found not revoked in the database is taken
// as such before the database is asked again: a revocation made through another server takes effect here within
// this time (one made through this server, at once).
constexpr std::int64_t kRevocationRecheckMs = 1000;
constexpr std::int64_t kMaxAssertionLifetime = 300;  // seconds: SMART Backend Services

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json::Value str(std::string s) {
  return json::Value::string(std::move(s));
}
json::Value num(std::int64_t n) {
  return json::Value::number(std::to_string(n));
}
json::Value strings(std::initializer_list<std::string_view> items) {
  json::Value a = json::Value::array();
  for (std::string_view s : items) a.push_back(str(std::string(s)));
  return a;
}

// Whether `header` starts with the scheme `prefix` (lower case, with its space), in any case (RFC 9110 11.1).
bool has_scheme(std::string_view header, std::string_view prefix) {
  if (header.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != prefix[i]) return false;
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string media_type(std::string_view header) {
  std::string m = lower(header.substr(0, header.find(';')));
  while (!m.empty() && m.back() == ' ') m.pop_back();
  return m;
}

Response json_reply(int status, const json::Value& body) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Pragma", "no-cache");
  r.body = json::write(body);
  return r;
}

// An OAuth 2.0 error (RFC 6749 section 5.2).
struct OAuthError {
  int status = 400;
  std::string error, description;
};

Response oauth_error(const OAuthError& e, std::string interaction) {
  json::Value body = json::Value::object();
  body.set("error", str(e.error));
  if (!e.description.empty()) body.set("error_description", str(e.description));
  Response r = json_reply(e.status, body);
  if (e.status == 401) r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"caduceus\"");
  r.interaction = std::move(interaction);
  return r;
}

std::unexpected<OAuthError> oauth_fail(int status, std::string error, std::string description) {
  return std::unexpected(OAuthError{status, std::move(error), std::move(description)});
}

const std::string* form_value(const QueryParams& form, std::string_view name) {
  return find_param(form, name);
}

// A claim that is a string, or empty.
std::string claim_string(const json::Value& claims, std::string_view name) {
  const json::Value* v = claims.find(name);
  return v != nullptr && v->is_string() ? v->text() : std::string();
}
std::optional<std::int64_t> claim_int(const json::Value& claims, std::string_view name) {
  const json::Value* v = claims.find(name);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  try {
    return static_cast<std::int64_t>(std::stod(v->text()));
  } catch (...) {
    return std::nullopt;
  }
}
// `aud` is a string or an array of strings.
bool audience_has(const json::Value& claims, const std::string& audience) {
  const json::Value* aud = claims.find("aud");
  if (aud == nullptr) return false;
  if (aud->is_string()) return aud->text() == audience;
  if (aud->is_array())
    for (const json::Value& a : aud->items())
      if (a.is_string() && a.text() == audience) return true;
  return false;
}

// What a request needs: permissions on a type ("*": on every type), and the FHIRPath-ish place that asks for it.
struct Need {
  std::string type;
  std::uint8_t permissions = 0;
  std::string where;
};

// The access token, verified once and then kept (by its text) until it expires.
struct TokenInfo {
  std::string client_id, scope, jti, sub;
  std::int64_t exp = 0, iat = 0;
  Grant grant;
  TokenContext context;  // patient, fhirUser and role claims (user tokens)
  std::string encounter;
  std::string cnf_x5t;  // a certificate-bound token (RFC 8705): the x5t#S256 of the certificate it is bound to
};

// Whether the request may use the token: an unbound token anywhere, a certificate-bound one only on a connection
// whose verified client certificate has that thumbprint (computed once per connection by the transport).
bool presented_by(const TokenInfo& token, const Request& req) {
  return token.cnf_x5t.empty() ||
         (req.peer_certificate != nullptr && req.peer_certificate->thumbprint == token.cnf_x5t);
}

}  // namespace

struct SmartAuth::Impl {
  resources::Store& store;
  KeyRing keys;
  const resources::Definitions& definitions;
  RegistrySource registry;
  SmartOptions options;
  std::string base = "http://127.0.0.1:8080/fhir", origin = "http://127.0.0.1:8080";

  mutable std::shared_mutex revoked_mutex;
  mutable std::unordered_set<std::string> revoked;  // jti of revoked access tokens (also in the table)
  mutable std::mutex not_revoked_mutex;
  mutable std::unordered_map<std::string, std::int64_t> not_revoked_at;  // jti -> when the database last said so
  // Bumped by every revocation this process learns of: a per-thread memo of "not revoked" holds only while it is
  // unchanged.
  mutable std::atomic<std::uint64_t> revocations{0};
  mutable std::shared_mutex cache_mutex;
  mutable fhir::StringMap<std::shared_ptr<const TokenInfo>> cache;
  // This instance among all made in the process (the per-thread memo of verify_token belongs to one of them).
  const std::uint64_t instance = next_instance();
  static std::uint64_t next_instance() {
    static std::atomic<std::uint64_t> counter{0};
    return ++counter;
  }

  // Threads for the token endpoint's work (hashing, signatures, waiting on the store): never an I/O thread.
  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<std::function<void()>> queue;
  bool stopping = false;
  std::vector<std::thread> workers;
  std::unique_ptr<SmartLaunch> launch;  // SMART App Launch, when options.users is set
  // The JWK Sets of clients registered by URL, fetched on this object's threads (never an I/O thread).
  std::unique_ptr<JwksUrlCache> jwks_urls;

  Impl(resources::Store& s, KeyRing k, const resources::Definitions& d, RegistrySource r, SmartOptions o)
      : store(s), keys(std::move(k)), definitions(d), registry(std::move(r)), options(o) {
    options.system_token_lifetime_s = std::clamp(options.system_token_lifetime_s, 1, 300);
    if (!options.policy) options.policy = std::make_shared<const AccessPolicy>();
    jwks_urls = std::make_unique<JwksUrlCache>(std::max(0, options.jwks_cache_s), std::max(0, options.jwks_refetch_s));
  }

  ~Impl() {
    {
      std::lock_guard lock(queue_mutex);
      stopping = true;
    }
    queue_cv.notify_all();
    for (auto& t : workers) t.join();
  }

  void start_workers(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      workers.emplace_back([this] {
        name_this_thread("cad-auth");
        for (;;) {
          std::function<void()> task;
          {
            std::unique_lock lock(queue_mutex);
            queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
            if (queue.empty()) return;
            task = std::move(queue.front());
            queue.pop_front();
          }
          task();
        }
      });
  }
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(queue_mutex);
      queue.push_back(std::move(task));
    }
    queue_cv.notify_one();
  }

  std::string token_url() const { return origin + "/auth/token"; }

  // --- the store -------------------------------------------------------------------------------------------

  template <class F>
  fhir::Result<void> with_tables(F&& f) const {
    return with_oauth_tables(store, std::forward<F>(f));
  }

  fhir::Result<std::optional<resources::ClientRecord>> find_client(const std::string& client_id) const {
    return find_oauth_client(store, options.tenant, client_id);
  }

  // --- tokens ----------------------------------------------------------------------------------------------

  bool is_revoked(const std::string& jti) const {
    std::shared_lock lock(revoked_mutex);
    return revoked.contains(jti);
  }

  // Whether the token is revoked: this process's own list, then (on a shared store, at most once per
  // kRevocationRecheckMs for a token) the database, for revocations made through another server.
  // kUnavailable when the database does not answer (the token is not taken as good then).
  fhir::Result<bool> revoked_now(const std::string& jti) const {
    if (is_revoked(jti)) return true;
    const std::int64_t now =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    {
      std::lock_guard lock(not_revoked_mutex);
      if (auto it = not_revoked_at.find(jti); it != not_revoked_at.end() && now - it->second < kRevocationRecheckMs)
        return false;
    }
    auto shared = store.token_revoked(options.tenant, jti);
    if (!shared) return std::unexpected(shared.error());
    if (!shared->has_value()) return false;  // a store of this process alone: its list is complete
    if (**shared) {
      std::unique_lock lock(revoked_mutex);
      revoked.insert(jti);
      revocations.fetch_add(1, std::memory_order_acq_rel);
      return true;
    }
    std::lock_guard lock(not_revoked_mutex);
    if (not_revoked_at.size() >= kTokenCacheSize) not_revoked_at.clear();
    not_revoked_at[jti] = now;
    return false;
  }

  // The verified token, or why not (for WWW-Authenticate's error_description).
  fhir::Result<std::shared_ptr<const TokenInfo>> verify_token(std::string_view token) const {
    // A request asks twice (the interaction's check, then the access filter of its query), and a client sends the
    // same token request after request: the last token this thread verified for this instance is kept aside with
    // when it was last found not revoked, so a repeated ask takes no lock, no hash and no copy. Expiry is checked
    // every time; revocation again once this process learns of any revocation, or after kRevocationRecheckMs (the
    // interval at which revoked_now asks a shared database anyway).
    struct Memo {
      std::uint64_t instance = 0;
      std::string token;
      std::shared_ptr<const TokenInfo> info;
      std::uint64_t revocations = 0;
      std::int64_t not_revoked_ms = 0;  // steady clock; 0: not checked
    };
    thread_local Memo memo;
    const bool memo_hit = memo.instance == instance && memo.token == token;
    std::shared_ptr<const TokenInfo> info;
    if (memo_hit) info = memo.info;
    if (!info) {
      std::shared_lock lock(cache_mutex);
      if (auto it = cache.find(token); it != cache.end()) info = it->second;
    }
    if (!info) {
      const std::string jwt(token);
      auto header = peek_jwt_header(jwt);
      if (!header) return std::unexpected(header.error());
      const SigningKey* key = keys.find(header->kid);
      if (key == nullptr) return fhir::fail(ErrorKind::kInvalid, "invalid", "the token's key (kid) is not ours");
      auto claims = verify_jwt(jwt, key->public_pem, key->alg);
      if (!claims) return std::unexpected(claims.error());
      auto t = std::make_shared<TokenInfo>();
      t->client_id = claim_string(*claims, "client_id");
      t->scope = claim_string(*claims, "scope");
      t->jti = claim_string(*claims, "jti");
      t->sub = claim_string(*claims, "sub");
      t->exp = claim_int(*claims, "exp").value_or(0);
      t->iat = claim_int(*claims, "iat").value_or(0);
      t->context.patient = claim_string(*claims, "patient");
      t->context.fhir_user = claim_string(*claims, "fhirUser");
      t->context.role = claim_string(*claims, "role");
      t->encounter = claim_string(*claims, "encounter");
      if (const json::Value* cnf = claims->find("cnf"); cnf != nullptr && cnf->is_object()) {
        t->cnf_x5t = claim_string(*cnf, "x5t#S256");
        if (t->cnf_x5t.empty())
          return fhir::fail(ErrorKind::kInvalid, "invalid", "the token's cnf claim names no x5t#S256 thumbprint");
      }
      if (claim_string(*claims, "iss") != origin || !audience_has(*claims, base) || t->client_id.empty() ||
          t->jti.empty() || t->exp == 0)
        return fhir::fail(ErrorKind::kInvalid, "invalid", "the token was not issued for this server");
      std::vector<ResourceScope> scopes;
      for (const std::string& s : split_scopes(t->scope))
        if (auto parsed = parse_resource_scope(s)) scopes.push_back(std::move(*parsed));
      t->grant = Grant(std::move(scopes));
      info = t;
      std::unique_lock lock(cache_mutex);
      if (cache.size() >= kTokenCacheSize) cache.clear();
      cache.emplace(std::string(token), info);
    }
    if (!memo_hit) memo = Memo{instance, std::string(token), info};
    if (info->exp <= now_s()) return fhir::fail(ErrorKind::kInvalid, "invalid", "the token has expired");
    const std::uint64_t generation = revocations.load(std::memory_order_acquire);
    const std::int64_t now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    if (memo.not_revoked_ms != 0 && memo.revocations == generation &&
        now_ms - memo.not_revoked_ms < kRevocationRecheckMs)
      return info;
    auto revoked_token = revoked_now(info->jti);
    if (!revoked_token) return std::unexpected(revoked_token.error());
    if (*revoked_token) return fhir::fail(ErrorKind::kInvalid, "invalid", "the token has been revoked");
    memo.revocations = generation;
    memo.not_revoked_ms = now_ms;
    return info;
  }

  // `x5t`: the thumbprint of the client certificate the token is bound to (RFC 8705 `cnf`), or empty.
  fhir::Result<std::string> issue_token(const std::string& client_id, const std::string& scope, std::int64_t lifetime,
                                        const std::string& x5t = {}) const {
    std::int64_t now = now_s();
    json::Value claims = json::Value::object();
    claims.set("iss", str(origin));
    claims.set("sub", str(client_id));
    claims.set("aud", str(base));
    claims.set("client_id", str(client_id));
    claims.set("scope", str(scope));
    claims.set("iat", num(now));
    claims.set("exp", num(now + lifetime));
    claims.set("jti", str(random_token(18)));
    if (!x5t.empty()) {
      json::Value cnf = json::Value::object();
      cnf.set("x5t#S256", str(x5t));
      claims.set("cnf", std::move(cnf));
    }
    return sign_jwt(keys.current(), claims);
  }

  // --- client authentication ---------------------------------------------------------------------------------

  // client_secret_basic (RFC 6749 2.3.1): "Basic base64(urlencode(id):urlencode(secret))".
  std::optional<std::pair<std::string, std::string>> basic_credentials(const Request& req) const {
    std::string_view h = req.header("authorization");
    if (!has_scheme(h, "basic ")) return std::nullopt;
    std::string b64(h.substr(6));
    while (!b64.empty() && b64.back() == '=') b64.pop_back();
    for (char& c : b64) c = c == '+' ? '-' : c == '/' ? '_' : c;
    auto decoded = base64url_decode(b64);
    if (!decoded) return std::pair<std::string, std::string>{};
    auto colon = decoded->find(':');
    if (colon == std::string::npos) return std::pair<std::string, std::string>{};
    auto id = percent_decode(decoded->substr(0, colon), true);
    auto secret = percent_decode(decoded->substr(colon + 1), true);
    if (!id || !secret) return std::pair<std::string, std::string>{};
    return std::pair{*id, *secret};
  }

  std::expected<resources::ClientRecord, OAuthError> authenticate_basic(const std::string& id,
                                                                        const std::string& secret) const {
    auto client = find_client(id);
    if (!client) return oauth_fail(503, "temporarily_unavailable", "the database does not answer");
    if (!*client || (*client)->kind != "confidential-symmetric" || !verify_secret(secret, (*client)->secret_hash))
      return oauth_fail(401, "invalid_client", "client authentication failed");
    return std::move(**client);
  }

  // private_key_jwt (SMART Backend Services, RFC 7523): the assertion is checked and its jti recorded.
  std::expected<resources::ClientRecord, OAuthError> authenticate_assertion(const QueryParams& form) const {
    const std::string* type = form_value(form, "client_assertion_type");
    const std::string* assertion = form_value(form, "client_assertion");
    if (type == nullptr || *type != kAssertionType || assertion == nullptr)
      return oauth_fail(400, "invalid_request", "client_assertion_type must be " + std::string(kAssertionType));
    auto header = peek_jwt_header(*assertion);
    if (!header) return oauth_fail(401, "invalid_client", "client_assertion is not a JWT");
    static constexpr std::string_view kAlgs[] = {"RS384", "ES384", "RS256", "ES256", "RS512", "ES512"};
    if (std::find(std::begin(kAlgs), std::end(kAlgs), header->alg) == std::end(kAlgs))
      return oauth_fail(401, "invalid_client", "client_assertion alg '" + header->alg + "' is not accepted");
    // The issuer names the client; the signature is checked with that client's keys.
    auto first = assertion->find('.'), second = assertion->find('.', first + 1);
    auto payload = base64url_decode(std::string_view(*assertion).substr(first + 1, second - first - 1));
    auto unverified = payload ? json::parse(*payload) : fhir::Result<json::Value>(std::unexpected(payload.error()));
    if (!unverified || !unverified->is_object())
      return oauth_fail(401, "invalid_client", "client_assertion's claims are not JSON");
    std::string client_id = claim_string(*unverified, "iss");
    if (const std::string* id = form_value(form, "client_id"); id != nullptr && *id != client_id)
      return oauth_fail(401, "invalid_client", "client_id differs from the assertion's iss");
    auto client = find_client(client_id);
    if (!client) return oauth_fail(503, "temporarily_unavailable", "the database does not answer");
    if (!*client || (*client)->kind != "confidential-asymmetric")
      return oauth_fail(401, "invalid_client", "no confidential-asymmetric client '" + client_id + "'");
    // A client registered by URL: its JWK Set is fetched (and cached); the assertion's jku, when it has one, must
    // be that URL (SMART Backend Services: the server never fetches a URL the client names only in the assertion).
    std::string jwks_text = (*client)->jwks;
    if (!header->jku.empty() && header->jku != (*client)->jwks_url)
      return oauth_fail(401, "invalid_client",
                        "client_assertion: the jku header is not the JWKS URL registered for '" + client_id + "'");
    if (jwks_text.empty()) {
      auto fetched = jwks_urls->jwks_for(client_id, (*client)->jwks_url, header->kid);
      if (!fetched)
        return oauth_fail(401, "invalid_client",
                          "cannot get the client's JWKS from " + (*client)->jwks_url + ": " +
                              (fetched.error().issues.empty() ? "" : fetched.error().issues.front().diagnostics));
      jwks_text = std::move(*fetched);
    }
    auto jwks = json::parse(jwks_text);
    const json::Value* keys_array = jwks ? jwks->find("keys") : nullptr;
    if (keys_array == nullptr || !keys_array->is_array())
      return oauth_fail(401, "invalid_client", "the client's JWKS has no keys");
    std::optional<json::Value> claims;
    const std::string family = header->alg.substr(0, 2) == "RS" ? "RSA" : "EC";
    for (const json::Value& jwk : keys_array->items()) {
      if (!header->kid.empty() && claim_string(jwk, "kid") != header->kid) continue;
      if (claim_string(jwk, "kty") != family) continue;
      auto key = key_from_jwk(jwk);
      if (!key) continue;
      auto pem = public_pem(key->get());
      if (!pem) continue;
      if (auto verified = verify_jwt(*assertion, *pem, header->alg)) {
        claims = std::move(*verified);
        break;
      }
    }
    if (!claims)
      return oauth_fail(401, "invalid_client",
                        header->kid.empty() ||
                                std::any_of(keys_array->items().begin(), keys_array->items().end(),
                                            [&](const json::Value& k) { return claim_string(k, "kid") == header->kid; })
                            ? "client_assertion's signature does not verify"
                            : "client_assertion's kid '" + header->kid + "' is not in the client's JWKS");
    std::int64_t now = now_s();
    auto exp = claim_int(*claims, "exp");
    std::string jti = claim_string(*claims, "jti");
    if (claim_string(*claims, "iss") != client_id || claim_string(*claims, "sub") != client_id)
      return oauth_fail(401, "invalid_client", "client_assertion: iss and sub must both be the client_id");
    if (!audience_has(*claims, token_url()))
      return oauth_fail(401, "invalid_client", "client_assertion: aud must be the token URL " + token_url());
    if (!exp || *exp <= now) return oauth_fail(401, "invalid_client", "client_assertion has expired");
    if (*exp > now + kMaxAssertionLifetime)
      return oauth_fail(401, "invalid_client", "client_assertion: exp must be at most 5 minutes ahead");
    if (jti.empty()) return oauth_fail(401, "invalid_client", "client_assertion has no jti");
    bool fresh = false;
    auto used = with_tables([&](resources::OAuthTables& t) -> fhir::Result<void> {
      auto r = t.use_jti(options.tenant, client_id, jti, *exp * 1000, now * 1000);
      if (!r) return std::unexpected(r.error());
      fresh = *r;
      return {};
    });
    if (!used) return oauth_fail(503, "temporarily_unavailable", "the database does not answer");
    if (!fresh) return oauth_fail(401, "invalid_client", "client_assertion: this jti was used before");
    return std::move(**client);
  }

  // tls_client_auth (RFC 8705 2.1): the client names itself (client_id) and proves it with the certificate of its
  // TLS connection, which the handshake verified against --tls-client-ca and whose subject DN must be the one
  // registered.
  std::expected<resources::ClientRecord, OAuthError> authenticate_tls(const Request& req,
                                                                      const std::string& client_id) const {
    auto client = find_client(client_id);
    if (!client) return oauth_fail(503, "temporarily_unavailable", "the database does not answer");
    if (!*client || (*client)->kind != "tls-client-auth")
      return oauth_fail(401, "invalid_client",
                        "client '" + client_id +
                            "' must authenticate (client_secret_basic, private_key_jwt, or tls_client_auth when it "
                            "is registered so)");
    if (!options.mutual_tls)
      return oauth_fail(401, "invalid_client", "mutual TLS is off on this server (no --tls-client-ca)");
    if (req.peer_certificate == nullptr)
      return oauth_fail(401, "invalid_client",
                        "tls_client_auth: the TLS connection carries no client certificate verified by this server");
    if (req.peer_certificate->subject != (*client)->tls_subject)
      return oauth_fail(
          401, "invalid_client",
          "tls_client_auth: the client certificate's subject is not the one registered for '" + client_id + "'");
    return std::move(**client);
  }

  // --- endpoints -------------------------------------------------------------------------------------------

  Response token(const Request& req) const {
    if (media_type(req.header("content-type")) != "application/x-www-form-urlencoded")
      return oauth_error({400, "invalid_request", "the token request is application/x-www-form-urlencoded"}, "token");
    auto form = parse_query(req.body);
    if (!form) return oauth_error({400, "invalid_request", "the form has a malformed %-escape"}, "token");
    const std::string* grant_type = form_value(*form, "grant_type");
    if (launch && grant_type != nullptr && (*grant_type == "authorization_code" || *grant_type == "refresh_token"))
      return user_grant(req, *form);
    if (grant_type == nullptr || *grant_type != "client_credentials")
      return oauth_error({400, "unsupported_grant_type", "this server grants client_credentials only (for now)"},
                         "token");
    std::expected<resources::ClientRecord, OAuthError> client = oauth_fail(401, "invalid_client", "");
    if (auto basic = basic_credentials(req))
      client = authenticate_basic(basic->first, basic->second);
    else if (form_value(*form, "client_assertion") != nullptr)
      client = authenticate_assertion(*form);
    else if (const std::string* id = form_value(*form, "client_id"); id != nullptr && options.mutual_tls)
      client = authenticate_tls(req, *id);
    else
      return oauth_error(
          {401, "invalid_client",
           options.mutual_tls ? "authenticate with client_secret_basic, private_key_jwt or tls_client_auth"
                              : "authenticate with client_secret_basic or private_key_jwt"},
          "token");
    if (!client) return oauth_error(client.error(), "token");

    const std::string* scope = form_value(*form, "scope");
    if (scope == nullptr || split_scopes(*scope).empty())
      return oauth_error({400, "invalid_scope", "scope is required"}, "token");
    std::vector<ResourceScope> allowed;
    for (const std::string& s : client->scopes)
      if (auto parsed = parse_resource_scope(s)) allowed.push_back(std::move(*parsed));
    std::string granted;
    for (const std::string& s : split_scopes(*scope)) {
      auto parsed = parse_resource_scope(s);
      if (!parsed && parsed.error().kind == ErrorKind::kNotSupported)
        return oauth_error({400, "invalid_scope", parsed.error().issues.front().diagnostics}, "token");
      if (!parsed || parsed->context != "system") continue;  // only system/ scopes are granted (for now)
      if (std::any_of(allowed.begin(), allowed.end(), [&](const ResourceScope& a) { return covers(a, *parsed); }))
        granted += (granted.empty() ? "" : " ") + s;
    }
    if (granted.empty())
      return oauth_error({400, "invalid_scope", "none of the requested scopes is allowed to this client"}, "token");
    // A client that authenticated with its certificate gets a token bound to it (RFC 8705 3).
    const bool bound = client->kind == "tls-client-auth";
    auto access = issue_token(client->client_id, granted, options.system_token_lifetime_s,
                              bound ? req.peer_certificate->thumbprint : std::string());
    if (!access) return oauth_error({500, "server_error", "cannot sign the token"}, "token");
    json::Value body = json::Value::object();
    body.set("access_token", str(*access));
    body.set("token_type", str("bearer"));
    body.set("expires_in", num(options.system_token_lifetime_s));
    body.set("scope", str(granted));
    Response r = json_reply(200, body);
    r.interaction = "token";
    return r;
  }

  // authorization_code and refresh_token (SMART App Launch): the client authenticates as registered
  // (client_secret_basic or client_secret_post, private_key_jwt, or only its client_id for a public client).
  Response user_grant(const Request& req, const QueryParams& form) const {
    std::expected<resources::ClientRecord, OAuthError> client = oauth_fail(401, "invalid_client", "");
    const std::string* id = form_value(form, "client_id");
    const std::string* secret = form_value(form, "client_secret");
    if (auto basic = basic_credentials(req)) {
      client = authenticate_basic(basic->first, basic->second);
    } else if (form_value(form, "client_assertion") != nullptr) {
      client = authenticate_assertion(form);
    } else if (id != nullptr && secret != nullptr) {
      client = authenticate_basic(*id, *secret);
    } else if (id != nullptr) {
      auto found = find_client(*id);
      if (!found) return oauth_error({503, "temporarily_unavailable", "the database does not answer"}, "token");
      if (!*found || (*found)->kind != "public")
        return oauth_error({401, "invalid_client", "client '" + *id + "' must authenticate (it is not public)"},
                           "token");
      client = std::move(**found);
    } else if (*form_value(form, "grant_type") == "refresh_token") {
      // RFC 6749 6: a public client need not name itself to refresh; SmartLaunch takes the token's client, which
      // must then be public.
      return launch->token(form, resources::ClientRecord{});
    } else {
      return oauth_error({401, "invalid_client", "client_id is required"}, "token");
    }
    if (!client) return oauth_error(client.error(), "token");
    return launch->token(form, *client);
  }

  // Who calls introspection or revocation: the client of a valid Bearer token, or a client_secret_basic client.
  std::expected<std::string, OAuthError> caller(const Request& req) const {
    std::string_view h = req.header("authorization");
    if (h.size() > 7 && has_scheme(h, "bearer ")) {
      auto info = verify_token(h.substr(7));
      if (!info || !presented_by(**info, req))
        return oauth_fail(401, "invalid_client", "the Bearer token is not valid");
      return (*info)->client_id;
    }
    if (auto basic = basic_credentials(req)) {
      auto client = authenticate_basic(basic->first, basic->second);
      if (!client) return std::unexpected(client.error());
      return client->client_id;
    }
    return oauth_fail(401, "invalid_client", "authenticate with a Bearer token or client_secret_basic");
  }

  Response introspect(const Request& req) const {
    auto who = caller(req);
    if (!who) return oauth_error(who.error(), "introspect");
    auto form = parse_query(req.body);
    const std::string* token = form ? form_value(*form, "token") : nullptr;
    if (token == nullptr) return oauth_error({400, "invalid_request", "token is required"}, "introspect");
    json::Value body = json::Value::object();
    auto info = verify_token(*token);
    body.set("active", json::Value::boolean(info.has_value()));
    if (info) {
      const TokenInfo& t = **info;
      body.set("scope", str(t.scope));
      body.set("client_id", str(t.client_id));
      body.set("token_type", str("Bearer"));
      body.set("exp", num(t.exp));
      body.set("iat", num(t.iat));
      body.set("sub", str(t.sub));
      body.set("aud", str(base));
      body.set("iss", str(origin));
      body.set("jti", str(t.jti));
      if (!t.cnf_x5t.empty()) {
        json::Value cnf = json::Value::object();
        cnf.set("x5t#S256", str(t.cnf_x5t));
        body.set("cnf", std::move(cnf));
      }
    }
    Response r = json_reply(200, body);
    r.interaction = "introspect";
    return r;
  }

  Response revoke(const Request& req) const {
    auto who = caller(req);
    if (!who) return oauth_error(who.error(), "revoke");
    auto form = parse_query(req.body);
    const std::string* token = form ? form_value(*form, "token") : nullptr;
    if (token == nullptr) return oauth_error({400, "invalid_request", "token is required"}, "revoke");
    Response ok;
    ok.status = 200;
    ok.headers.emplace_back("Cache-Control", "no-store");
    ok.interaction = "revoke";
    // RFC 7009: an unknown, invalid or expired token is answered 200 as well; only the client's own tokens go.
    auto info = verify_token(*token);
    if (!info || (*info)->client_id != *who) return ok;
    const std::string jti = (*info)->jti;
    auto written = with_tables(
        [&](resources::OAuthTables& t) { return t.revoke_token(options.tenant, jti, (*info)->exp * 1000); });
    if (!written) return oauth_error({503, "temporarily_unavailable", "the database does not answer"}, "revoke");
    std::unique_lock lock(revoked_mutex);
    revoked.insert(jti);
    revocations.fetch_add(1, std::memory_order_acq_rel);
    return ok;
  }

  // What both discovery documents say: the issuer, the endpoints, the grants and client authentication.
  json::Value discovery_common() const {
    json::Value c = json::Value::object();
    c.set("issuer", str(origin));
    c.set("jwks_uri", str(origin + "/auth/jwks"));
    c.set("token_endpoint", str(token_url()));
    c.set("introspection_endpoint", str(origin + "/auth/introspect"));
    c.set("revocation_endpoint", str(origin + "/auth/revoke"));
    if (launch) {
      c.set("authorization_endpoint", str(origin + "/auth/authorize"));
      c.set("grant_types_supported", strings({"authorization_code", "refresh_token", "client_credentials"}));
      c.set("token_endpoint_auth_methods_supported",
            strings({"private_key_jwt", "client_secret_basic", "client_secret_post", "none"}));
    } else {
      c.set("grant_types_supported", strings({"client_credentials"}));
      c.set("token_endpoint_auth_methods_supported", strings({"private_key_jwt", "client_secret_basic"}));
    }
    c.set("token_endpoint_auth_signing_alg_values_supported",
          strings({"RS384", "ES384", "RS256", "ES256", "RS512", "ES512"}));
    if (options.mutual_tls) {  // RFC 8705: tls_client_auth, and tokens bound to the client's certificate
      c.find("token_endpoint_auth_methods_supported")->push_back(str("tls_client_auth"));
      c.set("tls_client_certificate_bound_access_tokens", json::Value::boolean(true));
    }
    return c;
  }

  json::Value smart_configuration() const {
    json::Value c = discovery_common();
    if (launch) {
      c.set("scopes_supported",
            strings({"openid", "fhirUser", "launch", "launch/patient", "launch/encounter", "offline_access",
                     "online_access", "patient/*.rs", "patient/*.read", "user/*.rs", "user/*.read", "user/*.cruds",
                     "system/*.read", "system/*.write", "system/*.*", "system/*.cruds", "system/*.rs"}));
      c.set("response_types_supported", strings({"code"}));
      c.set("capabilities", strings({"launch-ehr", "launch-standalone", "authorize-post", "client-public",
                                     "client-confidential-symmetric", "client-confidential-asymmetric",
                                     "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
                                     "context-banner", "permission-offline", "permission-online", "permission-patient",
                                     "permission-user", "permission-v1", "permission-v2", "sso-openid-connect"}));
    } else {
      c.set("scopes_supported", strings({"system/*.read", "system/*.write", "system/*.*", "system/*.cruds",
                                         "system/*.rs", "system/Patient.rs", "system/Observation.rs"}));
      c.set("response_types_supported", json::Value::array());
      c.set("capabilities", strings({"client-confidential-asymmetric", "client-confidential-symmetric", "permission-v1",
                                     "permission-v2"}));
    }
    c.set("code_challenge_methods_supported", strings({"S256"}));
    return c;
  }

  json::Value openid_configuration() const {
    json::Value c = discovery_common();
    c.set("response_types_supported", launch ? strings({"code"}) : json::Value::array());
    if (launch)
      c.set("scopes_supported", strings({"openid", "fhirUser", "profile", "offline_access", "online_access"}));
    c.set("subject_types_supported", strings({"public"}));
    c.set("id_token_signing_alg_values_supported", strings({"ES256", "RS256"}));
    c.set("code_challenge_methods_supported", strings({"S256"}));
    return c;
  }

  // --- enforcement -----------------------------------------------------------------------------------------

  // The types a parsed search reaches, with the place in the query that reaches them.
  void search_needs(const resources::SearchQuery& q, std::vector<Need>& needs) const {
    if (!q.type.empty())
      needs.push_back({q.type, kSearch, q.type});
    else if (q.types.empty())
      needs.push_back({"*", kSearch, "search of every type"});
    else
      for (const std::string& t : q.types) needs.push_back({t, kSearch, "_type"});
    auto targets_of = [&](const resources::SearchParameter* p, const std::string& explicit_type,
                          const std::string& at) {
      if (!explicit_type.empty()) {
        needs.push_back({explicit_type, kSearch, at});
      } else if (p == nullptr || p->target.empty()) {
        needs.push_back({"*", kSearch, at});
      } else {
        for (const std::string& t : p->target) needs.push_back({t, kSearch, at});
      }
    };
    std::function<void(const resources::Criterion&)> criterion = [&](const resources::Criterion& c) {
      if (!c.chained) return;
      targets_of(c.parameter, c.target_type, c.name);
      criterion(*c.chained);
    };
    std::function<void(const resources::HasCriterion&)> has = [&](const resources::HasCriterion& h) {
      needs.push_back({h.type, kSearch, "_has:" + h.type});
      if (h.criterion) criterion(*h.criterion);
      if (h.nested) has(*h.nested);
    };
    for (const resources::Criterion& c : q.criteria) criterion(c);
    for (const resources::HasCriterion& h : q.has) has(h);
    for (const resources::Include& inc : q.includes) {
      std::string at = inc.reverse ? "_revinclude" : "_include";
      if (inc.reverse)
        needs.push_back({inc.source_type.empty() ? "*" : inc.source_type, kSearch, at});
      else if (inc.wildcard)
        needs.push_back({"*", kSearch, at});
      else
        targets_of(inc.parameter, inc.target_type, at);
    }
  }

  // Parses a search as the router will, to see every type it reaches. Errors: the parser's (400).
  fhir::Result<void> search_request_needs(const Request& req, std::string_view compartment, std::string_view type,
                                          bool system, const QueryParams& query, std::vector<Need>& needs) const {
    auto snapshot = registry ? registry() : nullptr;
    if (snapshot == nullptr) return {};  // search is off: the router answers 501
    QueryParams all = query;
    if (req.method == "POST") {
      if (auto form = parse_query(req.body)) all.insert(all.end(), form->begin(), form->end());
    }
    std::erase_if(all, [](const auto& p) { return p.first == "_explain"; });
    resources::SearchLimits limits;
    limits.max_count = std::numeric_limits<std::size_t>::max();
    limits.strict = req.header("prefer").find("handling=strict") != std::string_view::npos;
    fhir::Result<resources::SearchQuery> q;
    if (system) {
      q = resources::parse_system_search(all, *snapshot, definitions, limits);
    } else if (!compartment.empty()) {
      std::vector<std::string> types;
      auto members = snapshot->compartment_types(compartment);
      if (type == "*")
        types.assign(members.begin(), members.end());
      else
        types.emplace_back(type);
      if (types.empty() || (type != "*" && !definitions.is_resource_type(type))) {
        needs.push_back({"*", kAll, std::string(compartment) + "/" + std::string(type)});  // (the router says 404)
        return {};
      }
      q = type == "*" ? resources::parse_multi_type_search(types, all, *snapshot, definitions, limits)
                      : resources::parse_search(type, all, *snapshot, definitions, limits);
    } else {
      q = resources::parse_search(type, all, *snapshot, definitions, limits);
    }
    if (!q) return std::unexpected(q.error());
    search_needs(*q, needs);
    return {};
  }

  // Every reference of a resource written in a transaction that is a search ("Patient?identifier=x").
  static void conditional_references(const json::Value& v, std::vector<Need>& needs, const std::string& where) {
    if (v.is_object()) {
      for (const auto& m : v.members()) {
        if (m.first == "reference" && m.second.is_string()) {
          const std::string& ref = m.second.text();
          auto q = ref.find('?');
          if (q != std::string::npos && q > 0 && ref.find('/') > q)
            needs.push_back({ref.substr(0, q), kSearch, where + ".resource (" + ref + ")"});
        } else {
          conditional_references(m.second, needs, where);
        }
      }
    } else if (v.is_array()) {
      for (const json::Value& item : v.items()) conditional_references(item, needs, where);
    }
  }

  // What the request needs, from its path (after /fhir) and query. Errors: 400 when a search does not parse.
  fhir::Result<void> needs_of(const Request& req, std::string_view path, const QueryParams& params,
                              std::vector<Need>& needs, int depth) const {
    std::vector<std::string_view> seg;
    for (std::size_t start = 0; start < path.size();) {
      std::size_t slash = path.find('/', start);
      if (slash == std::string_view::npos) slash = path.size();
      if (slash > start) seg.push_back(path.substr(start, slash - start));
      start = slash + 1;
    }
    const std::string& m = req.method;
    bool get = m == "GET" || m == "HEAD";
    if (seg.empty()) {
      if (get) return search_request_needs(req, {}, {}, true, params, needs);
      if (m == "POST") return bundle_needs(req, needs, depth);
      return {};
    }
    std::string_view first = seg[0];
    if (seg.size() == 1 && first == "metadata") return {};
    if (seg.size() == 1 && first == "_search") return search_request_needs(req, {}, {}, true, params, needs);
    if (first == "$reindex") {
      needs.push_back({"*", kAll, "$reindex"});
      return {};
    }
    if (seg.size() == 1 && first == "_history") {
      needs.push_back({"*", kSearch, "_history"});
      return {};
    }
    if (!definitions.is_resource_type(first)) {  // the router answers 404; only a client that may do anything hears it
      needs.push_back({"*", kAll, std::string(first)});
      return {};
    }
    std::string type(first);
    if (seg.size() == 1) {
      if (m == "POST" && !req.header("if-none-exist").empty())
        needs.push_back({type, kCreate | kSearch, "If-None-Exist"});
      else if (m == "POST")
        needs.push_back({type, kCreate, type});
      else if (get)
        return search_request_needs(req, {}, type, false, params, needs);
      else if (m == "PUT")
        needs.push_back({type, kCreate | kUpdate | kSearch, type});
      else if (m == "DELETE")
        needs.push_back({type, kDelete | kSearch, type});
      else if (m == "PATCH")
        needs.push_back({type, kUpdate | kSearch, type});
      return {};
    }
    std::string_view second = seg[1];
    if (seg.size() == 2 && second == "_history") {
      needs.push_back({type, kSearch, type + "/_history"});
      return {};
    }
    if (seg.size() == 2 && second == "$reindex") {
      needs.push_back({type, kAll, type + "/$reindex"});
      return {};
    }
    if (seg.size() == 2 && second == "_search") return search_request_needs(req, {}, type, false, params, needs);
    if (seg.size() == 2) {
      if (get) needs.push_back({type, kRead, type});
      if (m == "PUT") needs.push_back({type, kUpdate, type});
      if (m == "DELETE") needs.push_back({type, kDelete, type});
      if (m == "PATCH") needs.push_back({type, kUpdate, type});
      if (m == "POST") needs.push_back({type, kAll, type});  // (no such interaction: the router says so)
      return {};
    }
    if ((seg.size() == 3 || seg.size() == 4) && seg[2] == "_history") {
      needs.push_back({type, kRead, type + " history"});
      return {};
    }
    // A compartment search: [compartment]/[id]/[type or *] (and .../_search).
    if (seg.size() == 3 || (seg.size() == 4 && seg[3] == "_search"))
      return search_request_needs(req, type, seg[2], false, params, needs);
    needs.push_back({"*", kAll, std::string(path)});  // anything else: only for a client that may do everything
    return {};
  }

  fhir::Result<void> bundle_needs(const Request& req, std::vector<Need>& needs, int depth) const {
    if (depth > 0) {
      needs.push_back({"*", kAll, "nested Bundle"});
      return {};
    }
    auto bundle = json::parse(req.body);
    if (!bundle || !bundle->is_object()) return {};  // the router refuses it as it is
    const json::Value* entries = bundle->find("entry");
    if (entries == nullptr || !entries->is_array()) return {};
    std::size_t i = 0;
    for (const json::Value& e : entries->items()) {
      std::string where = "Bundle.entry[" + std::to_string(i++) + "]";
      const json::Value* request = e.find("request");
      if (request == nullptr || !request->is_object()) continue;  // refused by the router
      Request sub;
      sub.method = claim_string(*request, "method");
      std::string url = claim_string(*request, "url");
      if (url.starts_with(base + "/")) url = url.substr(base.size() + 1);
      while (url.starts_with("/")) url.erase(0, 1);
      if (url.starts_with("http://") || url.starts_with("https://")) continue;  // not on this server: refused
      if (std::string ine = claim_string(*request, "ifNoneExist"); !ine.empty())
        sub.headers.emplace_back("if-none-exist", ine);
      auto qpos = url.find('?');
      std::string sub_path = "/" + url.substr(0, qpos);
      auto query = parse_query(qpos == std::string::npos ? std::string_view() : std::string_view(url).substr(qpos + 1));
      if (!query) continue;  // refused by the router
      std::vector<Need> entry_needs;
      if (auto r = needs_of(sub, sub_path, *query, entry_needs, depth + 1); !r) {
        fhir::Error err = std::move(r.error());
        for (fhir::Issue& issue : err.issues) issue.diagnostics = where + ": " + issue.diagnostics;
        return std::unexpected(std::move(err));
      }
      for (Need& n : entry_needs) {
        n.where = where + ".request (" + n.where + ")";
        needs.push_back(std::move(n));
      }
      if (const json::Value* resource = e.find("resource")) conditional_references(*resource, needs, where);
    }
    return {};
  }

  Response unauthorized(const std::string& why) const {
    Response r = error_response(ErrorKind::kInvalid, "login", why);
    r.status = 401;
    std::string challenge = "Bearer realm=\"" + base + "\"";
    if (why != "no Bearer token") challenge += ", error=\"invalid_token\", error_description=\"" + why + "\"";
    r.headers.emplace_back("WWW-Authenticate", challenge);
    r.interaction = "unauthorized";
    return r;
  }

  std::optional<Response> check(const Request& req, std::string_view path, const QueryParams& params) const {
    if (path == "/metadata") return std::nullopt;
    std::string_view h = req.header("authorization");
    if (h.size() < 8 || !has_scheme(h, "bearer ")) return unauthorized("no Bearer token");
    auto info = verify_token(h.substr(7));
    if (!info && info.error().kind == ErrorKind::kUnavailable) return error_response(info.error());  // 503
    if (!info) return unauthorized(info.error().issues.front().diagnostics);
    if (!presented_by(**info, req))
      return unauthorized("the token is bound to a client certificate that this connection did not present");
    std::vector<Need> needs;
    if (auto r = needs_of(req, path, params, needs, 0); !r) {
      Response bad = error_response(r.error());
      bad.interaction = "invalid";
      return bad;
    }
    const Grant& grant = (*info)->grant;
    // A role that works with some types only (the policy) may not ask for another one by name.
    const RolePolicy* role = (*info)->context.role.empty() ? nullptr : options.policy->role((*info)->context.role);
    auto role_allows = [&](const std::string& type) {
      if ((*info)->context.role.empty()) return true;
      if (role == nullptr) return false;
      return type == "*" || role->types.empty() ||
             std::find(role->types.begin(), role->types.end(), type) != role->types.end();
    };
    for (const Need& n : needs) {
      if (grant.allows(n.type, n.permissions) && role_allows(n.type)) continue;
      std::string what = n.type == "*" ? std::string("every resource type") : n.type;
      std::string who = grant.allows(n.type, n.permissions)
                            ? "The role '" + (*info)->context.role + "' does not work with "
                            : "The token's scopes do not allow '" + permission_letters(n.permissions) + "' on ";
      Response r =
          error_response(ErrorKind::kInvalid, "forbidden", who + what + " (needed by " + n.where + ")", n.where);
      r.status = 403;
      r.interaction = "forbidden";
      return r;
    }
    return std::nullopt;
  }
};

std::shared_ptr<const resources::AccessFilter> SmartAuth::access(const Request& request, char permission) const {
  std::string_view h = request.header("authorization");
  if (h.size() < 8 || !has_scheme(h, "bearer ")) return resources::deny_all_access();
  auto info = impl_->verify_token(h.substr(7));
  if (!info || !presented_by(**info, request)) return resources::deny_all_access();
  std::uint8_t bit = 0;
  switch (permission) {
    case 'c': bit = kCreate; break;
    case 'r': bit = kRead; break;
    case 'u': bit = kUpdate; break;
    case 'd': bit = kDelete; break;
    case 's': bit = kSearch; break;
    default: return resources::deny_all_access();
  }
  return access_filter((*info)->grant.scopes(), (*info)->context, bit, *impl_->options.policy,
                       impl_->registry ? impl_->registry() : nullptr, impl_->definitions);
}

std::optional<Response> SmartAuth::check_admin(const Request& request) const {
  std::string_view h = request.header("authorization");
  if (h.size() < 8 || !has_scheme(h, "bearer ")) return impl_->unauthorized("no Bearer token");
  auto info = impl_->verify_token(h.substr(7));
  if (!info && info.error().kind == ErrorKind::kUnavailable) return error_response(info.error());  // 503
  if (!info) return impl_->unauthorized(info.error().issues.front().diagnostics);
  const TokenInfo& t = **info;
  if (t.context.role == "admin") return std::nullopt;
  if (t.context.role.empty())
    for (const ResourceScope& s : t.grant.scopes())
      if (s.context == "system" && s.type == "*" && s.permissions == kAll && s.query.empty()) return std::nullopt;
  Response r = error_response(ErrorKind::kInvalid, "forbidden",
                              "the administration API needs an administrator's token (role admin) or a system token "
                              "with the scope system/*.*");
  r.status = 403;
  r.interaction = "forbidden";
  return r;
}

SmartAuth::SmartAuth(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SmartAuth::~SmartAuth() = default;

fhir::Result<std::unique_ptr<SmartAuth>> SmartAuth::create(resources::Store& store, KeyRing keys,
                                                           const resources::Definitions& definitions,
                                                           RegistrySource registry, SmartOptions options) {
  auto impl = std::make_unique<Impl>(store, std::move(keys), definitions, std::move(registry), options);
  auto loaded = impl->with_tables([&](resources::OAuthTables& t) -> fhir::Result<void> {
    auto revoked = t.revoked_tokens(options.tenant, now_s() * 1000);
    if (!revoked) return std::unexpected(revoked.error());
    impl->revoked.insert(revoked->begin(), revoked->end());
    return {};
  });
  if (!loaded) return std::unexpected(loaded.error());
  if (options.users != nullptr) {
    LaunchOptions launch_options;
    launch_options.tenant = options.tenant;
    launch_options.user_token_lifetime_s = std::max(1, options.user_token_lifetime_s);
    launch_options.offline_token_lifetime_s = std::max(1, options.offline_token_lifetime_s);
    Impl* i = impl.get();
    impl->launch = std::make_unique<SmartLaunch>(
        store, impl->keys, *options.users, impl->base, impl->origin,
        [i](const std::string& jti) { return i->is_revoked(jti); }, launch_options);
  }
  impl->start_workers(2);
  return std::unique_ptr<SmartAuth>(new SmartAuth(std::move(impl)));
}

void SmartAuth::set_base_url(const std::string& fhir_base) {
  impl_->base = fhir_base;
  while (!impl_->base.empty() && impl_->base.back() == '/') impl_->base.pop_back();
  impl_->origin = impl_->base;
  if (impl_->origin.ends_with("/fhir")) impl_->origin.resize(impl_->origin.size() - 5);
}

bool SmartAuth::serves(std::string_view path) noexcept {
  return path == "/fhir/.well-known/smart-configuration" || path == "/.well-known/openid-configuration" ||
         path == "/.well-known/smart-configuration" || path == "/auth/jwks" || path == "/auth/token" ||
         path == "/auth/introspect" || path == "/auth/revoke" || path == "/auth/authorize" || path == "/auth/launch";
}

void SmartAuth::handle_async(const Request& request, std::function<void(Response)> done) const {
  std::string_view path = std::string_view(request.target).substr(0, request.target.find('?'));
  const Impl& i = *impl_;
  auto method_not_allowed = [&](std::string allow) {
    Response r = error_response(ErrorKind::kMethodNotAllowed, "not-supported",
                                request.method + " is not allowed on " + std::string(path));
    r.headers.emplace_back("Allow", std::move(allow));
    r.interaction = "auth";
    return r;
  };
  bool get = request.method == "GET" || request.method == "HEAD";
  if (path.ends_with("/smart-configuration") || path == "/.well-known/openid-configuration" || path == "/auth/jwks") {
    if (!get) return done(method_not_allowed("GET"));
    Response r;
    r.headers.emplace_back("Content-Type", "application/json");
    if (path == "/auth/jwks") {
      r.body = json::write(i.keys.jwks());
      r.headers.emplace_back("Content-Type", "application/jwk-set+json");
      r.headers.erase(r.headers.begin());
    } else {
      r.body =
          json::write(path == "/.well-known/openid-configuration" ? i.openid_configuration() : i.smart_configuration());
    }
    r.interaction = "discovery";
    return done(std::move(r));
  }
  if (path == "/auth/authorize" || path == "/auth/launch") {
    if (!i.launch) {
      Response r = error_response(ErrorKind::kNotSupported, "not-supported",
                                  "SMART App Launch is not available on this server (no user directory)");
      r.interaction = "authorize";
      return done(std::move(r));
    }
    if (path == "/auth/launch" && request.method != "POST") return done(method_not_allowed("POST"));
    if (path == "/auth/authorize" && !get && request.method != "POST") return done(method_not_allowed("GET, POST"));
    // Password hashing and the store: on this object's threads.
    return impl_->post([launch = i.launch.get(), request, done = std::move(done), path = std::string(path)] {
      done(path == "/auth/launch" ? launch->create_launch(request) : launch->authorize(request));
    });
  }
  if (request.method != "POST") return done(method_not_allowed("POST"));
  impl_->post([impl = impl_.get(), request, done = std::move(done), path = std::string(path)] {
    if (path == "/auth/token") return done(impl->token(request));
    if (path == "/auth/introspect") return done(impl->introspect(request));
    done(impl->revoke(request));
  });
}

std::optional<Response> SmartAuth::check(const Request& request, std::string_view path,
                                         const std::vector<std::pair<std::string, std::string>>& params) const {
  return impl_->check(request, path, params);
}

json::Value SmartAuth::rest_security(const std::string& fhir_base) const {
  std::string origin = fhir_base;
  if (origin.ends_with("/fhir")) origin.resize(origin.size() - 5);
  json::Value uris = json::Value::array();
  for (auto [name, url] : {std::pair{"token", "/auth/token"}, std::pair{"introspect", "/auth/introspect"},
                           std::pair{"revoke", "/auth/revoke"}, std::pair{"authorize", "/auth/authorize"}}) {
    if (!impl_->launch && std::string_view(name) == "authorize") continue;
    json::Value e = json::Value::object();
    e.set("url", str(name));
    e.set("valueUri", str(origin + url));
    uris.push_back(std::move(e));
  }
  json::Value oauth = json::Value::object();
  oauth.set("url", str("http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"));
  oauth.set("extension", std::move(uris));
  json::Value extensions = json::Value::array();
  extensions.push_back(std::move(oauth));
  json::Value coding = json::Value::object();
  coding.set("system", str("http://terminology.hl7.org/CodeSystem/restful-security-service"));
  coding.set("code", str("SMART-on-FHIR"));
  json::Value codings = json::Value::array();
  codings.push_back(std::move(coding));
  json::Value service = json::Value::object();
  service.set("coding", std::move(codings));
  service.set("text", str("OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"));
  json::Value services = json::Value::array();
  services.push_back(std::move(service));
  json::Value security = json::Value::object();
  security.set("extension", std::move(extensions));
  security.set("service", std::move(services));
  security.set("description", str("SMART on FHIR: Bearer access tokens from " + origin + "/auth/token (discovery at " +
                                  fhir_base + "/.well-known/smart-configuration)"));
  return security;
}

}  // namespace caduceus::server::auth
