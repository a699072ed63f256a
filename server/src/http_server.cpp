// The HTTP/1.1 transport: the only translation unit of the server that includes Boost.Beast and Boost.Asio.
// Modeled on Beast's example/advanced/server: a listener on its own strand, a session per connection on its own
// strand that only does I/O, and a plain function (the Handler) that turns a request value into a response value.
// No exceptions on the I/O path: every operation takes an error_code. The session is a template over its stream:
// beast::tcp_stream for HTTP, beast::ssl_stream over it for HTTPS (OpenSSL, TLS 1.2 and 1.3 only); the plain
// path compiles to what it was before TLS existed.

#include "caduceus/server/http_server.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "caduceus/fhir/thread_name.hpp"
#include "caduceus/server/peer_certificate.hpp"

namespace caduceus::server {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using beast::error_code;
using Clock = std::chrono::steady_clock;

// How long a closing connection keeps reading (and discarding) what the peer still sends after our last response,
// so that unread request bytes do not turn our FIN into a RST that destroys the response before the peer reads it.
constexpr auto kLingerTimeout = std::chrono::seconds(2);
// Bytes asked of the socket by one read that is not a parser's (the first byte of a request, lingering).
constexpr std::size_t kReadSize = 16 * 1024;

constexpr std::string_view kInternalErrorBody =
    R"({"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception",)"
    R"("diagnostics":"Internal server error"}]})";

Response internal_error_response() {
  Response response;
  response.status = 500;
  response.headers.emplace_back("Content-Type", "application/fhir+json");
  response.body = std::string(kInternalErrorBody);
  response.interaction = "error";
  return response;
}

// The IMF-fixdate of now ("Sun, 06 Nov 1994 08:49:37 GMT"), formatted once per second per thread.
std::string_view http_date() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  thread_local std::time_t cached_second = -1;
  thread_local char text[32];
  thread_local std::size_t length = 0;
  std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    int n = std::snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7], tm.tm_mday,
                          kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    length = n > 0 ? static_cast<std::size_t>(n) : 0;
    cached_second = now;
  }
  return {text, length};
}

// A header the handler may send: a token for a name, no line breaks in the value.
bool sendable_field(std::string_view name, std::string_view value) {
  // Beast keeps a field's name and value lengths in 16 bits (and throws past that).
  if (name.empty() || name.size() > 1024 || value.size() > 60000) return false;
  for (unsigned char c : name)
    if (c <= 0x20 || c >= 0x7f || c == ':' || c == '(' || c == ')' || c == ',' || c == ';' || c == '"' || c == '/' ||
        c == '[' || c == ']' || c == '=' || c == '{' || c == '}' || c == '\\' || c == '?' || c == '@' || c == '<' ||
        c == '>')
      return false;
  for (char c : value)
    if (c == '\r' || c == '\n' || c == '\0') return false;
  // Framing is the transport's business.
  return !beast::iequals(name, "content-length") && !beast::iequals(name, "transfer-encoding") &&
         !beast::iequals(name, "connection");
}

std::string describe(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

// What the listener and the drain know of a connection, whatever its stream.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual void drain() = 0;
  virtual asio::any_io_executor executor() = 0;
};

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// The OpenSSL error queue as one line (then cleared), for start-up messages.
std::string openssl_errors() {
  std::string text;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    text += (text.empty() ? "" : "; ") + std::string(buffer);
  }
  return text;
}

