#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "caduceus/adapters/hl7v2/message.hpp"

namespace caduceus::adapters::hl7v2 {

// What an acknowledgement answers: the header fields of the message it acknowledges (as far as it could be read).
struct AckTarget {
  std::string sending_application, sending_facility;      // MSH-3, MSH-4 (decoded components joined by ^)
  std::string receiving_application, receiving_facility;  // MSH-5, MSH-6
  std::string trigger;                                    // MSH-9.2
  std::string control_id;                                 // MSH-10: echoed in MSA-2
  std::string processing_id;                              // MSH-11
  std::string version;                                    // MSH-12

  static AckTarget of(const Message& message);
  // From the first line of bytes that did not parse (best effort: empty fields when even MSH cannot be read).
  static AckTarget of_raw(std::string_view bytes);
};

// Builds an ACK message: MSH (sender and receiver swapped, MSH-9 ACK^trigger^ACK, our control id, the original's
// processing id and version), MSA (code: AA AE AR CA CE CR; MSA-2 the original's MSH-10) and one ERR per problem
// (ERR-1 for v2.3/2.4 receivers, ERR-2 location, ERR-3 table 0357 code, ERR-4 severity, ERR-8 the message).
// Segments end with CR. `timestamp`: MSH-7 (YYYYMMDDHHMMSS+0000).
std::string build_ack(const AckTarget& target, std::string_view code, std::string_view control_id,
                      std::string_view timestamp, const std::vector<Problem>& problems);

// The text of a table 0357 code ("Required field missing").
std::string_view error_text(ErrorCode code);

}  // namespace caduceus::adapters::hl7v2
