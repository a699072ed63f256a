#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>

#include "caduceus/resources/store/copy.hpp"
#include "caduceus/server/migrate.hpp"

namespace caduceus::server {
namespace {

constexpr const char* kMigrateUsage =
    "Usage: caduceus migrate --from URL --to URL [--force] [--batch N]\n"
    "\n"
    "Copies the whole store at --from into the store at --to, either backend on either side:\n"
    "  caduceus migrate --from sqlite:var/caduceus.db --to postgresql://caduceus@db.example.org/caduceus\n"
    "  caduceus migrate --from postgresql://caduceus@localhost/caduceus --to sqlite:/tmp/copy.db\n"
    "Every version of every resource (deletes included) with its version id, lastUpdated and history order, the\n"
    "search index, custom SearchParameters and their reindex jobs, users, OAuth clients, revoked tokens, used\n"
    "client-assertion ids and inbound HL7 v2 messages. The source is read in one snapshot (a server may keep\n"
    "running on it; later writes are not copied), in batches of --batch rows (default 1000). The target gets\n"
    "everything in one transaction: on failure it is left as it was.\n"
    "  --force   a target that is not empty is refused; with --force what it holds is deleted first\n"
    "Exits 0 when copied, 1 on failure, 2 on bad usage.\n";

// The URL with any password replaced by "***" (postgresql://user:secret@host/db), for messages.
std::string redacted(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const auto at = url.find('@', scheme + 3);
  const auto colon = url.find(':', scheme + 3);
  if (at == std::string::npos || colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace

int run_migrate(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  const bool terminal = &err == &std::cerr && ::isatty(STDERR_FILENO) != 0;
  std::string from, to;
  resources::CopyOptions options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& into) {
      if (i + 1 >= args.size()) return false;
      into = args[++i];
      return true;
    };
    if (a == "--help" || a == "-h") {
      out << kMigrateUsage;
      return 0;
    }
    if (a == "--from") {
      if (!value(from)) return err << "caduceus migrate: --from needs a value\n", 2;
    } else if (a == "--to") {
      if (!value(to)) return err << "caduceus migrate: --to needs a value\n", 2;
    } else if (a == "--force") {
      options.force = true;
    } else if (a == "--batch") {
      std::string n;
      if (!value(n) || std::atoll(n.c_str()) <= 0)
        return err << "caduceus migrate: --batch takes a positive number\n", 2;
      options.batch = static_cast<std::size_t>(std::atoll(n.c_str()));
    } else {
      err << "caduceus migrate: unknown option '" << a << "'\n\n" << kMigrateUsage;
      return 2;
    }
  }
  if (from.empty() || to.empty()) {
    err << "caduceus migrate: --from and --to are both needed\n\n" << kMigrateUsage;
    return 2;
  }

  const auto started = std::chrono::steady_clock::now();
  options.progress = [&](const resources::CopyProgress& p) {
    const bool finished = p.finished;
    if (terminal) {
      err << "\r  " << p.table << ": " << p.done << " / " << p.total << " rows"
          << (p.total > 0 ? " (" + std::to_string(p.done * 100 / p.total) + "%)" : std::string()) << "\x1b[K"
          << (finished ? "\n" : "") << std::flush;
    } else if (finished) {
      err << "  " << p.table << ": " << p.done << " rows\n";
    }
  };
  err << "caduceus migrate: " << redacted(from) << " -> " << redacted(to) << "\n";
  auto copied = resources::copy_store(from, to, options);
  if (!copied) {
    if (terminal) err << "\n";
    for (const auto& issue : copied.error().issues) err << "caduceus migrate: " << issue.diagnostics << "\n";
    err << "caduceus migrate: nothing was copied (the target is as it was)\n";
    return 1;
  }
  std::int64_t rows = 0;
  for (const auto& [table, n] : copied->tables) rows += n;
  auto count = [&](std::string_view table) -> std::int64_t {
    for (const auto& [t, n] : copied->tables)
      if (t == table) return n;
    return 0;
  };
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  out << "migrated " << count("resource") << " resources (" << count("resource_version") << " versions), "
      << count("users") << " users, " << count("oauth_client") << " OAuth clients, " << count("hl7_inbound")
      << " HL7 v2 messages: " << rows << " rows in " << copied->tables.size() << " tables, in " << seconds << " s\n";
  return 0;
}

}  // namespace caduceus::server
