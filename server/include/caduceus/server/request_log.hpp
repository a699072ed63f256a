#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "caduceus/server/http_types.hpp"

namespace caduceus::server {

// The access log: one JSON object per answered request, one line each, e.g.
//   {"time":"2024-05-01T10:00:00.123Z","method":"GET","path":"/fhir/Patient/1","status":200,
//    "interaction":"read","duration_ms":0.412,"bytes":1234,"remote":"127.0.0.1"}
// The path never carries the query string: search values are personal data and are not logged. `bytes` is the
// response body size sent (0 for HEAD). Lines are gathered in a buffer and written whole, by a flusher thread
// every `flush_interval` (or at once when the buffer passes 64 KiB), and on destruction: lines never interleave,
// and a busy server makes one write(2) per batch instead of one per request. A process killed with SIGKILL loses
// at most the last interval's lines. Constructed in main; a disabled log costs one branch.
class RequestLog {
 public:
  // Writes to the file descriptor `fd` (stdout by default), which the log does not own.
  explicit RequestLog(bool enabled = true, int fd = 1,
                      std::chrono::milliseconds flush_interval = std::chrono::milliseconds(100));
  ~RequestLog();
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  // Writes out what is buffered now.
  void flush() const noexcept;

  bool enabled() const noexcept { return enabled_; }

  // Logs one exchange; `elapsed` is the time from the request read whole to the response ready.
  // Never throws; a failed write is dropped.
  void log(const Request& request, const Response& response, std::chrono::nanoseconds elapsed) const noexcept;

  // The line `log` writes (with its trailing newline), stamped with `at`.
  static std::string format(const Request& request, const Response& response, std::chrono::nanoseconds elapsed,
                            std::chrono::system_clock::time_point at);

 private:
  void write_all(std::string_view bytes) const noexcept;

  bool enabled_;
  int fd_;
  std::chrono::milliseconds flush_interval_;
  mutable std::mutex mutex_;        // guards buffer_ and stopping_
  mutable std::mutex write_mutex_;  // one writer of fd_ at a time, in order
  mutable std::string buffer_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread flusher_;
};

}  // namespace caduceus::server
