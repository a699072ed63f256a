// The MLLP client (outbound interfaces): blocking calls made of Asio asynchronous operations run for a deadline.
#include "caduceus/adapters/mllp_client.hpp"

#include <array>
#include <boost/asio.hpp>
#include <vector>

#include "caduceus/adapters/mllp.hpp"

namespace caduceus::adapters {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct MllpClient::Impl {
  explicit Impl(std::size_t max) : max_frame(max) {}
  std::size_t max_frame;
  asio::io_context io;
  tcp::socket socket{io};
  std::vector<MllpFramer::Frame> pending;  // frames read beyond the answer (not expected; dropped on close)
  std::unique_ptr<MllpFramer> framer;

  // Runs the io until `done` or the deadline; on timeout closes the socket and drains the handlers.
  bool run(bool& done, std::chrono::milliseconds timeout) {
    io.restart();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      if (io.run_one_until(deadline) == 0 && io.stopped()) break;
    }
    if (done) return true;
    boost::system::error_code ignored;
    socket.close(ignored);
    io.restart();
    io.run();
    return false;
  }
};

MllpClient::MllpClient(std::size_t max_frame) : impl_(std::make_unique<Impl>(max_frame)) {}
MllpClient::~MllpClient() {
  close();
}

bool MllpClient::connected() const {
  return impl_->socket.is_open();
}

void MllpClient::close() {
  boost::system::error_code ignored;
  if (impl_->socket.is_open()) {
    impl_->socket.shutdown(tcp::socket::shutdown_both, ignored);
    impl_->socket.close(ignored);
  }
  impl_->framer.reset();
  impl_->pending.clear();
}

fhir::Result<void> MllpClient::connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout) {
  close();
  auto fail = [&](const std::string& why) {
    close();
    return fhir::fail(fhir::ErrorKind::kUnavailable, "exception",
                      "MLLP: cannot connect to " + host + ":" + std::to_string(port) + ": " + why);
  };
  boost::system::error_code ec;
  tcp::resolver resolver(impl_->io);
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return fail(ec.message());
  bool done = false;
  asio::async_connect(impl_->socket, endpoints, [&](boost::system::error_code e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  if (!impl_->run(done, timeout)) return fail("timed out");
  if (ec) return fail(ec.message());
  impl_->socket.set_option(tcp::no_delay(true), ec);
  impl_->framer = std::make_unique<MllpFramer>(impl_->max_frame);
  return {};
}

fhir::Result<std::string> MllpClient::exchange(std::string_view message, std::chrono::milliseconds timeout) {
  auto fail = [&](const std::string& why) {
    close();
    return fhir::fail(fhir::ErrorKind::kUnavailable, "exception", "MLLP: " + why);
  };
  if (!connected() || !impl_->framer) return fail("not connected");
  std::string bytes = MllpFramer::wrap(message);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  boost::system::error_code ec;
  bool done = false;
  asio::async_write(impl_->socket, asio::buffer(bytes), [&](boost::system::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!impl_->run(done, timeout)) return fail("timed out sending");
  if (ec) return fail("sending: " + ec.message());
  std::array<char, 8192> buffer;
  while (impl_->pending.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return fail("no answer within the timeout");
    done = false;
    std::size_t got = 0;
    impl_->socket.async_read_some(asio::buffer(buffer), [&](boost::system::error_code e, std::size_t n) {
      ec = e;
      got = n;
      done = true;
    });
    if (!impl_->run(done, left)) return fail("no answer within the timeout");
    if (ec) return fail("connection lost before the answer: " + ec.message());
    impl_->framer->feed(std::string_view(buffer.data(), got), impl_->pending);
  }
  MllpFramer::Frame f = std::move(impl_->pending.front());
  impl_->pending.erase(impl_->pending.begin());
  if (f.oversize) return fail("the answer is larger than the frame size cap");
  return std::move(f.bytes);
}

}  // namespace caduceus::adapters
