#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace caduceus::test {

// The whole content of a file, bytes as they are ("" when it cannot be read).
std::string read_file(const std::filesystem::path& path);
// The folder of the official R4 examples (hl7.fhir.r4.examples, unpacked by the build; CADUCEUS_R4_EXAMPLES may
// name another), or an empty path when it is not there.
std::filesystem::path r4_examples_dir();

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it when destroyed.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "caduceus-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

struct ServerOptions {
  // The database URL; empty means "sqlite:<temp dir>/caduceus.db" (kept across restart()).
  std::string db;
  // Appended after `serve --listen 127.0.0.1:0 --db ...`.
  std::vector<std::string> extra_args;
  // Set in the child's environment, replacing an inherited variable of the same name (every inherited CADUCEUS_*
  // variable is removed first).
  std::map<std::string, std::string> env;
  // How long to wait for the "listening on http://..." line.
  std::chrono::milliseconds start_timeout = std::chrono::seconds(10);
  // How long stop() waits after SIGTERM before it gives up and sends SIGKILL.
  std::chrono::milliseconds stop_timeout = std::chrono::seconds(15);
  // The executable: $CADUCEUS_TEST_BINARY when set, else the caduceus target of this build.
  std::string binary = default_binary();

  static std::string default_binary();
};

// The real caduceus binary as a child process, on port 0, with its own temporary directory (for the SQLite file
// and the server's stderr) that is removed at the end. The constructor starts it; the destructor kills it if it
// still runs. Start failures throw std::runtime_error with the server's stderr (gtest reports it as a failure).
// Thread-safety: kill9() may be called from any thread; the other members from the owning thread.
// The child gets SIGKILL if the thread that started it exits (PR_SET_PDEATHSIG), so no server outlives a
// crashed test run: start and restart from the test's main thread.
class TestServer {
 public:
  explicit TestServer(ServerOptions options = {});
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  // "http://127.0.0.1:PORT/fhir", exactly as the server printed it.
  const std::string& base_url() const noexcept { return base_url_; }
  // "/fhir": the path part of the base URL, to prefix request targets.
  const std::string& base_path() const noexcept { return base_path_; }
  const std::string& host() const noexcept { return host_; }
  std::uint16_t port() const noexcept { return port_; }
  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0; }
  const std::filesystem::path& dir() const noexcept { return dir_.path(); }
  const std::string& db_url() const noexcept { return db_; }
  // The whole line the server printed its URL on (it also names other listeners, e.g. "HL7 v2 MLLP on H:P").
  const std::string& start_line() const noexcept { return start_line_; }

  // SIGTERM, then waits for the exit. Returns the exit code, or 128 + signal number when it died from a
  // signal; -1 if it had to be SIGKILLed after stop_timeout (a test failure is recorded then).
  int stop();
  // SIGKILL and reap, without any chance for the server to clean up. Safe to call from another thread.
  void kill9();
  // Without blocking: if the server process has ended (crashed), reaps it and says how ("killed by signal 11");
  // nullopt while it runs.
  std::optional<std::string> died();
  // Stops the server if it runs (SIGTERM) and starts it again on the same database and arguments. The port
  // changes (port 0); base_url()/port() give the new one.
  void restart();

  // Everything the server wrote on stdout after the URL line so far (one JSON line per request).
  std::vector<std::string> log_lines() const;
  // What it wrote on stderr so far.
  std::string stderr_text() const;

 private:
  void start();
  void reap(int status);
  int wait_exit(std::chrono::milliseconds timeout);  // -2 on timeout
  void drain_stdout(int fd);

  ServerOptions options_;
  TempDir dir_;
  std::string db_;
  std::string base_url_, base_path_, host_, start_line_;
  std::uint16_t port_ = 0;
  std::atomic<pid_t> pid_{-1};
  int pidfd_ = -1;
  int last_status_ = 0;
  std::mutex kill_mutex_;  // guards pid_/pidfd_ against kill9() from another thread

  std::thread drainer_;
  mutable std::mutex log_mutex_;
  std::vector<std::string> log_lines_;
};

// Runs `caduceus ARGS...` (the binary a TestServer starts; each argument single-quoted for the shell) and waits for
// it; returns its exit code and what it printed (stdout and stderr together).
std::pair<int, std::string> run_caduceus(const std::vector<std::string>& args);

}  // namespace caduceus::test
