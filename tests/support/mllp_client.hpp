#pragma once

// The MLLP side of the HL7 v2 tests: a blocking client that writes raw bytes and reads whole frames, the MLLP port
// a test server printed, and fields of an acknowledgement.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/adapters/mllp.hpp"
#include "test_server.hpp"

namespace caduceus::test {

class MllpClient {
 public:
  // Connects to 127.0.0.1:port (throws when it cannot). `timeout_s` bounds each wait for bytes: a safety net against
  // a hang, not a synchronization.
  explicit MllpClient(std::uint16_t port, int timeout_s = 30);
  ~MllpClient();
  MllpClient(const MllpClient&) = delete;
  MllpClient& operator=(const MllpClient&) = delete;

  // Writes raw bytes (frames, parts of frames, several frames); false when the peer is gone.
  bool write(std::string_view bytes);
  // The next frame, or nullopt when the connection ended (or the safety timeout passed).
  std::optional<std::string> frame();
  // The next `count` frames (fewer if the connection ends).
  std::vector<std::string> read(std::size_t count);
  // Sends one message framed and answers the next frame ("" when none came).
  std::string exchange(std::string_view message);

 private:
  int fd_ = -1;
  adapters::MllpFramer framer_{1 << 24};
  std::vector<std::string> frames_;
};

// The MLLP port from a server's start line ("... HL7 v2 MLLP on 127.0.0.1:PORT"); throws when it has none.
std::uint16_t mllp_port_of(const TestServer& server);

// Field n (component c) of the first `segment` of an acknowledgement: "" when absent, "<unparsable>" when the
// acknowledgement does not parse.
std::string ack_field(const std::string& ack, std::string_view segment, std::size_t n, std::size_t c = 1);

}  // namespace caduceus::test
