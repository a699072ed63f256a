#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "caduceus/fhir/error.hpp"
#include "caduceus/server/http_types.hpp"

namespace caduceus::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";  // an IP literal or a name resolved once by listen()
  std::uint16_t port = 8080;       // 0 picks a free port
  std::size_t io_threads = 0;      // 0 = std::thread::hardware_concurrency()
  std::size_t blocking_threads = 64;
  std::size_t body_limit = 16 * 1024 * 1024;  // bytes; a larger body is answered 413 and the connection closed
  std::size_t header_limit = 64 * 1024;       // bytes of request line and fields; over it: 431 and close
  std::chrono::seconds read_timeout{30};      // a request, once its first byte arrived, must arrive whole within
  std::chrono::seconds idle_timeout{60};      // a keep-alive connection waiting for its next request
  std::chrono::seconds write_timeout{60};     // writing one response
  std::size_t max_pipelined = 16;             // requests read ahead per connection, answered or not yet written
  // Both set: HTTPS (TLS 1.2 and 1.3 only) with this PEM certificate chain and its unencrypted PEM key; every
  // response then carries Strict-Transport-Security. Read by listen(), which refuses unreadable or mismatched files.
  std::string tls_cert_file, tls_key_file;
  // With HTTPS: mutual TLS. The server asks every client for a certificate and verifies one that is presented
  // against this PEM CA bundle (an invalid, expired or untrusted one fails the handshake; a client without one
  // still connects). A verified certificate reaches the handler as Request::peer_certificate.
  std::string tls_client_ca_file;
};

// Called once per exchange, when the response is ready and before it is written, on the thread that produced it
// (an I/O thread, a blocking-pool thread, or the thread an AsyncHandler answered on). `elapsed` runs from the request
// read whole to the response ready, queueing included. For HEAD the response still carries the body the handler
// produced (it is not sent).
using ExchangeObserver =
    std::function<void(const Request& request, const Response& response, std::chrono::nanoseconds elapsed)>;

// A handler that answers later: it calls `done` once, from any thread (e.g. when a group commit is durable).
using AsyncHandler = std::function<void(const Request& request, std::function<void(Response)> done)>;

// The HTTP/1.1 transport. Boost.Beast stays behind this class: the handler sees only Request and Response.
//
// Every connection runs on its own strand: keep-alive, HTTP/1.0, pipelining (up to max_pipelined requests read
// ahead, answered in order, handled one after the other), timeouts, a body limit, and a graceful drain. Requests
// for which `is_blocking` holds run on a separate pool of blocking_threads threads (or, with an AsyncHandler set,
// are handed to it and answered later); the others run inline on the I/O thread. A handler that throws is answered 500
// with an OperationOutcome; the server never crashes on input. Requests the transport refuses (malformed: 400, body
// over the limit: 413, header over the limit: 431) are still passed to the handler, with `rejected_status` set and an
// empty body, so that it can write the OperationOutcome; the connection is closed after that response.
class HttpServer {
 public:
  HttpServer(HttpServerOptions options, Handler handler, std::function<bool(const Request&)> is_blocking);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Set before run(); called for every exchange (metrics, access log).
  void set_observer(ExchangeObserver observer);

  // Set before run(): requests for which `is_blocking` holds then go to this handler on the I/O thread instead of
  // to the blocking pool; it answers through the callback, later and from any thread (writes that wait on a group
  // commit hold no thread meanwhile). Only the first answer counts; a handler that throws before answering, or
  // drops the callback unanswered, gets a 500 sent for it.
  void set_async_handler(AsyncHandler handler);

  // Loads the TLS certificate and key (and client CA) when set, binds and listens. Returns the bound port (the one
  // picked when options.port is 0). Errors: kUnavailable when the address is in use or cannot be bound, kInvalid
  // when the host cannot be resolved or a TLS file cannot be read, is not PEM, or the key does not match the
  // certificate, or a client CA is given without a certificate.
  fhir::Result<std::uint16_t> listen();

  // Makes SIGINT and SIGTERM call stop(). Call before run(). After the first signal the default disposition is
  // restored, so a second one ends the process at once.
  void stop_on_signals();

  // Runs the I/O threads (the calling thread is one of them) until stop() and the drain have completed. Call once.
  void run();

  // Graceful stop, callable from any thread (a handler or a signal too), any number of times: stops accepting,
  // lets the requests already received be handled and their responses written (with Connection: close), closes
  // idle keep-alive connections; run() returns once every connection is gone. Called from a thread that is not
  // running the server while run() is active, it returns once the listening socket is closed (new connections are
  // refused from then on).
  void stop();

  // Connections currently open (for a gauge).
  std::size_t open_connections() const;

  struct Impl;  // defined in http_server.cpp, with everything Beast

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace caduceus::server
