// The MLLP listener: the only Asio translation unit of the adapters.
#include "caduceus/adapters/mllp.hpp"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "caduceus/fhir/thread_name.hpp"

namespace caduceus::adapters {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

void MllpFramer::feed(std::string_view data, std::vector<Frame>& out) {
  for (char c : data) {
    if (!in_frame_) {
      if (c == kStart) {
        in_frame_ = true;
        saw_end_ = false;
        oversize_ = false;
        buffer_.clear();
      } else if (c != '\r' && c != '\n') {
        ++discarded_;
      }
      continue;
    }
    if (saw_end_) {
      saw_end_ = false;
      if (c == kCr) {
        out.push_back(Frame{std::move(buffer_), oversize_});
        buffer_.clear();
        in_frame_ = false;
        continue;
      }
      // A 0x1C not followed by CR is data.
      if (buffer_.size() < max_frame_)
        buffer_.push_back(kEnd);
      else
        oversize_ = true;
    }
    if (c == kEnd) {
      saw_end_ = true;
    } else if (c == kStart) {  // a new frame before the end of this one: this one is dropped
      discarded_ += buffer_.size() + 1;
      buffer_.clear();
      oversize_ = false;
    } else if (buffer_.size() < max_frame_) {
      buffer_.push_back(c);
    } else {
      oversize_ = true;
    }
  }
}

std::string MllpFramer::wrap(std::string_view message) {
  std::string out;
  out.reserve(message.size() + 3);
  out.push_back(kStart);
  out.append(message);
  out.push_back(kEnd);
  out.push_back(kCr);
  return out;
}

struct MllpServer::Impl {
  MllpOptions options;
  MllpHandler handler;
  std::atomic<std::size_t> connections{0};
  // Messages handed to the handler and not done yet: stop() waits for them (their callbacks post to io).
  std::mutex mutex;
  std::condition_variable idle;
  std::size_t in_flight = 0;
  bool stopping = false;
  // (after the members above: destroying io destroys the sessions its handlers hold, which use them)
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread thread;

  void accept();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, MllpServer::Impl& server)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), server_(server), framer_(server.options.max_frame) {
    ++server_.connections;
  }
  ~Session() { --server_.connections; }

  void start() {
    last_ = std::chrono::steady_clock::now();
    arm_timer();
    read();
  }

 private:
  tcp::socket socket_;
  asio::steady_timer timer_;
  MllpServer::Impl& server_;
  MllpFramer framer_;
  std::array<char, 16384> buffer_;
  std::deque<MllpFramer::Frame> queue_;
  std::deque<std::string> out_;
  bool busy_ = false, writing_ = false, read_closed_ = false, closed_ = false;
  std::chrono::steady_clock::time_point last_;

  void read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                              if (ec) {
                                self->read_closed_ = true;
                                self->maybe_close();
                                return;
                              }
                              self->last_ = std::chrono::steady_clock::now();
                              std::vector<MllpFramer::Frame> frames;
                              self->framer_.feed(std::string_view(self->buffer_.data(), n), frames);
                              for (auto& f : frames) self->queue_.push_back(std::move(f));
                              self->next();
                              self->read();
                            });
  }

  // One message at a time, so that answers go out in the order the messages came.
  void next() {
    if (busy_ || queue_.empty() || closed_) return;
    {
      std::lock_guard lock(server_.mutex);
      if (server_.stopping) return;
      ++server_.in_flight;
    }
    busy_ = true;
    MllpFramer::Frame f = std::move(queue_.front());
    queue_.pop_front();
    auto self = shared_from_this();
    auto send = [self](std::string ack) {
      asio::post(self->socket_.get_executor(),
                 [self, bytes = MllpFramer::wrap(ack)]() mutable { self->write(std::move(bytes)); });
    };
    auto done = [self] {
      asio::post(self->socket_.get_executor(), [self] {
        self->busy_ = false;
        self->last_ = std::chrono::steady_clock::now();
        self->next();
        self->maybe_close();
      });
      std::lock_guard lock(self->server_.mutex);
      if (--self->server_.in_flight == 0) self->server_.idle.notify_all();
    };
    server_.handler(std::move(f.bytes), f.oversize, std::move(send), std::move(done));
  }

  void write(std::string bytes) {
    if (closed_) return;
    out_.push_back(std::move(bytes));
    if (!writing_) write_front();
  }

  void write_front() {
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_.front()),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->out_.pop_front();
                        if (ec) {
                          self->writing_ = false;
                          self->close();
                          return;
                        }
                        if (!self->out_.empty()) return self->write_front();
                        self->writing_ = false;
                        self->maybe_close();
                      });
  }

  void arm_timer() {
    timer_.expires_after(server_.options.idle_timeout);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->closed_) return;
      auto quiet = std::chrono::steady_clock::now() - self->last_;
      if (self->busy_ || self->writing_ || !self->queue_.empty() || quiet < self->server_.options.idle_timeout)
        return self->arm_timer();
      self->close();
    });
  }

  // The peer closed its side: once everything it sent is answered, close ours.
  void maybe_close() {
    if (read_closed_ && !busy_ && queue_.empty() && !writing_) close();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }
};

}  // namespace

void MllpServer::Impl::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(std::move(socket), *this)->start();
    }
    accept();
  });
}

MllpServer::MllpServer(MllpOptions options, MllpHandler handler) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

MllpServer::~MllpServer() {
  stop();
}

fhir::Result<std::uint16_t> MllpServer::start() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(impl_->options.host, ec);
  if (ec) {
    tcp::resolver resolver(impl_->io);
    auto results = resolver.resolve(impl_->options.host, std::to_string(impl_->options.port), ec);
    if (ec || results.empty())
      return fhir::fail(fhir::ErrorKind::kUnavailable, "exception",
                        "MLLP: cannot resolve '" + impl_->options.host + "': " + ec.message());
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, impl_->options.port);
  auto& acc = impl_->acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return fhir::fail(fhir::ErrorKind::kUnavailable, "exception",
                      "MLLP: cannot listen on " + impl_->options.host + ":" + std::to_string(impl_->options.port) +
                          ": " + ec.message());
  std::uint16_t port = acc.local_endpoint().port();
  impl_->accept();
  impl_->thread = std::thread([impl = impl_.get()] {
    name_this_thread("cad-mllp");
    impl->io.run();
  });
  return port;
}

void MllpServer::stop() {
  if (!impl_->thread.joinable()) return;
  asio::post(impl_->io, [impl = impl_.get()] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
  });
  {
    std::unique_lock lock(impl_->mutex);
    impl_->stopping = true;
    impl_->idle.wait_for(lock, std::chrono::seconds(30), [&] { return impl_->in_flight == 0; });
  }
  // Answers already posted go out; then every connection is closed (io.stop(), sessions destroyed with io).
  asio::post(impl_->io, [impl = impl_.get()] { impl->io.stop(); });
  impl_->thread.join();
}

std::size_t MllpServer::open_connections() const {
  return impl_->connections.load();
}

}  // namespace caduceus::adapters
