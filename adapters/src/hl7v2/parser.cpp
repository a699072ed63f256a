#include <cctype>
#include <map>

#include "caduceus/adapters/hl7v2/message.hpp"
#include "caduceus/adapters/hl7v2/structures.hpp"

namespace caduceus::adapters::hl7v2 {
namespace {

// Piece i (0-based) of s split at d; nullopt when s has fewer pieces.
std::optional<std::string_view> piece(std::string_view s, char d, std::size_t i) {
  std::size_t start = 0;
  for (std::size_t k = 0; k < i; ++k) {
    std::size_t at = s.find(d, start);
    if (at == std::string_view::npos) return std::nullopt;
    start = at + 1;
  }
  std::size_t end = s.find(d, start);
  return s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
}

std::size_t count_pieces(std::string_view s, char d) {
  if (s.empty()) return 0;
  std::size_t n = 1;
  for (char c : s) n += c == d;
  return n;
}

std::vector<std::string> split(std::string_view s, char d) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t at = s.find(d, start);
    out.emplace_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Problem fatal(ErrorCode code, Location where, std::string message) {
  return Problem{code, std::move(where), std::move(message), false};
}

// Places the segments of a message into the groups of its structure's definition. A segment is taken by the
// innermost group that can still take it (from the element after the last one matched, or that one again when
// it repeats); one that no enclosing group can take any more is kept where it is, with a warning.
class GroupMatcher {
 public:
  GroupMatcher(Message& message) : m_(message) {}

  void run(const StructureNode& root) {
    m_.root.name = root.name;
    std::vector<Frame> stack;
    match(root, m_.root, stack);
    // (every segment is taken: the root keeps the ones no group wanted)
  }

 private:
  struct Frame {
    const StructureNode* def;
    std::size_t next;
  };
  Message& m_;
  std::size_t pos_ = 0;

  static bool can_start(const StructureNode& n, std::string_view seg) {
    if (!n.group()) return n.name == seg;
    for (const StructureNode& c : n.children) {
      if (can_start(c, seg)) return true;
      if (!c.optional) return false;
    }
    return false;
  }

  static bool fits_ancestor(const std::vector<Frame>& stack, std::string_view seg) {
    for (auto f = stack.rbegin(); f != stack.rend(); ++f)
      for (std::size_t k = f->next; k < f->def->children.size(); ++k)
        if (can_start(f->def->children[k], seg)) return true;
    return false;
  }

  void missing(const StructureNode& node, const StructureNode& in) {
    std::string what = node.group() ? "group " + node.name : "segment " + node.name;
    Location where;
    where.segment = node.group() ? std::string() : node.name;
    if (pos_ < m_.segments.size()) where.position = m_.segments[pos_].position;
    // (a warning: senders leave out segments they have nothing for, e.g. EVN; the mappers refuse a message
    // without what they need)
    m_.problems.push_back(Problem{ErrorCode::kSegmentSequence, where,
                                  "required " + what + " missing in " + in.name +
                                      (pos_ < m_.segments.size() ? " (before " + m_.segments[pos_].name + ", segment " +
                                                                       std::to_string(m_.segments[pos_].position) + ")"
                                                                 : " (at the end of the message)"),
                                  true});
  }

