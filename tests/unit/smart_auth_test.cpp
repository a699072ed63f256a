// SMART scopes (parsing, coverage, grants), the signing keys and JWT helpers, client secret hashes.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <filesystem>

#include "caduceus/server/auth/keys.hpp"
#include "caduceus/server/auth/scopes.hpp"
#include "test_server.hpp"

namespace caduceus::server::auth {
namespace {

namespace json = fhir::json;

TEST(SmartScopes, V1ReadWriteAndStar) {
  auto read = parse_resource_scope("system/Observation.read");
  ASSERT_TRUE(read);
  EXPECT_EQ(read->context, "system");
  EXPECT_EQ(read->type, "Observation");
  EXPECT_EQ(read->permissions, kRead | kSearch);
  auto write = parse_resource_scope("user/*.write");
  ASSERT_TRUE(write);
  EXPECT_EQ(write->type, "*");
  EXPECT_EQ(write->permissions, kCreate | kUpdate | kDelete);
  auto all = parse_resource_scope("patient/Patient.*");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->permissions, kAll);
}

TEST(SmartScopes, V2Letters) {
  auto rs = parse_resource_scope("system/Observation.rs");
  ASSERT_TRUE(rs);
  EXPECT_EQ(rs->permissions, kRead | kSearch);
  auto cruds = parse_resource_scope("system/*.cruds");
  ASSERT_TRUE(cruds);
  EXPECT_EQ(cruds->permissions, kAll);
  auto cd = parse_resource_scope("system/Encounter.cd");
  ASSERT_TRUE(cd);
  EXPECT_EQ(cd->permissions, kCreate | kDelete);
  EXPECT_EQ(permission_letters(cd->permissions), "cd");
}

TEST(SmartScopes, RefusesMalformedAndQueries) {
  for (const char* bad :
       {"system/Observation.sr", "system/Observation.rr", "system/Observation.x", "system/Observation.", "openid",
        "launch/patient", "admin/Patient.read", "system/observation.read", "system/Observation"})
    EXPECT_FALSE(parse_resource_scope(bad)) << bad;
  for (const char* bad :
       {"system/Observation.read?category=laboratory", "patient/*.rs?category=laboratory", "patient/Observation.rs?"})
    EXPECT_FALSE(parse_resource_scope(bad)) << bad;
  auto granular = parse_resource_scope("patient/Observation.rs?category=laboratory&status=final");
  ASSERT_TRUE(granular);
  EXPECT_EQ(granular->context, "patient");
  EXPECT_EQ(granular->type, "Observation");
  EXPECT_EQ(granular->permissions, kRead | kSearch);
  EXPECT_EQ(granular->query, "category=laboratory&status=final");
}

TEST(SmartScopes, Covers) {
  auto star = *parse_resource_scope("system/*.read");
  EXPECT_TRUE(covers(star, *parse_resource_scope("system/Observation.rs")));
  EXPECT_TRUE(covers(star, *parse_resource_scope("system/Patient.r")));
  EXPECT_FALSE(covers(star, *parse_resource_scope("system/Patient.c")));
  EXPECT_FALSE(covers(star, *parse_resource_scope("user/Patient.r")));  // another context
  auto obs = *parse_resource_scope("system/Observation.cruds");
  EXPECT_TRUE(covers(obs, *parse_resource_scope("system/Observation.write")));
  EXPECT_FALSE(covers(obs, *parse_resource_scope("system/*.r")));  // a type does not cover every type
}

TEST(SmartScopes, GrantUnionsItsScopes) {
  Grant grant({*parse_resource_scope("system/Observation.r"), *parse_resource_scope("system/*.s"),
               *parse_resource_scope("patient/Encounter.cruds")});
  EXPECT_TRUE(grant.allows("Observation", kRead | kSearch));  // r from one scope, s from the other
  EXPECT_TRUE(grant.allows("Encounter", kSearch));
  EXPECT_TRUE(grant.allows("Encounter", kRead));  // patient/ scopes count (the access filter narrows them)
  EXPECT_FALSE(grant.allows("Patient", kRead));
  EXPECT_FALSE(grant.allows("Observation", kCreate));
  EXPECT_TRUE(grant.allows_all_types(kSearch));
  EXPECT_FALSE(grant.allows_all_types(kRead));
  EXPECT_EQ(split_scopes("  a  b c "), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(SmartKeys, FirstOpenGeneratesAnEs256KeyAndRotationKeepsTheOldOne) {
  test::TempDir dir("smart-keys");
  auto ring = KeyRing::open(dir.path());
  ASSERT_TRUE(ring) << ring.error().issues[0].diagnostics;
  ASSERT_EQ(ring->keys().size(), 1u);
  const std::string first = ring->current().kid;
  EXPECT_EQ(ring->current().alg, "ES256");
  auto perms = std::filesystem::status(dir.path() / "keys" / (first + ".pem")).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  auto second = KeyRing::rotate(dir.path(), "RS256");
  ASSERT_TRUE(second);
  auto again = KeyRing::open(dir.path());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->keys().size(), 2u);
  EXPECT_EQ(again->current().kid, *second);
  EXPECT_EQ(again->current().alg, "RS256");
  ASSERT_NE(again->find(first), nullptr);
  json::Value jwks = again->jwks();
  ASSERT_EQ(jwks.find("keys")->items().size(), 2u);
  EXPECT_FALSE(KeyRing::remove(dir.path(), *second)) << "the current key cannot be removed";
  EXPECT_TRUE(KeyRing::remove(dir.path(), first));
  EXPECT_EQ(KeyRing::open(dir.path())->keys().size(), 1u);
}

TEST(SmartKeys, SignedTokensVerifyWithTheirJwkAndNothingElse) {
  test::TempDir dir("smart-keys");
  auto ring = KeyRing::open(dir.path());
  ASSERT_TRUE(ring);
  ASSERT_TRUE(KeyRing::rotate(dir.path(), "RS256"));
  auto both = KeyRing::open(dir.path());
  ASSERT_TRUE(both);
  for (const SigningKey& key : both->keys()) {
    json::Value claims = json::Value::object();
    claims.set("sub", json::Value::string("me"));
    claims.set("exp", json::Value::number("2000000000"));
    auto token = sign_jwt(key, claims);
    ASSERT_TRUE(token);
    auto header = peek_jwt_header(*token);
    ASSERT_TRUE(header);
    EXPECT_EQ(header->kid, key.kid);
    EXPECT_EQ(header->alg, key.alg);
    // Through the JWK, as a client of the JWKS would.
    auto jwk = public_jwk(key.key.get());
    ASSERT_TRUE(jwk);
    auto from_jwk = key_from_jwk(*jwk);
    ASSERT_TRUE(from_jwk);
    auto pem = public_pem(from_jwk->get());
    ASSERT_TRUE(pem);
    auto verified = verify_jwt(*token, *pem, key.alg);
    ASSERT_TRUE(verified) << key.alg;
    EXPECT_EQ(verified->find("sub")->text(), "me");
    // The wrong alg, a changed payload, another key: refused.
    EXPECT_FALSE(verify_jwt(*token, *pem, key.alg == "ES256" ? "RS256" : "ES256"));
    std::string tampered = *token;
    tampered[tampered.find('.') + 3] ^= 1;
    EXPECT_FALSE(verify_jwt(tampered, *pem, key.alg));
    for (const SigningKey& other : both->keys())
      if (other.kid != key.kid) EXPECT_FALSE(verify_jwt(*token, other.public_pem, key.alg));
  }
}

TEST(SmartKeys, AlgNoneIsNeverAccepted) {
  test::TempDir dir("smart-keys");
  auto ring = KeyRing::open(dir.path());
  ASSERT_TRUE(ring);
  std::string token =
      base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + base64url_encode(R"({"sub":"x"})") + ".";
  EXPECT_FALSE(verify_jwt(token, ring->current().public_pem, "none"));
  EXPECT_FALSE(verify_jwt(token, ring->current().public_pem, ring->current().alg));
}

TEST(SmartKeys, JwkWithAPointOffTheCurveIsRefused) {
  json::Value jwk = json::Value::object();
  jwk.set("kty", json::Value::string("EC"));
  jwk.set("crv", json::Value::string("P-256"));
  jwk.set("x", json::Value::string(base64url_encode(std::string(32, '\x01'))));
  jwk.set("y", json::Value::string(base64url_encode(std::string(32, '\x02'))));
  EXPECT_FALSE(key_from_jwk(jwk));
}

TEST(SmartKeys, Base64urlRoundTrip) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "\xff\xfe\xfd"}) {
    auto back = base64url_decode(base64url_encode(s));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_FALSE(base64url_decode("a+b="));
}

TEST(SmartSecrets, HashVerifiesOnlyTheSameSecret) {
  std::string hash = hash_secret("correct horse battery staple");
  EXPECT_TRUE(hash.starts_with("pbkdf2-sha256$100000$"));
  EXPECT_EQ(hash.find("correct"), std::string::npos);
  EXPECT_TRUE(verify_secret("correct horse battery staple", hash));
  EXPECT_FALSE(verify_secret("correct horse battery stapler", hash));
  EXPECT_NE(hash_secret("correct horse battery staple"), hash) << "salted";
  EXPECT_FALSE(verify_secret("x", "plain"));
}

}  // namespace
}  // namespace caduceus::server::auth
