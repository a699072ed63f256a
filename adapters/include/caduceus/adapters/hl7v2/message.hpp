#pragma once

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "caduceus/adapters/hl7v2/time_zone.hpp"

namespace caduceus::adapters::hl7v2 {

// The delimiters of a message, from MSH-1 and MSH-2.
struct Encoding {
  char field = '|';
  char component = '^';
  char repetition = '~';
  char escape = '\\';
  char subcomponent = '&';
  char truncation = 0;  // MSH-2.5 (v2.7 and later); 0 when absent
};

// MSH-18, the character sets we read. Text is handed out in UTF-8 whichever it was.
enum class Charset { kAscii, kLatin1, kUtf8 };

// Where something is in a message: segment `name`, its position in the message (1 = MSH) and the how-manieth of
// its name it is (1 = the first PID), then field / repetition / component / subcomponent (0 = not that deep).
struct Location {
  std::string segment;
  std::size_t position = 0;
  std::size_t occurrence = 0;
  std::size_t field = 0;
  std::size_t repetition = 0;
  std::size_t component = 0;
  std::size_t subcomponent = 0;

  // "PID-3", "PID-5.2", "MSH" (segment only).
  std::string text() const;
};

// HL7 table 0357 (message error condition codes) that this adapter reports.
enum class ErrorCode {
  kSegmentSequence = 100,
  kRequiredFieldMissing = 101,
  kDataType = 102,
  kTableValueNotFound = 103,
  kUnsupportedMessageType = 200,
  kUnsupportedEventCode = 201,
  kUnsupportedProcessingId = 202,
  kUnsupportedVersionId = 203,
  kApplicationInternal = 207,
};

// One problem found in a message: what (table 0357), where and a sentence for people.
struct Problem {
  ErrorCode code = ErrorCode::kApplicationInternal;
  Location where;
  std::string message;
  bool warning = false;  // kept, but the message is still processed
};

// One segment. Field texts are kept as received (still escaped, already in UTF-8); the accessors split and
// decode. fields[0] is the segment name; for MSH, fields[1] is MSH-1 (the field separator) and fields[2] MSH-2,
// so that fields[n] is always field n.
struct Segment {
  std::string name;
  std::size_t position = 0;    // 1-based place in the message
  std::size_t occurrence = 0;  // 1-based among the segments of this name
  std::vector<std::string> fields;
  Encoding encoding;  // the message's
  Charset charset = Charset::kAscii;

  // The raw (escaped) text of field n, "" when absent.
  std::string_view raw(std::size_t n) const;
  // The decoded text of field n, repetition rep, component c, subcomponent s (all 1-based); "" when absent.
  std::string get(std::size_t n, std::size_t c = 1, std::size_t s = 1, std::size_t rep = 1) const;
  // How many repetitions field n has (0 when empty).
  std::size_t repetitions(std::size_t n) const;
  // How many components repetition rep of field n has (0 when empty).
  std::size_t components(std::size_t n, std::size_t rep = 1) const;
  bool has(std::size_t n) const { return !raw(n).empty(); }
  Location at(std::size_t field = 0, std::size_t rep = 0, std::size_t component = 0) const;
};

// An instance of a segment group of the message structure (the root is the whole message, named after the
// structure). `segments` are the positions (index into Message::segments) of the segments directly in it, in
// order; `groups` its child group instances, in order.
struct Group {
  std::string name;
  std::vector<std::size_t> segments;
  std::vector<Group> groups;

  // The first child group instance named `name`, or nullptr.
  const Group* group(std::string_view name) const;
  // All child group instances named `name`.
  std::vector<const Group*> all_groups(std::string_view name) const;
};

struct Message {
  Encoding encoding;
  Charset charset = Charset::kAscii;
  std::vector<Segment> segments;
  Group root;

  std::string type;              // MSH-9.1, e.g. "ADT"
  std::string trigger;           // MSH-9.2, e.g. "A04"
  std::string structure;         // MSH-9.3, or derived from type and trigger; "" when unknown
  bool structure_known = false;  // groups were parsed by a definition (else the root holds every segment)
  std::string control_id;        // MSH-10
  std::string processing_id;     // MSH-11.1
  std::string version;           // MSH-12.1
  std::string accept_ack;        // MSH-15 (AL, NE, ER, SU; "" = original mode when MSH-16 is empty too)
  std::string application_ack;   // MSH-16
  std::string sending_application, sending_facility, receiving_application, receiving_facility;  // MSH-3..6 (raw)
  // Problems that did not stop parsing, all warnings: a segment out of place (kept in the group it came in) and a
  // missing required segment. Real senders do both (the shared samples do): the mappers refuse a message without
  // what they need.
  std::vector<Problem> problems;
  // What a time without an offset is read in: the receiving interface's zone (--hl7-timezone), set by the receiver
  // before mapping; UTC by default.
  TimeZone time_zone;

  const Segment& msh() const { return segments.front(); }
  // The first segment named `name` directly in `group` (root when null), or nullptr.
  const Segment* find(std::string_view name, const Group* group = nullptr) const;
  // The first segment named `name` anywhere, or nullptr.
  const Segment* first(std::string_view name) const;
  // The segments named `name` directly in `group`.
  std::vector<const Segment*> all(std::string_view name, const Group* group = nullptr) const;
};

// Parses one message (the bytes between MLLP's start and end blocks, or a file): a UTF-8 byte-order mark is
// skipped; segments end with CR, LF or CRLF; encoding characters come from MSH-1/MSH-2 and text is turned into
// UTF-8 per MSH-18 (ASCII, 8859/1, UNICODE UTF-8). Groups are parsed by the structure's definition when we know it.
// Errors: the first fatal problem (no MSH, bad encoding characters, an unknown character set, bad UTF-8),
// with its location.
std::expected<Message, Problem> parse(std::string_view bytes);

// Decodes the escape sequences of one (sub)component: \F\ \S\ \T\ \R\ \E\ (\P\) become the delimiters,
// \Xhh..\ bytes in the message's character set; formatting (\.br\, \H\, \N\ ...) and other sequences are kept
// as they are.
std::string unescape(std::string_view text, const Encoding& encoding, Charset charset);
// Escapes text for a field: the delimiters and the escape character become escape sequences.
std::string escape(std::string_view text, const Encoding& encoding);

// Text in ISO 8859-1, as UTF-8.
std::string latin1_to_utf8(std::string_view text);
bool valid_utf8(std::string_view text) noexcept;

}  // namespace caduceus::adapters::hl7v2
