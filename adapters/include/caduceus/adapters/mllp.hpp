#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/fhir/error.hpp"

namespace caduceus::adapters {

// MLLP framing (HL7 v2 over TCP): each message is sent as 0x0B <message> 0x1C 0x0D. The framer is fed the bytes
// as they arrive, in any pieces: one read may hold several frames, one frame may span several reads.
class MllpFramer {
 public:
  static constexpr char kStart = 0x0B, kEnd = 0x1C, kCr = 0x0D;

  struct Frame {
    std::string bytes;      // the message (only its first max_frame bytes when oversize)
    bool oversize = false;  // it was longer than max_frame: the rest was discarded
  };

  explicit MllpFramer(std::size_t max_frame) : max_frame_(max_frame) {}

  // Consumes `data`, appending every frame it completes to `out`. Bytes outside a frame are discarded (counted
  // in discarded()); a start byte inside a frame starts the frame again.
  void feed(std::string_view data, std::vector<Frame>& out);
  // Bytes seen outside any frame so far (not MLLP), and whether a frame is under way.
  std::size_t discarded() const noexcept { return discarded_; }
  bool in_frame() const noexcept { return in_frame_; }

  // The bytes to send for one message.
  static std::string wrap(std::string_view message);

 private:
  std::size_t max_frame_;
  bool in_frame_ = false;
  bool saw_end_ = false;  // the previous byte of the frame was 0x1C
  bool oversize_ = false;
  std::string buffer_;
  std::size_t discarded_ = 0;
};

struct MllpOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: a free port (listen() returns it)
  std::size_t max_frame = 1 << 20;
  std::chrono::seconds idle_timeout{300};  // a connection with nothing received and nothing pending is closed
};

// Handles one message, answering through `send` (any number of times, in order), then `done`; both may be called
// from any thread.
using MllpHandler = std::function<void(std::string message, bool oversize, std::function<void(std::string)> send,
                                       std::function<void()> done)>;

// The MLLP listener: many connections, each answered in order (one message at a time), on its own I/O thread.
class MllpServer {
 public:
  MllpServer(MllpOptions options, MllpHandler handler);
  ~MllpServer();
  MllpServer(const MllpServer&) = delete;
  MllpServer& operator=(const MllpServer&) = delete;

  // Binds and starts accepting on a thread of its own. Returns the bound port. Errors: kUnavailable.
  fhir::Result<std::uint16_t> start();
  // Stops accepting, closes every connection once its message in hand is answered, joins the thread.
  void stop();
  std::size_t open_connections() const;

  struct Impl;  // (the listener's state, in mllp.cpp)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace caduceus::adapters
