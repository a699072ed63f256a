// mllp_load: a load generator for an HL7 v2 MLLP listener. N connections (one Asio thread by default), each sending
// distinct ADT^A01 messages (a unique MSH-10 and a unique patient identifier and visit number per message) one at a
// time and waiting for the acknowledgement of each before sending the next. Counts only acknowledgements whose
// MSA-1 is AA and whose MSA-2 echoes the message's MSH-10; anything else is an error (printed once, counted).
//
//   mllp_load --port P [--host H] [--connections N] [--duration S] [--warmup S] [--threads T] [--server-pid PID]
//             [--nk1] [--no-visit]
//
// After `--warmup` seconds (not counted) it measures for `--duration` seconds, then prints one line of key=value
// pairs: msgs, msg_per_s, p50_ms, p90_ms, p99_ms, max_ms, errors, and with --server-pid the CPU time the server
// process used in the measured window (utime + stime from /proc/PID/stat) as server_cpu_us_per_msg and the
// server's average cores busy, and the same for this process (client_cpu_us_per_msg).
//
// The message: MSH, EVN, PID (identifier, name, birth date, sex, address, phone), PV1 with a visit number (so the
// server writes a Patient, an Encounter and the message's Provenance); --nk1 adds a next of kin (a RelatedPerson),
// --no-visit leaves PV1-19 empty (no Encounter).
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  std::string port;
  int connections = 32;
  double duration = 10;
  double warmup = 2;
  int threads = 1;
  long server_pid = 0;
  bool nk1 = false;
  bool visit = true;
};

// CPU time (user + system) of a process in microseconds, from /proc/PID/stat; -1 when unreadable.
long long cpu_us(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  auto close = line.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return -1;
  std::istringstream fields(line.substr(close + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {  // fields 3.. after "pid (comm)"
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return static_cast<long long>((utime + stime) * 1000000ULL / static_cast<unsigned long long>(sysconf(_SC_CLK_TCK)));
}

std::string two(int v) {
  char b[8];
  std::snprintf(b, sizeof b, "%02d", v);
  return b;
}

// One distinct ADT^A01. `run` keeps runs against the same database apart.
std::string adt_a01(const Options& o, const std::string& run, int conn, std::uint64_t seq) {
  std::string n = run + "-" + std::to_string(conn) + "-" + std::to_string(seq);
  std::string day = two(1 + static_cast<int>(seq % 28));
  std::string m;
  m.reserve(700);
  m += "MSH|^~\\&|LoadSender|LOADHOSP|CADUCEUS|HOSP|20240301101500||ADT^A01^ADT_A01|L" + n + "|P|2.5.1\r";
  m += "EVN|A01|20240301101500\r";
  m += "PID|1||MRN" + n + "^^^LoadHosp&1.2.840.999.1&ISO^MR||Load^Patient" + std::to_string(seq % 1000) +
       "^Q^^^^L||197503" + day + "|" + (seq % 2 ? "F" : "M") +
       "|||12 Bench Street^^Springfield^IL^62701^USA^H||^PRN^PH^^1^217^5550" + std::to_string(100 + seq % 900) + "\r";
  if (o.nk1)
    m += "NK1|1|Load^Kin|SPO^Spouse^HL70063|12 Bench Street^^Springfield^IL^62701^USA^H|^PRN^PH^^1^217^5550199\r";
  m += "PV1|1|I|W3^301^1^HOSP||||1234^Welby^Marcus^^^Dr|||MED||||1|||1234^Welby^Marcus^^^Dr|IP|";
  if (o.visit) m += "V" + n + "^^^LoadHosp&1.2.840.999.2&ISO^VN";
  m += std::string(25, '|') + "20240301101500\r";  // PV1-44, the admit time
  return m;
}

struct Stats {
  std::vector<double> latencies_ms;
  std::uint64_t errors = 0;
  std::string first_error;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, const Options& o, std::string run, int index, std::atomic<int>& phase)
      : socket_(io), options_(o), run_(std::move(run)), index_(index), phase_(phase) {}

  void start(const tcp::resolver::results_type& endpoints) {
    asio::async_connect(socket_, endpoints, [self = shared_from_this()](boost::system::error_code ec, auto) {
      if (ec) return self->fail("connect: " + ec.message());
      self->socket_.set_option(tcp::no_delay(true));
      self->send();
    });
  }

  Stats stats;

 private:
  tcp::socket socket_;
  const Options& options_;
  std::string run_;
  int index_;
  std::atomic<int>& phase_;  // 0 warmup, 1 measured, 2 stop
  std::uint64_t seq_ = 0;
  std::string out_, control_id_;
  std::string in_;
  std::array<char, 8192> buffer_;
  Clock::time_point sent_;
  int sent_phase_ = 0;

  void fail(std::string why) {
    ++stats.errors;
    if (stats.first_error.empty()) stats.first_error = std::move(why);
  }

  void send() {
    sent_phase_ = phase_.load();
    if (sent_phase_ == 2) {
      boost::system::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_both, ignored);
      socket_.close(ignored);
      return;
    }
    std::string msg = adt_a01(options_, run_, index_, seq_++);
    control_id_ = "L" + run_ + "-" + std::to_string(index_) + "-" + std::to_string(seq_ - 1);
    out_.clear();
    out_.push_back('\x0b');
    out_ += msg;
    out_ += "\x1c\r";
    in_.clear();
    sent_ = Clock::now();
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this()](boost::system::error_code ec, auto) {
      if (ec) return self->fail("write: " + ec.message());
      self->read();
    });
  }

  void read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                              if (ec) return self->fail("read: " + ec.message());
                              self->in_.append(self->buffer_.data(), n);
                              auto end = self->in_.find("\x1c\r");
                              if (end == std::string::npos) return self->read();
                              self->answered(self->in_.substr(0, end));
                            });
  }

  void answered(const std::string& frame) {
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - sent_).count();
    // MSA|code|control id
    auto msa = frame.find("\rMSA|");
    bool ok = false;
    if (msa != std::string::npos) {
      std::string rest = frame.substr(msa + 5);
      rest = rest.substr(0, rest.find('\r'));
      std::string code = rest.substr(0, rest.find('|'));
      std::string echoed = rest.find('|') == std::string::npos ? "" : rest.substr(rest.find('|') + 1);
      echoed = echoed.substr(0, echoed.find('|'));
      ok = code == "AA" && echoed == control_id_;
    }
    if (sent_phase_ == 1) {
      if (ok)
        stats.latencies_ms.push_back(ms);
      else
        fail("unexpected acknowledgement: " +
             frame.substr(frame.find("MSA|") == std::string::npos ? 0 : frame.find("MSA|")));
    }
    send();
  }
};

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  std::size_t i = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