  void match(const StructureNode& def, Group& out, std::vector<Frame>& stack) {
    const auto& children = def.children;
    std::vector<std::size_t> counts(children.size(), 0);
    std::size_t next = 0;
    while (pos_ < m_.segments.size()) {
      const std::string& name = m_.segments[pos_].name;
      std::size_t j = next;
      while (j < children.size() && !can_start(children[j], name)) ++j;
      if (j < children.size()) {
        for (std::size_t k = next; k < j; ++k)
          if (!children[k].optional && counts[k] == 0) missing(children[k], def);
        const StructureNode& c = children[j];
        if (c.group()) {
          Group g;
          g.name = c.name;
          stack.push_back(Frame{&def, c.repeating ? j : j + 1});
          match(c, g, stack);
          stack.pop_back();
          out.groups.push_back(std::move(g));
        } else {
          out.segments.push_back(pos_++);
        }
        ++counts[j];
        next = c.repeating ? j : j + 1;
        continue;
      }
      if (!stack.empty() && fits_ancestor(stack, name)) break;
      const Segment& s = m_.segments[pos_];
      m_.problems.push_back(Problem{ErrorCode::kSegmentSequence, s.at(),
                                    "segment " + s.name + " (segment " + std::to_string(s.position) +
                                        ") is not expected here in " + m_.root.name +
                                        (stack.empty() ? "" : " (group " + def.name + ")") + "; kept where it is",
                                    true});
      out.segments.push_back(pos_++);
    }
    for (std::size_t k = next; k < children.size(); ++k)
      if (!children[k].optional && counts[k] == 0) missing(children[k], def);
  }
};

bool valid_segment_name(std::string_view name) {
  if (name.size() != 3) return false;
  for (char c : name)
    if (!std::isupper(static_cast<unsigned char>(c)) && !std::isdigit(static_cast<unsigned char>(c))) return false;
  return std::isupper(static_cast<unsigned char>(name[0]));
}

}  // namespace

std::string Location::text() const {
  std::string out = segment;
  if (field == 0) return out;
  out += "-" + std::to_string(field);
  if (component > 0) out += "." + std::to_string(component);
  if (subcomponent > 0) out += "." + std::to_string(subcomponent);
  return out;
}

bool valid_utf8(std::string_view text) noexcept {
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(text[i]);
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

std::string latin1_to_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(ch);
    } else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::string unescape(std::string_view text, const Encoding& enc, Charset charset) {
  if (text.find(enc.escape) == std::string_view::npos) return std::string(text);
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c != enc.escape) {
      out.push_back(c);
      ++i;
      continue;
    }
    std::size_t end = text.find(enc.escape, i + 1);
    if (end == std::string_view::npos) {  // not a sequence: kept as it is
      out.append(text.substr(i));
      break;
    }
    std::string_view seq = text.substr(i + 1, end - i - 1);
    std::string_view whole = text.substr(i, end - i + 1);
    i = end + 1;
    if (seq.size() == 1) {
      switch (seq[0]) {
        case 'F': out.push_back(enc.field); continue;
        case 'S': out.push_back(enc.component); continue;
        case 'T': out.push_back(enc.subcomponent); continue;
        case 'R': out.push_back(enc.repetition); continue;
        case 'E': out.push_back(enc.escape); continue;
        case 'P':
          if (enc.truncation != 0) {
            out.push_back(enc.truncation);
            continue;
          }
          break;
        default: break;
      }
    }
    if (seq.size() >= 3 && seq[0] == 'X' && (seq.size() - 1) % 2 == 0) {
      std::string bytes;
      bool ok = true;
      for (std::size_t k = 1; k + 1 < seq.size() + 1 && ok; k += 2) {
        int hi = hex_value(seq[k]), lo = hex_value(seq[k + 1]);
        if (hi < 0 || lo < 0)
          ok = false;
        else
          bytes.push_back(static_cast<char>(hi * 16 + lo));
      }
      if (ok) {
        if (charset == Charset::kUtf8) {
          if (valid_utf8(bytes)) {
            out += bytes;
            continue;
          }
        } else {  // 8859/1 (and ASCII, read leniently as 8859/1)
          out += latin1_to_utf8(bytes);
          continue;
        }
      }
    }
    out.append(whole);  // formatting (\.br\, \H\, \N\ ...), character set switches, \Z..\: kept
  }
  return out;
}

std::string escape(std::string_view text, const Encoding& enc) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    char code = 0;
    if (c == enc.field)
      code = 'F';
    else if (c == enc.component)
      code = 'S';
    else if (c == enc.subcomponent)
      code = 'T';
    else if (c == enc.repetition)
      code = 'R';
    else if (c == enc.escape)
      code = 'E';
    else if (enc.truncation != 0 && c == enc.truncation)
      code = 'P';
    if (code == 0) {
      out.push_back(c);
    } else {
      out.push_back(enc.escape);
      out.push_back(code);
      out.push_back(enc.escape);
    }
  }
  return out;
}

std::string_view Segment::raw(std::size_t n) const {
  return n < fields.size() ? std::string_view(fields[n]) : std::string_view();
}

std::string Segment::get(std::size_t n, std::size_t c, std::size_t s, std::size_t rep) const {
  std::string_view f = raw(n);
  if (f.empty() || c == 0 || s == 0 || rep == 0) return {};
  if (name == "MSH" && n <= 2) return c == 1 && s == 1 && rep == 1 ? std::string(f) : std::string();
  auto r = piece(f, encoding.repetition, rep - 1);
  if (!r) return {};
  auto comp = piece(*r, encoding.component, c - 1);
  if (!comp) return {};
  auto sub = piece(*comp, encoding.subcomponent, s - 1);
  if (!sub) return {};
  return unescape(*sub, encoding, charset);
}

