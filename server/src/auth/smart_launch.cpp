#include "smart_launch.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>

#include "caduceus/resources/search_query.hpp"
#include "caduceus/server/auth/scopes.hpp"
#include "caduceus/server/errors.hpp"
#include "oauth_store.hpp"

namespace caduceus::server::auth {

using fhir::ErrorKind;
namespace json = fhir::json;

namespace {

constexpr std::string_view kCookie = "caduceus_signin";

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json::Value str(std::string s) {
  return json::Value::string(std::move(s));
}
json::Value num(std::int64_t n) {
  return json::Value::number(std::to_string(n));
}
std::string field(const json::Value& v, std::string_view name) {
  const json::Value* f = v.find(name);
  return f != nullptr && f->is_string() ? f->text() : std::string();
}
bool flag(const json::Value& v, std::string_view name) {
  const json::Value* f = v.find(name);
  return f != nullptr && f->is_bool() && f->as_bool();
}

// The base64url SHA-256 of a secret: what the database keeps of codes, refresh tokens and cookies.
std::string digest(std::string_view secret) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(secret.data(), secret.size(), md, &n, EVP_sha256(), nullptr);
  return base64url_encode(std::string_view(reinterpret_cast<const char*>(md), n));
}

bool same(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

bool has_scope(const std::vector<std::string>& scopes, std::string_view s) {
  return std::find(scopes.begin(), scopes.end(), s) != scopes.end();
}
std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : " ") + s;
  return out;
}

// RFC 7636: 43 to 128 of A-Z a-z 0-9 - . _ ~
bool pkce_text(std::string_view s) {
  if (s.size() < 43 || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' || c == '~';
  });
}

Response json_reply(int status, const json::Value& body, std::string interaction) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Pragma", "no-cache");
  r.body = json::write(body);
  r.interaction = std::move(interaction);
  return r;
}
Response oauth_error(int status, std::string error, std::string description, std::string interaction = "token") {
  json::Value body = json::Value::object();
  body.set("error", str(std::move(error)));
  body.set("error_description", str(std::move(description)));
  return json_reply(status, body, std::move(interaction));
}

// ---- the words of the pages, in English and French ----------------------------------------------------------

enum class Lang { kEn, kFr };

struct Words {
  const char* en;
  const char* fr;
};

const char* t(Lang lang, const Words& w) {
  return lang == Lang::kFr ? w.fr : w.en;
}

// The language asked for: `lang` (the switch), else the first of fr/en in Accept-Language, else English.
Lang pick_language(std::string_view explicit_lang, std::string_view accept) {
  if (explicit_lang == "fr") return Lang::kFr;
  if (explicit_lang == "en") return Lang::kEn;
  std::string a(accept);
  for (char& c : a) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // The first listed language with q > 0 that we speak (ranges are usually listed by preference).
  for (std::size_t start = 0; start < a.size();) {
    std::size_t comma = a.find(',', start);
    if (comma == std::string::npos) comma = a.size();
    std::string item = a.substr(start, comma - start);
    start = comma + 1;
    std::string tag = item.substr(0, item.find(';'));
    std::erase(tag, ' ');
    if (item.find("q=0") != std::string::npos && item.find("q=0.") == std::string::npos) continue;
    if (tag.starts_with("fr")) return Lang::kFr;
    if (tag.starts_with("en")) return Lang::kEn;
  }
  return Lang::kEn;
}

// A scope in plain words, for the consent page.
std::string describe_scope(const std::string& scope, Lang lang) {
  auto w = [&](const char* en, const char* fr) { return std::string(lang == Lang::kFr ? fr : en); };
  if (scope == "openid") return w("Confirm who you are", "Confirmer qui vous êtes");
  if (scope == "fhirUser" || scope == "profile")
    return w("Know your user record (your name and role)", "Connaître votre fiche d'utilisateur (nom et rôle)");
  if (scope == "launch" || scope == "launch/patient")
    return w("Know which patient record is open", "Savoir quel dossier patient est ouvert");
  if (scope == "launch/encounter") return w("Know the current visit", "Connaître la venue en cours");
  if (scope == "offline_access")
    return w("Keep access after you close the application, until you withdraw it",
             "Garder l'accès après la fermeture de l'application, jusqu'à ce que vous le retiriez");
  if (scope == "online_access")
    return w("Keep access while you stay signed in", "Garder l'accès tant que vous restez connecté");
  auto parsed = parse_resource_scope(scope);
  if (!parsed) return scope;
  std::vector<std::string> verbs;
  if (parsed->permissions & kRead) verbs.push_back(w("read", "lire"));
  if (parsed->permissions & kSearch) verbs.push_back(w("search", "rechercher"));
  if (parsed->permissions & kCreate) verbs.push_back(w("create", "créer"));
  if (parsed->permissions & kUpdate) verbs.push_back(w("change", "modifier"));
  if (parsed->permissions & kDelete) verbs.push_back(w("delete", "supprimer"));
  std::string list;
  for (std::size_t i = 0; i < verbs.size(); ++i)
    list += (i == 0 ? "" : i + 1 == verbs.size() ? w(" and ", " et ") : ", ") + verbs[i];
  if (!list.empty()) list[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(list[0])));
  std::string what = parsed->type == "*" ? w("all kinds of data", "tous les types de données")
                                         : w("the data of type ", "les données de type ") + parsed->type;
  std::string whose = parsed->context == "patient"
                          ? w(" of the patient's record", " du dossier du patient")
                          : w(" that you are allowed to see", " que vous avez le droit de voir");
  return list + " " + what + whose;
}

}  // namespace

struct SmartLaunch::Impl {
  resources::Store& store;
  const KeyRing& keys;
  UserDirectory& users;
  const std::string& base;
  const std::string& origin;
  std::function<bool(const std::string&)> is_revoked;
  LaunchOptions options;

  // ---- the database ---------------------------------------------------------------------------------------

