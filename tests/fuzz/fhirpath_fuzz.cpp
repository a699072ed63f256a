// Fuzz target: a FHIRPath expression is compiled and evaluated against a Patient; it must be answered (an error
// or a collection), never crash. See tests/fuzz/README.md for coverage-guided runs.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "caduceus/conformance/embedded.hpp"
#include "caduceus/fhir/json.hpp"
#include "caduceus/resources/definitions.hpp"
#include "caduceus/resources/fhirpath.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace caduceus;
  static const auto definitions = *resources::Definitions::load(conformance::r4_model_json());
  static const auto patient = *fhir::json::parse(
      R"({"resourceType":"Patient","id":"p","name":[{"family":"Chalmers","given":["Peter","James"]}],)"
      R"("birthDate":"1974-12-25","contained":[{"resourceType":"Organization","id":"o"}],)"
      R"("managingOrganization":{"reference":"#o"},"extension":[{"url":"http://x","valueDecimal":1.50}]})");
  auto compiled = resources::fhirpath::FhirPath::compile(std::string_view(reinterpret_cast<const char*>(data), size));
  if (compiled) {
    resources::fhirpath::EvalContext ctx;
    ctx.definitions = definitions.get();
    auto result = compiled->evaluate(patient, ctx);
    (void)result;
  }
  return 0;
}