std::size_t Segment::repetitions(std::size_t n) const {
  if (name == "MSH" && n <= 2) return has(n) ? 1 : 0;
  return count_pieces(raw(n), encoding.repetition);
}

std::size_t Segment::components(std::size_t n, std::size_t rep) const {
  auto r = piece(raw(n), encoding.repetition, rep - 1);
  return r ? count_pieces(*r, encoding.component) : 0;
}

Location Segment::at(std::size_t field, std::size_t rep, std::size_t component) const {
  Location l;
  l.segment = name;
  l.position = position;
  l.occurrence = occurrence;
  l.field = field;
  l.repetition = rep;
  l.component = component;
  return l;
}

const Group* Group::group(std::string_view n) const {
  for (const Group& g : groups)
    if (g.name == n) return &g;
  return nullptr;
}

std::vector<const Group*> Group::all_groups(std::string_view n) const {
  std::vector<const Group*> out;
  for (const Group& g : groups)
    if (g.name == n) out.push_back(&g);
  return out;
}

const Segment* Message::find(std::string_view name, const Group* group) const {
  for (std::size_t i : (group ? group : &root)->segments)
    if (segments[i].name == name) return &segments[i];
  return nullptr;
}

const Segment* Message::first(std::string_view name) const {
  for (const Segment& s : segments)
    if (s.name == name) return &s;
  return nullptr;
}

std::vector<const Segment*> Message::all(std::string_view name, const Group* group) const {
  std::vector<const Segment*> out;
  for (std::size_t i : (group ? group : &root)->segments)
    if (segments[i].name == name) out.push_back(&segments[i]);
  return out;
}

