// The per-client cache of JWK Sets fetched from --jwks-url (with a fetch function of the test, counting calls),
// and the URL checks of the HTTPS fetch.
#include <gtest/gtest.h>

#include <map>

#include "auth/jwks_fetch.hpp"

namespace caduceus::server::auth {
namespace {

std::string set_with(const std::string& kid) {
  return R"({"keys":[{"kty":"EC","kid":")" + kid + R"("}]})";
}

struct FakeHost {
  std::map<std::string, fhir::Result<std::string>> documents;
  std::map<std::string, int> fetches;
  JwksUrlCache::Fetch fetch() {
    return [this](const std::string& url) -> fhir::Result<std::string> {
      ++fetches[url];
      auto it = documents.find(url);
      if (it == documents.end()) return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "answered 404");
      return it->second;
    };
  }
};

TEST(JwksUrlCache, FetchesOnceThenServesTheCachedSet) {
  FakeHost host;
  host.documents["https://a/jwks"] = set_with("k1");
  JwksUrlCache cache(300, 30, host.fetch());
  EXPECT_EQ(cache.jwks_for("a", "https://a/jwks", "k1").value(), set_with("k1"));
  EXPECT_EQ(cache.jwks_for("a", "https://a/jwks", "k1").value(), set_with("k1"));
  EXPECT_EQ(cache.jwks_for("a", "https://a/jwks", "").value(), set_with("k1"));
  EXPECT_EQ(host.fetches["https://a/jwks"], 1);
  // Another client has its own entry, even for the same URL.
  EXPECT_TRUE(cache.jwks_for("b", "https://a/jwks", "k1").has_value());
  EXPECT_EQ(host.fetches["https://a/jwks"], 2);
}

TEST(JwksUrlCache, AnUnknownKidRefetchesOnlyAfterTheInterval) {
  FakeHost host;
  host.documents["https://a/jwks"] = set_with("k1");
  JwksUrlCache throttled(300, 30, host.fetch());
  ASSERT_TRUE(throttled.jwks_for("a", "https://a/jwks", "k1"));
  host.documents["https://a/jwks"] = set_with("k2");
  // Within 30 s of the last fetch: the cached set, without k2 (the caller refuses the assertion).
  EXPECT_EQ(throttled.jwks_for("a", "https://a/jwks", "k2").value(), set_with("k1"));
  EXPECT_EQ(host.fetches["https://a/jwks"], 1);

  host.fetches.clear();
  host.documents["https://a/jwks"] = set_with("k1");
  JwksUrlCache eager(300, 0, host.fetch());
  ASSERT_TRUE(eager.jwks_for("a", "https://a/jwks", "k1"));
  host.documents["https://a/jwks"] = set_with("k2");
  EXPECT_EQ(eager.jwks_for("a", "https://a/jwks", "k2").value(), set_with("k2"));
  EXPECT_EQ(eager.jwks_for("a", "https://a/jwks", "k2").value(), set_with("k2"));
  EXPECT_EQ(host.fetches["https://a/jwks"], 2);
}

TEST(JwksUrlCache, AnExpiredSetIsFetchedAgainAndANewUrlStartsOver) {
  FakeHost host;
  host.documents["https://a/jwks"] = set_with("k1");
  host.documents["https://a/v2"] = set_with("k9");
  JwksUrlCache cache(0, 0, host.fetch());  // nothing is kept
  ASSERT_TRUE(cache.jwks_for("a", "https://a/jwks", "k1"));
  ASSERT_TRUE(cache.jwks_for("a", "https://a/jwks", "k1"));
  EXPECT_EQ(host.fetches["https://a/jwks"], 2);
  // The client was registered again with another URL: that one is fetched.
  EXPECT_EQ(cache.jwks_for("a", "https://a/v2", "k9").value(), set_with("k9"));
  EXPECT_EQ(host.fetches["https://a/v2"], 1);
}

TEST(JwksUrlCache, AFailureIsRememberedForTheIntervalAndNotAJwksIsAFailure) {
  FakeHost host;
  JwksUrlCache cache(300, 30, host.fetch());
  auto missing = cache.jwks_for("a", "https://a/gone", "k1");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().issues.front().diagnostics, "answered 404");
  host.documents["https://a/gone"] = set_with("k1");
  auto again = cache.jwks_for("a", "https://a/gone", "k1");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().issues.front().diagnostics, "answered 404");
  EXPECT_EQ(host.fetches["https://a/gone"], 1);

  host.documents["https://b/html"] = std::string("<html></html>");
  host.documents["https://b/nokeys"] = std::string(R"({"keys":{}})");
  auto html = cache.jwks_for("b", "https://b/html", "");
  ASSERT_FALSE(html);
  EXPECT_EQ(html.error().issues.front().diagnostics, "the document at https://b/html is not a JWK Set");
  EXPECT_FALSE(cache.jwks_for("c", "https://b/nokeys", ""));
}

TEST(HttpsGet, RefusesWhatIsNotAnHttpsUrlItCanReach) {
  for (const char* url : {"http://127.0.0.1/jwks", "https://", "https://user@host/jwks", "https://[::1]/jwks",
                          "https://host:port/jwks", "ftp://host/jwks"}) {
    auto r = https_get(url);
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error().kind, fhir::ErrorKind::kInvalid) << url;
  }
}

}  // namespace
}  // namespace caduceus::server::auth