  template <class F>
  fhir::Result<void> with_tables(F&& f) const {
    return with_oauth_tables(store, std::forward<F>(f));
  }
  fhir::Result<void> put(const resources::GrantRecord& g) const {
    return with_tables([&](resources::OAuthTables& t) { return t.put_grant(options.tenant, g, now_s() * 1000); });
  }
  fhir::Result<std::optional<resources::GrantRecord>> find(const std::string& kind, const std::string& key) const {
    std::optional<resources::GrantRecord> out;
    auto r = with_tables([&](resources::OAuthTables& t) -> fhir::Result<void> {
      auto g = t.find_grant(options.tenant, kind, key, now_s() * 1000);
      if (!g) return std::unexpected(g.error());
      out = std::move(*g);
      return {};
    });
    if (!r) return std::unexpected(r.error());
    return out;
  }
  // Consumes a code or refresh token; a reused one revokes its whole family. nullopt: none, expired or reused.
  fhir::Result<std::optional<resources::GrantRecord>> take(const std::string& kind, const std::string& key,
                                                           bool& reused) const {
    std::optional<resources::GrantRecord> out;
    reused = false;
    auto r = with_tables([&](resources::OAuthTables& t) -> fhir::Result<void> {
      auto g = t.consume_grant(options.tenant, kind, key, now_s() * 1000);
      if (!g) return std::unexpected(g.error());
      if (*g && (*g)->consumed) {
        reused = true;
        return t.revoke_grant_family(options.tenant, (*g)->family);
      }
      out = std::move(*g);
      return {};
    });
    if (!r) return std::unexpected(r.error());
    return out;
  }

  fhir::Result<std::optional<resources::ClientRecord>> find_client(const std::string& client_id) const {
    return find_oauth_client(store, options.tenant, client_id);
  }

  // ---- pages ----------------------------------------------------------------------------------------------

  bool secure() const { return origin.starts_with("https://"); }

