#include "caduceus/server/request_log.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace caduceus::server {
namespace {

using namespace std::chrono_literals;

std::chrono::system_clock::time_point may_first() {
  // 2024-05-01T10:00:00.123Z
  return std::chrono::system_clock::time_point(std::chrono::seconds(1714557600)) + 123ms;
}

TEST(RequestLogTest, FormatsOneJsonLine) {
  Request request;
  request.method = "GET";
  request.target = "/fhir/Patient/1";
  request.remote = "127.0.0.1";
  Response response;
  response.status = 200;
  response.interaction = "read";
  response.body = std::string(1234, 'x');
  EXPECT_EQ(RequestLog::format(request, response, 412us, may_first()),
            R"({"time":"2024-05-01T10:00:00.123Z","method":"GET","path":"/fhir/Patient/1","status":200,)"
            R"("interaction":"read","duration_ms":0.412,"bytes":1234,"remote":"127.0.0.1"})"
            "\n");
}

// The duration in milliseconds with three decimals, rounded to the microsecond.
TEST(RequestLogTest, FormatsTheDurationInMilliseconds) {
  Request request;
  request.method = "GET";
  request.target = "/";
  Response response;
  response.status = 200;
  auto duration_of = [&](std::chrono::nanoseconds elapsed) {
    std::string line = RequestLog::format(request, response, elapsed, may_first());
    auto at = line.find("\"duration_ms\":");
    auto end = line.find(',', at);
    return line.substr(at + 14, end - at - 14);
  };
  EXPECT_EQ(duration_of(0ns), "0.000");
  EXPECT_EQ(duration_of(499ns), "0.000");
  EXPECT_EQ(duration_of(500ns), "0.001");
  EXPECT_EQ(duration_of(7us), "0.007");
  EXPECT_EQ(duration_of(12'345'499ns), "12.345");
  EXPECT_EQ(duration_of(12'345'500ns), "12.346");
  EXPECT_EQ(duration_of(3'000'040us), "3000.040");
  EXPECT_EQ(duration_of(999'999'600ns), "1000.000");
}

TEST(RequestLogTest, NeverLogsTheQueryString) {
  Request request;
  request.method = "GET";
  request.target = "/fhir/Patient?name=Smith&birthdate=1970-01-01";
  Response response;
  std::string line = RequestLog::format(request, response, 1ms, may_first());
  EXPECT_NE(line.find(R"("path":"/fhir/Patient")"), std::string::npos) << line;
  EXPECT_EQ(line.find("Smith"), std::string::npos) << line;
  EXPECT_EQ(line.find("1970"), std::string::npos) << line;
  EXPECT_EQ(line.find('?'), std::string::npos) << line;
}

TEST(RequestLogTest, EscapesUntrustedText) {
  Request request;
  request.method = "GET";
  request.target = "/a\"b\\c\x01\xff";
  Response response;
  std::string line = RequestLog::format(request, response, 1ms, may_first());
  EXPECT_NE(line.find(R"("path":"/a\"b\\c\u0001\u00ff")"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

TEST(RequestLogTest, HeadSendsNoBytes) {
  Request request;
  request.method = "HEAD";
  request.target = "/fhir/Patient/1";
  Response response;
  response.body = "{}";
  EXPECT_NE(RequestLog::format(request, response, 1ms, may_first()).find(R"("bytes":0,)"), std::string::npos);
}

// Reads everything from a pipe's read end until every writer closed it.
std::string drain(int fd) {
  std::string all;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) all.append(buf, static_cast<std::size_t>(n));
  return all;
}

TEST(RequestLogTest, LinesFromManyThreadsNeverInterleave) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  constexpr int kThreads = 4, kEach = 200;
  std::string all;
  std::thread reader([&] { all = drain(fds[0]); });
  {
    RequestLog log(true, fds[1]);
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t)
      writers.emplace_back([&log, t] {
        Request request;
        request.method = "GET";
        request.target = "/fhir/Patient/" + std::string(3000, static_cast<char>('a' + t));  // lines over 3 KB
        Response response;
        response.interaction = "read";
        for (int i = 0; i < kEach; ++i) log.log(request, response, 1ms);
      });
    for (auto& w : writers) w.join();
  }
  ::close(fds[1]);
  reader.join();
  ::close(fds[0]);

  std::size_t lines = 0, start = 0;
  while (start < all.size()) {
    std::size_t end = all.find('\n', start);
    ASSERT_NE(end, std::string::npos);
    std::string line = all.substr(start, end - start);
    ASSERT_EQ(line.front(), '{');
    ASSERT_EQ(line.back(), '}');
    // One thread's letter only.
    std::string path = line.substr(line.find("/fhir/Patient/") + 14, 3000);
    EXPECT_EQ(path.find_first_not_of(path[0]), std::string::npos);
    ++lines;
    start = end + 1;
  }
  EXPECT_EQ(lines, static_cast<std::size_t>(kThreads * kEach));
}

TEST(RequestLogTest, DisabledWritesNothing) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  {
    RequestLog log(false, fds[1]);
    EXPECT_FALSE(log.enabled());
    log.log(Request{}, Response{}, 1ms);
  }
  ::close(fds[1]);
  EXPECT_EQ(drain(fds[0]), "");
  ::close(fds[0]);
}

TEST(RequestLogTest, BufferedLinesReachTheFileWhileTheLogLives) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  RequestLog log(true, fds[1], std::chrono::milliseconds(20));
  Request request;
  request.method = "GET";
  request.target = "/fhir/Patient/1";
  Response response;
  response.interaction = "read";
  log.log(request, response, 1ms);
  // The flusher writes it out by itself: this read blocks until it does.
  char buf[4096];
  ssize_t n = ::read(fds[0], buf, sizeof buf);
  ASSERT_GT(n, 0);
  std::string line(buf, static_cast<std::size_t>(n));
  EXPECT_NE(line.find("\"path\":\"/fhir/Patient/1\""), std::string::npos);
  EXPECT_EQ(line.back(), '\n');
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace caduceus::server
