// The HTTP transport against real sockets on 127.0.0.1, port 0. The client side is plain POSIX sockets with a
// small response reader (no Beast here), every wait bounded by a poll timeout; synchronisation with handlers is by
// promises and futures, never by sleeping.

#include "caduceus/server/http_server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace caduceus::server {
namespace {

using namespace std::chrono_literals;

constexpr int kWaitMs = 10000;  // any single wait on the server; a hang fails the test instead of blocking it
constexpr auto kWait = std::chrono::milliseconds(kWaitMs);

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

struct HttpReply {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;

  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return v;
    return std::nullopt;
  }
};

// A blocking TCP client for one connection.
class Client {
 public:
  explicit Client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (connected_) {
      int one = 1;
      ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads one response. `head`: the response to a HEAD request (no body, whatever Content-Length says).
  std::optional<HttpReply> read(bool head = false) {
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return std::nullopt;
    std::string head_text = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);

    HttpReply reply;
    std::size_t line_end = head_text.find("\r\n");
    std::string status_line = head_text.substr(0, line_end);
    auto sp1 = status_line.find(' ');
    if (sp1 == std::string::npos) return std::nullopt;
    reply.version = status_line.substr(0, sp1);
    reply.status = std::atoi(status_line.c_str() + sp1 + 1);
    std::size_t pos = line_end == std::string::npos ? head_text.size() : line_end + 2;
    while (pos < head_text.size()) {
      std::size_t next = head_text.find("\r\n", pos);
      if (next == std::string::npos) next = head_text.size();
      std::string line = head_text.substr(pos, next - pos);
      auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        reply.headers.emplace_back(lower(line.substr(0, colon)), value);
      }
      pos = next + 2;
    }
    if (head || reply.status < 200 || reply.status == 204 || reply.status == 304) return reply;
    auto length = reply.header("content-length");
    if (!length) return std::nullopt;  // our server always frames with Content-Length
    std::size_t n = std::stoul(*length);
    while (buffer_.size() < n)
      if (!fill()) return std::nullopt;
    reply.body = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return reply;
  }

  // True when the server closed the connection (end of stream or reset) without sending anything more.
  bool closed_by_peer() {
    if (!buffer_.empty()) return false;
    if (fill()) return false;
    return eof_;
  }

 private:
  // Appends what arrives within the wait; false on end of stream, error or timeout.
  bool fill() {
    pollfd p{fd_, POLLIN, 0};
    int ready = ::poll(&p, 1, kWaitMs);
    if (ready <= 0) return false;
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      eof_ = n == 0 || errno == ECONNRESET;
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buffer_;
};

std::string get(std::string_view target, std::string_view extra_headers = {}) {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers) + "\r\n";
}

HttpServerOptions loopback(HttpServerOptions options) {
  options.host = "127.0.0.1";
  options.port = 0;
  return options;
}

// A server on 127.0.0.1:0 running in a background thread.
class TestServer {
 public:
  TestServer(HttpServerOptions options, Handler handler, std::function<bool(const Request&)> is_blocking = {},
             ExchangeObserver observer = {}, AsyncHandler async_handler = {}, bool stop_on_signals = false)
      : server_(loopback(std::move(options)), std::move(handler), std::move(is_blocking)) {
    if (observer) server_.set_observer(std::move(observer));
    if (async_handler) server_.set_async_handler(std::move(async_handler));
    if (stop_on_signals) server_.stop_on_signals();
    auto port = server_.listen();
    if (!port) throw std::runtime_error("listen failed: " + port.error().issues.at(0).diagnostics);
    port_ = *port;
    stopped_ = stopped_promise_.get_future();
    thread_ = std::thread([this] {
      server_.run();
      stopped_promise_.set_value();
    });
  }
  ~TestServer() {
    server_.stop();
    thread_.join();
  }

  HttpServer& server() { return server_; }
  std::uint16_t port() const { return port_; }
  // Whether run() returned within the wait.
  bool wait_stopped() { return stopped_.wait_for(kWait) == std::future_status::ready; }
  // Whether run() has returned already.
  bool has_stopped() { return stopped_.wait_for(0s) == std::future_status::ready; }

 private:
  HttpServer server_;
  std::uint16_t port_ = 0;
  std::promise<void> stopped_promise_;
  std::future<void> stopped_;
  std::thread thread_;
};