  Response html(int status, Lang lang, const std::string& title, const std::string& content,
                bool language_switch) const {
    const char* code = lang == Lang::kFr ? "fr" : "en";
    std::string page = std::string("<!DOCTYPE html>\n<html lang=\"") + code +
                       "\">\n<head>\n<meta charset=\"utf-8\">\n"
                       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
                       html_escape(title) + " - Caduceus</title>\n<style>\n" +
                       "body{font-family:system-ui,sans-serif;font-size:1.25rem;line-height:1.6;color:#111;"
                       "background:#fff;max-width:38rem;margin:1.5rem auto;padding:0 1rem}\n"
                       "h1{font-size:1.8rem}label{display:block;font-weight:bold;margin-top:1.2rem}\n"
                       "input[type=text],input[type=password]{font-size:1.3rem;padding:.6rem;width:100%;"
                       "box-sizing:border-box;border:2px solid #333;border-radius:4px}\n"
                       "button{font-size:1.25rem;padding:.7rem 1.4rem;margin:1.2rem .6rem 0 0;border:2px solid "
                       "#0b3d91;border-radius:4px;background:#0b3d91;color:#fff;cursor:pointer}\n"
                       "button.secondary{background:#fff;color:#0b3d91}\n"
                       ":focus{outline:4px solid #f5a700;outline-offset:2px}\n"
                       ".error{border:3px solid #a00000;color:#a00000;padding:.6rem 1rem;font-weight:bold}\n"
                       ".hint{color:#333}code{font-size:1.1rem;word-break:break-all}\n"
                       "fieldset{border:2px solid #333;padding:.8rem 1rem;margin-top:1rem}\n"
                       "li{margin:.4rem 0}nav{text-align:right}\n"
                       "</style>\n</head>\n<body>\n";
    if (language_switch)
      page += std::string("<nav aria-label=\"") + t(lang, {"Language", "Langue"}) + "\">" +
              (lang == Lang::kFr ? "<a href=\"/auth/authorize?lang=en\" lang=\"en\" hreflang=\"en\">English</a>"
                                 : "<a href=\"/auth/authorize?lang=fr\" lang=\"fr\" hreflang=\"fr\">Français</a>") +
              "</nav>\n";
    page += "<main>\n<h1>" + html_escape(title) + "</h1>\n" + content + "\n</main>\n</body>\n</html>\n";
    Response r;
    r.status = status;
    r.headers.emplace_back("Content-Type", "text/html; charset=utf-8");
    r.headers.emplace_back("Cache-Control", "no-store");
    r.headers.emplace_back("X-Frame-Options", "DENY");
    r.headers.emplace_back("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
    r.headers.emplace_back("Content-Language", code);
    r.body = std::move(page);
    r.interaction = "authorize";
    return r;
  }

  // A page that ends the flow without a redirect (a bad client or redirect URI, an expired sign-in).
  Response error_page(int status, Lang lang, const std::string& message) const {
    return html(status, lang, t(lang, {"Sign-in impossible", "Connexion impossible"}),
                "<p class=\"error\" role=\"alert\">" + html_escape(message) + "</p>", false);
  }

  static std::string error_block(const std::string& error) {
    if (error.empty()) return {};
    return "<p class=\"error\" role=\"alert\" id=\"error\">" + html_escape(error) + "</p>\n";
  }
  static std::string described(const std::string& error) {
    return error.empty() ? std::string() : " aria-describedby=\"error\" aria-invalid=\"true\"";
  }

  // The sign-in's pages, for its current step.
  Response page(const json::Value& s, Lang lang, const std::string& error, int status = 200) const {
    std::string step = field(s, "step");
    std::string client_name = field(s, "client_name");
    std::string form =
        "<form method=\"post\" action=\"/auth/authorize\">\n<input type=\"hidden\" name=\"csrf\" value=\"" +
        html_escape(field(s, "csrf")) + "\">\n<input type=\"hidden\" name=\"step\" value=\"" + html_escape(step) +
        "\">\n<input type=\"hidden\" name=\"lang\" value=\"" + (lang == Lang::kFr ? "fr" : "en") + "\">\n";
    std::string content;
    std::string title;
    if (step == "login") {
      title = t(lang, {"Sign in", "Connexion"});
      content =
          "<p>" +
          html_escape(std::string(t(lang, {"The application ", "L'application "})) + "« " + client_name + " » " +
                      t(lang, {"asks to access your health data.", "demande à accéder à vos données de santé."})) +
          "</p>\n" + error_block(error) + form + "<label for=\"username\">" +
          t(lang, {"User name", "Nom d'utilisateur"}) +
          "</label>\n<input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" "
          "autocapitalize=\"none\" spellcheck=\"false\" required autofocus value=\"" +
          html_escape(field(s, "username")) + "\"" + described(error) + ">\n<label for=\"password\">" +
          t(lang, {"Password", "Mot de passe"}) +
          "</label>\n<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" "
          "required" +
          described(error) + ">\n<button type=\"submit\">" + t(lang, {"Sign in", "Se connecter"}) +
          "</button>\n</form>";
    } else if (step == "totp") {
      title = t(lang, {"Confirmation code", "Code de confirmation"});
      content = "<p>" +
                std::string(t(lang, {"Open your authenticator application and type the 6-digit code it shows.",
                                     "Ouvrez votre application d'authentification et saisissez le code à 6 "
                                     "chiffres qu'elle affiche."})) +
                "</p>\n" + error_block(error) + form + "<label for=\"code\">" + t(lang, {"Code", "Code"}) +
                "</label>\n<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" "
                "autocomplete=\"one-time-code\" pattern=\"[0-9]*\" maxlength=\"10\" required autofocus" +
                described(error) + ">\n<button type=\"submit\">" + t(lang, {"Confirm", "Valider"}) +
                "</button>\n</form>";
    } else if (step == "enrol") {
      title = t(lang, {"Set up your confirmation codes", "Configurer vos codes de confirmation"});
      content = "<p>" +
                std::string(t(lang, {"Your account needs a second factor. Add this key to an authenticator "
                                     "application (scan it as a QR code, or type the secret), then type the code it "
                                     "shows.",
                                     "Votre compte demande un second facteur. Ajoutez cette clé dans une application "
                                     "d'authentification (par un QR code, ou en saisissant le secret), puis "
                                     "saisissez le code qu'elle affiche."})) +
                "</p>\n<p>" + t(lang, {"Key", "Clé"}) + " : <code id=\"otpauth\">" +
                html_escape(field(s, "otpauth_uri")) + "</code></p>\n<p>" + t(lang, {"Secret", "Secret"}) +
                " : <code id=\"secret\">" + html_escape(field(s, "totp_secret")) + "</code></p>\n" +
                error_block(error) + form + "<label for=\"code\">" + t(lang, {"Code", "Code"}) +
                "</label>\n<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" "
                "autocomplete=\"one-time-code\" pattern=\"[0-9]*\" maxlength=\"10\" required autofocus" +
                described(error) + ">\n<button type=\"submit\">" + t(lang, {"Confirm", "Valider"}) +
                "</button>\n</form>";
    } else if (step == "password") {
      title = t(lang, {"Choose a new password", "Choisissez un nouveau mot de passe"});
      content = "<p>" +
                std::string(t(lang, {"Your password must be changed before you go on.",
                                     "Votre mot de passe doit être changé avant de continuer."})) +
                "</p>\n" + error_block(error) + form + "<label for=\"current\">" +
                t(lang, {"Current password", "Mot de passe actuel"}) +
                "</label>\n<input type=\"password\" id=\"current\" name=\"current\" "
                "autocomplete=\"current-password\" required autofocus" +
                described(error) + ">\n<label for=\"new\">" + t(lang, {"New password", "Nouveau mot de passe"}) +
                "</label>\n<input type=\"password\" id=\"new\" name=\"new\" autocomplete=\"new-password\" required" +
                described(error) + ">\n<label for=\"confirm\">" +
                t(lang, {"New password again", "Nouveau mot de passe, à nouveau"}) +
                "</label>\n<input type=\"password\" id=\"confirm\" name=\"confirm\" autocomplete=\"new-password\" "
                "required" +
                described(error) + ">\n<button type=\"submit\">" + t(lang, {"Change", "Changer"}) +
                "</button>\n</form>";
    } else if (step == "patient") {
      title = t(lang, {"Choose the patient", "Choisissez le patient"});
      std::string list;
      if (const json::Value* choices = s.find("choices"); choices != nullptr && choices->is_array())
        for (const json::Value& c : choices->items()) {
          std::string id = field(c, "id");
          list += "<div><input type=\"radio\" name=\"patient\" id=\"p-" + html_escape(id) + "\" value=\"" +
                  html_escape(id) + "\"> <label style=\"display:inline\" for=\"p-" + html_escape(id) + "\">" +
                  html_escape(field(c, "name")) + " (" + html_escape(id) + ")</label></div>\n";
        }
      content = "<p>" +
                std::string(t(lang, {"Which patient's record should the application open?",
                                     "Quel dossier patient l'application doit-elle ouvrir ?"})) +
                "</p>\n" + error_block(error) + form + "<fieldset><legend>" + t(lang, {"Patients", "Patients"}) +
                "</legend>\n" + list + "<label for=\"patient_id\">" +
                t(lang, {"Or type the patient's id", "Ou saisissez l'identifiant du patient"}) +
                "</label>\n<input type=\"text\" id=\"patient_id\" name=\"patient_id\"" + described(error) +
                ">\n</fieldset>\n<button type=\"submit\">" + t(lang, {"Continue", "Continuer"}) + "</button>\n</form>";
    } else {  // consent
      title = t(lang, {"Allow access?", "Autoriser l'accès ?"});
      std::string items;
      for (const std::string& sc : split_scopes(field(s, "granted")))
        items += "<li>" + html_escape(describe_scope(sc, lang)) + " <span class=\"hint\">(" + html_escape(sc) +
                 ")</span></li>\n";
      std::string who =
          field(s, "patient").empty()
              ? std::string()
              : "<p>" + std::string(t(lang, {"Patient record: ", "Dossier patient : "})) +
                    html_escape(field(s, "patient_name").empty() ? field(s, "patient") : field(s, "patient_name")) +
                    "</p>\n";
      content = "<p>" +
                html_escape(std::string(t(lang, {"The application ", "L'application "})) + "« " + client_name + " » " +
                            t(lang, {"will be able to:", "pourra :"})) +
                "</p>\n<ul id=\"scopes\">\n" + items + "</ul>\n" + who + error_block(error) + form +
                "<button type=\"submit\" name=\"decision\" value=\"approve\" autofocus>" +
                t(lang, {"Allow", "Autoriser"}) +
                "</button>\n<button type=\"submit\" class=\"secondary\" name=\"decision\" value=\"deny\">" +
                t(lang, {"Refuse", "Refuser"}) + "</button>\n</form>";
    }
    return html(status, lang, title, content, true);
  }

  // ---- the authorization request ----------------------------------------------------------------------------

  // The redirect back to the client with `params` (and state) in its query.
  static Response redirect(const std::string& uri, const std::vector<std::pair<std::string, std::string>>& params,
                           const std::string& state) {
    std::string location = uri + (uri.find('?') == std::string::npos ? "?" : "&");
    bool first = true;
    auto add = [&](const std::string& k, const std::string& v) {
      location += (first ? "" : "&") + k + "=" + percent_encode(v);
      first = false;
    };
    for (const auto& [k, v] : params) add(k, v);
    if (!state.empty()) add("state", state);
    Response r;
    r.status = 302;
    r.headers.emplace_back("Location", location);
    r.headers.emplace_back("Cache-Control", "no-store");
    r.interaction = "authorize";
    return r;
  }
  static Response redirect_error(const std::string& uri, const std::string& error, const std::string& description,
                                 const std::string& state) {
    return redirect(uri, {{"error", error}, {"error_description", description}}, state);
  }

  std::string cookie_of(const Request& req) const {
    std::string_view h = req.header("cookie");
    std::string name = std::string(kCookie) + "=";
    for (std::size_t start = 0; start < h.size();) {
      std::size_t semi = h.find(';', start);
      if (semi == std::string_view::npos) semi = h.size();
      std::string_view item = h.substr(start, semi - start);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      if (item.starts_with(name)) return std::string(item.substr(name.size()));
      start = semi + 1;
    }
    return {};
  }
  std::string set_cookie(const std::string& value, int max_age) const {
    return std::string(kCookie) + "=" + value +
           "; Path=/auth; HttpOnly; SameSite=Lax; Max-Age=" + std::to_string(max_age) + (secure() ? "; Secure" : "");
  }

  // The session of the sign-in in progress (cookie), or nullopt.
  std::optional<std::pair<std::string, json::Value>> session(const Request& req) const {
    std::string cookie = cookie_of(req);
    if (cookie.empty()) return std::nullopt;
    std::string key = digest(cookie);
    auto g = find("signin", key);
    if (!g || !*g || (*g)->consumed) return std::nullopt;
    auto data = json::parse((*g)->data);
    if (!data || !data->is_object()) return std::nullopt;
    return std::pair{key, std::move(*data)};
  }
  fhir::Result<void> save(const std::string& key, const json::Value& s) const {
    resources::GrantRecord g;
    g.kind = "signin";
    g.key = key;
    g.family = key;
    g.data = json::write(s);
    g.expires_ms = (now_s() + options.signin_lifetime_s) * 1000;
    return put(g);
  }

  Response begin(const QueryParams& q, Lang lang) const {
    auto param = [&](std::string_view name) {
      const std::string* v = find_param(q, name);
      return v != nullptr ? *v : std::string();
    };
    std::string client_id = param("client_id"), redirect_uri = param("redirect_uri"), state = param("state");
    if (client_id.empty())
      return error_page(400, lang,
                        t(lang, {"The request names no application (client_id).",
                                 "La demande ne nomme aucune application (client_id)."}));
    auto client = find_client(client_id);
    if (!client) return error_page(503, lang, t(lang, {"The database does not answer.", "La base ne répond pas."}));
    if (!*client)
      return error_page(400, lang,
                        std::string(t(lang, {"Unknown application: ", "Application inconnue : "})) + client_id);
    const resources::ClientRecord& c = **client;
    if (redirect_uri.empty() && c.redirect_uris.size() == 1) redirect_uri = c.redirect_uris.front();
    if (redirect_uri.empty() || !has_scope(c.redirect_uris, redirect_uri))
      return error_page(400, lang,
                        t(lang, {"The redirect_uri is not one registered for this application: you are not sent "
                                 "back to it.",
                                 "La redirect_uri n'est pas une de celles enregistrées pour cette application : vous "
                                 "n'y êtes pas renvoyé."}));
    // From here on, errors go back to the application.
    if (param("response_type") != "code")
      return redirect_error(redirect_uri, "unsupported_response_type", "response_type must be code", state);
    std::string challenge = param("code_challenge"), method = param("code_challenge_method");
    if (challenge.empty() || method.empty())
      return redirect_error(redirect_uri, "invalid_request",
                            "PKCE is required: code_challenge and code_challenge_method=S256", state);
    if (method != "S256")
      return redirect_error(redirect_uri, "invalid_request", "code_challenge_method must be S256 (plain is refused)",
                            state);
    if (challenge.size() != 43 || !pkce_text(challenge))
      return redirect_error(redirect_uri, "invalid_request", "code_challenge is not a base64url SHA-256", state);
    std::string aud = param("aud");
    while (aud.ends_with("/")) aud.pop_back();
    if (aud != base)
      return redirect_error(redirect_uri, "invalid_request", "aud must be this server's FHIR base " + base, state);
    std::vector<std::string> requested = split_scopes(param("scope"));
    if (requested.empty()) return redirect_error(redirect_uri, "invalid_scope", "scope is required", state);
    // What the client may have: resource scopes it covers (patient/ and user/ only: no system/ for a person),
    // and the others as registered.
    std::vector<ResourceScope> allowed;
    for (const std::string& s : c.scopes)
      if (auto parsed = parse_resource_scope(s)) allowed.push_back(std::move(*parsed));
    std::vector<std::string> granted;
    for (const std::string& s : requested) {
      auto parsed = parse_resource_scope(s);
      bool ok = false;
      if (parsed)
        ok = parsed->context != "system" &&
             std::any_of(allowed.begin(), allowed.end(), [&](const ResourceScope& a) { return covers(a, *parsed); });
      else
        ok = has_scope(c.scopes, s) && !s.starts_with("system/");
      if (ok && !has_scope(granted, s)) granted.push_back(s);
    }
    if (granted.empty())
      return redirect_error(redirect_uri, "invalid_scope", "none of the requested scopes is allowed to this client",
                            state);
    json::Value s = json::Value::object();
    // An EHR launch: the context of the launch id.
    std::string launch = param("launch");
    if (!launch.empty()) {
      auto g = find("launch", digest(launch));
      if (!g) return redirect_error(redirect_uri, "temporarily_unavailable", "the database does not answer", state);
      auto data = *g ? json::parse((*g)->data) : fhir::Result<json::Value>(json::Value::object());
      if (!*g || !data || !data->is_object())
        return redirect_error(redirect_uri, "invalid_request", "unknown or expired launch", state);
      if (!has_scope(granted, "launch")) granted.push_back("launch");
      s.set("patient", str(field(*data, "patient")));
      s.set("encounter", str(field(*data, "encounter")));
      s.set("ehr_launch", json::Value::boolean(true));
    }
    std::string cookie = random_token(32);
    s.set("step", str("login"));
    s.set("csrf", str(random_token(24)));
    s.set("client_id", str(c.client_id));
    s.set("client_name", str(c.name.empty() ? c.client_id : c.name));
    s.set("redirect_uri", str(redirect_uri));
    s.set("state", str(state));
    s.set("code_challenge", str(challenge));
    s.set("nonce", str(param("nonce")));
    s.set("granted", str(join(granted)));
    if (auto saved = save(digest(cookie), s); !saved)
      return error_page(503, lang, t(lang, {"The database does not answer.", "La base ne répond pas."}));
    Response r = page(s, lang, "");
    r.headers.emplace_back("Set-Cookie", set_cookie(cookie, options.signin_lifetime_s));
    return r;
  }

  // After the password (and the second factor): a new password if one must be chosen, the patient, the consent.
  void signed_in(json::Value& s, const UserInfo& user, bool must_change_password) const {
    s.set("username", str(user.username));
    s.set("role", str(std::string(to_string(user.role))));
    s.set("fhir_user", str(user.fhir_user));
    s.set("signed_in", json::Value::boolean(true));
    if (must_change_password) {
      s.set("step", str("password"));
      return;
    }
    next_after_password(s);
  }

  void next_after_password(json::Value& s) const {
    std::vector<std::string> granted = split_scopes(field(s, "granted"));
    bool wants_patient =
        has_scope(granted, "launch/patient") ||
        std::any_of(granted.begin(), granted.end(), [](const std::string& g) { return g.starts_with("patient/"); });
    std::string own = field(s, "fhir_user").starts_with("Patient/") ? field(s, "fhir_user").substr(8) : "";
    if (field(s, "role") == "patient") {
      // A patient only ever opens their own record.
      if (!field(s, "patient").empty() && field(s, "patient") != own) {
        s.set("step", str("refused"));
        return;
      }
      if (wants_patient) s.set("patient", str(own));
    } else if (wants_patient && field(s, "patient").empty() && has_scope(granted, "launch/patient")) {
      s.set("step", str("patient"));
      s.set("choices", patient_choices());
      return;
    }
    if (!field(s, "patient").empty()) s.set("patient_name", str(patient_name(field(s, "patient"))));
    s.set("step", str("consent"));
  }

  static std::string name_of(const json::Value& patient) {
    const json::Value* names = patient.find("name");
    if (names == nullptr || !names->is_array() || names->items().empty()) return {};
    const json::Value& n = names->items().front();
    if (std::string text = field(n, "text"); !text.empty()) return text;
    std::string out;
    if (const json::Value* given = n.find("given"); given != nullptr && given->is_array())
      for (const json::Value& g : given->items())
        if (g.is_string()) out += g.text() + " ";
    return out + field(n, "family");
  }

  std::string patient_name(const std::string& id) const {
    auto r = store.read(options.tenant, "Patient", id);
    if (!r || r->deleted) return {};
    auto body = json::parse(r->body);
    return body ? name_of(*body) : std::string();
  }

  json::Value patient_choices() const {
    json::Value out = json::Value::array();
    resources::SearchQuery q;
    q.type = "Patient";
    q.count = 20;
    auto page = store.search(options.tenant, q);
    if (!page) return out;
    for (const resources::VersionRecord& v : page->entries) {
      auto body = json::parse(v.body);
      json::Value c = json::Value::object();
      c.set("id", str(v.id));
      c.set("name", str(body ? name_of(*body) : std::string()));
      out.push_back(std::move(c));
    }
    return out;
  }

  std::string lock_message(Lang lang, const SignInResult& r) const {
    std::int64_t secs = r.retry_after.count();
    if (r.status == SignInStatus::kLocked) {
      std::int64_t minutes = (secs + 59) / 60;
      return std::string(t(lang, {"Too many failed attempts: the account is locked. Try again in ",
                                  "Trop d'essais manqués : le compte est bloqué. Réessayez dans "})) +
             std::to_string(minutes) + " " + t(lang, {"minute(s).", "minute(s)."});
    }
    return std::string(t(lang, {"Too many failed attempts. Wait ", "Trop d'essais manqués. Attendez "})) +
           std::to_string(secs) + " " + t(lang, {"second(s) and try again.", "seconde(s) puis réessayez."});
  }

  Response step(const Request& req, const QueryParams& form, Lang lang) const {
    auto param = [&](std::string_view name) {
      const std::string* v = find_param(form, name);
      return v != nullptr ? *v : std::string();
    };
    auto found = session(req);
    if (!found)
      return error_page(400, lang,
                        t(lang, {"This sign-in has expired or was not started here. Go back to the application and "
                                 "start again.",
                                 "Cette connexion a expiré ou n'a pas commencé ici. Revenez à l'application et "
                                 "recommencez."}));
    auto& [key, s] = *found;
    if (!same(param("csrf"), field(s, "csrf")))
      return error_page(403, lang,
                        t(lang, {"The form is not valid (security check). Start again from the application.",
                                 "Le formulaire n'est pas valide (contrôle de sécurité). Recommencez depuis "
                                 "l'application."}));
    const std::string step_now = field(s, "step");
    if (param("step") != step_now) return page(s, lang, "");  // an old page sent again: show the current one
    const auto now = std::chrono::system_clock::now();
    std::string error;
    auto unavailable = [&] {
      return error_page(503, lang, t(lang, {"The database does not answer.", "La base ne répond pas."}));
    };
    if (step_now == "login") {
      std::string username = param("username");
      s.set("username", str(username));
      auto result = users.authenticate(username, param("password"), "", now);
      if (!result) return unavailable();
      switch (result->status) {
        case SignInStatus::kOk: signed_in(s, *result->user, result->must_change_password); break;
        case SignInStatus::kMfaRequired: s.set("step", str("totp")); break;
        case SignInStatus::kMfaEnrolmentRequired: {
          auto enrolment = users.begin_totp_enrolment(username, now);
          if (!enrolment) return unavailable();
          s.set("step", str("enrol"));
          s.set("otpauth_uri", str(enrolment->uri));
          s.set("totp_secret", str(enrolment->secret_base32));
          break;
        }
        case SignInStatus::kThrottled:
        case SignInStatus::kLocked: error = lock_message(lang, *result); break;
        case SignInStatus::kDisabled: error = t(lang, {"This account is disabled.", "Ce compte est désactivé."}); break;
        default:
          error =
              t(lang, {"The user name or the password is wrong.", "Le nom d'utilisateur ou le mot de passe est faux."});
      }
      if (field(s, "step") == "totp" || field(s, "step") == "enrol") s.set("mfa_user", str(username));
    } else if (step_now == "totp") {
      auto result = users.verify_second_factor(field(s, "mfa_user"), param("code"), now);
      if (!result) return unavailable();
      if (result->status == SignInStatus::kOk) {
        signed_in(s, *result->user, result->must_change_password);
      } else if (result->status == SignInStatus::kLocked || result->status == SignInStatus::kThrottled) {
        error = lock_message(lang, *result);
        if (result->status == SignInStatus::kLocked) s.set("step", str("login"));
      } else if (result->status == SignInStatus::kBadCode) {
        error = t(lang, {"This code is wrong or was used already. Wait for the next code and type it.",
                         "Ce code est faux ou a déjà servi. Attendez le code suivant et saisissez-le."});
      } else {
        s.set("step", str("login"));
        error = t(lang, {"Sign in again.", "Connectez-vous à nouveau."});
      }
    } else if (step_now == "enrol") {
      const std::string username = field(s, "mfa_user");
      auto confirmed = users.confirm_totp_enrolment(username, param("code"), now);
      if (!confirmed && confirmed.error().kind == ErrorKind::kInvalid) {
        error = t(lang, {"This code does not match the key. Check the time of your device and type the new code.",
                         "Ce code ne correspond pas à la clé. Vérifiez l'heure de votre appareil et saisissez le "
                         "nouveau code."});
      } else if (!confirmed) {
        return unavailable();
      } else {
        auto user = users.get(username, now);
        if (!user) return unavailable();
        signed_in(s, *user, user->must_change_password);
      }
    } else if (step_now == "password" && flag(s, "signed_in")) {
      if (param("new") != param("confirm")) {
        error = t(lang, {"The two new passwords differ.", "Les deux nouveaux mots de passe diffèrent."});
      } else if (auto changed = users.change_password(field(s, "username"), param("current"), param("new"), now);
                 !changed) {
        if (changed.error().kind == ErrorKind::kUnavailable) return unavailable();
        if (changed.error().kind == ErrorKind::kUnprocessable &&
            changed.error().issues.front().diagnostics.find("wrong") != std::string::npos)
          error = t(lang, {"The current password is wrong.", "Le mot de passe actuel est faux."});
        else if (changed.error().kind == ErrorKind::kUnprocessable)
          error =
              t(lang, {"Too many failed attempts: try again later.", "Trop d'essais manqués : réessayez plus tard."});
        else if (changed.error().issues.front().diagnostics.find("differ") != std::string::npos)
          error = t(lang, {"The new password must differ from the current one.",
                           "Le nouveau mot de passe doit être différent de l'actuel."});
        else
          error = std::string(t(lang, {"The new password is too short: at least ",
                                       "Le nouveau mot de passe est trop "
                                       "court : au moins "})) +
                  std::to_string(users.options().min_password_length) + " " + t(lang, {"characters.", "caractères."});
      } else {
        next_after_password(s);
      }
    } else if (step_now == "patient" && flag(s, "signed_in")) {
      std::string id = param("patient_id").empty() ? param("patient") : param("patient_id");
      auto read = id.empty() ? fhir::Result<resources::VersionRecord>(std::unexpected(fhir::Error{}))
                             : store.read(options.tenant, "Patient", id);
      if (!read || read->deleted) {
        error = t(lang, {"Choose a patient from the list, or type the id of an existing patient.",
                         "Choisissez un patient dans la liste, ou saisissez l'identifiant d'un patient existant."});
      } else {
        s.set("patient", str(id));
        next_after_password(s);
      }
    } else if (step_now == "consent" && flag(s, "signed_in")) {
      const std::string redirect_uri = field(s, "redirect_uri"), state = field(s, "state");
      // The sign-in ends here either way.
      (void)with_tables([&](resources::OAuthTables& tbl) -> fhir::Result<void> {
        auto r = tbl.consume_grant(options.tenant, "signin", key, now_s() * 1000);
        if (!r) return std::unexpected(r.error());
        return {};
      });
      if (param("decision") != "approve") {
        Response r = redirect_error(redirect_uri, "access_denied", "the user refused", state);
        r.headers.emplace_back("Set-Cookie", set_cookie("", 0));
        return r;
      }
      std::string code = random_token(32);
      resources::GrantRecord g;
      g.kind = "code";
      g.key = digest(code);
      g.family = random_token(18);
      json::Value data = json::Value::object();
      for (const char* name : {"client_id", "redirect_uri", "code_challenge", "nonce", "granted", "username", "role",
                               "fhir_user", "patient", "encounter"})
        data.set(name, str(field(s, name)));
      data.set("ehr_launch", json::Value::boolean(flag(s, "ehr_launch")));
      g.data = json::write(data);
      g.expires_ms = (now_s() + options.code_lifetime_s) * 1000;
      if (!put(g)) return unavailable();
      Response r = redirect(redirect_uri, {{"code", code}}, state);
      r.headers.emplace_back("Set-Cookie", set_cookie("", 0));
      return r;
    } else {
      return page(s, lang, "");
    }
    if (field(s, "step") == "refused") {
      (void)with_tables([&](resources::OAuthTables& tbl) -> fhir::Result<void> {
        auto r = tbl.consume_grant(options.tenant, "signin", key, now_s() * 1000);
        if (!r) return std::unexpected(r.error());
        return {};
      });
      return redirect_error(field(s, "redirect_uri"), "access_denied", "a patient user can only open their own record",
                            field(s, "state"));
    }
    s.set("lang", str(lang == Lang::kFr ? "fr" : "en"));
    if (!save(key, s)) return unavailable();
    return page(s, lang, error, error.empty() ? 200 : 400);
  }

  Response authorize(const Request& req) const {
    std::string_view target = req.target;
    auto qpos = target.find('?');
    auto query = parse_query(qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1));
    Lang header_lang = pick_language("", req.header("accept-language"));
    if (!query) return error_page(400, header_lang, "malformed query");
    if (req.method == "POST") {
      std::string_view type = req.header("content-type");
      if (!type.starts_with("application/x-www-form-urlencoded"))
        return error_page(415, header_lang, "the form is application/x-www-form-urlencoded");
      auto form = parse_query(req.body);
      if (!form) return error_page(400, header_lang, "malformed form");
      const std::string* lang = find_param(*form, "lang");
      return step(req, *form, pick_language(lang != nullptr ? *lang : "", req.header("accept-language")));
    }
    const std::string* lang_param = find_param(*query, "lang");
    Lang lang = pick_language(lang_param != nullptr ? *lang_param : "", req.header("accept-language"));
    if (find_param(*query, "client_id") == nullptr) {
      // The language switch (or a reload): the current page of the sign-in in progress.
      auto found = session(req);
      if (!found)
        return error_page(400, lang,
                          t(lang, {"There is no sign-in in progress. Start from the application.",
                                   "Aucune connexion n'est en cours. Commencez depuis l'application."}));
      found->second.set("lang", str(lang == Lang::kFr ? "fr" : "en"));
      (void)save(found->first, found->second);
      return page(found->second, lang, "");
    }
    return begin(*query, lang);
  }