// The server's TLS context: TLS 1.2 and 1.3 only; for 1.2 only forward-secret AEAD suites (ECDHE with AES-GCM or
// ChaCha20-Poly1305: Mozilla's "intermediate" list without DHE), the server's order; no compression, no
// renegotiation. With `client_ca_file`: mutual TLS (see HttpServerOptions). Errors: kInvalid naming the option and
// the file.
fhir::Result<std::unique_ptr<asio::ssl::context>> make_tls_context(const std::string& cert_file,
                                                                   const std::string& key_file,
                                                                   const std::string& client_ca_file) {
  auto bad = [](std::string what) { return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", std::move(what)); };
  for (const auto& [option, file] : {std::pair{"--tls-cert", cert_file}, std::pair{"--tls-key", key_file}}) {
    std::ifstream probe(file);
    if (!probe) return bad(std::string(option) + ": cannot read '" + file + "'");
  }
  ERR_clear_error();
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                       asio::ssl::context::no_compression | asio::ssl::context::single_dh_use);
  SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_cipher_list(native,
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1)
    return bad("TLS: the cipher list was refused: " + openssl_errors());
  // An encrypted key would make OpenSSL prompt on the terminal: refuse it instead.
  context->set_password_callback([](std::size_t, asio::ssl::context::password_purpose) { return std::string(); });
  error_code ec;
  context->use_certificate_chain_file(cert_file, ec);
  auto reason = [&ec] {
    std::string queued = openssl_errors();
    return queued.empty() ? ec.message() : queued;
  };
  if (ec) return bad("--tls-cert: '" + cert_file + "' is not a PEM certificate (chain): " + reason());
  context->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  // (Asio takes the error off OpenSSL's queue into ec: a key that is fine but not the certificate's shows there.)
  if (const auto code = static_cast<unsigned long>(ec.value());
      ec && ec.category() == asio::error::get_ssl_category() && ERR_GET_LIB(code) == ERR_LIB_X509 &&
      ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH) {
    ERR_clear_error();
    return bad("--tls-key: the key in '" + key_file + "' does not match the certificate in '" + cert_file + "'");
  }
  if (ec) return bad("--tls-key: '" + key_file + "' is not an unencrypted PEM private key: " + reason());
  if (SSL_CTX_check_private_key(native) != 1)
    return bad("--tls-key: the key in '" + key_file + "' does not match the certificate in '" + cert_file + "'");
  if (!client_ca_file.empty()) {
    if (!std::ifstream(client_ca_file)) return bad("--tls-client-ca: cannot read '" + client_ca_file + "'");
    ERR_clear_error();
    // The CAs that verify a client's chain, and the names the CertificateRequest announces (so that a client with
    // several certificates picks the right one).
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(client_ca_file.c_str());
    if (names == nullptr || sk_X509_NAME_num(names) == 0 ||
        SSL_CTX_load_verify_locations(native, client_ca_file.c_str(), nullptr) != 1) {
      if (names != nullptr) sk_X509_NAME_pop_free(names, X509_NAME_free);
      return bad("--tls-client-ca: '" + client_ca_file + "' is not a PEM CA certificate bundle: " + openssl_errors());
    }
    SSL_CTX_set_client_CA_list(native, names);
    // Ask for a certificate, verify it when there is one; a client without one (a browser, an app) still connects.
    SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
    // Sessions resumed on this context carry the verified certificate; OpenSSL requires an id context then.
    static constexpr unsigned char kSessionContext[] = "caduceus-mtls";
    SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
  }
  ERR_clear_error();
  return context;
}

}  // namespace

struct HttpServer::Impl {
  Impl(HttpServerOptions options_in, Handler handler_in, std::function<bool(const Request&)> is_blocking_in)
      : options(std::move(options_in)),
        handler(std::move(handler_in)),
        is_blocking(std::move(is_blocking_in)),
        ioc(static_cast<int>(io_thread_count())),
        control(asio::make_strand(ioc)),
        acceptor(control),
        accept_retry(control),
        pool(std::max<std::size_t>(1, options.blocking_threads)) {
    options.max_pipelined = std::max<std::size_t>(1, options.max_pipelined);
  }

  std::size_t io_thread_count() const {
    if (options.io_threads != 0) return options.io_threads;
    return std::max(1u, std::thread::hardware_concurrency());
  }

  bool blocking(const Request& request) const noexcept {
    if (!is_blocking) return false;
    try {
      return is_blocking(request);
    } catch (...) {
      return false;
    }
  }

