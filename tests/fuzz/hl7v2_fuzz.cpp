// Fuzz target: bytes go through the MLLP framer (split in two reads at a point the input chooses), each frame and
// the whole input through the HL7 v2 parser, every accessor and the mappings (Patient; orders, results,
// prescriptions, appointments), and an ACK is built for each: everything must be answered, never crash. See
// tests/fuzz/README.md for coverage-guided runs.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "caduceus/adapters/hl7v2/ack.hpp"
#include "caduceus/adapters/hl7v2/clinical_mapping.hpp"
#include "caduceus/adapters/hl7v2/mapping.hpp"
#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/mllp.hpp"

namespace {

void exercise(std::string_view bytes) {
  using namespace caduceus::adapters::hl7v2;
  auto m = parse(bytes);
  if (!m) {
    (void)build_ack(AckTarget::of_raw(bytes), "AR", "X", "20240101000000+0000", {m.error()});
    return;
  }
  for (const Segment& s : m->segments)
    for (std::size_t f = 0; f < s.fields.size() && f < 40; ++f)
      for (std::size_t r = 1; r <= s.repetitions(f) && r <= 4; ++r)
        for (std::size_t c = 1; c <= s.components(f, r) && c <= 8; ++c) (void)s.get(f, c, 2, r);
  Mapping mapped = map_adt_patient(*m);
  (void)build_ack(AckTarget::of(*m), "AE", "X", "20240101000000+0000", mapped.problems);
  // The order, result and schedule mappers, whatever the message's type.
  for (MessageMapper mapper : {&map_oru_r01, &map_orm_o01, &map_rde_o11, &map_siu}) {
    Mapping other = mapper(*m);
    (void)build_ack(AckTarget::of(*m), "AE", "X", "20240101000000+0000", other.problems);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  caduceus::adapters::MllpFramer framer(4096);
  std::vector<caduceus::adapters::MllpFramer::Frame> frames;
  std::size_t split = size == 0 ? 0 : data[0] % size;
  framer.feed(input.substr(0, split), frames);
  framer.feed(input.substr(split), frames);
  for (const auto& f : frames) exercise(f.bytes);
  exercise(input);
  return 0;
}
