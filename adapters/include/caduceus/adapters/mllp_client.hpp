#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "caduceus/fhir/error.hpp"

namespace caduceus::adapters {

// A blocking MLLP client: one connection, one message then its answer at a time. Not thread-safe.
class MllpClient {
 public:
  explicit MllpClient(std::size_t max_frame = 1 << 20);
  ~MllpClient();
  MllpClient(const MllpClient&) = delete;
  MllpClient& operator=(const MllpClient&) = delete;

  // Connects (closing any connection open). Errors: kUnavailable (refused, unresolved, timed out).
  fhir::Result<void> connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout);
  // Sends one message framed and returns the first frame that comes back within `timeout`. On any error the
  // connection is closed. Errors: kUnavailable (not connected, lost, timed out, an oversize answer).
  fhir::Result<std::string> exchange(std::string_view message, std::chrono::milliseconds timeout);
  bool connected() const;
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace caduceus::adapters
