#include "caduceus/server/auth/admin.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "caduceus/resources/store/oauth_tables.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/server/auth/keys.hpp"
#include "caduceus/server/auth/scopes.hpp"
#include "caduceus/server/config.hpp"
#include "caduceus/server/peer_certificate.hpp"

namespace caduceus::server::auth {

namespace json = fhir::json;

namespace {

constexpr const char* kUsage =
    "Usage: caduceus admin client add --id ID --type TYPE [options]   register a SMART client\n"
    "       caduceus admin client list                                 list the clients\n"
    "       caduceus admin client remove ID                            remove a client\n"
    "       caduceus admin key rotate [--alg ES256|RS256]              a new signing key becomes current\n"
    "       caduceus admin key list                                    the signing keys (* = current)\n"
    "       caduceus admin key remove KID                              stop publishing an old key\n"
    "\n"
    "Common options: --db URL (default sqlite:var/caduceus.db, or CADUCEUS_DB), --data-dir DIR (default var, or\n"
    "CADUCEUS_DATA_DIR). The server holds the SQLite database while it runs: stop it first; it reads clients at\n"
    "every token request and keys at start (restart it after a rotation).\n"
    "\n"
    "client add:\n"
    "  --type public | confidential-symmetric | confidential-asymmetric | tls-client-auth\n"
    "  --name TEXT             a name for people\n"
    "  --secret SECRET         confidential-symmetric: the secret (default: one is generated and printed once)\n"
    "  --jwks JSON|@FILE       confidential-asymmetric: the client's public keys, a JWK Set by value\n"
    "  --jwks-url URL          confidential-asymmetric: where its JWK Set is published (https; fetched by the\n"
    "                          server, cached, refetched for a new kid; see README Backend Services)\n"
    "  --tls-subject DN        tls-client-auth: the subject DN of its TLS client certificate (RFC 4514, e.g.\n"
    "                          \"CN=lab.example,O=Lab\"), issued by a CA of the server's --tls-client-ca\n"
    "  --redirect-uri URI      an exact redirect URI (repeatable)\n"
    "  --scope SCOPE           a scope it may be granted, e.g. system/Observation.rs (repeatable, or "
    "space-separated)\n";

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

int fail(const std::string& message) {
  std::cerr << "caduceus admin: " << message << "\n";
  return 1;
}

int usage(const std::string& message) {
  std::cerr << "caduceus admin: " << message << "\n\n" << kUsage;
  return 2;
}

std::string describe(const fhir::Error& e) {
  std::string text;
  for (const fhir::Issue& issue : e.issues) text += (text.empty() ? "" : "; ") + issue.diagnostics;
  return text;
}

// Runs `f` on the OAuth tables of the store at `db`, in one transaction.
template <class F>
fhir::Result<void> with_tables(const std::string& db, F&& f) {
  resources::StoreOptions options;
  options.readers = 1;
  auto store = resources::open_store(db, options);
  if (!store) return std::unexpected(store.error());
  return (*store)->write([&](resources::Transaction& t) -> fhir::Result<void> {
    resources::OAuthTables* tables = t.oauth_tables();
    if (tables == nullptr)
      return fhir::fail(fhir::ErrorKind::kNotSupported, "not-supported", "this store has no client table");
    return f(*tables);
  });
}

bool is_absolute_url(std::string_view u) {
  return (u.starts_with("https://") || u.starts_with("http://")) && u.find(' ') == std::string_view::npos &&
         u.find('#') == std::string_view::npos;
}

}  // namespace

int admin_command(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  std::string db = env_or("CADUCEUS_DB", ServeConfig{}.db);
  std::string data_dir = env_or("CADUCEUS_DATA_DIR", ServeConfig{}.data_dir);
  std::string what = args[0], verb = args.size() > 1 ? args[1] : "";
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> options;
  for (std::size_t i = 2; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (!a.starts_with("--")) {
      positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return usage(a + " needs a value");
    }
    options[name].push_back(value);
  }
  auto one = [&](const std::string& name) -> std::string {
    auto it = options.find(name);
    return it == options.end() || it->second.empty() ? std::string() : it->second.back();
  };
  if (!one("db").empty()) db = one("db");
  if (!one("data-dir").empty()) data_dir = one("data-dir");
  options.erase("db");
  options.erase("data-dir");
  auto allow_only = [&](std::initializer_list<std::string_view> names) -> std::string {
    for (const auto& [name, values] : options)
      if (std::find(names.begin(), names.end(), name) == names.end()) return "--" + name;
    return {};
  };

  if (what == "key") {
    if (verb == "rotate") {
      if (auto bad = allow_only({"alg"}); !bad.empty()) return usage("unknown option " + bad);
      std::string alg = one("alg").empty() ? "ES256" : one("alg");
      auto kid = KeyRing::rotate(data_dir, alg);
      if (!kid) return fail(describe(kid.error()));
      std::cout << "New current signing key " << *kid << " (" << alg << ") in " << data_dir
                << "/keys; the older keys stay published until removed. Restart the server to use it.\n";
      return 0;
    }
    if (verb == "list") {
      auto ring = KeyRing::open(data_dir);
      if (!ring) return fail(describe(ring.error()));
      for (const SigningKey& k : ring->keys())
        std::cout << (k.kid == ring->current().kid ? "* " : "  ") << k.kid << " " << k.alg << "\n";
      return 0;
    }
    if (verb == "remove") {
      if (positional.size() != 1) return usage("key remove takes one KID");
      auto removed = KeyRing::remove(data_dir, positional[0]);
      if (!removed) return fail(describe(removed.error()));
      std::cout << "Removed key " << positional[0] << "\n";
      return 0;
    }
    return usage("unknown key command '" + verb + "'");
  }
  if (what != "client") return usage("unknown admin command '" + what + "' (client or key)");

  if (verb == "list") {
    auto listed = with_tables(db, [&](resources::OAuthTables& t) -> fhir::Result<void> {
      auto clients = t.clients(resources::kDefaultTenant);
      if (!clients) return std::unexpected(clients.error());
      for (const resources::ClientRecord& c : *clients) {
        std::cout << c.client_id << "\t" << c.kind << "\t" << (c.name.empty() ? "-" : c.name) << "\tscopes:";
        for (const std::string& s : c.scopes) std::cout << " " << s;
        if (!c.redirect_uris.empty()) {
          std::cout << "\tredirect:";
          for (const std::string& u : c.redirect_uris) std::cout << " " << u;
        }
        if (!c.jwks_url.empty()) std::cout << "\tjwks_url: " << c.jwks_url;
        if (!c.tls_subject.empty()) std::cout << "\ttls_subject: " << c.tls_subject;
        std::cout << "\n";
      }
      return {};
    });
    return listed ? 0 : fail(describe(listed.error()));
  }
  if (verb == "remove") {
    if (positional.size() != 1) return usage("client remove takes one client id");
    bool removed = false;
    auto done = with_tables(db, [&](resources::OAuthTables& t) -> fhir::Result<void> {
      auto r = t.remove_client(resources::kDefaultTenant, positional[0]);
      if (!r) return std::unexpected(r.error());
      removed = *r;
      return {};
    });
    if (!done) return fail(describe(done.error()));
    if (!removed) return fail("no client '" + positional[0] + "'");
    std::cout << "Removed client " << positional[0] << "\n";
    return 0;
  }
  if (verb != "add") return usage("unknown client command '" + verb + "'");
  if (auto bad =
          allow_only({"id", "type", "name", "secret", "jwks", "jwks-url", "redirect-uri", "scope", "tls-subject"});
      !bad.empty())
    return usage("unknown option " + bad);

  resources::ClientRecord c;
  c.client_id = one("id");
  c.kind = one("type");
  c.name = one("name");
  if (c.client_id.empty() || c.client_id.find_first_of(" :\t\n") != std::string::npos)
    return usage("--id is required (no spaces or colons)");
  if (c.kind != "public" && c.kind != "confidential-symmetric" && c.kind != "confidential-asymmetric" &&
      c.kind != "tls-client-auth")
    return usage("--type is public, confidential-symmetric, confidential-asymmetric or tls-client-auth");
  for (const std::string& u : options["redirect-uri"]) {
    if (!is_absolute_url(u)) return fail("--redirect-uri '" + u + "' is not an absolute http(s) URL");
    c.redirect_uris.push_back(u);
  }
  for (const std::string& text : options["scope"])
    for (const std::string& s : split_scopes(text)) {
      if (s.find('/') != std::string::npos && !s.starts_with("launch/")) {  // launch/patient, launch/encounter
        auto parsed = parse_resource_scope(s);
        if (!parsed) return fail("--scope: " + describe(parsed.error()));
      }
      c.scopes.push_back(s);
    }
  if (c.scopes.empty()) return usage("give at least one --scope");
  std::string secret;
  if (c.kind == "confidential-symmetric") {
    secret = one("secret").empty() ? random_token(32) : one("secret");
    if (secret.size() < 16) return fail("--secret must be at least 16 characters");
    c.secret_hash = hash_secret(secret);
  } else if (!one("secret").empty()) {
    return usage("--secret is for confidential-symmetric clients");
  }
  if (c.kind == "confidential-asymmetric") {
    std::string jwks = one("jwks");
    if (jwks.starts_with("@")) {
      std::ifstream in(jwks.substr(1));
      if (!in) return fail("cannot read " + jwks.substr(1));
      std::stringstream text;
      text << in.rdbuf();
      jwks = text.str();
    }
    c.jwks_url = one("jwks-url");
    if (jwks.empty() == c.jwks_url.empty()) return usage("a confidential-asymmetric client needs --jwks or --jwks-url");
    if (!c.jwks_url.empty() && !c.jwks_url.starts_with("https://")) return fail("--jwks-url must be an https URL");
    if (!jwks.empty()) {
      auto parsed = json::parse(jwks);
      const json::Value* keys = parsed && parsed->is_object() ? parsed->find("keys") : nullptr;
      if (keys == nullptr || !keys->is_array() || keys->items().empty())
        return fail("--jwks is not a JWK Set ({\"keys\":[...]})");
      for (const json::Value& k : keys->items())
        if (auto key = key_from_jwk(k); !key) return fail("--jwks: " + describe(key.error()));
      c.jwks = json::write(*parsed);
    }
  } else if (!one("jwks").empty() || !one("jwks-url").empty()) {
    return usage("--jwks and --jwks-url are for confidential-asymmetric clients");
  }
  if (c.kind == "tls-client-auth") {
    if (one("tls-subject").empty()) return usage("a tls-client-auth client needs --tls-subject DN");
    auto subject = canonical_subject_dn(one("tls-subject"));
    if (!subject) return fail("--tls-subject: " + describe(subject.error()));
    c.tls_subject = std::move(*subject);
  } else if (!one("tls-subject").empty()) {
    return usage("--tls-subject is for tls-client-auth clients");
  }
  c.created_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  auto added = with_tables(db, [&](resources::OAuthTables& t) { return t.add_client(resources::kDefaultTenant, c); });
  if (!added) return fail(describe(added.error()));
  std::cout << "Registered client " << c.client_id << " (" << c.kind << ")\n";
  if (!c.tls_subject.empty())
    std::cout << "Its TLS client certificate must have the subject " << c.tls_subject
              << " (and the server must run with --tls-client-ca)\n";
  if (!secret.empty() && one("secret").empty())
    std::cout << "client_secret: " << secret << "\n(shown once: only its hash is kept)\n";
  return 0;
}

}  // namespace caduceus::server::auth
