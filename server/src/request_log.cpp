#include "caduceus/server/request_log.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <string_view>

#include "caduceus/fhir/thread_name.hpp"

namespace caduceus::server {

namespace {

// A JSON string body: quotes, backslashes, control characters and bytes above 0x7F escaped (a target is
// untrusted; the log must stay valid JSON and plain ASCII).
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if (c < 0x20 || c >= 0x7f) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

void append_time(std::string& out, std::chrono::system_clock::time_point at) {
  auto since_epoch = at.time_since_epoch();
  auto secs = std::chrono::floor<std::chrono::seconds>(since_epoch);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - secs).count();
  std::time_t t = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  if (n > 0) out.append(buf, static_cast<std::size_t>(n));
}

// A duration in milliseconds with three decimals (microseconds, rounded half up), formatted from integers: a
// printf of a double was a third of the time of a log line.
void append_millis(std::string& out, std::chrono::nanoseconds elapsed) {
  const long long ns = std::max<long long>(0, elapsed.count());
  const long long us = (ns + 500) / 1000;
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, us / 1000);
  const long long frac = us % 1000;
  *end++ = '.';
  *end++ = static_cast<char>('0' + frac / 100);
  *end++ = static_cast<char>('0' + frac / 10 % 10);
  *end++ = static_cast<char>('0' + frac % 10);
  out.append(buf, end);
}

}  // namespace

std::string RequestLog::format(const Request& request, const Response& response, std::chrono::nanoseconds elapsed,
                               std::chrono::system_clock::time_point at) {
  std::string_view path = request.target;
  if (auto cut = path.find_first_of("?#"); cut != std::string_view::npos) path = path.substr(0, cut);
  std::size_t bytes = request.method == "HEAD" ? 0 : response.body.size();

  std::string line;
  line.reserve(192 + path.size());
  line += "{\"time\":\"";
  append_time(line, at);
  line += "\",\"method\":";
  append_json_string(line, request.method);
  line += ",\"path\":";
  append_json_string(line, path);
  line += ",\"status\":";
  line += std::to_string(response.status);
  line += ",\"interaction\":";
  append_json_string(line, response.interaction);
  line += ",\"duration_ms\":";
  append_millis(line, elapsed);
  line += ",\"bytes\":";
  line += std::to_string(bytes);
  line += ",\"remote\":";
  append_json_string(line, request.remote);
  line += "}\n";
  return line;
}

RequestLog::RequestLog(bool enabled, int fd, std::chrono::milliseconds flush_interval)
    : enabled_(enabled), fd_(fd), flush_interval_(flush_interval) {
  if (!enabled_) return;
  flusher_ = std::thread([this] {
    name_this_thread("cad-request-log");
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, flush_interval_);
      lock.unlock();
      flush();
      lock.lock();
    }
  });
}

RequestLog::~RequestLog() {
  if (flusher_.joinable()) {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    flusher_.join();
  }
  flush();
}

void RequestLog::write_all(std::string_view rest) const noexcept {
  while (!rest.empty()) {
    ssize_t n = ::write(fd_, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

void RequestLog::flush() const noexcept {
  std::lock_guard writing(write_mutex_);
  std::string out;
  {
    std::lock_guard lock(mutex_);
    out.swap(buffer_);
  }
  write_all(out);
}

void RequestLog::log(const Request& request, const Response& response,
                     std::chrono::nanoseconds elapsed) const noexcept {
  if (!enabled_) return;
  try {
    std::string line = format(request, response, elapsed, std::chrono::system_clock::now());
    bool full = false;
    {
      std::lock_guard lock(mutex_);
      buffer_ += line;
      full = buffer_.size() >= 64 * 1024;
    }
    if (full) flush();
  } catch (...) {
    // Out of memory while formatting: drop the line rather than fail the request.
  }
}

}  // namespace caduceus::server