  // Runs the handler and the observer; whatever they throw ends here as a 500.
  Response invoke(const Request& request, Clock::time_point start) const noexcept {
    Response response;
    try {
      response = handler(request);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "caduceus: request handler failed: %s\n", e.what());
      response = internal_error_response();
    } catch (...) {
      std::fprintf(stderr, "caduceus: request handler failed with a non-standard exception\n");
      response = internal_error_response();
    }
    if (observer) {
      try {
        observer(request, response, Clock::now() - start);
      } catch (...) {
        // An observer (metrics, log) must not change the answer.
      }
    }
    return response;
  }

  // Runs the asynchronous handler. `done` gets exactly one response, and the observer sees it: the first one the
  // handler gives; a 500 if the handler throws before answering, or drops every copy of the callback unanswered.
  void invoke_async(std::shared_ptr<const Request> request, Clock::time_point start,
                    std::function<void(Response)> done) const noexcept {
    struct Answer {
      const Impl* server;
      std::shared_ptr<const Request> request;
      Clock::time_point start;
      std::function<void(Response)> done;
      std::atomic<bool> given{false};

      void give(Response response) noexcept {
        if (given.exchange(true)) return;
        if (server->observer) {
          try {
            server->observer(*request, response, Clock::now() - start);
          } catch (...) {
            // An observer (metrics, log) must not change the answer.
          }
        }
        done(std::move(response));
      }
      ~Answer() {
        if (!given.load()) {
          std::fprintf(stderr, "caduceus: request handler dropped its completion unanswered\n");
          give(internal_error_response());
        }
      }
    };
    auto answer = std::make_shared<Answer>(this, std::move(request), start, std::move(done));
    const Request& ref = *answer->request;
    try {
      async_handler(ref, [answer](Response response) { answer->give(std::move(response)); });
    } catch (const std::exception& e) {
      std::fprintf(stderr, "caduceus: request handler failed: %s\n", e.what());
      answer->give(internal_error_response());
    } catch (...) {
      std::fprintf(stderr, "caduceus: request handler failed with a non-standard exception\n");
      answer->give(internal_error_response());
    }
  }

  void run_io() noexcept {
    for (;;) {
      try {
        ioc.run();
        return;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "caduceus: unexpected exception on an I/O thread: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "caduceus: unexpected exception on an I/O thread\n");
      }
    }
  }

  void do_accept();
  void on_accept(error_code ec, tcp::socket socket);
  void begin_drain();

  HttpServerOptions options;
  Handler handler;
  std::function<bool(const Request&)> is_blocking;
  ExchangeObserver observer;
  AsyncHandler async_handler;

  std::atomic<std::size_t> open{0};
  std::atomic<bool> draining{false};

  std::mutex mutex;  // guards the fields below it up to ioc
  std::condition_variable changed;
  bool running = false;
  bool acceptor_closed = false;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> sessions;
  std::unique_ptr<asio::ssl::context> tls;  // set by listen(): HTTPS; outlives the sessions (destroyed with ioc)

  // Declared after everything a Session touches in its destructor: the io_context destroys pending handlers,
  // and with them the sessions, when it goes.
  asio::io_context ioc;
  asio::strand<asio::io_context::executor_type> control;  // the acceptor, the signals, the drain
  tcp::acceptor acceptor;
  asio::steady_timer accept_retry;
  std::optional<asio::signal_set> signals;
  asio::thread_pool pool;  // destroyed first: joins the blocking handlers still running
};

namespace {

// One connection. Lives as long as an operation or a posted handler holds it; every member function runs on the
// connection's strand (the executor of stream_). Stream: PlainStream or TlsStream.
template <class Stream>
class Session final : public Connection, public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

 public:
  // `tls`: the context (with TlsStream only).
  template <class... Tls>
  Session(HttpServer::Impl& server, tcp::socket&& socket, Tls&... tls)
      : server_(server), stream_(std::move(socket), tls...) {
    error_code ec;
    auto endpoint = tcp().socket().remote_endpoint(ec);
    if (!ec) {
      auto address = endpoint.address();
      if (address.is_v6() && address.to_v6().is_v4_mapped())
        address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
      remote_ = address.to_string();
    }
    server_.open.fetch_add(1, std::memory_order_relaxed);
  }

