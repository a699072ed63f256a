#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>

namespace caduceus::server {

// Request counters and latency histograms, rendered in the Prometheus text exposition format (version 0.0.4).
// Thread-safe. Constructed once in main and passed to whoever observes or renders; there is no global registry.
//
// The hot path (`observe`) takes a shared lock for one map lookup by interaction and then only bumps relaxed
// atomics; the exclusive lock is taken once per new interaction label.
class Metrics {
 public:
  // Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implicit.
  static constexpr std::array<double, 13> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,    0.25,  0.5,    1.0,   2.5,  5.0};

  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Counts one answered request. An empty interaction is recorded as "unknown"; a status outside 100..599 as 0.
  void observe(std::string_view interaction, int status, double seconds);

  // Where the open-connections gauge is read from when rendering (e.g. the HTTP server). Without one, the gauge
  // is not rendered.
  void set_open_connections(std::function<std::size_t()> gauge);

  // The whole exposition: request counters, latency histograms, process gauges. Series are sorted by label.
  std::string render() const;

 private:
  struct Series;

  std::chrono::steady_clock::time_point started_;
  double started_unix_seconds_;
  mutable std::shared_mutex mutex_;  // guards the map (not the counters inside a Series)
  std::map<std::string, std::unique_ptr<Series>, std::less<>> series_;
  mutable std::mutex gauge_mutex_;
  std::function<std::size_t()> open_connections_;
};

}  // namespace caduceus::server
