// Fuzz target: FHIR JSON from the network goes through json::parse and the structural checker, and must
// be answered (an error or issues), never crash. See tests/fuzz/README.md for coverage-guided runs.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/structure_checker.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace caduceus;
  static const auto definitions = *resources::Definitions::load(conformance::r4_model_json());
  static const resources::StructureChecker checker(*definitions);
  auto value = fhir::json::parse(std::string_view(reinterpret_cast<const char*>(data), size));
  if (value) {
    auto issues = checker.check(*value);
    auto text = fhir::json::write(*value);
    auto again = fhir::json::parse(text);
    if (!again || !(*again == *value)) __builtin_trap();  // what we write, we read back the same
    (void)issues;
  }
  return 0;
}