  ~Session() override {
    server_.open.fetch_sub(1, std::memory_order_relaxed);
    std::lock_guard lock(server_.mutex);
    server_.sessions.erase(this);
  }

  // Called on the listener's strand right after the accept.
  void start() {
    {
      std::lock_guard lock(server_.mutex);
      server_.sessions.emplace(this, this->weak_from_this());
    }
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if (self->server_.draining.load()) return self->drain();
      if constexpr (kTls) return self->handshake();
      self->maybe_read();
    });
  }

  // The server is stopping: answer what was received, then close. An idle connection closes at once: there is no
  // response to protect from a reset by lingering.
  void drain() override {
    draining_ = true;
    if (!closed_ && slots_.empty() && !writing_ && !processing_ && read_phase_ != ReadPhase::kRequest &&
        buffer_.size() == 0)
      return close_now();
    after_io();
  }

  asio::any_io_executor executor() override { return stream_.get_executor(); }

 private:
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

  // HTTPS: the TLS handshake first, within the read timeout. (It counts as waiting for a request.)
  void handshake() {
    read_phase_ = ReadPhase::kIdle;
    tcp().expires_after(options().read_timeout);
    stream_.async_handshake(asio::ssl::stream_base::server,
                            [self = this->shared_from_this()](error_code ec) { self->on_handshake(ec); });
  }

  void on_handshake(error_code ec) {
    read_phase_ = ReadPhase::kNone;
    if (ec || closed_ || draining_) return close_now();  // a refused protocol version, a port scan, a stop
    if constexpr (kTls) {
      // Mutual TLS: the client's certificate, verified by the handshake, described once for all its requests.
      SSL* ssl = stream_.native_handle();
      if (X509* certificate = SSL_get0_peer_certificate(ssl);
          certificate != nullptr && SSL_get_verify_result(ssl) == X509_V_OK) {
        if (auto described = describe_certificate(certificate))
          peer_ = std::make_shared<const PeerCertificate>(std::move(*described));
      }
    }
    maybe_read();
  }

  enum class ReadPhase {
    kNone,
    kIdle,     // waiting for the first byte of a request
    kRequest,  // reading a request whose first byte arrived
    kLinger,   // closing: discarding what the peer still sends
  };

  // One request, from read to written.
  struct Slot {
    std::uint64_t seq = 0;
    Request request;
    Clock::time_point start;
    unsigned version = 11;
    bool head = false;
    bool dispatched = false;                                      // handed to the handler
    bool close_after = false;                                     // close the connection once this response is written
    std::unique_ptr<http::response<http::string_body>> response;  // set when ready
  };

  const HttpServerOptions& options() const { return server_.options; }

  // ---- reading ----

  void maybe_read() {
    if (closed_ || stop_reading_ || read_phase_ != ReadPhase::kNone) return;
    if (slots_.size() >= options().max_pipelined) return;  // resumed by on_write
    if (buffer_.size() > 0) return start_request();        // pipelined bytes already here
    if (draining_) return;                                 // nothing of a next request arrived: do not wait for one
    read_phase_ = ReadPhase::kIdle;
    tcp().expires_after(first_request_ ? options().read_timeout : options().idle_timeout);
    stream_.async_read_some(
        buffer_.prepare(kReadSize),
        [self = this->shared_from_this()](error_code ec, std::size_t n) { self->on_first_bytes(ec, n); });
  }

  void on_first_bytes(error_code ec, std::size_t n) {
    read_phase_ = ReadPhase::kNone;
    if (closed_) return start_linger();
    if (ec) {  // the peer closed, reset, or was idle too long
      stop_reading_ = true;
      return after_io();
    }
    buffer_.commit(n);
    start_request();
  }

  void start_request() {
    read_phase_ = ReadPhase::kRequest;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(options().header_limit, UINT32_MAX)));
    parser_->body_limit(boost::none);  // checked against Content-Length by hand once the header is in
    // One deadline for the header and the body together.
    tcp().expires_after(options().read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(error_code ec) {
    if (closed_) {
      read_phase_ = ReadPhase::kNone;
      return start_linger();
    }
    if (ec) return on_read_error(ec);
    auto length = parser_->content_length();
    if (length && *length > options().body_limit) return reject(413);
    parser_->body_limit(options().body_limit);  // for a chunked body
    if (parser_->is_done()) return on_request_read();
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](error_code ec2, std::size_t) { self->on_body(ec2); });
    const auto& header = parser_->get();
    if (header.version() >= 11 && beast::iequals(header[http::field::expect], "100-continue"))
      send_continue(header.version());
  }

  void on_body(error_code ec) {
    if (closed_) {
      read_phase_ = ReadPhase::kNone;
      return start_linger();
    }
    if (ec) return on_read_error(ec);
    on_request_read();
  }

  void on_read_error(error_code ec) {
    read_phase_ = ReadPhase::kNone;
    if (ec == http::error::body_limit) return reject(413);
    if (ec == http::error::header_limit) return reject(431);
    if (ec.category() == beast::http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
      return reject(400);
    // End of stream, reset, timeout (the stream is closed then), cancellation: nothing to answer.
    stop_reading_ = true;
    after_io();
  }

  Request request_from(const http::request<http::string_body>& message) const {
    Request request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    for (const auto& field : message) {
      std::string name(field.name_string());
      for (char& c : name)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      request.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    request.remote = remote_;
    request.peer_certificate = peer_;
    return request;
  }

  void on_request_read() {
    read_phase_ = ReadPhase::kNone;
    first_request_ = false;
    http::request<http::string_body> message = parser_->release();
    parser_.reset();
    Slot slot;
    slot.seq = next_seq_++;
    slot.start = Clock::now();
    slot.version = message.version();
    slot.head = message.method() == http::verb::head;
    slot.request = request_from(message);
    slot.request.body = std::move(message.body());
    if (!message.keep_alive()) {
      slot.close_after = true;
      stop_reading_ = true;
    }
    slots_.push_back(std::move(slot));
    maybe_process();
    maybe_read();
  }

  // The transport refuses the request; the handler still writes the answer, then the connection closes.
  void reject(int status) {
    read_phase_ = ReadPhase::kNone;
    Slot slot;
    slot.seq = next_seq_++;
    slot.start = Clock::now();
    if (parser_ && parser_->is_header_done()) {
      const auto& header = parser_->get();
      slot.request = request_from(header);
      slot.version = header.version();
      slot.head = header.method() == http::verb::head;
    } else {
      slot.request.remote = remote_;
    }
    parser_.reset();
    slot.request.rejected_status = status;
    slot.close_after = true;
    stop_reading_ = true;
    slots_.push_back(std::move(slot));
    maybe_process();
  }

  // ---- handling: one request at a time, in order ----

  void maybe_process() {
    while (!processing_ && !closed_) {
      auto next = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.dispatched; });
      if (next == slots_.end()) break;
      Slot& slot = *next;
      slot.dispatched = true;
      const bool blocking = slot.request.rejected_status == 0 && server_.blocking(slot.request);
      if (blocking && server_.async_handler) {
        processing_ = true;
        auto request = std::make_shared<const Request>(std::move(slot.request));
        server_.invoke_async(
            std::move(request), slot.start,
            [self = this->shared_from_this(), seq = slot.seq, strand = stream_.get_executor(),
             // keeps run() going until the answer is in (copyable, unlike a work guard)
             work = asio::prefer(server_.ioc.get_executor(), asio::execution::outstanding_work.tracked)](
                Response response) mutable {
              asio::post(strand, [self, seq, response = std::move(response)]() mutable {
                self->on_processed(seq, std::move(response));
              });
            });
        break;
      }
      if (blocking) {
        processing_ = true;
        asio::post(server_.pool, [self = this->shared_from_this(), seq = slot.seq, request = std::move(slot.request),
                                  start = slot.start, strand = stream_.get_executor(),
                                  work = asio::make_work_guard(server_.ioc)]() mutable {
          Response response = self->server_.invoke(request, start);
          asio::post(strand, [self, seq, response = std::move(response)]() mutable {
            self->on_processed(seq, std::move(response));
          });
        });
        break;
      }
      complete(slot, server_.invoke(slot.request, slot.start));
    }
    maybe_write();
  }

  void on_processed(std::uint64_t seq, Response response) {
    processing_ = false;
    if (closed_) return;
    for (auto& slot : slots_) {
      if (slot.seq == seq) {
        complete(slot, std::move(response));
        break;
      }
    }
    maybe_process();
  }

  // Turns the handler's answer into the message to write.
  void complete(Slot& slot, Response response) {
    auto message = std::make_unique<http::response<http::string_body>>();
    message->version(slot.version);
    int status = response.status;
    if (status < 200 || status > 599) status = 500;
    message->result(static_cast<unsigned>(status));
    bool has_date = false;
    for (const auto& [name, value] : response.headers) {
      if (!sendable_field(name, value)) continue;
      if (beast::iequals(name, "date")) has_date = true;
      message->insert(name, value);
    }
    if (!has_date) message->set(http::field::date, http_date());
    if constexpr (kTls) {
      // HTTPS only from now on, for a year (RFC 6797).
      if (message->find(http::field::strict_transport_security) == message->end())
        message->set(http::field::strict_transport_security, "max-age=31536000");
    }
    if (status != 204 && status != 304) {
      message->content_length(response.body.size());
      if (!slot.head) message->body() = std::move(response.body);  // HEAD: the length of the GET body, no body
    }
    if (response.close) slot.close_after = true;
    if (slot.close_after) {
      // Nothing after this response will be answered: drop what was read ahead, read no more.
      stop_reading_ = true;
      while (!slots_.empty() && slots_.back().seq != slot.seq) slots_.pop_back();
    }
    slot.response = std::move(message);
  }

  // ---- writing ----

  void maybe_write() {
    if (writing_ || closed_ || slots_.empty() || !slots_.front().response) return;
    Slot& slot = slots_.front();
    if (draining_ && slots_.size() == 1 && read_phase_ != ReadPhase::kRequest && buffer_.size() == 0) {
      slot.close_after = true;  // the last answer before the drain closes this connection
      stop_reading_ = true;
    }
    slot.response->keep_alive(!slot.close_after);
    writing_ = true;
    tcp().expires_after(options().write_timeout);
    http::async_write(stream_, *slot.response,
                      [self = this->shared_from_this()](error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(error_code ec) {
    writing_ = false;
    if (ec) return close_now();
    bool close = slots_.front().close_after;
    slots_.pop_front();
    if (close) return shutdown_and_linger();
    maybe_write();
    maybe_read();
    after_io();
  }

  // "100 Continue" before reading a body the client holds back, unless earlier responses are still owed.
  void send_continue(unsigned version) {
    if (writing_ || !slots_.empty()) return;
    writing_ = true;
    auto interim = std::make_shared<http::response<http::empty_body>>(http::status::continue_, version);
    tcp().expires_after(options().write_timeout);  // the body read is pending: this sets the write deadline only
    http::async_write(stream_, *interim, [self = this->shared_from_this(), interim](error_code ec, std::size_t) {
      self->writing_ = false;
      if (ec) return self->close_now();
      self->maybe_write();
      self->after_io();
    });
  }

  // ---- closing ----

  // Closes once nothing is owed and nothing more will be read.
  void after_io() {
    if (closed_ || writing_ || processing_ || !slots_.empty() || read_phase_ == ReadPhase::kRequest) return;
    if (draining_ && !stop_reading_ && buffer_.size() > 0) return maybe_read();  // a request begun before the stop
    if (stop_reading_ || draining_) shutdown_and_linger();
  }

  void shutdown_and_linger() {
    if (closed_) return;
    closed_ = true;
    error_code ec;
    // HTTPS: close_notify is sent by the linger (a TLS shutdown), not a TCP half-close.
    if constexpr (!kTls) tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (read_phase_ != ReadPhase::kNone) {
      tcp().socket().cancel(ec);  // no write is pending here; the read's completion starts the linger
      return;
    }
    start_linger();
  }

  void start_linger() {
    if (read_phase_ != ReadPhase::kNone || !tcp().socket().is_open()) return;
    if constexpr (kTls) {
      // Our close_notify, then the peer's (or its close, or the timeout): the TLS way to end without a reset.
      if (lingering_) return;
      lingering_ = true;
      tcp().expires_after(kLingerTimeout);
      read_phase_ = ReadPhase::kLinger;
      stream_.async_shutdown([self = this->shared_from_this()](error_code) {
        self->read_phase_ = ReadPhase::kNone;
        self->tcp().close();
      });
      return;
    }
    if (!lingering_) {
      lingering_ = true;
      tcp().expires_after(kLingerTimeout);
    }
    read_phase_ = ReadPhase::kLinger;
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(kReadSize), [self = this->shared_from_this()](error_code ec, std::size_t) {
      self->read_phase_ = ReadPhase::kNone;
      if (ec) return self->tcp().close();  // end of stream, timeout, reset: done
      self->start_linger();
    });
  }

  void close_now() {
    closed_ = true;
    tcp().close();
  }

  HttpServer::Impl& server_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::deque<Slot> slots_;
  std::string remote_;
  std::shared_ptr<const PeerCertificate> peer_;  // HTTPS: the client's verified certificate, if it gave one
  std::uint64_t next_seq_ = 0;
  ReadPhase read_phase_ = ReadPhase::kNone;
  bool first_request_ = true;
  bool writing_ = false;
  bool processing_ = false;    // a handler runs on the blocking pool
  bool stop_reading_ = false;  // no further request will be read (close asked, peer done, read failed)
  bool draining_ = false;
  bool closed_ = false;
  bool lingering_ = false;
};

}  // namespace

