#include "mllp_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

#include "caduceus/adapters/hl7v2/message.hpp"

namespace caduceus::test {

MllpClient::MllpClient(std::uint16_t port, int timeout_s) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) throw std::runtime_error("socket");
  timeval tv{timeout_s, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    throw std::runtime_error("connect");
  }
}

MllpClient::~MllpClient() {
  ::close(fd_);
}

bool MllpClient::write(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::optional<std::string> MllpClient::frame() {
  while (frames_.empty()) {
    char buf[16384];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    std::vector<adapters::MllpFramer::Frame> got;
    framer_.feed(std::string_view(buf, static_cast<std::size_t>(n)), got);
    for (auto& f : got) frames_.push_back(std::move(f.bytes));
  }
  std::string f = std::move(frames_.front());
  frames_.erase(frames_.begin());
  return f;
}

std::vector<std::string> MllpClient::read(std::size_t count) {
  std::vector<std::string> out;
  while (out.size() < count) {
    auto f = frame();
    if (!f) break;
    out.push_back(std::move(*f));
  }
  return out;
}

std::string MllpClient::exchange(std::string_view message) {
  if (!write(adapters::MllpFramer::wrap(message))) return {};
  return frame().value_or(std::string());
}

std::uint16_t mllp_port_of(const TestServer& server) {
  const std::string& line = server.start_line();
  auto at = line.find("MLLP on 127.0.0.1:");
  if (at == std::string::npos) throw std::runtime_error("no MLLP port in: " + line);
  return static_cast<std::uint16_t>(std::stoi(line.substr(at + 18)));
}

std::string ack_field(const std::string& ack, std::string_view segment, std::size_t n, std::size_t c) {
  auto m = adapters::hl7v2::parse(ack);
  if (!m) return "<unparsable>";
  const adapters::hl7v2::Segment* s = m->first(segment);
  return s ? s->get(n, c) : std::string();
}

}  // namespace caduceus::test
