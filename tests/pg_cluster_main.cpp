// The ctest fixture of the PostgreSQL tests: `pg_cluster start STATE_FILE` starts a throwaway cluster (see
// support/pg_cluster.hpp) and writes its folder to STATE_FILE; `pg_cluster stop STATE_FILE` stops and removes
// it. With CADUCEUS_SKIP_POSTGRES=1 both do nothing (and say so).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "pg_cluster.hpp"

int main(int argc, char** argv) {
  using caduceus::test::PgCluster;
  namespace fs = std::filesystem;
  if (argc != 3 || (std::string(argv[1]) != "start" && std::string(argv[1]) != "stop")) {
    std::cerr << "usage: pg_cluster start|stop STATE_FILE\n";
    return 2;
  }
  const std::string command = argv[1];
  const fs::path state = argv[2];
  if (caduceus::test::postgres_skipped()) {
    std::cout << "CADUCEUS_SKIP_POSTGRES=1: no PostgreSQL test cluster (the PostgreSQL tests are SKIPPED)\n";
    return 0;
  }
  if (command == "stop") {
    std::ifstream in(state);
    std::string dir;
    std::getline(in, dir);
    if (!dir.empty()) PgCluster::adopt(dir, /*owned=*/true)->stop();
    std::error_code ec;
    fs::remove(state, ec);
    std::cout << "stopped and removed " << (dir.empty() ? "(none)" : dir) << "\n";
    return 0;
  }
  // A cluster left by an interrupted run: stop it first.
  if (fs::exists(state)) {
    std::ifstream in(state);
    std::string dir;
    std::getline(in, dir);
    if (!dir.empty()) PgCluster::adopt(dir, /*owned=*/true)->stop();
  }
  auto cluster = PgCluster::start(/*watchdog=*/false);
  if (!cluster) {
    std::cerr << "cannot start the PostgreSQL test cluster: " << cluster.error() << "\n";
    return 1;
  }
  std::ofstream(state) << (*cluster)->dir().string() << "\n";
  std::cout << "PostgreSQL test cluster at " << (*cluster)->url() << "\n";
  (*cluster).release();  // runs on until `pg_cluster stop`
  return 0;
}