// ---- listener ----

void HttpServer::Impl::do_accept() {
  if (draining.load()) return;
  acceptor.async_accept(asio::make_strand(ioc),
                        [this](error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
}

void HttpServer::Impl::on_accept(error_code ec, tcp::socket socket) {
  if (draining.load() || !acceptor.is_open()) return;  // the socket, if any, closes here
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
      // Out of file descriptors or memory: retry shortly instead of spinning.
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](error_code timer_ec) {
        if (!timer_ec) do_accept();
      });
      return;
    }
    return do_accept();  // e.g. the peer aborted before we accepted
  }
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  if (tls)
    std::make_shared<Session<TlsStream>>(*this, std::move(socket), *tls)->start();
  else
    std::make_shared<Session<PlainStream>>(*this, std::move(socket))->start();
  do_accept();
}

// On the control strand.
void HttpServer::Impl::begin_drain() {
  if (draining.exchange(true)) return;
  error_code ec;
  acceptor.close(ec);
  accept_retry.cancel();
  if (signals) {
    signals->cancel(ec);
    signals->clear(ec);  // restores the default disposition: a second signal ends the process
  }
  std::vector<std::shared_ptr<Connection>> live;
  {
    std::lock_guard lock(mutex);
    acceptor_closed = true;
    live.reserve(sessions.size());
    for (auto& [raw, weak] : sessions)
      if (auto session = weak.lock()) live.push_back(std::move(session));
  }
  changed.notify_all();
  for (auto& session : live) asio::post(session->executor(), [session] { session->drain(); });
}

