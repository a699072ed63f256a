#include "caduceus/server/metrics.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace caduceus::server {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines_of(text))
    if (l == line) return true;
  return false;
}

std::size_t count_lines_starting(const std::string& text, const std::string& prefix) {
  std::size_t n = 0;
  for (const auto& l : lines_of(text))
    if (l.rfind(prefix, 0) == 0) ++n;
  return n;
}

TEST(MetricsTest, CountsRequestsByInteractionAndStatus) {
  Metrics metrics;
  metrics.observe("read", 200, 0.0003);
  metrics.observe("read", 200, 0.002);
  metrics.observe("read", 404, 0.01);
  metrics.observe("create", 201, 7.0);
  std::string text = metrics.render();

  EXPECT_TRUE(has_line(text, "# TYPE caduceus_http_requests_total counter"));
  EXPECT_TRUE(has_line(text, R"(caduceus_http_requests_total{interaction="read",status="200"} 2)")) << text;
  EXPECT_TRUE(has_line(text, R"(caduceus_http_requests_total{interaction="read",status="404"} 1)"));
  EXPECT_TRUE(has_line(text, R"(caduceus_http_requests_total{interaction="create",status="201"} 1)"));
  EXPECT_EQ(count_lines_starting(text, "caduceus_http_requests_total{"), 3u);
}

TEST(MetricsTest, RendersCumulativeHistogramsPerInteraction) {
  Metrics metrics;
  metrics.observe("read", 200, 0.0003);  // first bucket
  metrics.observe("read", 200, 0.0005);  // on the bound: still le="0.0005"
  metrics.observe("read", 200, 0.002);   // le="0.0025"
  metrics.observe("read", 500, 0.3);     // le="0.5"
  metrics.observe("create", 201, 7.0);   // only +Inf
  std::string text = metrics.render();

  EXPECT_TRUE(has_line(text, "# TYPE caduceus_http_request_duration_seconds histogram"));
  const std::string read = R"(caduceus_http_request_duration_seconds_bucket{interaction="read",le=)";
  EXPECT_TRUE(has_line(text, read + R"("0.0005"} 2)")) << text;
  EXPECT_TRUE(has_line(text, read + R"("0.001"} 2)"));
  EXPECT_TRUE(has_line(text, read + R"("0.0025"} 3)"));
  EXPECT_TRUE(has_line(text, read + R"("0.25"} 3)"));
  EXPECT_TRUE(has_line(text, read + R"("0.5"} 4)"));
  EXPECT_TRUE(has_line(text, read + R"("5"} 4)"));
  EXPECT_TRUE(has_line(text, read + R"("+Inf"} 4)"));
  EXPECT_TRUE(has_line(text, R"(caduceus_http_request_duration_seconds_count{interaction="read"} 4)"));
  EXPECT_TRUE(has_line(text, R"(caduceus_http_request_duration_seconds_bucket{interaction="create",le="5"} 0)"));
  EXPECT_TRUE(has_line(text, R"(caduceus_http_request_duration_seconds_bucket{interaction="create",le="+Inf"} 1)"));
  EXPECT_TRUE(has_line(text, R"(caduceus_http_request_duration_seconds_sum{interaction="create"} 7)"));
  EXPECT_TRUE(has_line(text, R"(caduceus_http_request_duration_seconds_count{interaction="create"} 1)"));
  // 13 bounds and +Inf per interaction.
  EXPECT_EQ(count_lines_starting(text, R"(caduceus_http_request_duration_seconds_bucket{interaction="read",)"),
            Metrics::kBuckets.size() + 1);

  // The sum of the read durations, parsed back.
  std::smatch m;
  std::regex sum_re(R"(caduceus_http_request_duration_seconds_sum\{interaction="read"\} ([0-9.e+-]+))");
  ASSERT_TRUE(std::regex_search(text, m, sum_re));
  EXPECT_NEAR(std::stod(m[1]), 0.3028, 1e-9);
}

TEST(MetricsTest, EveryLineIsValidExposition) {
  Metrics metrics;
  metrics.set_open_connections([] { return std::size_t{7}; });
  metrics.observe("search-type", 200, 0.01);
  metrics.observe("", 0, 0.01);
  std::string text = metrics.render();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');

  std::regex sample(
      R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*\})? (\+Inf|-Inf|NaN|[-+]?[0-9.]+(e[-+]?[0-9]+)?)$)");
  std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
  for (const auto& line : lines_of(text))
    EXPECT_TRUE(std::regex_match(line, sample) || std::regex_match(line, comment)) << "bad line: " << line;

  EXPECT_TRUE(has_line(text, "caduceus_http_open_connections 7"));
  EXPECT_TRUE(has_line(text, "# TYPE caduceus_process_uptime_seconds gauge"));
  EXPECT_EQ(count_lines_starting(text, "caduceus_process_uptime_seconds "), 1u);
  // An empty interaction and an impossible status are kept, not dropped.
  EXPECT_TRUE(has_line(text, R"(caduceus_http_requests_total{interaction="unknown",status="0"} 1)"));
  // Each family is declared once.
  EXPECT_EQ(count_lines_starting(text, "# TYPE caduceus_http_requests_total "), 1u);
  EXPECT_EQ(count_lines_starting(text, "# TYPE caduceus_http_request_duration_seconds "), 1u);
}

TEST(MetricsTest, EscapesLabelValues) {
  Metrics metrics;
  metrics.observe("a\"b\\c\nd", 200, 0.001);
  std::string text = metrics.render();
  EXPECT_TRUE(has_line(text, R"(caduceus_http_requests_total{interaction="a\"b\\c\nd",status="200"} 1)")) << text;
}

TEST(MetricsTest, WithoutAGaugeCallbackNoOpenConnectionsLine) {
  Metrics metrics;
  EXPECT_EQ(metrics.render().find("caduceus_http_open_connections"), std::string::npos);
}

TEST(MetricsTest, ObserveIsThreadSafe) {
  Metrics metrics;
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&metrics, t] {
      for (int i = 0; i < kEach; ++i) metrics.observe(i % 2 ? "read" : "search-type", 200 + t, 0.001);
    });
  for (auto& th : threads) th.join();
  std::string text = metrics.render();
  EXPECT_TRUE(has_line(text, R"(caduceus_http_request_duration_seconds_count{interaction="read"} )" +
                                 std::to_string(kThreads * kEach / 2)));
  EXPECT_TRUE(has_line(
      text, R"(caduceus_http_requests_total{interaction="search-type",status="203"} )" + std::to_string(kEach / 2)));
}

}  // namespace
}  // namespace caduceus::server