std::expected<Message, Problem> parse(std::string_view bytes) {
  if (bytes.starts_with("\xEF\xBB\xBF")) bytes.remove_prefix(3);
  // Segments: lines ended by CR, LF or CRLF (empty lines skipped).
  std::vector<std::string_view> lines;
  {
    std::size_t start = 0;
    while (start < bytes.size()) {
      std::size_t end = bytes.find_first_of("\r\n", start);
      if (end == std::string_view::npos) end = bytes.size();
      std::string_view line = bytes.substr(start, end - start);
      if (line.find_first_not_of(" \t") != std::string_view::npos) lines.push_back(line);
      start = end + 1;
    }
  }
  Location msh_at;
  msh_at.segment = "MSH";
  msh_at.position = 1;
  msh_at.occurrence = 1;
  if (lines.empty() || !lines.front().starts_with("MSH"))
    return std::unexpected(
        fatal(ErrorCode::kSegmentSequence, msh_at, "the message does not start with an MSH segment"));
  std::string_view msh = lines.front();
  Message m;
  // MSH-1 and MSH-2.
  {
    Location l1 = msh_at, l2 = msh_at;
    l1.field = 1;
    l2.field = 2;
    if (msh.size() < 4)
      return std::unexpected(fatal(ErrorCode::kRequiredFieldMissing, l1, "MSH-1 (the field separator) is missing"));
    char sep = msh[3];
    std::size_t enc_end = msh.find(sep, 4);
    std::string_view enc = msh.substr(4, enc_end == std::string_view::npos ? std::string_view::npos : enc_end - 4);
    if (std::isalnum(static_cast<unsigned char>(sep)) || sep == ' ')
      return std::unexpected(
          fatal(ErrorCode::kDataType, l1, "MSH-1 '" + std::string(1, sep) + "' cannot be a field separator"));
    if (enc.size() < 4 || enc.size() > 5)
      return std::unexpected(fatal(ErrorCode::kDataType, l2,
                                   "MSH-2 must hold 4 encoding characters (component, repetition, escape, "
                                   "subcomponent; a 5th for truncation), not '" +
                                       std::string(enc) + "'"));
    std::string all = std::string(1, sep) + std::string(enc);
    for (std::size_t a = 0; a < all.size(); ++a) {
      if (std::isalnum(static_cast<unsigned char>(all[a])) || all[a] == ' ' ||
          static_cast<unsigned char>(all[a]) >= 0x80)
        return std::unexpected(
            fatal(ErrorCode::kDataType, l2, "MSH-2: '" + std::string(1, all[a]) + "' cannot be an encoding character"));
      for (std::size_t b = a + 1; b < all.size(); ++b)
        if (all[a] == all[b])
          return std::unexpected(fatal(ErrorCode::kDataType, l2,
                                       "MSH-2: the encoding characters must differ from each other and from MSH-1"));
    }
    m.encoding.field = sep;
    m.encoding.component = enc[0];
    m.encoding.repetition = enc[1];
    m.encoding.escape = enc[2];
    m.encoding.subcomponent = enc[3];
    if (enc.size() == 5) m.encoding.truncation = enc[4];
  }
  // MSH-18 from the raw bytes (the MSH itself is ASCII).
  {
    auto f18 = piece(msh, m.encoding.field, 17);
    std::string cs = f18 ? std::string(piece(*f18, m.encoding.repetition, 0).value_or("")) : std::string();
    if (cs.empty() || cs == "ASCII") {
      m.charset = Charset::kAscii;
    } else if (cs == "8859/1") {
      m.charset = Charset::kLatin1;
    } else if (cs == "UNICODE UTF-8" || cs == "UTF-8") {
      m.charset = Charset::kUtf8;
    } else {
      Location l = msh_at;
      l.field = 18;
      return std::unexpected(
          fatal(ErrorCode::kTableValueNotFound, l,
                "MSH-18: character set '" + cs + "' is not supported (ASCII, 8859/1, UNICODE UTF-8)"));
    }
  }
  std::map<std::string, std::size_t, std::less<>> seen;
  m.segments.reserve(lines.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    std::string text;
    if (m.charset == Charset::kLatin1) {
      text = latin1_to_utf8(line);
    } else if (valid_utf8(line)) {
      text.assign(line);
    } else if (m.charset == Charset::kUtf8) {
      Location l;
      l.segment = std::string(line.substr(0, 3));
      l.position = i + 1;
      return std::unexpected(fatal(ErrorCode::kDataType, l,
                                   "segment " + std::to_string(i + 1) + " (" + l.segment +
                                       ") is not valid UTF-8 although MSH-18 says UNICODE UTF-8"));
    } else {
      text = latin1_to_utf8(line);  // ASCII declared but 8-bit text sent: read as 8859/1
    }
    Segment s;
    s.position = i + 1;
    s.charset = m.charset;
    if (i == 0) {
      s.fields = {"MSH", std::string(1, m.encoding.field)};
      for (auto& f : split(std::string_view(text).substr(4), m.encoding.field)) s.fields.push_back(std::move(f));
    } else {
      s.fields = split(text, m.encoding.field);
      if (!valid_segment_name(s.fields[0])) {
        Location l;
        l.segment = s.fields[0].substr(0, 8);
        l.position = i + 1;
        return std::unexpected(fatal(ErrorCode::kSegmentSequence, l,
                                     "segment " + std::to_string(i + 1) + ": '" + l.segment +
                                         "' is not a segment id (three upper-case letters or digits)"));
      }
      if (s.fields[0] == "MSH") {
        Location l;
        l.segment = "MSH";
        l.position = i + 1;
        return std::unexpected(fatal(ErrorCode::kSegmentSequence, l,
                                     "a second MSH at segment " + std::to_string(i + 1) + " (one message at a time)"));
      }
    }
    s.name = s.fields[0];
    s.occurrence = ++seen[s.name];
    m.segments.push_back(std::move(s));
  }
  for (Segment& s : m.segments) s.encoding = m.encoding;

  const Segment& h = m.segments.front();
  m.sending_application = std::string(h.raw(3));
  m.sending_facility = std::string(h.raw(4));
  m.receiving_application = std::string(h.raw(5));
  m.receiving_facility = std::string(h.raw(6));
  // (header values trimmed: senders pad them, e.g. "|2.3||| ")
  auto header = [&h](std::size_t field, std::size_t component = 1) {
    std::string v = h.get(field, component);
    std::size_t b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
  };
  m.type = header(9, 1);
  m.trigger = header(9, 2);
  m.control_id = header(10);
  m.processing_id = header(11);
  m.version = header(12);
  m.accept_ack = header(15);
  m.application_ack = header(16);
  std::string declared = header(9, 3);
  // MSH-9.3 when it names a structure we know; else derived from type and event (senders often put the event
  // there, e.g. ADT_A04, which is not a structure: A04 uses ADT_A01).
  if (!declared.empty() && find_structure(declared) != nullptr)
    m.structure = declared;
  else if (std::string derived = structure_for(m.type, m.trigger); !derived.empty())
    m.structure = derived;
  else
    m.structure = declared;
  if (const StructureNode* def = find_structure(m.structure)) {
    m.structure_known = true;
    GroupMatcher(m).run(*def);
  } else {
    m.root.name = m.structure;
    for (std::size_t i = 0; i < m.segments.size(); ++i) m.root.segments.push_back(i);
  }
  return m;
}

}  // namespace caduceus::adapters::hl7v2