// ---- public interface ----

HttpServer::HttpServer(HttpServerOptions options, Handler handler, std::function<bool(const Request&)> is_blocking)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler), std::move(is_blocking))) {}

HttpServer::~HttpServer() = default;

void HttpServer::set_async_handler(AsyncHandler handler) {
  impl_->async_handler = std::move(handler);
}

void HttpServer::set_observer(ExchangeObserver observer) {
  impl_->observer = std::move(observer);
}

fhir::Result<std::uint16_t> HttpServer::listen() {
  Impl& s = *impl_;
  if (!s.options.tls_client_ca_file.empty() && s.options.tls_cert_file.empty())
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--tls-client-ca needs HTTPS (--tls-cert and --tls-key)");
  if (!s.options.tls_cert_file.empty() || !s.options.tls_key_file.empty()) {
    if (s.options.tls_cert_file.empty() || s.options.tls_key_file.empty())
      return fhir::fail(fhir::ErrorKind::kInvalid, "invalid", "--tls-cert and --tls-key go together");
    auto context = make_tls_context(s.options.tls_cert_file, s.options.tls_key_file, s.options.tls_client_ca_file);
    if (!context) return std::unexpected(context.error());
    s.tls = std::move(*context);
  }
  error_code ec;
  tcp::endpoint endpoint;
  auto address = asio::ip::make_address(s.options.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, s.options.port);
  } else {
    tcp::resolver resolver(s.ioc);
    auto results = resolver.resolve(s.options.host, std::to_string(s.options.port),
                                    tcp::resolver::numeric_service | tcp::resolver::passive, ec);
    if (ec || results.empty())
      return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                        "cannot resolve the listen host '" + s.options.host +
                            "': " + (ec ? ec.message() : std::string("no address")));
    endpoint = results.begin()->endpoint();
  }
  const std::string where = describe(endpoint);
  auto unavailable = [&](std::string what) {
    error_code ignored;
    s.acceptor.close(ignored);
    return fhir::fail(fhir::ErrorKind::kUnavailable, "exception", std::move(what));
  };

  s.acceptor.open(endpoint.protocol(), ec);
  if (ec) return unavailable("cannot open a socket for " + where + ": " + ec.message());
  s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return unavailable("cannot set SO_REUSEADDR on " + where + ": " + ec.message());
  s.acceptor.bind(endpoint, ec);
  if (ec == asio::error::address_in_use)
    return unavailable("cannot listen on " + where + ": the address is already in use");
  if (ec) return unavailable("cannot bind " + where + ": " + ec.message());
  s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable("cannot listen on " + where + ": " + ec.message());
  auto bound = s.acceptor.local_endpoint(ec);
  if (ec) return unavailable("cannot read the bound address of " + where + ": " + ec.message());

  asio::dispatch(s.control, [&s] { s.do_accept(); });
  return bound.port();
}