// Echoes method and target; records the last request it saw.
struct EchoHandler {
  std::mutex mutex;
  std::vector<Request> seen;

  Handler handler() {
    return [this](const Request& request) {
      {
        std::lock_guard lock(mutex);
        seen.push_back(request);
      }
      Response response;
      response.interaction = "echo";
      response.headers.emplace_back("Content-Type", "text/plain");
      if (request.rejected_status != 0) {
        response.status = request.rejected_status;
        response.headers = {{"Content-Type", "application/fhir+json"}};
        response.body = R"({"resourceType":"OperationOutcome"})";
        return response;
      }
      if (request.target == "/throw") throw std::runtime_error("boom");
      if (request.target == "/close") response.close = true;
      // HEAD gets the GET body, as the router does; the transport drops it.
      std::string method = request.method == "HEAD" ? "GET" : request.method;
      response.body = method + " " + request.target + (request.body.empty() ? "" : " " + request.body);
      return response;
    };
  }

  Request last() {
    std::lock_guard lock(mutex);
    return seen.empty() ? Request{} : seen.back();
  }
};

HttpServerOptions small_options() {
  HttpServerOptions options;
  options.io_threads = 2;
  options.blocking_threads = 2;
  return options;
}

TEST(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  EchoHandler echo;
  TestServer server(small_options(), echo.handler());
  Client client(server.port());
  ASSERT_TRUE(client.connected());

  ASSERT_TRUE(client.send(get("/fhir/Patient/1", "X-Custom-Header: Value\r\n")));
  auto first = client.read();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->version, "HTTP/1.1");
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(first->body, "GET /fhir/Patient/1");
  EXPECT_EQ(first->header("content-length"), std::to_string(first->body.size()));
  EXPECT_EQ(first->header("content-type"), "text/plain");
  EXPECT_TRUE(first->header("date"));
  EXPECT_FALSE(first->header("connection"));

  Request seen = echo.last();
  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.target, "/fhir/Patient/1");
  EXPECT_EQ(seen.header("x-custom-header"), "Value");
  EXPECT_EQ(seen.header("host"), "test");
  EXPECT_EQ(seen.remote, "127.0.0.1");
  EXPECT_EQ(seen.rejected_status, 0);

  ASSERT_TRUE(client.send("POST /fhir/Patient?x=1 HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"));
  auto second = client.read();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(second->body, "POST /fhir/Patient?x=1 hello");
  EXPECT_EQ(echo.last().body, "hello");
  EXPECT_EQ(server.server().open_connections(), 1u);
}

TEST(HttpServerTest, Http10ClosesUnlessKeepAliveIsAsked) {
  EchoHandler echo;
  TestServer server(small_options(), echo.handler());
  {
    Client client(server.port());
    ASSERT_TRUE(client.send("GET /one HTTP/1.0\r\n\r\n"));
    auto reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->version, "HTTP/1.0");
    EXPECT_EQ(reply->body, "GET /one");
    EXPECT_TRUE(client.closed_by_peer());
  }
  {
    Client client(server.port());
    ASSERT_TRUE(client.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->version, "HTTP/1.0");
    EXPECT_EQ(lower(reply->header("connection").value_or("")), "keep-alive");
    ASSERT_TRUE(client.send("GET /b HTTP/1.0\r\n\r\n"));
    reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->body, "GET /b");
    EXPECT_TRUE(client.closed_by_peer());
  }
}

TEST(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  EchoHandler echo;
  auto options = small_options();
  options.max_pipelined = 3;  // fewer than the requests sent: reading resumes as responses go out
  // Some requests go to the blocking pool: the order must hold across the two paths.
  TestServer server(options, echo.handler(), [](const Request& r) { return r.target.starts_with("/b"); });
  Client client(server.port());
  std::string batch;
  std::vector<std::string> targets;
  for (int i = 0; i < 12; ++i) {
    targets.push_back((i % 3 == 1 ? "/b" : "/i") + std::to_string(i));
    batch += get(targets.back());
  }
  ASSERT_TRUE(client.send(batch));
  for (const auto& target : targets) {
    auto reply = client.read();
    ASSERT_TRUE(reply) << target;
    EXPECT_EQ(reply->body, "GET " + target);
  }
}