int usage() {
  std::cerr << "usage: mllp_load --port P [--host H] [--connections N] [--duration S] [--warmup S] [--threads T] "
               "[--server-pid PID] [--nk1] [--no-visit]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "mllp_load: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--host")
      o.host = value();
    else if (a == "--port")
      o.port = value();
    else if (a == "--connections")
      o.connections = std::stoi(value());
    else if (a == "--duration")
      o.duration = std::stod(value());
    else if (a == "--warmup")
      o.warmup = std::stod(value());
    else if (a == "--threads")
      o.threads = std::stoi(value());
    else if (a == "--server-pid")
      o.server_pid = std::stol(value());
    else if (a == "--nk1")
      o.nk1 = true;
    else if (a == "--no-visit")
      o.visit = false;
    else
      return usage();
  }
  if (o.port.empty() || o.connections < 1 || o.threads < 1 || o.duration <= 0 || o.warmup < 0) return usage();

  std::string run = std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() %
      100000000);
  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto endpoints = resolver.resolve(o.host, o.port, ec);
  if (ec) {
    std::cerr << "mllp_load: cannot resolve " << o.host << ":" << o.port << ": " << ec.message() << "\n";
    return 1;
  }
  std::atomic<int> phase{0};
  std::vector<std::shared_ptr<Connection>> conns;
  for (int c = 0; c < o.connections; ++c) {
    conns.push_back(std::make_shared<Connection>(io, o, run, c, phase));
    conns.back()->start(endpoints);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t) threads.emplace_back([&io] { io.run(); });

  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));
  long long server0 = o.server_pid ? cpu_us(o.server_pid) : -1, client0 = cpu_us(getpid());
  auto t0 = Clock::now();
  phase = 1;
  std::this_thread::sleep_for(std::chrono::duration<double>(o.duration));
  // The window closes here: messages sent after it are not counted (they are still answered before exit).
  phase = 2;
  auto t1 = Clock::now();
  long long server1 = o.server_pid ? cpu_us(o.server_pid) : -1, client1 = cpu_us(getpid());
  for (auto& t : threads) t.join();

  Stats all;
  for (auto& c : conns) {
    all.latencies_ms.insert(all.latencies_ms.end(), c->stats.latencies_ms.begin(), c->stats.latencies_ms.end());
    all.errors += c->stats.errors;
    if (all.first_error.empty()) all.first_error = c->stats.first_error;
  }
  std::sort(all.latencies_ms.begin(), all.latencies_ms.end());
  double seconds = std::chrono::duration<double>(t1 - t0).count();
  std::size_t n = all.latencies_ms.size();
  std::printf("msgs=%zu msg_per_s=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%llu", n,
              static_cast<double>(n) / seconds, percentile(all.latencies_ms, 0.5), percentile(all.latencies_ms, 0.9),
              percentile(all.latencies_ms, 0.99), all.latencies_ms.empty() ? 0.0 : all.latencies_ms.back(),
              static_cast<unsigned long long>(all.errors));
  if (server0 >= 0 && server1 >= 0 && n > 0)
    std::printf(" server_cpu_us_per_msg=%.0f server_cores=%.2f", static_cast<double>(server1 - server0) / n,
                static_cast<double>(server1 - server0) / 1e6 / seconds);
  if (client0 >= 0 && client1 >= 0 && n > 0)
    std::printf(" client_cpu_us_per_msg=%.0f", static_cast<double>(client1 - client0) / n);
  std::printf("\n");
  if (!all.first_error.empty()) std::fprintf(stderr, "mllp_load: first error: %s\n", all.first_error.c_str());
  return all.errors == 0 && n > 0 ? 0 : 1;
}
