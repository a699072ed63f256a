#include "caduceus/adapters/hl7v2/ack.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

const Encoding kOut{};  // our messages use |^~\&

// The components of a field, decoded, escaped again for kOut and joined by ^ (trailing empty ones dropped).
std::string reencode(const Segment& s, std::size_t field) {
  std::vector<std::string> parts;
  for (std::size_t c = 1, n = s.components(field); c <= n; ++c) parts.push_back(escape(s.get(field, c), kOut));
  while (!parts.empty() && parts.back().empty()) parts.pop_back();
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : "^") + parts[i];
  return out;
}

}  // namespace

std::string_view error_text(ErrorCode code) {
  switch (code) {
    case ErrorCode::kSegmentSequence: return "Segment sequence error";
    case ErrorCode::kRequiredFieldMissing: return "Required field missing";
    case ErrorCode::kDataType: return "Data type error";
    case ErrorCode::kTableValueNotFound: return "Table value not found";
    case ErrorCode::kUnsupportedMessageType: return "Unsupported message type";
    case ErrorCode::kUnsupportedEventCode: return "Unsupported event code";
    case ErrorCode::kUnsupportedProcessingId: return "Unsupported processing id";
    case ErrorCode::kUnsupportedVersionId: return "Unsupported version id";
    case ErrorCode::kApplicationInternal: return "Application internal error";
  }
  return "Application internal error";
}

AckTarget AckTarget::of(const Message& m) {
  AckTarget t;
  const Segment& h = m.msh();
  t.sending_application = reencode(h, 3);
  t.sending_facility = reencode(h, 4);
  t.receiving_application = reencode(h, 5);
  t.receiving_facility = reencode(h, 6);
  t.trigger = m.trigger;
  t.control_id = m.control_id;
  t.processing_id = m.processing_id;
  t.version = m.version;
  return t;
}

AckTarget AckTarget::of_raw(std::string_view bytes) {
  if (bytes.starts_with("\xEF\xBB\xBF")) bytes.remove_prefix(3);
  std::size_t end = bytes.find_first_of("\r\n");
  std::string first(bytes.substr(0, end));
  // Only an MSH whose delimiters can be read: then parse that line alone.
  if (first.size() > 8 && first.starts_with("MSH")) {
    if (auto m = parse(first)) return of(*m);
  }
  return AckTarget{};
}

std::string build_ack(const AckTarget& t, std::string_view code, std::string_view control_id,
                      std::string_view timestamp, const std::vector<Problem>& problems) {
  std::string out;
  out.reserve(256);
  out += "MSH|^~\\&|";
  out += t.receiving_application.empty() ? "CADUCEUS" : t.receiving_application;
  out += '|';
  out += t.receiving_facility;
  out += '|';
  out += t.sending_application;
  out += '|';
  out += t.sending_facility;
  out += '|';
  out += timestamp;
  out += "||ACK";
  if (!t.trigger.empty()) out += "^" + escape(t.trigger, kOut) + "^ACK";
  out += '|';
  out += escape(control_id, kOut);
  out += '|';
  out += t.processing_id.empty() ? "P" : escape(t.processing_id, kOut);
  out += '|';
  out += t.version.empty() ? "2.5.1" : escape(t.version, kOut);
  out += '\r';
  out += "MSA|";
  out += code;
  out += '|';
  out += escape(t.control_id, kOut);
  out += '\r';
  for (const Problem& p : problems) {
    const Location& l = p.where;
    std::string code_text = std::to_string(static_cast<int>(p.code));
    std::string occurrence = l.occurrence > 0 ? std::to_string(l.occurrence) : (l.segment.empty() ? "" : "1");
    auto num = [](std::size_t n) { return n > 0 ? std::to_string(n) : std::string(); };
    // ERR-1 (ELD, up to v2.4): segment^sequence^field^code&text&HL70357
    out += "ERR|";
    if (!l.segment.empty()) {
      out += l.segment + "^" + occurrence + "^" + num(l.field) + "^" + code_text + "&" +
             escape(std::string(error_text(p.code)), kOut) + "&HL70357";
    }
    // ERR-2 (ERL): segment^sequence^field^repetition^component^subcomponent
    out += '|';
    if (!l.segment.empty()) {
      out += l.segment + "^" + occurrence;
      if (l.field > 0) {
        out += "^" + num(l.field) + "^" + (l.repetition > 0 ? num(l.repetition) : "1");
        if (l.component > 0) out += "^" + num(l.component);
        if (l.subcomponent > 0) out += "^" + num(l.subcomponent);
      }
    }
    out += '|';
    out += code_text + "^" + escape(std::string(error_text(p.code)), kOut) + "^HL70357";
    out += '|';
    out += p.warning ? "W" : "E";
    out += "||||";
    std::string where = l.text();
    if (l.position > 0) where += (where.empty() ? "" : ", ") + std::string("segment ") + std::to_string(l.position);
    out += escape(where.empty() ? p.message : where + ": " + p.message, kOut);
    out += '\r';
  }
  return out;
}

}  // namespace caduceus::adapters::hl7v2
