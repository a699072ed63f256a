// The only translation unit of the tests that includes Beast.
#include "http_client.hpp"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <charconv>
#include <map>
#include <set>

namespace caduceus::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using fhir::json::Value;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool has_header(const HeaderList& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); });
}

}  // namespace

// ---- Headers -------------------------------------------------------------------------------------------------

void Headers::add(std::string name, std::string value) {
  list_.emplace_back(std::move(name), std::move(value));
}

std::optional<std::string> Headers::get(std::string_view name) const {
  for (const auto& [k, v] : list_)
    if (iequals(k, name)) return v;
  return std::nullopt;
}

std::vector<std::string> Headers::all(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : list_)
    if (iequals(k, name)) out.push_back(v);
  return out;
}

// ---- Response ------------------------------------------------------------------------------------------------

std::optional<Value> Response::json() const {
  return parse_json(body);
}

std::string Response::summary(std::size_t max_body) const {
  std::string s;
  if (status == 0) return "no response: " + error;
  s = "HTTP " + std::to_string(status);
  if (!headers.value("Content-Type").empty()) s += " (" + headers.value("Content-Type") + ")";
  if (!body.empty()) {
    s += " body: ";
    s += body.size() > max_body ? body.substr(0, max_body) + "...[" + std::to_string(body.size()) + " bytes]" : body;
  }
  return s;
}

// ---- HttpClient ----------------------------------------------------------------------------------------------

struct HttpClient::Impl {
  asio::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  std::string host;
  std::uint16_t port = 0;
  std::chrono::milliseconds timeout;
  bool connected = false;
  int connections = 0;

  void drop() {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.close();
    buffer.consume(buffer.size());
    connected = false;
  }

  beast::error_code connect() {
    drop();
    beast::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    std::vector<tcp::endpoint> endpoints;
    if (!ec) {
      endpoints.emplace_back(address, port);
    } else {
      tcp::resolver resolver(ioc);
      auto results = resolver.resolve(host, std::to_string(port), ec);
      if (ec) return ec;
      for (const auto& r : results) endpoints.push_back(r.endpoint());
    }
    stream.expires_after(timeout);
    beast::error_code result = asio::error::would_block;
    stream.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { result = e; });
    ioc.restart();
    ioc.run();
    if (result) return result;
    stream.socket().set_option(tcp::no_delay(true), ec);
    connected = true;
    ++connections;
    return {};
  }

  // One attempt on the current connection. `got_bytes` says whether any response byte arrived.
  Response exchange(std::string_view method, std::string_view target, std::string_view body, const HeaderList& headers,
                    bool& got_bytes) {
    Response out;
    http::request<http::string_body> req;
    req.version(11);
    const auto verb = http::string_to_verb(method);
    if (verb == http::verb::unknown)
      req.method_string(method);
    else
      req.method(verb);
    req.target(target);
    if (!has_header(headers, "Host")) req.set(http::field::host, host + ":" + std::to_string(port));
    for (const auto& [k, v] : headers) req.insert(k, v);
    req.body() = std::string(body);
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") req.prepare_payload();

    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    parser.header_limit(1 << 20);
    if (iequals(method, "HEAD")) parser.skip(true);

    bool write_done = false, read_done = false;
    beast::error_code write_ec, read_ec;
    stream.expires_after(timeout);
    http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
      write_done = true;
      write_ec = ec;
    });
    http::async_read(stream, buffer, parser, [&](beast::error_code ec, std::size_t) {
      read_done = true;
      read_ec = ec;
      // The server may answer before reading the whole body (413): stop sending then.
      if (!write_done) stream.socket().cancel();
    });
    ioc.restart();
    ioc.run();
    got_bytes = parser.got_some();

    if (read_ec) {
      out.error = std::string(write_ec ? "write: " + write_ec.message() + "; " : "") + "read: " + read_ec.message();
      drop();
      return out;
    }
    const auto& res = parser.get();
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res) out.headers.add(std::string(field.name_string()), std::string(field.value()));
    out.body = res.body();
    if (write_ec || !res.keep_alive()) drop();
    return out;
  }
};

HttpClient::HttpClient(std::string host, std::uint16_t port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->timeout = timeout;
}

