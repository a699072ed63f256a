#include "caduceus/server/metrics.hpp"

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <fstream>

namespace caduceus::server {

namespace {

constexpr int kMaxStatus = 599;

void append_number(std::string& out, double value) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec == std::errc{})
    out.append(buf, end);
  else
    out += "NaN";
}

// A bucket bound, in plain decimal notation ("0.0005", not "5e-04").
void append_bound(std::string& out, double value) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed);
  if (ec == std::errc{})
    out.append(buf, end);
  else
    out += "NaN";
}

void append_number(std::string& out, std::uint64_t value) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, ec == std::errc{} ? end : buf);
}

// A label value in the exposition format: backslash, double quote and line feed are escaped.
void append_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
}

// Resident set size from /proc (Linux); 0 when unavailable.
std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  long page = ::sysconf(_SC_PAGESIZE);
  return resident * static_cast<std::uint64_t>(page > 0 ? page : 4096);
}

}  // namespace

struct Metrics::Series {
  std::array<std::atomic<std::uint64_t>, kBuckets.size() + 1> buckets{};  // not cumulative; last one is +Inf
  std::atomic<double> sum{0.0};
  std::array<std::atomic<std::uint64_t>, kMaxStatus + 1> by_status{};  // index 0 collects out-of-range codes
};

Metrics::Metrics()
    : started_(std::chrono::steady_clock::now()),
      started_unix_seconds_(
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()) {}

Metrics::~Metrics() = default;

void Metrics::observe(std::string_view interaction, int status, double seconds) {
  if (interaction.empty()) interaction = "unknown";
  Series* series = nullptr;
  {
    std::shared_lock lock(mutex_);
    if (auto it = series_.find(interaction); it != series_.end()) series = it->second.get();
  }
  if (series == nullptr) {
    std::unique_lock lock(mutex_);
    auto [it, inserted] = series_.try_emplace(std::string(interaction), nullptr);
    if (inserted) it->second = std::make_unique<Series>();
    series = it->second.get();
  }

  std::size_t bucket = 0;
  while (bucket < kBuckets.size() && seconds > kBuckets[bucket]) ++bucket;
  series->buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  series->sum.fetch_add(seconds, std::memory_order_relaxed);
  std::size_t status_index = (status >= 100 && status <= kMaxStatus) ? static_cast<std::size_t>(status) : 0;
  series->by_status[status_index].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::set_open_connections(std::function<std::size_t()> gauge) {
  std::lock_guard lock(gauge_mutex_);
  open_connections_ = std::move(gauge);
}

std::string Metrics::render() const {
  std::string out;
  out.reserve(4096);

  std::shared_lock lock(mutex_);

  out += "# HELP caduceus_http_requests_total HTTP requests answered, by interaction and status.\n";
  out += "# TYPE caduceus_http_requests_total counter\n";
  for (const auto& [interaction, series] : series_) {
    for (std::size_t status = 0; status < series->by_status.size(); ++status) {
      std::uint64_t n = series->by_status[status].load(std::memory_order_relaxed);
      if (n == 0) continue;
      out += "caduceus_http_requests_total{interaction=\"";
      append_label_value(out, interaction);
      out += "\",status=\"";
      append_number(out, static_cast<std::uint64_t>(status));
      out += "\"} ";
      append_number(out, n);
      out += '\n';
    }
  }

  out += "# HELP caduceus_http_request_duration_seconds Time from a request read whole to its response ready.\n";
  out += "# TYPE caduceus_http_request_duration_seconds histogram\n";
  for (const auto& [interaction, series] : series_) {
    std::string labels = "interaction=\"";
    append_label_value(labels, interaction);
    labels += '"';
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= kBuckets.size(); ++i) {
      cumulative += series->buckets[i].load(std::memory_order_relaxed);
      out += "caduceus_http_request_duration_seconds_bucket{";
      out += labels;
      out += ",le=\"";
      if (i < kBuckets.size())
        append_bound(out, kBuckets[i]);
      else
        out += "+Inf";
      out += "\"} ";
      append_number(out, cumulative);
      out += '\n';
    }
    out += "caduceus_http_request_duration_seconds_sum{" + labels + "} ";
    append_number(out, series->sum.load(std::memory_order_relaxed));
    out += '\n';
    // The count is the +Inf bucket, so that the two always agree in one scrape.
    out += "caduceus_http_request_duration_seconds_count{" + labels + "} ";
    append_number(out, cumulative);
    out += '\n';
  }
  lock.unlock();

  std::function<std::size_t()> open_connections;
  {
    std::lock_guard gauge_lock(gauge_mutex_);
    open_connections = open_connections_;
  }
  if (open_connections) {
    out += "# HELP caduceus_http_open_connections HTTP connections currently open.\n";
    out += "# TYPE caduceus_http_open_connections gauge\n";
    out += "caduceus_http_open_connections ";
    append_number(out, static_cast<std::uint64_t>(open_connections()));
    out += '\n';
  }

  out += "# HELP caduceus_process_uptime_seconds Seconds since the server started.\n";
  out += "# TYPE caduceus_process_uptime_seconds gauge\n";
  out += "caduceus_process_uptime_seconds ";
  append_number(out, std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  out += '\n';
  out += "# HELP caduceus_process_start_time_seconds Start time of the process since the Unix epoch, in seconds.\n";
  out += "# TYPE caduceus_process_start_time_seconds gauge\n";
  out += "caduceus_process_start_time_seconds ";
  append_number(out, started_unix_seconds_);
  out += '\n';
  if (std::uint64_t rss = resident_bytes(); rss != 0) {
    out += "# HELP caduceus_process_resident_memory_bytes Resident memory size in bytes.\n";
    out += "# TYPE caduceus_process_resident_memory_bytes gauge\n";
    out += "caduceus_process_resident_memory_bytes ";
    append_number(out, rss);
    out += '\n';
  }
  return out;
}

}  // namespace caduceus::server
