#pragma once
// The small tools of the throwaway PostgreSQL clusters (pg_cluster.cpp, pg_replicated.cpp).

#include <expected>
#include <filesystem>
#include <string>
#include <vector>

namespace caduceus::test::pg_tools {

// Where the PostgreSQL programs are: CADUCEUS_PG_BIN, else Debian's /usr/lib/postgresql/15/bin.
std::filesystem::path bin_dir();
// The whole content of a file ("" when it cannot be read).
std::string slurp(const std::filesystem::path& p);
// Runs a program (as the postgres user when we are root: initdb refuses root), its output appended to `log`.
// Returns the exit status (-1 when it could not run).
int run(std::vector<std::string> args, const std::filesystem::path& log);
// Makes `path` belong to the postgres user (when we are root).
bool give_to_postgres(const std::filesystem::path& path);
// Runs one statement on the database at `url`; the first value of the first row ("" when none), or the error.
std::expected<std::string, std::string> sql(const std::string& url, const std::string& statement);

}  // namespace caduceus::test::pg_tools
