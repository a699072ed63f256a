#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "caduceus/fhir/json.hpp"

namespace caduceus::test {

// Response headers in arrival order, looked up case-insensitively.
class Headers {
 public:
  void add(std::string name, std::string value);
  // The first value of that header, or nullopt.
  std::optional<std::string> get(std::string_view name) const;
  // The first value, or "" when absent.
  std::string value(std::string_view name) const { return get(name).value_or(std::string()); }
  bool has(std::string_view name) const { return get(name).has_value(); }
  std::vector<std::string> all(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& list() const noexcept { return list_; }

 private:
  std::vector<std::pair<std::string, std::string>> list_;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct Response {
  int status = 0;  // 0 when no response was received; `error` then says why
  Headers headers;
  std::string body;
  std::string error;  // transport error, empty on success

  std::string header(std::string_view name) const { return headers.value(name); }
  // The body parsed as JSON; nullopt when it is not JSON.
  std::optional<fhir::json::Value> json() const;
  // "201 Created" style one-liner plus the start of the body, for assertion messages.
  std::string summary(std::size_t max_body = 600) const;
};

// A small synchronous HTTP/1.1 client over one keep-alive connection (reconnecting when the server closed it).
// Not thread-safe: one client per thread.
class HttpClient {
 public:
  HttpClient(std::string host, std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // From a URL such as "http://127.0.0.1:8080/fhir" (only host and port are used).
  explicit HttpClient(std::string_view url, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;

  // Sends one request (target is origin-form: "/fhir/Patient/1?_format=json") and reads the response. A Host
  // header is added; Content-Length is set when there is a body; the caller's headers are sent as given.
  // Never throws on network errors: the result then has status 0 and `error` set.
  // When a reused keep-alive connection turns out closed before any response byte arrived, the request is sent
  // once more on a new connection.
  Response request(std::string_view method, std::string_view target, std::string_view body = {},
                   const HeaderList& headers = {});

  Response get(std::string_view target, const HeaderList& headers = {}) { return request("GET", target, {}, headers); }
  // POST/PUT with Content-Type application/fhir+json unless the caller gives one.
  Response post(std::string_view target, std::string_view body, const HeaderList& headers = {});
  Response put(std::string_view target, std::string_view body, const HeaderList& headers = {});
  Response del(std::string_view target, const HeaderList& headers = {}) {
    return request("DELETE", target, {}, headers);
  }

  // Points the client at another port (e.g. after the server restarted); drops the current connection.
  void reconnect_to(std::string host, std::uint16_t port);
  void close();
  // How many TCP connections this client has opened so far (keep-alive makes this 1 for many requests).
  int connections_opened() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Opens a new connection, writes `bytes` exactly as given (e.g. several pipelined requests, or malformed HTTP),
// then reads up to `responses` responses in order. Stops at the first read error, which is then the `error` of
// one more (status 0) element.
std::vector<Response> send_raw(const std::string& host, std::uint16_t port, std::string_view bytes,
                               std::size_t responses, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Splits "http://host:port/path" (or https://) into its parts; nullopt when it is not such a URL.
struct ParsedUrl {
  std::string host;
  std::uint16_t port = 80;
  std::string path;  // "" or "/fhir" or "/fhir/Patient?x=y"
};
std::optional<ParsedUrl> parse_url(std::string_view url);

// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept).
std::string url_encode(std::string_view s);

// ---- JSON helpers -------------------------------------------------------------------------------------------

// Parses JSON text; nullopt when it does not parse.
std::optional<fhir::json::Value> parse_json(std::string_view text);

// Looks up a dotted path with optional indexes, e.g. "entry[0].resource.meta.versionId"; nullptr when absent.
const fhir::json::Value* find_path(const fhir::json::Value& root, std::string_view path);
// The string (or number literal) at path, or "" when absent.
std::string string_at(const fhir::json::Value& root, std::string_view path);
// The array size at path, or 0.
std::size_t size_at(const fhir::json::Value& root, std::string_view path);

// Differences between two JSON values, as "path: what" lines. Object member order is ignored; array order and
// number literals (as written) are compared exactly. Empty when equal. At most max_diffs lines.
std::vector<std::string> json_diff(const fhir::json::Value& expected, const fhir::json::Value& actual,
                                   std::size_t max_diffs = 20);

// A copy without the server-owned meta.versionId and meta.lastUpdated (and without meta when that leaves it
// empty). With drop_id, the top-level id is removed too.
fhir::json::Value without_server_meta(const fhir::json::Value& resource, bool drop_id = false);

}  // namespace caduceus::test
