#pragma once

// SMART App Launch (2.x): the authorization-code flow with PKCE, end to end. Used by SmartAuth, which routes
// /auth/authorize and /auth/launch here and hands over the authorization_code and refresh_token grants of its
// token endpoint once the client is authenticated.
//
//   GET  /auth/authorize   the authorization request (response_type=code, client_id, redirect_uri, scope, state,
//                          aud, code_challenge + code_challenge_method=S256, launch): checks it, opens a sign-in
//                          (a cookie and a row in the database) and shows the sign-in page
//   POST /auth/authorize   the sign-in pages' forms: password, TOTP code (or its enrolment), a new password when
//                          one must be chosen, the patient picker, the consent; then the redirect with the code
//   GET  /auth/authorize?lang=fr|en   the current page again in the other language (the language switch)
//   POST /auth/launch      an EHR launch: creates an opaque launch id carrying a patient (and an encounter) for
//                          a Bearer token of a staff user or a system client
//
// Codes, refresh tokens, launch ids and sign-ins in progress live in the database (OAuthTables grants), hashed,
// so that several servers agree and a restart loses nothing.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "../url.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/store/oauth_tables.hpp"
#include "caduceus/resources/store/store.hpp"
#include "caduceus/server/auth/keys.hpp"
#include "caduceus/server/auth/users.hpp"
#include "caduceus/server/http_types.hpp"

namespace caduceus::server::auth {

struct LaunchOptions {
  resources::TenantId tenant = resources::kDefaultTenant;
  int user_token_lifetime_s = 3600;               // access tokens of users
  int offline_token_lifetime_s = 30 * 24 * 3600;  // refresh tokens of offline_access
  int online_token_lifetime_s = 12 * 3600;        // refresh tokens of online_access
  int code_lifetime_s = 60;                       // authorization codes
  int signin_lifetime_s = 15 * 60;                // a sign-in in progress
  int launch_lifetime_s = 10 * 60;                // an EHR launch id
};

class SmartLaunch {
 public:
  // `base` and `origin` are read at each request (they are set once the server listens). `is_revoked` tells
  // whether an access token's jti has been revoked.
  SmartLaunch(resources::Store& store, const KeyRing& keys, UserDirectory& users, const std::string& base,
              const std::string& origin, std::function<bool(const std::string&)> is_revoked, LaunchOptions options);
  ~SmartLaunch();

  // GET and POST /auth/authorize (may block: password hashing, the store).
  Response authorize(const Request& request) const;
  // POST /auth/launch.
  Response create_launch(const Request& request) const;
  // The token endpoint's authorization_code and refresh_token grants, for an authenticated `client` (public
  // clients: the client_id of the form). Returns the JSON response (200 or an OAuth error).
  Response token(const QueryParams& form, const resources::ClientRecord& client) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace caduceus::server::auth
