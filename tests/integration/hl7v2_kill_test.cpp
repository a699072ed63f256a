// The HL7 v2 kill test: a sender streams ADT^A01 messages over MLLP (pipelined on one connection) and the server is
// killed with SIGKILL mid-stream, then restarted on the same SQLite file. Every message that got an AA before the
// kill is stored and was processed exactly once (its Patient exists once, at version 1); sending every message
// again (the unacknowledged ones for the first time, the others as duplicates) leaves exactly one Patient per
// message, none processed twice (still version 1).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/mllp.hpp"
#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

using adapters::MllpFramer;

constexpr int kMessages = 300;
constexpr std::size_t kKillAfter = 25;  // acknowledgements read before the kill

// A blocking socket that writes raw bytes and reads MLLP frames until the connection ends.
class Socket {
 public:
  explicit Socket(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
    timeval tv{60, 0};  // a safety net against a hang, not a synchronization
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("connect");
  }
  ~Socket() { ::close(fd_); }
  // False when the peer is gone.
  bool write(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // The next frame, or nullopt when the connection ended.
  std::optional<std::string> frame() {
    while (frames_.empty()) {
      char buf[16384];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      std::vector<MllpFramer::Frame> got;
      framer_.feed(std::string_view(buf, static_cast<std::size_t>(n)), got);
      for (auto& f : got) frames_.push_back(std::move(f.bytes));
    }
    std::string f = std::move(frames_.front());
    frames_.erase(frames_.begin());
    return f;
  }

 private:
  int fd_ = -1;
  MllpFramer framer_{1 << 24};
  std::vector<std::string> frames_;
};

std::string control_id(int i) {
  return "KILL-" + std::to_string(i);
}

std::string message(int i) {
  return "MSH|^~\\&|KillSender|WARD9|CADUCEUS|HOSP|20240301101500||ADT^A01|" + control_id(i) +
         "|P|2.5.1\rEVN|A01|20240301101500\rPID|1||K-" + std::to_string(i) +
         "^^^KillHosp&1.2.840.999.77&ISO^MR||Stream^Kill||19800101|F\rPV1|1|I\r";
}

std::uint16_t mllp_port(const TestServer& server) {
  const std::string& line = server.start_line();
  auto at = line.find("MLLP on 127.0.0.1:");
  if (at == std::string::npos) throw std::runtime_error("no MLLP port in: " + line);
  return static_cast<std::uint16_t>(std::stoi(line.substr(at + 18)));
}

// (MSA-1, MSA-2) of an acknowledgement.
std::pair<std::string, std::string> msa(const std::string& ack) {
  auto m = adapters::hl7v2::parse(ack);
  if (!m) return {"<unparsable>", ""};
  const adapters::hl7v2::Segment* s = m->first("MSA");
  return s ? std::pair{s->get(1), s->get(2)} : std::pair{std::string(), std::string()};
}

// The Patients with identifier K-i, as (id, versionId).
std::vector<std::pair<std::string, std::string>> patients(HttpClient& client, const std::string& base, int i) {
  Response r = client.get(base + "/Patient?identifier=" + url_encode("urn:oid:1.2.840.999.77|K-" + std::to_string(i)));
  EXPECT_EQ(r.status, 200) << r.summary();
  std::vector<std::pair<std::string, std::string>> out;
  auto v = r.json();
  if (v)
    if (const fhir::json::Value* entries = v->find("entry"))
      for (const fhir::json::Value& e : entries->items())
        if (const fhir::json::Value* res = e.find("resource"))
          out.emplace_back(string_at(*res, "id"), string_at(*res, "meta.versionId"));
  return out;
}

TEST(Hl7v2KillTest, AcknowledgedMessagesAreStoredAndProcessedExactlyOnce) {
  ServerOptions options;
  options.extra_args = {"--mllp", "127.0.0.1:0", "--log-requests", "false"};
  std::unique_ptr<TestServer> server;
  try {
    server = std::make_unique<TestServer>(options);
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }

  // Stream every message at once, read the acknowledgements in order; kill once kKillAfter have come back, then
  // read what the server had sent before it died.
  std::set<int> acked;
  {
    Socket s(mllp_port(*server));
    std::string all;
    for (int i = 0; i < kMessages; ++i) all += MllpFramer::wrap(message(i));
    ASSERT_TRUE(s.write(all));
    int next = 0;
    bool killed = false;
    while (auto ack = s.frame()) {
      auto [code, id] = msa(*ack);
      ASSERT_EQ(id, control_id(next)) << "answers come in order";
      ASSERT_EQ(code, "AA") << *ack;
      acked.insert(next++);
      if (!killed && acked.size() >= kKillAfter) {
        server->kill9();
        killed = true;
      }
    }
    ASSERT_TRUE(killed);
  }
  ASSERT_GE(acked.size(), kKillAfter);
  std::printf("acknowledged before the kill: %zu of %d\n", acked.size(), kMessages);
  EXPECT_FALSE(server->running());
  ASSERT_NO_THROW(server->restart()) << server->stderr_text();

  HttpClient client(server->host(), server->port());
  const std::string base = server->base_path();
  // Every acknowledged message: its Patient, once, written once.
  for (int i : acked) {
    auto found = patients(client, base, i);
    ASSERT_EQ(found.size(), 1u) << "message " << i << " was acknowledged";
    EXPECT_EQ(found[0].second, "1") << "message " << i;
  }

  // Send everything again: the acknowledged ones are duplicates (answered from the store, not processed), the
  // others are processed now. Every one is answered AA.
  {
    Socket s(mllp_port(*server));
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_TRUE(s.write(MllpFramer::wrap(message(i))));
      auto ack = s.frame();
      ASSERT_TRUE(ack.has_value()) << "no answer to message " << i;
      auto [code, id] = msa(*ack);
      EXPECT_EQ(code, "AA") << *ack;
      EXPECT_EQ(id, control_id(i));
    }
  }
  // Exactly one Patient per message, none processed twice.
  for (int i = 0; i < kMessages; ++i) {
    auto found = patients(client, base, i);
    ASSERT_EQ(found.size(), 1u) << "message " << i;
    EXPECT_EQ(found[0].second, "1") << "message " << i << (acked.count(i) ? " (acknowledged before the kill)" : "");
  }
  Response count = client.get(base + "/Patient?_summary=count");
  ASSERT_EQ(count.status, 200) << count.summary();
  auto body = count.json();
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(fhir::json::write(*body->find("total")), std::to_string(kMessages));
}

}  // namespace
}  // namespace caduceus::test
