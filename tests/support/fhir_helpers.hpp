#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/json.hpp"
#include "http_client.hpp"
#include "pg_cluster.hpp"
#include "test_server.hpp"

namespace caduceus::test {

// `W/"<vid>"`.
std::string weak_etag(std::string_view version_id);

// Whether Content-Type is `application/fhir+json` with charset utf-8 (media type and parameter compared
// case-insensitively, blanks around `;` ignored). With json_ok, plain `application/json` passes too.
::testing::AssertionResult IsFhirJson(const Response& r, bool json_ok = false);

// Whether the response has that status, FHIR JSON content type and an OperationOutcome body with at least one
// issue of severity error or fatal, each issue having a code.
::testing::AssertionResult IsOperationOutcome(const Response& r, int status);

// Whether some issue of the OperationOutcome in r names the element: an issue.expression (or the R4
// issue.location) equal to one of `expressions`, or, when `diagnostics_mention` is not empty, an issue whose
// diagnostics or expression contain it (case-insensitive).
::testing::AssertionResult NamesElement(const Response& r, const std::vector<std::string>& expressions,
                                        std::string_view diagnostics_mention = {});

// Parses an HTTP-date (IMF-fixdate, RFC 7231 7.1.1.1) to seconds since the epoch.
std::optional<std::int64_t> parse_http_date(std::string_view s);
// Formats seconds since the epoch as an IMF-fixdate.
std::string format_http_date(std::int64_t seconds);

// A FHIR instant/dateTime with a time, as microseconds since the epoch (UTC), with the length of the period
// that its precision denotes (e.g. 1000 for milliseconds, 1000000 for whole seconds).
struct Instant {
  std::int64_t micros = 0;
  std::int64_t precision_micros = 1;
};
std::optional<Instant> parse_instant(std::string_view s);

// A history Bundle read page by page.
struct History {
  std::vector<fhir::json::Value> entries;  // every entry of every page, in order
  std::vector<fhir::json::Value> pages;    // each page Bundle as received
  std::optional<std::int64_t> total;       // Bundle.total of the first page, when given
  std::string error;                       // the first problem met (status, not a Bundle, next loop, ...)
};
// GETs target (origin-form, e.g. "/fhir/_history?_count=5") and follows the `next` links until there is none.
// At most max_pages pages.
History read_history(HttpClient& client, std::string_view target, int max_pages = 10000);

// A short description of a response's OperationOutcome issues (for failure messages).
std::string describe_outcome(const Response& r);

// Base fixture: one server for the whole suite (started in SetUpTestSuite; a suite may define its own that
// calls start_server with other options), and a fresh keep-alive client per test.
class ServerTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() { start_server(); }
  static void TearDownTestSuite() { stop_server(); }

 protected:
  // Starts the suite's server; on failure records it and leaves no server (every test then fails in SetUp).
  // `prepare`, on PostgreSQL, is given the suite's fresh database before the server opens it.
  static void start_server(ServerOptions options = {}, const std::function<void(PgDatabase&)>& prepare = {});
  static void stop_server() {
    server_.reset();
    pg_database_.reset();
  }
  static TestServer& server() { return *server_; }
  // The base path joined with rel: path("Patient/1") is "/fhir/Patient/1"; path() is "/fhir".
  static std::string path(std::string_view rel = {});

  void SetUp() override;
  // Fails the test if the server died during it (and restarts it for the next test).
  void TearDown() override;
  HttpClient& client() { return *client_; }

  // POSTs a resource and expects 201; returns the created resource (parsed body) or nullopt on failure
  // (recorded with the response).
  std::optional<fhir::json::Value> create(std::string_view type, std::string_view body);
  // GET and parse; nullopt (with a recorded failure) unless 200 with a JSON body.
  std::optional<fhir::json::Value> read(std::string_view type_and_id);
  // Runs each(t, client) for t = 0 .. clients-1 on threads of their own, each with its own connection to the server,
  // made before any of them starts, so that they all start at once; returns when all are done.
  static void at_once(int clients, const std::function<void(int, HttpClient&)>& each);

  static inline std::unique_ptr<TestServer> server_;
  // With CADUCEUS_TEST_BACKEND=postgresql: the suite's fresh database (the server's --db) when options.db is empty.
  static inline std::unique_ptr<PgDatabase> pg_database_;
  std::unique_ptr<HttpClient> client_;
};

// Searchset Bundles: the ids of every entry's resource; its "Type/id"s; the ids of the matches in the Bundle's
// order; the url of its link with that relation ("self", "next"), or empty.
std::set<std::string> entry_ids(const Response& r);
std::set<std::string> entry_refs(const Response& r);
std::vector<std::string> entry_order(const Response& r);
std::string bundle_link(const Response& r, std::string_view relation);
inline std::string next_link(const Response& r) {
  return bundle_link(r, "next");
}
inline std::string self_link(const Response& r) {
  return bundle_link(r, "self");
}

}  // namespace caduceus::test
