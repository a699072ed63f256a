#include "caduceus/conformance/embedded.hpp"

// The files are pulled in by the assembler, so the data needs no code generation step and no runtime path. Each is
// followed by a NUL byte (not counted in its size).
// clang-format off
#define CADUCEUS_INCBIN(name, path) \
  ".balign 16\n"                    \
  ".global " name "_begin\n"        \
  name "_begin:\n"                  \
  ".incbin \"" path "\"\n"          \
  ".global " name "_end\n"          \
  name "_end:\n"                    \
  ".byte 0\n"

asm(".section .rodata\n"
    CADUCEUS_INCBIN("caduceus_r4_model", CADUCEUS_R4_MODEL_PATH)
    CADUCEUS_INCBIN("caduceus_r4_search_parameters", CADUCEUS_R4_SEARCH_PARAMETERS_PATH)
    CADUCEUS_INCBIN("caduceus_r4_compartments", CADUCEUS_R4_COMPARTMENTS_PATH)
    ".previous\n");
// clang-format on

extern "C" const char caduceus_r4_model_begin[];
extern "C" const char caduceus_r4_model_end[];
extern "C" const char caduceus_r4_search_parameters_begin[];
extern "C" const char caduceus_r4_search_parameters_end[];
extern "C" const char caduceus_r4_compartments_begin[];
extern "C" const char caduceus_r4_compartments_end[];

namespace caduceus::conformance {

std::string_view r4_model_json() noexcept {
  return {caduceus_r4_model_begin, static_cast<std::size_t>(caduceus_r4_model_end - caduceus_r4_model_begin)};
}

std::string_view r4_search_parameters_json() noexcept {
  return {caduceus_r4_search_parameters_begin,
          static_cast<std::size_t>(caduceus_r4_search_parameters_end - caduceus_r4_search_parameters_begin)};
}

std::string_view r4_compartments_json() noexcept {
  return {caduceus_r4_compartments_begin,
          static_cast<std::size_t>(caduceus_r4_compartments_end - caduceus_r4_compartments_begin)};
}

}  // namespace caduceus::conformance
