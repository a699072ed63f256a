#include "caduceus/conformance/embedded.hpp"

// The file is pulled in by the assembler, so the data needs no code generation step and no runtime path.
asm(R"(.section .rodata
.balign 16
.global caduceus_r4_model_begin
caduceus_r4_model_begin:
.incbin ")" CADUCEUS_R4_MODEL_PATH R"("
.global caduceus_r4_model_end
caduceus_r4_model_end:
.byte 0
.previous
)");

extern "C" const char caduceus_r4_model_begin[];
extern "C" const char caduceus_r4_model_end[];

namespace caduceus::conformance {

std::string_view r4_model_json() noexcept {
  return {caduceus_r4_model_begin, static_cast<std::size_t>(caduceus_r4_model_end - caduceus_r4_model_begin)};
}

}  // namespace caduceus::conformance