TEST(HttpServerTest, HandlerCloseEndsTheConnectionAndDropsReadAhead) {
  EchoHandler echo;
  TestServer server(small_options(), echo.handler());
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/close") + get("/never")));
  auto reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "GET /close");
  EXPECT_EQ(lower(reply->header("connection").value_or("")), "close");
  EXPECT_TRUE(client.closed_by_peer());
}

TEST(HttpServerTest, BodyOverTheLimitIsAnswered413AndClosed) {
  EchoHandler echo;
  auto options = small_options();
  options.body_limit = 1024;
  TestServer server(options, echo.handler());

  {  // within the limit
    Client client(server.port());
    std::string body(1024, 'a');
    ASSERT_TRUE(client.send("POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n" + body));
    auto reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200);
  }
  {  // Content-Length over the limit: refused on the header
    Client client(server.port());
    ASSERT_TRUE(
        client.send("POST /fhir/Patient HTTP/1.1\r\nHost: t\r\nContent-Type: application/fhir+json\r\nContent-Length: "
                    "4096\r\n\r\n" +
                    std::string(4096, 'a')));
    auto reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 413);
    EXPECT_EQ(reply->header("content-type"), "application/fhir+json");
    EXPECT_EQ(lower(reply->header("connection").value_or("")), "close");
    EXPECT_TRUE(client.closed_by_peer());
    Request seen = echo.last();
    EXPECT_EQ(seen.rejected_status, 413);
    EXPECT_EQ(seen.method, "POST");
    EXPECT_EQ(seen.target, "/fhir/Patient");
    EXPECT_EQ(seen.header("content-type"), "application/fhir+json");
    EXPECT_TRUE(seen.body.empty());
    EXPECT_EQ(seen.remote, "127.0.0.1");
  }
  {  // a chunked body that grows over the limit
    Client client(server.port());
    ASSERT_TRUE(
        client.send("POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "200\r\n" +
                    std::string(512, 'a') + "\r\n" + "400\r\n" + std::string(1024, 'b') + "\r\n0\r\n\r\n"));
    auto reply = client.read();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 413);
    EXPECT_TRUE(client.closed_by_peer());
    Request seen = echo.last();
    EXPECT_EQ(seen.rejected_status, 413);
    EXPECT_EQ(seen.target, "/chunked");
    EXPECT_TRUE(seen.body.empty());
  }
}

TEST(HttpServerTest, HeadGetsTheHeadersOfGetWithoutABody) {
  EchoHandler echo;
  TestServer server(small_options(), echo.handler());
  Client client(server.port());
  // HEAD then GET on one connection: had the HEAD body been sent, the GET response would not parse.
  ASSERT_TRUE(client.send("HEAD /fhir/Patient/7 HTTP/1.1\r\nHost: t\r\n\r\n" + get("/fhir/Patient/7")));
  auto head = client.read(/*head=*/true);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
  auto got = client.read();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->body, "GET /fhir/Patient/7");
  EXPECT_EQ(head->header("content-length"), std::to_string(got->body.size()));
}

TEST(HttpServerTest, BlockingRequestsRunOnThePoolWhileOthersAreServed) {
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<std::thread::id> blocking_thread{}, inline_thread{};
  Handler handler = [&](const Request& request) {
    Response response;
    if (request.target == "/block") {
      blocking_thread = std::this_thread::get_id();
      entered.set_value();
      released.wait();
      response.body = "blocked";
    } else {
      inline_thread = std::this_thread::get_id();
      response.body = "fast";
    }
    return response;
  };
  auto options = small_options();
  options.io_threads = 1;  // a handler blocking the only I/O thread would stall the other connection
  TestServer server(options, handler, [](const Request& r) { return r.target == "/block"; });

  Client slow(server.port()), fast(server.port());
  ASSERT_TRUE(slow.send(get("/block")));
  ASSERT_EQ(entered.get_future().wait_for(kWait), std::future_status::ready);

  ASSERT_TRUE(fast.send(get("/fast")));
  auto fast_reply = fast.read();
  ASSERT_TRUE(fast_reply);
  EXPECT_EQ(fast_reply->body, "fast");

  release.set_value();
  auto slow_reply = slow.read();
  ASSERT_TRUE(slow_reply);
  EXPECT_EQ(slow_reply->body, "blocked");
  EXPECT_NE(blocking_thread.load(), inline_thread.load());
}

