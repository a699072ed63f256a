#include "test_server.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "http_client.hpp"

extern char** environ;

namespace caduceus::test {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---- TempDir -------------------------------------------------------------------------------------------------

TempDir::TempDir(std::string_view prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/" + std::string(prefix) + "-XXXXXX";
  if (!mkdtemp(templ.data())) throw std::runtime_error("mkdtemp(" + templ + ") failed: " + std::strerror(errno));
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

// ---- TestServer ----------------------------------------------------------------------------------------------

std::string ServerOptions::default_binary() {
  const char* env = std::getenv("CADUCEUS_TEST_BINARY");
  return env && *env ? std::string(env) : std::string(CADUCEUS_BINARY);
}

namespace {

int pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path r4_examples_dir() {
  const char* dir = std::getenv("CADUCEUS_R4_EXAMPLES");
#ifdef CADUCEUS_R4_EXAMPLES_DIR
  if (dir == nullptr) dir = CADUCEUS_R4_EXAMPLES_DIR;
#endif
  std::error_code ec;
  if (dir == nullptr || !fs::is_directory(dir, ec)) return {};
  return dir;
}

TestServer::TestServer(ServerOptions options) : options_(std::move(options)), dir_("caduceus-server") {
  db_ = options_.db.empty() ? "sqlite:" + (dir_.path() / "caduceus.db").string() : options_.db;
  start();
}

TestServer::~TestServer() {
  if (!running()) return;
  std::lock_guard lock(kill_mutex_);
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  if (wait_exit(options_.stop_timeout) == -2) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reap(status);
  }
}

void TestServer::start() {
  std::vector<std::string> args = {options_.binary, "serve", "--listen", "127.0.0.1:0", "--db", db_};
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (kv.starts_with("CADUCEUS_")) continue;
    // A variable of options.env replaces the inherited one (getenv would find the first of two).
    if (options_.env.contains(std::string(kv.substr(0, kv.find('='))))) continue;
    env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : options_.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  if (!fs::exists(options_.binary))
    throw std::runtime_error("server binary " + options_.binary + " does not exist (build target caduceus)");

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  const fs::path err_path = dir_.path() / "server.stderr";
  int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (err_fd < 0 || null_fd < 0) {
    ::close(out[0]);
    ::close(out[1]);
    if (err_fd >= 0) ::close(err_fd);
    if (null_fd >= 0) ::close(null_fd);
    throw std::runtime_error("cannot open the server's stderr file or /dev/null");
  }
  const pid_t parent = getpid();

  std::unique_lock lock(kill_mutex_);
  const pid_t pid = fork();
  if (pid == 0) {
    // Child: only async-signal-safe calls from here to exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    dup2(null_fd, 0);
    dup2(out[1], 1);
    dup2(err_fd, 2);
#ifdef SYS_close_range
    syscall(SYS_close_range, 3U, ~0U, 0U);
#endif
    chdir(dir_.path().c_str());
    execve(argv[0], argv.data(), envp.data());
    const char msg[] = "exec of the server binary failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  const int fork_errno = errno;
  ::close(out[1]);
  ::close(err_fd);
  ::close(null_fd);
  if (pid < 0) {
    ::close(out[0]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(fork_errno));
  }
  pid_ = pid;
  pidfd_ = pidfd_open(pid);
  lock.unlock();

  // Read stdout until the URL line, the child's exit, or the deadline.
  const auto deadline = Clock::now() + options_.start_timeout;
  std::string buffer;
  std::string url;
  std::vector<std::string> early_lines;
  std::string failure;
  while (url.empty() && failure.empty()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      failure = "did not print its URL within " + std::to_string(options_.start_timeout.count()) + " ms";
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) continue;  // the deadline check above ends the loop
    char chunk[4096];
    ssize_t got = ::read(out[0], chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      failure = "closed its stdout before printing its URL";
      break;
    }
    buffer.append(chunk, static_cast<std::size_t>(got));
    std::size_t nl;
    while (url.empty() && (nl = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      auto at = line.find("http://");
      if (at == std::string::npos) at = line.find("https://");
      if (at == std::string::npos) {
        early_lines.push_back(line);
        continue;
      }
      auto end = line.find_first_of(" \t\r\"'", at);
      url = line.substr(at, end == std::string::npos ? std::string::npos : end - at);
      start_line_ = line;
      while (!url.empty() && (url.back() == '.' || url.back() == ',')) url.pop_back();
    }
  }

  if (!failure.empty()) {
    ::close(out[0]);
    int status = 0;
    std::string how;
    {
      std::lock_guard kl(kill_mutex_);
      if (pid_ > 0) {
        // A closed stdout usually means the server is exiting: give it a moment to do so (woken by its exit,
        // not a sleep), so that its exit status can be reported. Otherwise kill it.
        if (pidfd_ >= 0 && failure.starts_with("closed")) {
          pollfd p{pidfd_, POLLIN, 0};
          while (::poll(&p, 1, 2000) < 0 && errno == EINTR) {
          }
        }
        pid_t r = waitpid(pid_, &status, WNOHANG);
        if (r == 0) {
          ::kill(pid_, SIGKILL);
          while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
          }
          how = "(killed by the test)";
        } else {
          how = describe_status(status);
        }
        if (pidfd_ >= 0) ::close(pidfd_);
        pidfd_ = -1;
        pid_ = -1;
      }
    }
    std::string message = "caduceus server " + failure + " " + how + "\n  command:";
    for (const auto& a : args) message += " " + a;
    for (const auto& l : early_lines) message += "\n  stdout: " + l;
    if (!buffer.empty()) message += "\n  stdout: " + buffer;
    message += "\n  stderr: " + read_file(err_path);
    throw std::runtime_error(message);
  }

  base_url_ = url;
  auto parsed = parse_url(url);
  if (!parsed) {
    kill9();
    ::close(out[0]);
    throw std::runtime_error("caduceus server printed an unparsable URL: " + url);
  }
  host_ = parsed->host;
  port_ = parsed->port;
  base_path_ = parsed->path;
  while (!base_path_.empty() && base_path_.back() == '/') base_path_.pop_back();

  {
    std::lock_guard ll(log_mutex_);
    log_lines_ = std::move(early_lines);
  }
  const int fd = out[0];
  drainer_ = std::thread([this, fd, rest = std::move(buffer)]() mutable {
    std::string pending = std::move(rest);
    auto flush_lines = [&] {
      std::size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        std::lock_guard ll(log_mutex_);
        if (log_lines_.size() < 500000) log_lines_.push_back(pending.substr(0, nl));
        pending.erase(0, nl + 1);
      }
    };
    flush_lines();
    char chunk[65536];
    for (;;) {
      ssize_t got = ::read(fd, chunk, sizeof chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      pending.append(chunk, static_cast<std::size_t>(got));
      flush_lines();
    }
    if (!pending.empty()) {
      std::lock_guard ll(log_mutex_);
      log_lines_.push_back(pending);
    }
    ::close(fd);
  });
}

int TestServer::wait_exit(std::chrono::milliseconds timeout) {
  if (pidfd_ >= 0) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return -2;
      pollfd p{pidfd_, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(left));
      if (n > 0) break;
      if (n < 0 && errno != EINTR) break;  // fall back to a blocking wait
    }
  }
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) break;
  }
  reap(status);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return status;
}

