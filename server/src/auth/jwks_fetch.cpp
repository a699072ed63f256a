// The HTTPS client that fetches the JWK Sets of clients registered by URL (the only Beast SSL client TU), and
// their per-client cache.
#include "jwks_fetch.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>

#include "caduceus/fhir/json.hpp"

namespace caduceus::server::auth {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using fhir::ErrorKind;

namespace {

struct HttpsUrl {
  std::string host, port = "443", target = "/";
};

fhir::Result<HttpsUrl> parse_https_url(const std::string& url) {
  constexpr std::string_view kScheme = "https://";
  if (!url.starts_with(kScheme)) return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWKS URL is not https");
  std::string rest = url.substr(kScheme.size());
  HttpsUrl out;
  auto slash = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) {
    out.target = rest.substr(slash);
    if (out.target.front() != '/') out.target.insert(0, "/");
    if (auto hash = out.target.find('#'); hash != std::string::npos) out.target.resize(hash);
  }
  if (authority.find('@') != std::string::npos || authority.starts_with("["))
    return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWKS URL's host is not supported (user info or IPv6)");
  if (auto colon = authority.rfind(':'); colon != std::string::npos) {
    out.port = authority.substr(colon + 1);
    authority.resize(colon);
    if (out.port.empty() || out.port.find_first_not_of("0123456789") != std::string::npos)
      return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWKS URL's port is not a number");
  }
  if (authority.empty()) return fhir::fail(ErrorKind::kInvalid, "invalid", "the JWKS URL has no host");
  out.host = authority;
  return out;
}

std::string describe(const beast::error_code& ec) {
  std::string what = ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    char buf[256];
    ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
    what = buf;
  }
  return what;
}

}  // namespace

fhir::Result<std::string> https_get(const std::string& url, const HttpsFetchLimits& limits) {
  auto parsed = parse_https_url(url);
  if (!parsed) return std::unexpected(parsed.error());
  const HttpsUrl u = *parsed;

  asio::io_context io;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  beast::error_code ec;
  ctx.set_default_verify_paths(ec);  // honours SSL_CERT_FILE and SSL_CERT_DIR
  if (ec) return fhir::fail(ErrorKind::kInvalid, "invalid", "cannot load the system's trusted certificates");
  ctx.set_verify_mode(asio::ssl::verify_peer);

  beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
  SSL* ssl = stream.native_handle();
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  beast::error_code addr_ec;
  const bool ip = !asio::ip::make_address_v4(u.host, addr_ec).is_unspecified() && !addr_ec;
  if (ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, u.host.c_str());
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, u.host.c_str(), 0);
    SSL_set_tlsext_host_name(ssl, u.host.c_str());  // SNI
  }

  std::optional<fhir::Result<std::string>> result;
  auto fail = [&](std::string what) { result = fhir::fail(ErrorKind::kInvalid, "invalid", std::move(what)); };
  const auto deadline = std::chrono::steady_clock::now() + limits.timeout;
  auto left = [&] {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
  };

  tcp::resolver resolver(io);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        constexpr auto token = asio::as_tuple(asio::use_awaitable);
        auto [rec, endpoints] = co_await resolver.async_resolve(u.host, u.port, token);
        if (rec) co_return fail("cannot resolve " + u.host + ": " + rec.message());
        beast::get_lowest_layer(stream).expires_after(left());
        auto [cec, ep] = co_await beast::get_lowest_layer(stream).async_connect(endpoints, token);
        if (cec) co_return fail("cannot connect to " + u.host + ":" + u.port + ": " + cec.message());
        beast::get_lowest_layer(stream).expires_after(left());
        auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, token);
        if (hec) {
          long verify = SSL_get_verify_result(ssl);
          co_return fail("TLS handshake with " + u.host + " failed: " +
                         (verify != X509_V_OK
                              ? std::string("certificate not trusted (") + X509_verify_cert_error_string(verify) + ")"
                              : describe(hec)));
        }
        http::request<http::empty_body> req(http::verb::get, u.target, 11);
        req.set(http::field::host, u.port == "443" ? u.host : u.host + ":" + u.port);
        req.set(http::field::accept, "application/jwk-set+json, application/json");
        req.set(http::field::user_agent, "caduceus");
        req.set(http::field::connection, "close");
        beast::get_lowest_layer(stream).expires_after(left());
        auto [wec, written] = co_await http::async_write(stream, req, token);
        if (wec) co_return fail("cannot send the request to " + u.host + ": " + wec.message());
        beast::flat_buffer buffer;
        http::response_parser<http::string_body> parser;
        parser.body_limit(limits.max_bytes);
        parser.header_limit(16 * 1024);
        beast::get_lowest_layer(stream).expires_after(left());
        auto [rdec, read] = co_await http::async_read(stream, buffer, parser, token);
        if (rdec == http::error::body_limit)
          co_return fail("the JWKS at " + url + " is larger than " + std::to_string(limits.max_bytes) + " bytes");
        if (rdec) co_return fail("cannot read the answer of " + u.host + ": " + rdec.message());
        auto& res = parser.get();
        unsigned status = res.result_int();
        if (status >= 300 && status < 400)
          co_return fail("the JWKS URL answered " + std::to_string(status) + " (a redirect, not followed)");
        if (status != 200) co_return fail("the JWKS URL answered " + std::to_string(status));
        result = std::move(res.body());
        // The connection closes with the stream; no TLS close_notify is awaited.
      },
      [&](std::exception_ptr e) {
        if (e && !result) fail("the JWKS fetch failed unexpectedly");
      });
  io.run_until(deadline);
  if (!result) {
    // The deadline passed: cancel what is pending and let the coroutine unwind (a name lookup in progress is
    // waited for, as getaddrinfo cannot be interrupted).
    beast::error_code ignored;
    resolver.cancel();
    beast::get_lowest_layer(stream).socket().close(ignored);
    io.restart();
    io.run();
    result = fhir::fail(ErrorKind::kInvalid, "invalid",
                        "fetching " + url + " took longer than " + std::to_string(limits.timeout.count()) + " ms");
  }
  return std::move(*result);
}