TEST(HttpServerTest, StopDrainsInFlightRequestsAndRefusesNewConnections) {
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  const std::string big(1 << 20, 'x');  // larger than socket buffers: written over several sends
  Handler handler = [&](const Request& request) {
    Response response;
    if (request.target == "/slow") {
      entered.set_value();
      released.wait();
      response.body = big;
    } else {
      response.body = "ok";
    }
    return response;
  };
  TestServer server(small_options(), handler, [](const Request& r) { return r.target == "/slow"; });

  Client idle(server.port());
  ASSERT_TRUE(idle.send(get("/warmup")));
  ASSERT_TRUE(idle.read());  // now an idle keep-alive connection

  Client busy(server.port());
  ASSERT_TRUE(busy.send(get("/slow")));
  ASSERT_EQ(entered.get_future().wait_for(kWait), std::future_status::ready);

  server.server().stop();  // returns once the listening socket is closed

  Client late(server.port());
  EXPECT_FALSE(late.connected());
  EXPECT_TRUE(idle.closed_by_peer());
  idle.close();
  EXPECT_FALSE(server.has_stopped());  // /slow is still in flight

  release.set_value();
  auto reply = busy.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->body.size(), big.size());
  EXPECT_EQ(lower(reply->header("connection").value_or("")), "close");
  EXPECT_TRUE(busy.closed_by_peer());
  busy.close();
  EXPECT_TRUE(server.wait_stopped());
  EXPECT_EQ(server.server().open_connections(), 0u);
}

TEST(HttpServerTest, SigtermDrainsAndStops) {
  EchoHandler echo;
  TestServer server(small_options(), echo.handler(), {}, {}, {}, /*stop_on_signals=*/true);
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/before")));
  ASSERT_TRUE(client.read());
  ASSERT_EQ(::raise(SIGTERM), 0);  // caught by the server's signal set, not the default disposition
  EXPECT_TRUE(client.closed_by_peer());
  EXPECT_TRUE(server.wait_stopped());
  EXPECT_FALSE(Client(server.port()).connected());
}

TEST(HttpServerTest, MalformedRequestsAreAnswered400AndClosed) {
  EchoHandler echo;
  TestServer server(small_options(), echo.handler());
  for (std::string garbage :
       {std::string("THIS IS NOT HTTP\r\n\r\n"), std::string("GET / HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n"),
        std::string("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 12x\r\n\r\n")}) {
    Client client(server.port());
    ASSERT_TRUE(client.send(garbage));
    auto reply = client.read();
    ASSERT_TRUE(reply) << garbage;
    EXPECT_EQ(reply->status, 400) << garbage;
    EXPECT_TRUE(client.closed_by_peer()) << garbage;
    EXPECT_EQ(echo.last().rejected_status, 400);
  }
}

TEST(HttpServerTest, HandlerExceptionIsAnswered500AndTheConnectionLives) {
  EchoHandler echo;
  TestServer server(small_options(), echo.handler(), [](const Request& r) { return r.method == "POST"; });
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/throw")));
  auto reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 500);
  EXPECT_EQ(reply->header("content-type"), "application/fhir+json");
  EXPECT_NE(reply->body.find("\"resourceType\":\"OperationOutcome\""), std::string::npos);
  // The same from the blocking pool.
  ASSERT_TRUE(client.send("POST /throw HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
  reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 500);
  ASSERT_TRUE(client.send(get("/after")));
  reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "GET /after");
}

