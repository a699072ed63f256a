// The ceiling for read throughput: a minimal asynchronous Boost.Beast HTTP server (after Beast's
// example/http/server/async) that answers every GET or HEAD with the same bytes, read once from a file, and the
// same headers as a FHIR read (Content-Type, ETag, Last-Modified, Date). Same I/O threading (one strand per
// connection, N threads running one io_context) and keep-alive as the real server, and nothing else: no routing,
// no database, no logging. Compare bench/load/run.sh.
//
//   bare_beast_server BODY_FILE [--host H] [--port P] [--threads N] [--header 'Name: value']...
//
// Port 0 picks a free port; the first line printed is "bare_beast_server listening on http://HOST:PORT/".
// SIGINT/SIGTERM stop it.

#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using beast::error_code;

namespace {

struct Reply {
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

std::string http_date() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  thread_local std::time_t cached = -1;
  thread_local std::string text;
  std::time_t now = std::time(nullptr);
  if (now != cached) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7], tm.tm_mday,
                  kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    text = buf;
    cached = now;
  }
  return text;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, const Reply& reply) : stream_(std::move(socket)), reply_(reply) {}

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

 private:
  void do_read() {
    request_ = {};
    stream_.expires_after(std::chrono::seconds(60));
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(error_code ec) {
    if (ec) return close();
    response_ = {};
    response_.version(request_.version());
    response_.keep_alive(request_.keep_alive());
    if (request_.method() == http::verb::get || request_.method() == http::verb::head) {
      response_.result(http::status::ok);
      for (const auto& [name, value] : reply_.headers) response_.set(name, value);
      response_.set(http::field::date, http_date());
      response_.content_length(reply_.body.size());
      if (request_.method() == http::verb::get) response_.body() = reply_.body;
    } else {
      response_.result(http::status::method_not_allowed);
      response_.content_length(0);
    }
    http::async_write(stream_, response_, [self = shared_from_this()](error_code ec2, std::size_t) {
      if (ec2 || !self->response_.keep_alive()) return self->close();
      self->do_read();
    });
  }

  void close() {
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  const Reply& reply_;
};

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& ioc, tcp::acceptor&& acceptor, const Reply& reply)
      : ioc_(ioc), acceptor_(std::move(acceptor)), reply_(reply) {}

  void accept() {
    acceptor_.async_accept(asio::make_strand(ioc_), [self = shared_from_this()](error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
      if (!ec) {
        error_code ignored;
        s.set_option(tcp::no_delay(true), ignored);
        std::make_shared<Session>(std::move(s), self->reply_)->start();
      }
      self->accept();
    });
  }

  void close() {
    error_code ec;
    acceptor_.close(ec);
  }

 private:
  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  const Reply& reply_;
};

int usage() {
  std::cerr << "usage: bare_beast_server BODY_FILE [--host H] [--port P] [--threads N] "
               "[--header 'Name: value']...\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string body_file, host = "127.0.0.1";
  unsigned port = 0;
  std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  Reply reply;
  bool custom_headers = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "--host") {
      const char* v = value();
      if (!v) return usage();
      host = v;
    } else if (arg == "--port") {
      const char* v = value();
      if (!v) return usage();
      port = static_cast<unsigned>(std::strtoul(v, nullptr, 10));
    } else if (arg == "--threads") {
      const char* v = value();
      if (!v) return usage();
      threads = std::max<std::size_t>(1, std::strtoul(v, nullptr, 10));
    } else if (arg == "--header") {
      const char* v = value();
      if (!v) return usage();
      std::string h = v;
      auto colon = h.find(':');
      if (colon == std::string::npos) return usage();
      std::string name = h.substr(0, colon), val = h.substr(colon + 1);
      val.erase(0, val.find_first_not_of(' '));
      reply.headers.emplace_back(name, val);
      custom_headers = true;
    } else if (!arg.empty() && arg[0] != '-' && body_file.empty()) {
      body_file = arg;
    } else {
      return usage();
    }
  }
  if (body_file.empty()) return usage();
  std::ifstream in(body_file, std::ios::binary);
  if (!in) {
    std::cerr << "bare_beast_server: cannot read " << body_file << "\n";
    return 1;
  }
  reply.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (!custom_headers) {
    reply.headers = {{"Content-Type", "application/fhir+json"}, {"ETag", "W/\"1\""}, {"Last-Modified", http_date()}};
  }

  asio::io_context ioc(static_cast<int>(threads));
  error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    std::cerr << "bare_beast_server: bad host " << host << "\n";
    return 1;
  }
  tcp::acceptor acceptor(asio::make_strand(ioc));
  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "bare_beast_server: cannot listen on " << host << ":" << port << ": " << ec.message() << "\n";
    return 1;
  }
  auto bound = acceptor.local_endpoint(ec).port();
  auto listener = std::make_shared<Listener>(ioc, std::move(acceptor), reply);
  listener->accept();

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](error_code, int) {
    listener->close();
    ioc.stop();
  });

  std::printf("bare_beast_server listening on http://%s:%u/\n", host.c_str(), static_cast<unsigned>(bound));
  std::fflush(stdout);

  std::vector<std::thread> pool;
  for (std::size_t i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  return 0;
}