JwksUrlCache::JwksUrlCache(std::int64_t cache_s, std::int64_t refetch_s, Fetch fetch)
    : cache_s_(cache_s), refetch_s_(refetch_s), fetch_(std::move(fetch)) {
  if (!fetch_) fetch_ = [](const std::string& url) { return https_get(url); };
}

namespace {
bool has_kid(const std::string& jwks, const std::string& kid) {
  auto set = fhir::json::parse(jwks);
  const fhir::json::Value* keys = set ? set->find("keys") : nullptr;
  if (keys == nullptr || !keys->is_array()) return false;
  for (const fhir::json::Value& k : keys->items())
    if (const fhir::json::Value* id = k.find("kid"); id != nullptr && id->is_string() && id->text() == kid) return true;
  return false;
}
}  // namespace

fhir::Result<std::string> JwksUrlCache::jwks_for(const std::string& client_id, const std::string& url,
                                                 const std::string& kid) {
  using clock = std::chrono::steady_clock;
  std::shared_ptr<std::mutex> fetching;
  {
    std::lock_guard lock(mutex_);
    Entry& e = entries_[client_id];
    if (e.url != url) e = Entry{.url = url};
    fetching = e.fetching;
  }
  std::lock_guard one_fetch(*fetching);  // a concurrent request for this client waits for its fetch
  std::unique_lock lock(mutex_);
  Entry* e = &entries_[client_id];
  if (e->url != url) *e = Entry{.url = url};
  auto now = clock::now();
  const bool recent = e->attempted_once && now - e->attempted < std::chrono::seconds(refetch_s_);
  if (e->has_jwks && now - e->fetched < std::chrono::seconds(cache_s_) &&
      (kid.empty() || has_kid(e->jwks, kid) || recent))
    return e->jwks;
  if (recent) {
    if (!e->error.empty()) return fhir::fail(ErrorKind::kInvalid, "invalid", e->error);
    if (e->has_jwks) return e->jwks;
  }
  e->attempted = now;
  e->attempted_once = true;
  lock.unlock();
  auto fetched = fetch_(url);
  if (fetched) {
    auto set = fhir::json::parse(*fetched);
    const fhir::json::Value* keys = set && set->is_object() ? set->find("keys") : nullptr;
    if (keys == nullptr || !keys->is_array())
      fetched = fhir::fail(ErrorKind::kInvalid, "invalid", "the document at " + url + " is not a JWK Set");
  }
  lock.lock();
  e = &entries_[client_id];
  if (e->url != url) return fetched;
  if (fetched) {
    e->jwks = *fetched;
    e->has_jwks = true;
    e->fetched = e->attempted;
    e->error.clear();
    return fetched;
  }
  e->error = fetched.error().issues.empty() ? "the JWKS fetch failed" : fetched.error().issues.front().diagnostics;
  return fetched;
}

}  // namespace caduceus::server::auth