HttpClient::HttpClient(std::string_view url, std::chrono::milliseconds timeout) : impl_(std::make_unique<Impl>()) {
  auto parsed = parse_url(url);
  if (parsed) {
    impl_->host = parsed->host;
    impl_->port = parsed->port;
  }
  impl_->timeout = timeout;
}

HttpClient::~HttpClient() {
  if (impl_) impl_->drop();
}
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

Response HttpClient::request(std::string_view method, std::string_view target, std::string_view body,
                             const HeaderList& headers) {
  for (int attempt = 0;; ++attempt) {
    const bool reused = impl_->connected;
    if (!impl_->connected) {
      if (auto ec = impl_->connect()) {
        Response r;
        r.error = "connect to " + impl_->host + ":" + std::to_string(impl_->port) + ": " + ec.message();
        return r;
      }
    }
    bool got_bytes = false;
    Response r = impl_->exchange(method, target, body, headers, got_bytes);
    if (r.status != 0 || !reused || got_bytes || attempt > 0) return r;
    // The server closed the idle keep-alive connection before we wrote: try once more on a new one.
  }
}

Response HttpClient::post(std::string_view target, std::string_view body, const HeaderList& headers) {
  HeaderList h = headers;
  if (!has_header(h, "Content-Type")) h.emplace_back("Content-Type", "application/fhir+json");
  return request("POST", target, body, h);
}

Response HttpClient::put(std::string_view target, std::string_view body, const HeaderList& headers) {
  HeaderList h = headers;
  if (!has_header(h, "Content-Type")) h.emplace_back("Content-Type", "application/fhir+json");
  return request("PUT", target, body, h);
}

void HttpClient::reconnect_to(std::string host, std::uint16_t port) {
  impl_->drop();
  impl_->host = std::move(host);
  impl_->port = port;
}

void HttpClient::close() {
  impl_->drop();
}

int HttpClient::connections_opened() const noexcept {
  return impl_->connections;
}

std::vector<Response> send_raw(const std::string& host, std::uint16_t port, std::string_view bytes,
                               std::size_t responses, std::chrono::milliseconds timeout) {
  std::vector<Response> out;
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  auto fail = [&](std::string what) {
    Response r;
    r.error = std::move(what);
    out.push_back(std::move(r));
    return out;
  };
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return fail("bad address " + host);
  stream.expires_after(timeout);
  stream.async_connect(tcp::endpoint(address, port), [&](beast::error_code e) { ec = e; });
  ioc.run();
  if (ec) return fail("connect: " + ec.message());
  stream.expires_after(timeout);
  asio::async_write(stream, asio::buffer(bytes.data(), bytes.size()),
                    [&](beast::error_code e, std::size_t) { ec = e; });
  ioc.restart();
  ioc.run();
  if (ec) return fail("write: " + ec.message());
  beast::flat_buffer buffer;
  for (std::size_t i = 0; i < responses; ++i) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    stream.expires_after(timeout);
    http::async_read(stream, buffer, parser, [&](beast::error_code e, std::size_t) { ec = e; });
    ioc.restart();
    ioc.run();
    if (ec) return fail("read: " + ec.message());
    Response r;
    const auto& res = parser.get();
    r.status = static_cast<int>(res.result_int());
    for (const auto& field : res) r.headers.add(std::string(field.name_string()), std::string(field.value()));
    r.body = res.body();
    out.push_back(std::move(r));
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return out;
}

// ---- URLs ----------------------------------------------------------------------------------------------------

std::optional<ParsedUrl> parse_url(std::string_view url) {
  const bool https = url.starts_with("https://");
  if (!url.starts_with("http://") && !https) return std::nullopt;
  url.remove_prefix(https ? 8 : 7);
  const auto slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  ParsedUrl out;
  if (https) out.port = 443;
  out.path = slash == std::string_view::npos ? std::string() : std::string(url.substr(slash));
  const auto colon = authority.rfind(':');
  if (colon == std::string_view::npos) {
    out.host = std::string(authority);
  } else {
    out.host = std::string(authority.substr(0, colon));
    auto digits = authority.substr(colon + 1);
    unsigned value = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc() || p != digits.data() + digits.size() || value > 65535) return std::nullopt;
    out.port = static_cast<std::uint16_t>(value);
  }
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2);
  if (out.host.empty()) return std::nullopt;
  return out;
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// ---- JSON ----------------------------------------------------------------------------------------------------

