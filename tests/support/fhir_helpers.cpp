#include "fhir_helpers.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <latch>
#include <set>
#include <thread>

namespace caduceus::test {

using fhir::json::Value;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool parse_int(std::string_view s, int& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace

std::string weak_etag(std::string_view version_id) {
  return "W/\"" + std::string(version_id) + "\"";
}

::testing::AssertionResult IsFhirJson(const Response& r, bool json_ok) {
  const std::string ct = r.header("Content-Type");
  if (ct.empty()) return ::testing::AssertionFailure() << "no Content-Type; " << r.summary(200);
  std::string_view rest(ct);
  auto semi = rest.find(';');
  const std::string media = lower(trim(rest.substr(0, semi)));
  bool charset_utf8 = false;
  while (semi != std::string_view::npos) {
    rest.remove_prefix(semi + 1);
    semi = rest.find(';');
    std::string param = lower(trim(rest.substr(0, semi)));
    if (param == "charset=utf-8" || param == "charset=\"utf-8\"") charset_utf8 = true;
  }
  const bool media_ok = media == "application/fhir+json" || (json_ok && media == "application/json");
  if (!media_ok || !charset_utf8)
    return ::testing::AssertionFailure() << "Content-Type is \"" << ct
                                         << "\", expected \"application/fhir+json; charset=utf-8\"";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsOperationOutcome(const Response& r, int status) {
  if (r.status != status)
    return ::testing::AssertionFailure() << "expected status " << status << ", got " << r.summary();
  if (auto ct = IsFhirJson(r); !ct) return ct << "; " << r.summary(300);
  auto body = r.json();
  if (!body) return ::testing::AssertionFailure() << "body is not JSON: " << r.summary();
  if (string_at(*body, "resourceType") != "OperationOutcome")
    return ::testing::AssertionFailure() << "body is not an OperationOutcome: " << r.summary();
  const Value* issues = body->find("issue");
  if (!issues || !issues->is_array() || issues->items().empty())
    return ::testing::AssertionFailure() << "OperationOutcome without issue: " << r.body;
  bool error = false;
  for (const auto& issue : issues->items()) {
    const std::string severity = string_at(issue, "severity");
    if (severity.empty() || string_at(issue, "code").empty())
      return ::testing::AssertionFailure() << "issue without severity or code (both 1..1): " << r.body;
    if (severity == "error" || severity == "fatal") error = true;
  }
  if (!error) return ::testing::AssertionFailure() << "no issue of severity error or fatal: " << r.body;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult NamesElement(const Response& r, const std::vector<std::string>& expressions,
                                        std::string_view diagnostics_mention) {
  auto body = r.json();
  if (!body) return ::testing::AssertionFailure() << "body is not JSON: " << r.summary();
  const Value* issues = body->find("issue");
  if (!issues || !issues->is_array()) return ::testing::AssertionFailure() << "no issues: " << r.body;
  const std::string mention = lower(diagnostics_mention);
  for (const auto& issue : issues->items()) {
    for (const char* field : {"expression", "location"}) {
      const Value* list = issue.find(field);
      if (!list || !list->is_array()) continue;
      for (const auto& e : list->items()) {
        if (!e.is_string()) continue;
        if (std::find(expressions.begin(), expressions.end(), e.text()) != expressions.end())
          return ::testing::AssertionSuccess();
        if (!mention.empty() && lower(e.text()).find(mention) != std::string::npos)
          return ::testing::AssertionSuccess();
      }
    }
    if (!mention.empty() && lower(string_at(issue, "diagnostics")).find(mention) != std::string::npos)
      return ::testing::AssertionSuccess();
  }
  auto failure = ::testing::AssertionFailure() << "no issue names the element (expected expression";
  for (const auto& e : expressions) failure << " \"" << e << "\"";
  if (!mention.empty()) failure << " or a mention of \"" << diagnostics_mention << "\"";
  return failure << "): " << r.body;
}

std::optional<std::int64_t> parse_http_date(std::string_view s) {
  // "Sun, 06 Nov 1994 08:49:37 GMT"
  static constexpr std::string_view kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (s.size() != 29 || s.substr(3, 2) != ", " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[19] != ':' ||
      s[22] != ':' || s.substr(25) != " GMT")
    return std::nullopt;
  auto day_name = std::find(std::begin(kDays), std::end(kDays), s.substr(0, 3));
  auto month = std::find(std::begin(kMonths), std::end(kMonths), s.substr(8, 3));
  int d, y, hh, mm, ss;
  if (day_name == std::end(kDays) || month == std::end(kMonths) || !parse_int(s.substr(5, 2), d) ||
      !parse_int(s.substr(12, 4), y) || !parse_int(s.substr(17, 2), hh) || !parse_int(s.substr(20, 2), mm) ||
      !parse_int(s.substr(23, 2), ss))
    return std::nullopt;
  const unsigned m = static_cast<unsigned>(month - std::begin(kMonths)) + 1;
  const std::int64_t days = days_from_civil(y, m, static_cast<unsigned>(d));
  // The day name must agree with the date (1970-01-01 was a Thursday).
  if (kDays[static_cast<std::size_t>(((days % 7) + 11) % 7)] != *day_name) return std::nullopt;
  return days * 86400 + hh * 3600 + mm * 60 + ss;
}

std::string format_http_date(std::int64_t seconds) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::optional<Instant> parse_instant(std::string_view s) {
  // YYYY-MM-DDThh:mm:ss[.f+](Z|(+|-)hh:mm)
  int y, mo, d, hh, mm, ss;
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
      !parse_int(s.substr(0, 4), y) || !parse_int(s.substr(5, 2), mo) || !parse_int(s.substr(8, 2), d) ||
      !parse_int(s.substr(11, 2), hh) || !parse_int(s.substr(14, 2), mm) || !parse_int(s.substr(17, 2), ss))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  std::size_t pos = 19;
  std::int64_t micros = 0;
  std::int64_t precision = 1000000;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      if (digits < 6) {
        micros = micros * 10 + (s[pos] - '0');
        precision /= 10;
      }
      ++digits;
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (int i = std::min(digits, 6); i < 6; ++i) micros *= 10;
  }
  std::int64_t offset_seconds = 0;
  if (pos < s.size() && s[pos] == 'Z') {
    ++pos;
  } else if (pos + 6 == s.size() && (s[pos] == '+' || s[pos] == '-') && s[pos + 3] == ':') {
    int oh, om;
    if (!parse_int(s.substr(pos + 1, 2), oh) || !parse_int(s.substr(pos + 4, 2), om)) return std::nullopt;
    offset_seconds = (oh * 3600 + om * 60) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  const std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  const std::int64_t seconds = days * 86400 + hh * 3600 + mm * 60 + ss - offset_seconds;
  return Instant{seconds * 1000000 + micros, precision};
}

History read_history(HttpClient& client, std::string_view target, int max_pages) {
  History h;
  std::set<std::string> seen;
  std::string next(target);
  for (int page = 0; !next.empty(); ++page) {
    if (page >= max_pages) {
      h.error = "more than " + std::to_string(max_pages) + " pages";
      break;
    }
    if (!seen.insert(next).second) {
      h.error = "the next link loops back to " + next;
      break;
    }
    Response r = client.get(next, {{"Accept", "application/fhir+json"}});
    if (r.status != 200) {
      h.error = "GET " + next + ": " + r.summary();
      break;
    }
    auto bundle = r.json();
    if (!bundle || string_at(*bundle, "resourceType") != "Bundle") {
      h.error = "GET " + next + " did not return a Bundle: " + r.summary();
      break;
    }
    if (page == 0) {
      if (const Value* total = bundle->find("total"); total && total->is_number()) h.total = std::stoll(total->text());
    }
    if (const Value* entries = bundle->find("entry"); entries && entries->is_array())
      for (const auto& e : entries->items()) h.entries.push_back(e);
    next.clear();
    if (const Value* links = bundle->find("link"); links && links->is_array()) {
      for (const auto& link : links->items()) {
        if (string_at(link, "relation") != "next") continue;
        const std::string url = string_at(link, "url");
        if (auto parsed = parse_url(url)) {
          next = parsed->path;
        } else if (url.starts_with("/")) {
          next = url;
        } else {
          h.error = "next link is not a URL: " + url;
        }
      }
    }
    h.pages.push_back(std::move(*bundle));
  }
  return h;
}

std::string describe_outcome(const Response& r) {
  auto body = r.json();
  if (!body || string_at(*body, "resourceType") != "OperationOutcome") return r.summary(300);
  std::string out = "HTTP " + std::to_string(r.status) + ":";
  const Value* issues = body->find("issue");
  if (!issues || !issues->is_array()) return out + " (no issues)";
  std::size_t n = 0;
  for (const auto& issue : issues->items()) {
    if (++n > 4) {
      out += " ... (" + std::to_string(issues->items().size()) + " issues)";
      break;
    }
    out += " [" + string_at(issue, "severity") + " " + string_at(issue, "code");
    if (const Value* e = issue.find("expression"); e && e->is_array() && !e->items().empty())
      out += " " + e->items()[0].text();
    const std::string diag = string_at(issue, "diagnostics");
    if (!diag.empty()) out += ": " + (diag.size() > 200 ? diag.substr(0, 200) + "..." : diag);
    out += "]";
  }
  return out;
}

// ---- ServerTest ----------------------------------------------------------------------------------------------

void ServerTest::start_server(ServerOptions options, const std::function<void(PgDatabase&)>& prepare) {
  server_.reset();
  pg_database_.reset();
  if (options.db.empty() && postgres_backend()) {
    if (postgres_skipped()) return;  // every test then skips in SetUp
    auto db = PgDatabase::create();
    if (!db) {
      ADD_FAILURE() << "PostgreSQL test database: " << db.error();
      return;
    }
    pg_database_ = std::move(*db);
    if (prepare) prepare(*pg_database_);
    options.db = pg_database_->url();
  }
  try {
    server_ = std::make_unique<TestServer>(std::move(options));
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
}

void ServerTest::at_once(int clients, const std::function<void(int, HttpClient&)>& each) {
  std::latch start(clients);
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t)
    threads.emplace_back([&, t] {
      HttpClient c(server_->host(), server_->port());
      c.get(path("metadata"));  // connected before the start
      start.arrive_and_wait();
      each(t, c);
    });
  for (auto& t : threads) t.join();
}

std::string ServerTest::path(std::string_view rel) {
  std::string p = server_ ? server_->base_path() : std::string("/fhir");
  if (!rel.empty()) {
    if (rel.front() != '/' && rel.front() != '?') p += '/';
    p += rel;
  }
  return p;
}

void ServerTest::SetUp() {
  if (!server_ && postgres_backend() && postgres_skipped())
    GTEST_SKIP() << "SKIPPED: CADUCEUS_SKIP_POSTGRES=1 (the PostgreSQL backend is not tested)";
  ASSERT_TRUE(server_) << "the caduceus server did not start (see the failure in SetUpTestSuite)";
  ASSERT_TRUE(server_->running()) << "the caduceus server is not running";
  client_ = std::make_unique<HttpClient>(server_->host(), server_->port());
}

void ServerTest::TearDown() {
  client_.reset();
  if (!server_) return;
  if (auto how = server_->died()) {
    ADD_FAILURE() << "the caduceus server died during this test (" << *how << "); stderr:\n" << server_->stderr_text();
    try {
      server_->restart();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "and could not be restarted: " << e.what();
      server_.reset();
    }
  }
}

std::optional<Value> ServerTest::create(std::string_view type, std::string_view body) {
  Response r = client().post(path(type), body, {{"Prefer", "return=representation"}});
  if (r.status != 201) {
    ADD_FAILURE() << "POST " << path(type) << " expected 201, got " << r.summary();
    return std::nullopt;
  }
  auto v = r.json();
  if (!v) {
    ADD_FAILURE() << "POST " << path(type) << " answered 201 without a JSON resource: " << r.summary();
    return std::nullopt;
  }
  return v;
}

std::optional<Value> ServerTest::read(std::string_view type_and_id) {
  Response r = client().get(path(type_and_id));
  if (r.status != 200) {
    ADD_FAILURE() << "GET " << path(type_and_id) << " expected 200, got " << r.summary();
    return std::nullopt;
  }
  auto v = r.json();
  if (!v) ADD_FAILURE() << "GET " << path(type_and_id) << " did not return JSON: " << r.summary();
  return v;
}

std::set<std::string> entry_ids(const Response& r) {
  std::set<std::string> ids;
  auto v = r.json();
  if (!v) return ids;
  if (const Value* entries = v->find("entry"); entries != nullptr && entries->is_array())
    for (const auto& e : entries->items())
      if (const Value* res = e.find("resource"); res != nullptr && res->find("id") != nullptr)
        ids.insert(res->find("id")->text());
  return ids;
}

std::set<std::string> entry_refs(const Response& r) {
  std::set<std::string> refs;
  auto v = r.json();
  if (!v) return refs;
  if (const Value* entries = v->find("entry"); entries != nullptr && entries->is_array())
    for (const auto& e : entries->items())
      if (const Value* res = e.find("resource"); res != nullptr && res->find("id") != nullptr)
        refs.insert(res->find("resourceType")->text() + "/" + res->find("id")->text());
  return refs;
}

std::vector<std::string> entry_order(const Response& r) {
  std::vector<std::string> ids;
  auto v = r.json();
  if (!v) return ids;
  if (const Value* entries = v->find("entry"); entries != nullptr && entries->is_array())
    for (const auto& e : entries->items()) {
      const Value* search = e.find("search");
      const Value* mode = search != nullptr ? search->find("mode") : nullptr;
      if (mode != nullptr && mode->text() == "match") ids.push_back(e.find("resource")->find("id")->text());
    }
  return ids;
}

std::string bundle_link(const Response& r, std::string_view relation) {
  auto v = r.json();
  if (!v) return {};
  if (const Value* links = v->find("link"); links != nullptr && links->is_array())
    for (const auto& l : links->items())
      if (const Value* rel = l.find("relation"); rel != nullptr && rel->text() == relation)
        return l.find("url")->text();
  return {};
}

}  // namespace caduceus::test