TEST(HttpServerTest, ExpectContinueGetsAnInterimResponse) {
  EchoHandler echo;
  TestServer server(small_options(), echo.handler());
  Client client(server.port());
  ASSERT_TRUE(client.send("PUT /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
  auto interim = client.read();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(client.send("body"));
  auto reply = client.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "PUT /x body");
}

TEST(HttpServerTest, IdleAndIncompleteConnectionsTimeOut) {
  EchoHandler echo;
  auto options = small_options();
  options.idle_timeout = 1s;
  options.read_timeout = 1s;
  TestServer server(options, echo.handler());
  Client idle(server.port());
  ASSERT_TRUE(idle.send(get("/x")));
  ASSERT_TRUE(idle.read());
  Client partial(server.port());
  ASSERT_TRUE(partial.send("GET /y HTTP/1.1\r\nHost:"));
  EXPECT_TRUE(idle.closed_by_peer());
  EXPECT_TRUE(partial.closed_by_peer());
}

TEST(HttpServerTest, ObserverSeesEachExchange) {
  EchoHandler echo;
  std::mutex mutex;
  std::vector<std::pair<std::string, int>> observed;
  auto observer = [&](const Request& request, const Response& response, std::chrono::nanoseconds elapsed) {
    EXPECT_GE(elapsed.count(), 0);
    std::lock_guard lock(mutex);
    observed.emplace_back(request.target, response.status);
  };
  TestServer server(small_options(), echo.handler(), {}, observer);
  Client client(server.port());
  ASSERT_TRUE(client.send(get("/a") + get("/throw")));
  ASSERT_TRUE(client.read());
  ASSERT_TRUE(client.read());
  std::lock_guard lock(mutex);
  ASSERT_EQ(observed.size(), 2u);
  EXPECT_EQ(observed[0], std::make_pair(std::string("/a"), 200));
  EXPECT_EQ(observed[1], std::make_pair(std::string("/throw"), 500));
}

TEST(HttpServerTest, AsyncHandlerAnswersLaterWithoutHoldingAThread) {
  std::mutex mutex;
  std::function<void(Response)> pending;
  std::promise<void> handed_over;
  auto options = small_options();
  options.io_threads = 1;
  options.blocking_threads = 1;
  std::atomic<int> pool_calls{0};
  Handler sync_handler = [&](const Request& request) {
    if (request.method == "POST") ++pool_calls;  // must not happen: POSTs go to the async handler
    Response response;
    response.body = "sync " + request.target;
    return response;
  };
  std::mutex observed_mutex;
  std::vector<int> observed;
  ExchangeObserver observer = [&](const Request&, const Response& response, std::chrono::nanoseconds) {
    std::lock_guard lock(observed_mutex);
    observed.push_back(response.status);
  };
  AsyncHandler async_handler = [&](const Request& request, std::function<void(Response)> done) {
    if (request.target == "/throw") {
      done(Response{.status = 201, .body = "first"});  // answered, then throws: the answer stands
      throw std::runtime_error("after answering");
    }
    if (request.target == "/drop") return;  // drops the callback unanswered: a 500 is sent for it
    if (request.target == "/twice") {
      done(Response{.status = 201, .body = "once"});
      done(Response{.status = 500, .body = "twice"});  // ignored
      return;
    }
    std::lock_guard lock(mutex);
    pending = std::move(done);
    handed_over.set_value();
  };
  TestServer server(
      options, sync_handler, [](const Request& r) { return r.method == "POST"; }, observer, async_handler);

  Client writer(server.port()), reader(server.port());
  ASSERT_TRUE(writer.send("POST /later HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
  ASSERT_EQ(handed_over.get_future().wait_for(kWait), std::future_status::ready);
  // The only I/O thread is free: another connection is served while the write waits.
  ASSERT_TRUE(reader.send(get("/r")));
  auto read_reply = reader.read();
  ASSERT_TRUE(read_reply);
  EXPECT_EQ(read_reply->body, "sync /r");

  std::thread answerer([&] {
    std::lock_guard lock(mutex);
    pending(Response{.status = 201, .body = "created"});
    pending = nullptr;
  });
  answerer.join();
  auto reply = writer.read();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 201);
  EXPECT_EQ(reply->body, "created");

  for (auto [target, status, body] :
       {std::tuple{"/throw", 201, "first"}, std::tuple{"/twice", 201, "once"}, std::tuple{"/drop", 500, ""}}) {
    ASSERT_TRUE(writer.send("POST " + std::string(target) + " HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
    reply = writer.read();
    ASSERT_TRUE(reply) << target;
    EXPECT_EQ(reply->status, status) << target;
    if (*body) {
      EXPECT_EQ(reply->body, body) << target;
    }
  }
  EXPECT_EQ(pool_calls.load(), 0);
  std::lock_guard lock(observed_mutex);
  EXPECT_EQ(observed, (std::vector<int>{200, 201, 201, 201, 500}));
}

TEST(HttpServerTest, ListenReportsATakenAddress) {
  EchoHandler echo;
  TestServer first(small_options(), echo.handler());
  auto options = small_options();
  options.port = first.port();
  HttpServer second(options, echo.handler(), {});
  auto result = second.listen();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, fhir::ErrorKind::kUnavailable);
  EXPECT_NE(result.error().issues.at(0).diagnostics.find("already in use"), std::string::npos)
      << result.error().issues.at(0).diagnostics;
}

}  // namespace
}  // namespace caduceus::server