  // ---- tokens ---------------------------------------------------------------------------------------------

  fhir::Result<std::string> sign(const json::Value& claims) const { return sign_jwt(keys.current(), claims); }

  // The token response for a grant's data (a code's or a refresh token's); `family` for the refresh token.
  Response issue(const json::Value& d, const std::string& scope, const std::string& family, bool with_id_token,
                 std::int64_t refresh_expires_s) const {
    const std::int64_t now = now_s();
    std::vector<std::string> scopes = split_scopes(scope);
    json::Value claims = json::Value::object();
    claims.set("iss", str(origin));
    claims.set("sub", str(field(d, "username")));
    claims.set("aud", str(base));
    claims.set("client_id", str(field(d, "client_id")));
    claims.set("scope", str(scope));
    claims.set("iat", num(now));
    claims.set("exp", num(now + options.user_token_lifetime_s));
    claims.set("jti", str(random_token(18)));
    if (!field(d, "fhir_user").empty()) claims.set("fhirUser", str(field(d, "fhir_user")));
    claims.set("role", str(field(d, "role")));
    if (!field(d, "patient").empty()) claims.set("patient", str(field(d, "patient")));
    if (!field(d, "encounter").empty()) claims.set("encounter", str(field(d, "encounter")));
    auto access = sign(claims);
    if (!access) return oauth_error(500, "server_error", "cannot sign the token");
    json::Value body = json::Value::object();
    body.set("access_token", str(*access));
    body.set("token_type", str("Bearer"));
    body.set("expires_in", num(options.user_token_lifetime_s));
    body.set("scope", str(scope));
    if (!field(d, "patient").empty()) body.set("patient", str(field(d, "patient")));
    if (!field(d, "encounter").empty()) body.set("encounter", str(field(d, "encounter")));
    if (!field(d, "patient").empty()) body.set("need_patient_banner", json::Value::boolean(!flag(d, "ehr_launch")));
    if (has_scope(scopes, "openid") && with_id_token) {
      json::Value id = json::Value::object();
      id.set("iss", str(origin));
      id.set("sub", str(field(d, "username")));
      id.set("aud", str(field(d, "client_id")));
      id.set("iat", num(now));
      id.set("exp", num(now + options.user_token_lifetime_s));
      if (!field(d, "fhir_user").empty() && (has_scope(scopes, "fhirUser") || has_scope(scopes, "profile")))
        id.set("fhirUser", str(base + "/" + field(d, "fhir_user")));
      if (!field(d, "nonce").empty()) id.set("nonce", str(field(d, "nonce")));
      auto id_token = sign(id);
      if (!id_token) return oauth_error(500, "server_error", "cannot sign the id_token");
      body.set("id_token", str(*id_token));
    }
    if (refresh_expires_s > 0) {
      std::string refresh = random_token(32);
      resources::GrantRecord g;
      g.kind = "refresh";
      g.key = digest(refresh);
      g.family = family;
      json::Value data = d;
      data.set("granted", str(scope));
      data.set("refresh_expires", num(refresh_expires_s));
      g.data = json::write(data);
      g.expires_ms = refresh_expires_s * 1000;
      if (!put(g)) return oauth_error(503, "temporarily_unavailable", "the database does not answer");
      body.set("refresh_token", str(refresh));
    }
    return json_reply(200, body, "token");
  }