std::optional<Value> parse_json(std::string_view text) {
  auto parsed = fhir::json::parse(text);
  if (!parsed) return std::nullopt;
  return std::move(*parsed);
}

const Value* find_path(const Value& root, std::string_view path) {
  const Value* cur = &root;
  while (!path.empty() && cur) {
    auto dot = path.find('.');
    std::string_view step = path.substr(0, dot);
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    std::string_view name = step.substr(0, step.find('['));
    if (!name.empty()) cur = cur->find(name);
    step.remove_prefix(name.size());
    while (cur && step.starts_with('[')) {
      auto close = step.find(']');
      if (close == std::string_view::npos) return nullptr;
      std::size_t index = 0;
      auto digits = step.substr(1, close - 1);
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
      if (ec != std::errc() || !cur->is_array() || index >= cur->items().size()) return nullptr;
      cur = &cur->items()[index];
      step.remove_prefix(close + 1);
    }
  }
  return cur;
}

std::string string_at(const Value& root, std::string_view path) {
  const Value* v = find_path(root, path);
  if (!v || !(v->is_string() || v->is_number())) return {};
  return v->text();
}

std::size_t size_at(const Value& root, std::string_view path) {
  const Value* v = find_path(root, path);
  return v && v->is_array() ? v->items().size() : 0;
}

namespace {

std::string_view kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::kNull: return "null";
    case Value::Kind::kBool: return "boolean";
    case Value::Kind::kNumber: return "number";
    case Value::Kind::kString: return "string";
    case Value::Kind::kArray: return "array";
    case Value::Kind::kObject: return "object";
  }
  return "?";
}

std::string brief(const Value& v) {
  std::string s = fhir::json::write(v);
  if (s.size() > 120) s = s.substr(0, 117) + "...";
  return s;
}

void diff_into(const Value& a, const Value& b, const std::string& path, std::vector<std::string>& out,
               std::size_t max) {
  if (out.size() >= max) return;
  const std::string where = path.empty() ? "(root)" : path;
  if (a.kind() != b.kind()) {
    out.push_back(where + ": expected " + std::string(kind_name(a.kind())) + " " + brief(a) + ", got " +
                  std::string(kind_name(b.kind())) + " " + brief(b));
    return;
  }
  switch (a.kind()) {
    case Value::Kind::kNull: return;
    case Value::Kind::kBool:
      if (a.as_bool() != b.as_bool()) out.push_back(where + ": expected " + brief(a) + ", got " + brief(b));
      return;
    case Value::Kind::kNumber:
    case Value::Kind::kString:
      if (a.text() != b.text()) out.push_back(where + ": expected " + brief(a) + ", got " + brief(b));
      return;
    case Value::Kind::kArray:
      if (a.items().size() != b.items().size())
        out.push_back(where + ": expected " + std::to_string(a.items().size()) + " items, got " +
                      std::to_string(b.items().size()));
      for (std::size_t i = 0; i < std::min(a.items().size(), b.items().size()); ++i)
        diff_into(a.items()[i], b.items()[i], path + "[" + std::to_string(i) + "]", out, max);
      return;
    case Value::Kind::kObject: {
      const std::string prefix = path.empty() ? "" : path + ".";
      for (const auto& [k, v] : a.members()) {
        const Value* other = b.find(k);
        if (!other) {
          if (out.size() < max) out.push_back(prefix + k + ": missing (expected " + brief(v) + ")");
        } else {
          diff_into(v, *other, prefix + k, out, max);
        }
      }
      for (const auto& [k, v] : b.members())
        if (!a.find(k) && out.size() < max) out.push_back(prefix + k + ": unexpected " + brief(v));
      return;
    }
  }
}

}  // namespace

std::vector<std::string> json_diff(const Value& expected, const Value& actual, std::size_t max_diffs) {
  std::vector<std::string> out;
  diff_into(expected, actual, "", out, max_diffs);
  return out;
}

Value without_server_meta(const Value& resource, bool drop_id) {
  Value copy = resource;
  if (!copy.is_object()) return copy;
  if (drop_id) copy.erase("id");
  if (Value* meta = copy.find("meta"); meta && meta->is_object()) {
    meta->erase("versionId");
    meta->erase("lastUpdated");
    if (meta->members().empty()) copy.erase("meta");
  }
  return copy;
}

}  // namespace caduceus::test
