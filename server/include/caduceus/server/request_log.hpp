#pragma once

#include <chrono>
#include <mutex>
#include <string>

#include "caduceus/server/http_types.hpp"

namespace caduceus::server {

// The access log: one JSON object per answered request, one line each, e.g.
//   {"time":"2024-05-01T10:00:00.123Z","method":"GET","path":"/fhir/Patient/1","status":200,
//    "interaction":"read","duration_ms":0.412,"bytes":1234,"remote":"127.0.0.1"}
// The path never carries the query string: search values are personal data and are not logged. `bytes` is the
// response body size sent (0 for HEAD). Each line goes out with one write(2) under a mutex, so lines written from
// several threads never interleave. Constructed in main; a disabled log costs one branch.
class RequestLog {
 public:
  // Writes to the file descriptor `fd` (stdout by default), which the log does not own.
  explicit RequestLog(bool enabled = true, int fd = 1) : enabled_(enabled), fd_(fd) {}

  bool enabled() const noexcept { return enabled_; }

  // Logs one exchange; `elapsed` is the time from the request read whole to the response ready.
  // Never throws; a failed write is dropped.
  void log(const Request& request, const Response& response, std::chrono::nanoseconds elapsed) const noexcept;

  // The line `log` writes (with its trailing newline), stamped with `at`.
  static std::string format(const Request& request, const Response& response, std::chrono::nanoseconds elapsed,
                            std::chrono::system_clock::time_point at);

 private:
  bool enabled_;
  int fd_;
  mutable std::mutex mutex_;
};

}  // namespace caduceus::server