void HttpServer::stop_on_signals() {
  Impl& s = *impl_;
  s.signals.emplace(s.control, SIGINT, SIGTERM);
  s.signals->async_wait([&s](error_code ec, int) {
    if (!ec) s.begin_drain();
  });
}

void HttpServer::run() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.mutex);
    s.running = true;
  }
  std::vector<std::thread> threads;
  const std::size_t count = s.io_thread_count();
  threads.reserve(count - 1);
  for (std::size_t i = 1; i < count; ++i)
    threads.emplace_back([&s] {
      name_this_thread("cad-http");
      s.run_io();
    });
  s.run_io();
  for (auto& thread : threads) thread.join();
  s.pool.join();  // the last blocking tasks finish unwinding
  {
    std::lock_guard lock(s.mutex);
    s.running = false;
  }
  s.changed.notify_all();
}

void HttpServer::stop() {
  Impl& s = *impl_;
  asio::dispatch(s.control, [&s] { s.begin_drain(); });
  if (s.ioc.get_executor().running_in_this_thread()) return;  // the drain proceeds on the I/O threads
  std::unique_lock lock(s.mutex);
  s.changed.wait(lock, [&s] { return s.acceptor_closed || !s.running; });
}

std::size_t HttpServer::open_connections() const {
  return impl_->open.load(std::memory_order_relaxed);
}

}  // namespace caduceus::server