  Response token(const QueryParams& form, const resources::ClientRecord& client) const {
    auto param = [&](std::string_view name) {
      const std::string* v = find_param(form, name);
      return v != nullptr ? *v : std::string();
    };
    const std::string grant_type = param("grant_type");
    if (grant_type == "authorization_code") {
      std::string code = param("code");
      if (code.empty()) return oauth_error(400, "invalid_request", "code is required");
      bool reused = false;
      auto g = take("code", digest(code), reused);
      if (!g) return oauth_error(503, "temporarily_unavailable", "the database does not answer");
      if (reused)
        return oauth_error(400, "invalid_grant",
                           "this authorization code was used already: the tokens issued with it are revoked");
      if (!*g) return oauth_error(400, "invalid_grant", "unknown or expired authorization code");
      auto d = json::parse((*g)->data);
      if (!d) return oauth_error(500, "server_error", "a stored grant does not parse");
      if (field(*d, "client_id") != client.client_id)
        return oauth_error(400, "invalid_grant", "the code was issued to another client");
      if (param("redirect_uri") != field(*d, "redirect_uri"))
        return oauth_error(400, "invalid_grant", "redirect_uri differs from the authorization request's");
      std::string verifier = param("code_verifier");
      if (verifier.empty()) return oauth_error(400, "invalid_request", "code_verifier is required (PKCE)");
      if (!pkce_text(verifier) || !same(digest(verifier), field(*d, "code_challenge")))
        return oauth_error(400, "invalid_grant", "code_verifier does not match the code_challenge");
      std::string scope = field(*d, "granted");
      std::vector<std::string> scopes = split_scopes(scope);
      std::int64_t refresh = 0;
      if (has_scope(scopes, "offline_access"))
        refresh = now_s() + options.offline_token_lifetime_s;
      else if (has_scope(scopes, "online_access"))
        refresh = now_s() + options.online_token_lifetime_s;
      return issue(*d, scope, (*g)->family, true, refresh);
    }
    // refresh_token
    std::string refresh = param("refresh_token");
    if (refresh.empty()) return oauth_error(400, "invalid_request", "refresh_token is required");
    // First the checks that leave the token as it is (another client, a wider scope), then its rotation.
    const std::string key = digest(refresh);
    auto peek = find("refresh", key);
    if (!peek) return oauth_error(503, "temporarily_unavailable", "the database does not answer");
    resources::ClientRecord named = client;
    if (*peek && !(*peek)->consumed) {
      auto d = json::parse((*peek)->data);
      if (!d) return oauth_error(500, "server_error", "a stored grant does not parse");
      if (named.client_id.empty()) {  // no client authentication: only the token's own client, if public
        auto owner = find_client(field(*d, "client_id"));
        if (!owner) return oauth_error(503, "temporarily_unavailable", "the database does not answer");
        if (!*owner || (*owner)->kind != "public")
          return oauth_error(401, "invalid_client", "this client must authenticate to refresh");
        named = std::move(**owner);
      }
      if (field(*d, "client_id") != named.client_id)
        return oauth_error(400, "invalid_grant", "the refresh token was issued to another client");
      std::vector<std::string> had = split_scopes(field(*d, "granted"));
      for (const std::string& s : split_scopes(param("scope")))
        if (!has_scope(had, s))
          return oauth_error(400, "invalid_scope", "scope '" + s + "' was not granted to the refresh token");
    }
    bool reused = false;
    auto g = take("refresh", key, reused);
    if (!g) return oauth_error(503, "temporarily_unavailable", "the database does not answer");
    if (reused)
      return oauth_error(400, "invalid_grant",
                         "this refresh token was used already: every refresh token of its grant is revoked");
    if (!*g) return oauth_error(400, "invalid_grant", "unknown, expired or revoked refresh token");
    auto d = json::parse((*g)->data);
    if (!d) return oauth_error(500, "server_error", "a stored grant does not parse");
    if (field(*d, "client_id") != named.client_id)
      return oauth_error(400, "invalid_grant", "the refresh token was issued to another client");
    auto user = users.get(field(*d, "username"), std::chrono::system_clock::now());
    if (!user || user->disabled) return oauth_error(400, "invalid_grant", "the user's account is not active");
    std::string scope = field(*d, "granted");
    if (std::string asked = param("scope"); !asked.empty()) scope = join(split_scopes(asked));
    const json::Value* expires = d->find("refresh_expires");
    std::int64_t refresh_expires = 0;
    if (expires != nullptr && expires->is_number()) refresh_expires = std::stoll(expires->text());
    std::vector<std::string> now_scopes = split_scopes(scope);
    if (!has_scope(now_scopes, "offline_access") && !has_scope(now_scopes, "online_access")) refresh_expires = 0;
    return issue(*d, scope, (*g)->family, false, refresh_expires);
  }