void TestServer::reap(int status) {
  last_status_ = status;
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = -1;
  pid_ = -1;
  if (drainer_.joinable()) drainer_.join();
}

int TestServer::stop() {
  std::lock_guard lock(kill_mutex_);
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int code = wait_exit(options_.stop_timeout);
  if (code == -2) {
    ADD_FAILURE() << "caduceus server did not exit within " << options_.stop_timeout.count()
                  << " ms of SIGTERM; killing it. stderr:\n"
                  << stderr_text();
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reap(status);
    return -1;
  }
  return code;
}

void TestServer::kill9() {
  std::lock_guard lock(kill_mutex_);
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reap(status);
}

std::optional<std::string> TestServer::died() {
  std::lock_guard lock(kill_mutex_);
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
  reap(status);
  return describe_status(status);
}

void TestServer::restart() {
  if (running()) stop();
  start();
}

std::vector<std::string> TestServer::log_lines() const {
  std::lock_guard ll(log_mutex_);
  return log_lines_;
}

std::string TestServer::stderr_text() const {
  return read_file(dir_.path() / "server.stderr");
}

std::pair<int, std::string> run_caduceus(const std::vector<std::string>& args) {
  std::string cmd = ServerOptions::default_binary();
  for (const std::string& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = ::pclose(p);
  return {WEXITSTATUS(status), out};
}

}  // namespace caduceus::test
