// Every resource of the official R4 example set (hl7.fhir.r4.examples 4.0.1, vendored as
// tests/data/r4-examples/examples.tar.xz) is created with its own id (PUT; POST when it has none), read back, and
// compared equal to what was sent apart from the server-owned meta.versionId and meta.lastUpdated.
// tests/data/r4-examples/SKIP.md lists the examples that are not valid R4 and says which rule each breaks: those
// must be refused (4xx) with an OperationOutcome; one that is accepted means the skip list or the server is wrong.
// One server, one keep-alive connection, one test that reports every failure at the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fhir_helpers.hpp"
#include "http_client.hpp"
#include "test_server.hpp"

namespace caduceus::test {
namespace {

namespace fs = std::filesystem;
using fhir::json::Value;

// The skip list: table rows "| `File.json` | reason |" of SKIP.md.
std::map<std::string, std::string> read_skip_list(const fs::path& p) {
  std::map<std::string, std::string> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("| `")) continue;
    const auto close = line.find('`', 3);
    if (close == std::string::npos) continue;
    const std::string file = line.substr(3, close - 3);
    if (!file.ends_with(".json")) continue;
    std::string reason = line.substr(close + 1);
    const auto bar = reason.find('|');
    reason = bar == std::string::npos ? reason : reason.substr(bar + 1);
    while (!reason.empty() && (reason.back() == '|' || reason.back() == ' ')) reason.pop_back();
    while (!reason.empty() && reason.front() == ' ') reason.erase(0, 1);
    out[file] = reason;
  }
  return out;
}

TEST(ExamplesRoundTrip, EveryOfficialR4ExampleRoundTrips) {
  const fs::path dir = CADUCEUS_R4_EXAMPLES_DIR;
  const fs::path skip_file = fs::path(CADUCEUS_TEST_DATA) / "r4-examples" / "SKIP.md";
  ASSERT_TRUE(fs::is_directory(dir)) << dir << " is missing: re-run cmake to unpack examples.tar.xz";
  ASSERT_TRUE(fs::exists(skip_file)) << skip_file;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_GT(files.size(), 5000u) << "the example set looks incomplete in " << dir;
  const auto skips = read_skip_list(skip_file);

  std::unique_ptr<TestServer> server;
  try {
    server = std::make_unique<TestServer>();
  } catch (const std::exception& e) {
    FAIL() << e.what();
  }
  HttpClient client(server->host(), server->port(), std::chrono::seconds(60));
  const std::string base = server->base_path();

  std::vector<std::string> failures;
  std::set<std::string> seen_skips;
  std::size_t passed = 0, refused_as_listed = 0;
  const auto started = std::chrono::steady_clock::now();

  for (const auto& file : files) {
    const std::string name = file.filename().string();
    const std::string text = read_file(file);
    auto original = parse_json(text);
    if (!original || !original->is_object()) {
      failures.push_back(name + ": the example itself does not parse as a JSON object (test data problem)");
      continue;
    }
    const std::string type = string_at(*original, "resourceType");
    const std::string id = string_at(*original, "id");
    const bool posted = id.empty();
    const std::string write_target = base + "/" + type + (posted ? "" : "/" + id);
    Response w = posted ? client.post(write_target, text, {{"Prefer", "return=representation"}})
                        : client.put(write_target, text, {{"Prefer", "return=minimal"}});

    if (auto skip = skips.find(name); skip != skips.end()) {
      seen_skips.insert(name);
      if (w.status >= 400 && w.status < 500 && IsOperationOutcome(w, w.status)) {
        ++refused_as_listed;
      } else {
        failures.push_back(name + ": listed in SKIP.md (" + skip->second + ") but the server answered " +
                           w.summary(200) + " - the skip entry is stale or the server misses that rule");
      }
      continue;
    }

    if (w.status != 201 && w.status != 200) {
      failures.push_back(name + ": " + (posted ? "POST " : "PUT ") + write_target + " -> " + describe_outcome(w));
      continue;
    }
    std::string stored_id = id;
    if (posted) {
      auto created = w.json();
      stored_id = created ? string_at(*created, "id") : std::string();
      if (stored_id.empty()) {
        failures.push_back(name + ": POST answered " + w.summary(200) + " without the created resource");
        continue;
      }
    }
    Response r = client.get(base + "/" + type + "/" + stored_id);
    if (r.status != 200) {
      failures.push_back(name + ": read back -> " + r.summary(300));
      continue;
    }
    auto back = r.json();
    if (!back) {
      failures.push_back(name + ": read back is not JSON: " + r.summary(300));
      continue;
    }
    if (string_at(*back, "meta.versionId").empty() || string_at(*back, "meta.lastUpdated").empty()) {
      failures.push_back(name + ": read back without meta.versionId/meta.lastUpdated");
      continue;
    }
    auto diffs = json_diff(without_server_meta(*original, posted), without_server_meta(*back, posted), 5);
    if (!diffs.empty()) {
      std::string d;
      for (const auto& x : diffs) d += "\n      " + x;
      failures.push_back(name + ": read back differs from the example:" + d);
      continue;
    }
    ++passed;
  }
  for (const auto& [file, reason] : skips)
    if (!seen_skips.contains(file)) failures.push_back("SKIP.md names " + file + ", which is not in the example set");

  const auto seconds =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count() /
      1000.0;
  std::cout << "[ examples ] " << files.size() << " R4 examples: " << passed << " round-tripped, " << refused_as_listed
            << " refused as SKIP.md says, " << failures.size() << " failures, in " << seconds << " s\n";
  RecordProperty("examples", static_cast<int>(files.size()));
  RecordProperty("round_tripped", static_cast<int>(passed));

  if (!failures.empty()) {
    std::string report;
    for (std::size_t i = 0; i < failures.size() && i < 200; ++i) report += "\n  " + failures[i];
    if (failures.size() > 200) report += "\n  ... and " + std::to_string(failures.size() - 200) + " more";
    ADD_FAILURE() << failures.size() << " of " << files.size() << " examples failed:" << report;
  }
  client.close();
  EXPECT_EQ(server->stop(), 0) << server->stderr_text();
}

}  // namespace
}  // namespace caduceus::test