  // ---- EHR launch -----------------------------------------------------------------------------------------

  Response create_launch(const Request& req) const {
    auto fail = [](int status, std::string code, std::string message, std::string expression = {}) {
      Response r = error_response(ErrorKind::kInvalid, std::move(code), std::move(message), std::move(expression));
      r.status = status;
      r.interaction = "launch";
      if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"caduceus\"");
      return r;
    };
    std::string_view h = req.header("authorization");
    if (h.size() < 8 || (h.substr(0, 7) != "Bearer " && h.substr(0, 7) != "bearer "))
      return fail(401, "login", "a Bearer token of a staff user or a system client is required");
    std::string token(h.substr(7));
    auto header = peek_jwt_header(token);
    const SigningKey* key = header ? keys.find(header->kid) : nullptr;
    auto claims = key != nullptr ? verify_jwt(token, key->public_pem, key->alg)
                                 : fhir::Result<json::Value>(std::unexpected(fhir::Error{}));
    const json::Value* exp = claims ? claims->find("exp") : nullptr;
    if (!claims || field(*claims, "iss") != origin || exp == nullptr || !exp->is_number() ||
        std::stoll(exp->text()) <= now_s() || is_revoked(field(*claims, "jti")))
      return fail(401, "login", "the Bearer token is not valid");
    std::string role = field(*claims, "role");
    bool staff = role == "physician" || role == "nurse" || role == "technician" || role == "admin";
    bool system = false;
    if (role.empty())
      for (const std::string& s : split_scopes(field(*claims, "scope")))
        if (auto parsed = parse_resource_scope(s); parsed && parsed->context == "system" &&
                                                   (parsed->type == "*" || parsed->type == "Patient") &&
                                                   (parsed->permissions & kRead))
          system = true;
    if (!staff && !system)
      return fail(403, "forbidden", "only staff users and system clients that read Patient may create a launch");
    std::string_view type = req.header("content-type");
    std::string patient, encounter;
    if (type.starts_with("application/x-www-form-urlencoded")) {
      auto form = parse_query(req.body);
      if (!form) return fail(400, "invalid", "malformed form");
      if (const std::string* p = find_param(*form, "patient")) patient = *p;
      if (const std::string* e = find_param(*form, "encounter")) encounter = *e;
    } else {
      auto body = json::parse(req.body);
      if (!body || !body->is_object())
        return fail(400, "invalid", "the body is a JSON object {\"patient\":ID, \"encounter\":ID} or a form");
      patient = field(*body, "patient");
      encounter = field(*body, "encounter");
    }
    if (patient.empty()) return fail(400, "required", "patient is required", "patient");
    if (auto r = store.read(options.tenant, "Patient", patient); !r || r->deleted)
      return fail(400, "not-found", "no Patient/" + patient, "patient");
    if (!encounter.empty())
      if (auto r = store.read(options.tenant, "Encounter", encounter); !r || r->deleted)
        return fail(400, "not-found", "no Encounter/" + encounter, "encounter");
    std::string launch = random_token(24);
    resources::GrantRecord g;
    g.kind = "launch";
    g.key = digest(launch);
    g.family = g.key;
    json::Value data = json::Value::object();
    data.set("patient", str(patient));
    data.set("encounter", str(encounter));
    data.set("created_by", str(field(*claims, "sub")));
    g.data = json::write(data);
    g.expires_ms = (now_s() + options.launch_lifetime_s) * 1000;
    if (!put(g)) return fail(503, "transient", "the database does not answer");
    json::Value body = json::Value::object();
    body.set("launch", str(launch));
    body.set("patient", str(patient));
    if (!encounter.empty()) body.set("encounter", str(encounter));
    body.set("expires_in", num(options.launch_lifetime_s));
    return json_reply(201, body, "launch");
  }
};

SmartLaunch::SmartLaunch(resources::Store& store, const KeyRing& keys, UserDirectory& users, const std::string& base,
                         const std::string& origin, std::function<bool(const std::string&)> is_revoked,
                         LaunchOptions options)
    : impl_(new Impl{store, keys, users, base, origin, std::move(is_revoked), options}) {}
SmartLaunch::~SmartLaunch() = default;

Response SmartLaunch::authorize(const Request& request) const {
  return impl_->authorize(request);
}
Response SmartLaunch::create_launch(const Request& request) const {
  return impl_->create_launch(request);
}
Response SmartLaunch::token(const QueryParams& form, const resources::ClientRecord& client) const {
  return impl_->token(form, client);
}

}  // namespace caduceus::server::auth
