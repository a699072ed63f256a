// Runs a LLVMFuzzerTestOneInput over every file named (folders: every file inside), for regression runs of a
// corpus without a fuzzing engine. With `--mutations N` (before the files), each input is also run N times
// mutated (bytes flipped, inserted, deleted or duplicated, special bytes such as delimiters and MLLP framing
// characters inserted, cut short), from a fixed seed (`--seed S`, default 1): the same inputs on every run.
// Exit status 0 when every input was handled.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

// One mutation of `bytes`, chosen by `rng`.
std::string mutate(std::string bytes, std::mt19937_64& rng) {
  static constexpr char kSpecialBytes[] = "|^~\\&\r\n\x0b\x1c\x00\xff\xc3MSH\\X";
  static constexpr std::string_view kSpecial(kSpecialBytes, sizeof kSpecialBytes - 1);  // (with the NUL)
  auto pick = [&](std::size_t n) { return n == 0 ? std::size_t{0} : static_cast<std::size_t>(rng() % n); };
  int rounds = 1 + static_cast<int>(pick(4));
  for (int r = 0; r < rounds; ++r) {
    std::size_t at = pick(bytes.size() + 1);
    switch (pick(6)) {
      case 0:  // flip a byte
        if (!bytes.empty()) bytes[pick(bytes.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1:  // insert a special byte
        bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), kSpecial[pick(kSpecial.size())]);
        break;
      case 2:  // delete a run
        bytes.erase(at, 1 + pick(16));
        break;
      case 3: {  // duplicate a run somewhere else
        std::size_t from = pick(bytes.size() + 1);
        std::string run = bytes.substr(from, 1 + pick(64));
        bytes.insert(pick(bytes.size() + 1), run);
        break;
      }
      case 4:  // cut short
        bytes.resize(at);
        break;
      default:  // a random byte
        bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), static_cast<char>(rng()));
        break;
    }
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::filesystem::path> inputs;
  std::size_t mutations = 0;
  std::uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    if ((arg == "--mutations" || arg == "--seed") && i + 1 < argc) {
      (arg == "--mutations" ? mutations : seed) = std::stoull(argv[++i]);
      continue;
    }
    std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p))
        if (e.is_regular_file()) inputs.push_back(e.path());
    } else {
      inputs.push_back(p);
    }
  }
  for (const auto& p : inputs) {
    std::ifstream in(p, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    std::mt19937_64 rng(seed ^ std::hash<std::string>{}(p.filename().string()));
    for (std::size_t m = 0; m < mutations; ++m) {
      std::string mutated = mutate(bytes, rng);
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(mutated.data()), mutated.size());
    }
  }
  std::printf("%zu inputs run, each also %zu times mutated\n", inputs.size(), mutations);
  return inputs.empty() ? 1 : 0;
}
