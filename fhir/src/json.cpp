#include "caduceus/fhir/json.hpp"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <unordered_set>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace caduceus::fhir::json {
namespace {

// The text being parsed: rapidjson's MemoryStream, a type of our own so that its white space is skipped by the
// function below (rapidjson skips one character at a time; indented FHIR, Synthea's files for one, is a fifth
// white space, which was a fifth of the parse).
struct TextStream : rapidjson::MemoryStream {
  TextStream(std::string_view text) : rapidjson::MemoryStream(text.data(), text.size()) {}
};

// The first character at or after p (before end) that is not JSON white space, sixteen at a time.
const char* skip_white_space(const char* p, const char* end) {
  auto white = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  if (p == end || !white(*p)) return p;  // (most calls: none, or one before a value)
  ++p;
#if defined(__SSE2__)
  const __m128i space = _mm_set1_epi8(' '), newline = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r'),
                tab = _mm_set1_epi8('\t');
  while (end - p >= 16) {
    const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i w = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(s, space), _mm_cmpeq_epi8(s, newline)),
                                   _mm_or_si128(_mm_cmpeq_epi8(s, cr), _mm_cmpeq_epi8(s, tab)));
    const unsigned other = ~static_cast<unsigned>(_mm_movemask_epi8(w)) & 0xFFFFu;
    if (other != 0) return p + __builtin_ctz(other);
    p += 16;
  }
#endif
  while (p != end && white(*p)) ++p;
  return p;
}

// The first character of [p, end) that a JSON string must escape ('"', '\\', a control character), or end;
// sixteen at a time.
const char* find_escape(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), below_space = _mm_set1_epi8(0x1F);
  while (end - p >= 16) {
    const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // (c < 0x20 for unsigned c: max(c, 0x1F) == 0x1F)
    const __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(s, quote), _mm_cmpeq_epi8(s, backslash)),
                                      _mm_cmpeq_epi8(_mm_max_epu8(s, below_space), below_space));
    if (const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(stop)); mask != 0) return p + __builtin_ctz(mask);
    p += 16;
  }
#endif
  while (p != end && *p != '"' && *p != '\\' && static_cast<unsigned char>(*p) >= 0x20) ++p;
  return p;
}

}  // namespace
}  // namespace caduceus::fhir::json

template <>
inline void rapidjson::SkipWhitespace(caduceus::fhir::json::TextStream& is) {
  is.src_ = caduceus::fhir::json::skip_white_space(is.src_, is.end_);
}

// The characters of a string up to its end, an escape or a control character, found sixteen at a time and copied at
// once (rapidjson copies one at a time from a MemoryStream, and scans by blocks only a null-terminated StringStream).
// It then goes on from there, one character at a time, as before.
template <>
template <>
inline void rapidjson::Reader::ScanCopyUnescapedString(caduceus::fhir::json::TextStream& is,
                                                       rapidjson::Reader::StackStream<char>& os) {
  const char* stop = caduceus::fhir::json::find_escape(is.src_, is.end_);
  const auto n = static_cast<rapidjson::SizeType>(stop - is.src_);
  std::memcpy(os.Push(n), is.src_, n);
  is.src_ = stop;
}

namespace caduceus::fhir::json {

Value Value::boolean(bool b) {
  Value v;
  v.v_.emplace<1>(b);
  return v;
}
Value Value::number(std::string literal) {
  Value v;
  v.v_.emplace<2>(std::move(literal));
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.v_.emplace<3>(std::move(s));
  return v;
}
Value Value::array() {
  Value v;
  v.v_.emplace<4>();
  return v;
}
Value Value::object() {
  Value v;
  v.v_.emplace<5>();
  return v;
}

const std::string& Value::empty_text() noexcept {
  static const std::string empty;
  return empty;
}
const std::vector<Value>& Value::empty_items() noexcept {
  static const std::vector<Value> empty;
  return empty;
}
const std::vector<Value::Member>& Value::empty_members() noexcept {
  static const std::vector<Member> empty;
  return empty;
}
std::vector<Value>& Value::scratch_items() noexcept {
  thread_local std::vector<Value> scratch;
  scratch.clear();
  return scratch;
}
std::vector<Value::Member>& Value::scratch_members() noexcept {
  thread_local std::vector<Member> scratch;
  scratch.clear();
  return scratch;
}

const Value* Value::find(std::string_view key) const noexcept {
  const auto* members = std::get_if<5>(&v_);
  if (members == nullptr) return nullptr;
  if (key.empty()) {
    for (const auto& m : *members)
      if (m.first.empty()) return &m.second;
    return nullptr;
  }
  // The length and the first letter before the rest: most members differ there, and a comparison call per member
  // was most of a lookup.
  for (const auto& m : *members)
    if (m.first.size() == key.size() && m.first[0] == key[0] &&
        std::memcmp(m.first.data() + 1, key.data() + 1, key.size() - 1) == 0)
      return &m.second;
  return nullptr;
}
Value* Value::find(std::string_view key) noexcept {
  return const_cast<Value*>(static_cast<const Value*>(this)->find(key));
}
Value& Value::set(std::string_view key, Value v) {
  if (Value* existing = find(key)) {
    *existing = std::move(v);
    return *existing;
  }
  std::vector<Member>& m = members();
  m.emplace_back(std::string(key), std::move(v));
  return m.back().second;
}
bool Value::erase(std::string_view key) {
  auto* members = std::get_if<5>(&v_);
  if (members == nullptr) return false;
  auto it = std::find_if(members->begin(), members->end(), [&](const Member& m) { return m.first == key; });
  if (it == members->end()) return false;
  members->erase(it);
  return true;
}
Value& Value::push_back(Value v) {
  std::vector<Value>& items = this->items();
  items.push_back(std::move(v));
  return items.back();
}

bool operator==(const Value& a, const Value& b) noexcept {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kNull: return true;
    case Value::Kind::kBool: return a.as_bool() == b.as_bool();
    case Value::Kind::kNumber:
    case Value::Kind::kString: return a.text() == b.text();
    case Value::Kind::kArray: return a.items() == b.items();
    case Value::Kind::kObject:
      // Member order is not significant for equality.
      if (a.members().size() != b.members().size()) return false;
      for (const auto& [k, v] : a.members()) {
        const Value* other = b.find(k);
        if (other == nullptr || !(*other == v)) return false;
      }
      return true;
  }
  return false;
}

namespace {

// SAX handler building our DOM. Numbers arrive as raw text (kParseNumbersAsStringsFlag). The elements of the
// arrays and objects still open wait in two stacks (innermost last); a closed one gets a vector of exactly its size,
// in one allocation, where growing each vector as its elements came cost a reallocation (and the moves) per
// doubling.
class Builder {
 public:
  Builder(const ParseOptions& options) : options_(options) {
    items_.reserve(64);
    members_.reserve(64);
  }

  bool Null() { return add(Value::null()); }
  bool Bool(bool b) { return add(Value::boolean(b)); }
  bool Int(int) { return false; }  // not reached with kParseNumbersAsStringsFlag
  bool Uint(unsigned) { return false; }
  bool Int64(int64_t) { return false; }
  bool Uint64(uint64_t) { return false; }
  bool Double(double) { return false; }
  bool RawNumber(const char* str, rapidjson::SizeType len, bool) { return add(Value::number(std::string(str, len))); }
  bool String(const char* str, rapidjson::SizeType len, bool) { return add(Value::string(std::string(str, len))); }
  bool StartObject() {
    if (stack_.size() >= options_.max_depth) return too_deep();
    stack_.push_back(Frame{true, members_.size(), {}, {}});
    return true;
  }
  bool Key(const char* str, rapidjson::SizeType len, bool) {
    Frame& f = stack_.back();
    f.key.assign(str, len);
    if (options_.reject_duplicate_keys) {
      // Linear scan is cheaper than a set for the small objects FHIR has; switch to a set for big ones.
      const auto first = members_.begin() + static_cast<std::ptrdiff_t>(f.start);
      if (members_.size() - f.start < 16) {
        for (auto m = first; m != members_.end(); ++m)
          if (m->first == f.key) return duplicate();
      } else {
        if (f.keys.empty())
          for (auto m = first; m != members_.end(); ++m) f.keys.insert(m->first);
        if (!f.keys.insert(f.key).second) return duplicate();
      }
    }
    return true;
  }
  bool EndObject(rapidjson::SizeType) { return end(); }
  bool StartArray() {
    if (stack_.size() >= options_.max_depth) return too_deep();
    stack_.push_back(Frame{false, items_.size(), {}, {}});
    return true;
  }
  bool EndArray(rapidjson::SizeType) { return end(); }

  Value take() { return std::move(root_); }
  const std::string& failure() const { return failure_; }

 private:
  struct Frame {
    bool object;
    std::size_t start;  // where its elements start in members_ (an object) or items_ (an array)
    std::string key;
    std::unordered_set<std::string> keys;
  };

  bool add(Value&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return true;
    }
    Frame& f = stack_.back();
    if (f.object)
      members_.emplace_back(std::move(f.key), std::move(v));
    else
      items_.push_back(std::move(v));
    return true;
  }
  template <class T>
  static void take_from(std::vector<T>& stack, std::size_t start, std::vector<T>& into) {
    const auto first = stack.begin() + static_cast<std::ptrdiff_t>(start);
    into.assign(std::make_move_iterator(first), std::make_move_iterator(stack.end()));
    stack.erase(first, stack.end());
  }
  bool end() {
    const Frame& f = stack_.back();
    Value v = f.object ? Value::object() : Value::array();
    if (f.object)
      take_from(members_, f.start, v.members());
    else
      take_from(items_, f.start, v.items());
    stack_.pop_back();
    return add(std::move(v));
  }
  bool too_deep() {
    failure_ = "the JSON nests deeper than " + std::to_string(options_.max_depth) + " levels";
    return false;
  }
  bool duplicate() {
    failure_ = "duplicate property '" + stack_.back().key + "'";
    return false;
  }

  const ParseOptions& options_;
  std::vector<Frame> stack_;
  std::vector<Value> items_;
  std::vector<Value::Member> members_;
  Value root_;
  std::string failure_;
};

template <class Writer>
void emit(Writer& w, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull: w.Null(); break;
    case Value::Kind::kBool: w.Bool(v.as_bool()); break;
    case Value::Kind::kNumber: w.RawValue(v.text().data(), v.text().size(), rapidjson::kNumberType); break;
    case Value::Kind::kString: w.String(v.text().data(), static_cast<rapidjson::SizeType>(v.text().size())); break;
    case Value::Kind::kArray:
      w.StartArray();
      for (const auto& item : v.items()) emit(w, item);
      w.EndArray();
      break;
    case Value::Kind::kObject:
      w.StartObject();
      for (const auto& [k, item] : v.members()) {
        w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
        emit(w, item);
      }
      w.EndObject();
      break;
  }
}

// rapidjson 1.1.0's Writer::RawNumber quotes the number; forward raw numbers as raw values instead.
template <class Writer>
struct RawNumberFix : Writer {
  using Writer::Writer;
  bool RawNumber(const char* str, rapidjson::SizeType len, bool) {
    return Writer::RawValue(str, len, rapidjson::kNumberType);
  }
};

// Appends to a std::string; rapidjson's stream concept.
struct StringSink {
  using Ch = char;
  std::string& out;
  void Put(char c) { out.push_back(c); }
  void Flush() {}
};

// The offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
// nothing past U+10FFFF), or npos. Eight bytes at a time while they are ASCII (nearly all of a FHIR document):
// rapidjson's own check (kParseValidateEncodingFlag) goes through a decoder for every character, which was a
// fifth of the parse.
std::size_t invalid_utf8_at(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      std::uint64_t word;
      std::memcpy(&word, p + i, sizeof word);
      if ((word & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // (overlong)
      if (c == 0xED) hi = 0x9F;  // (surrogates)
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // (overlong)
      if (c == 0xF4) hi = 0x8F;  // (past U+10FFFF)
    } else {
      return i;  // a continuation byte, an overlong lead (C0, C1) or F5-FF
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

// Appends text as a JSON string, escaped as rapidjson's Writer escapes (so that what we write is what it wrote):
// '"' and '\\', \b \t \n \f \r, the other control characters as \u00XX; everything else, UTF-8 included, as it is.
// Runs that need no escape are copied whole.
void append_string(rapidjson::StringBuffer& out, std::string_view text) {
  const char* p = text.data();
  const char* const end = p + text.size();
  out.Reserve(2 + 6 * text.size());  // (every character escaped, at most: the writes below need no check)
  out.PutUnsafe('"');
  for (;;) {
    const char* stop = find_escape(p, end);
    const auto run = static_cast<std::size_t>(stop - p);
    if (run != 0) std::memcpy(out.PushUnsafe(run), p, run);
    if (stop == end) break;
    const auto c = static_cast<unsigned char>(*stop);
    char* at = out.PushUnsafe(2);
    at[0] = '\\';
    switch (c) {
      case '"': at[1] = '"'; break;
      case '\\': at[1] = '\\'; break;
      case '\b': at[1] = 'b'; break;
      case '\t': at[1] = 't'; break;
      case '\n': at[1] = 'n'; break;
      case '\f': at[1] = 'f'; break;
      case '\r': at[1] = 'r'; break;
      default: {
        static constexpr char kHex[] = "0123456789ABCDEF";
        at[1] = 'u';
        char* hex = out.PushUnsafe(4);
        hex[0] = '0';
        hex[1] = '0';
        hex[2] = kHex[c >> 4];
        hex[3] = kHex[c & 15];
      }
    }
    p = stop + 1;
  }
  out.PutUnsafe('"');
}

void append_raw(rapidjson::StringBuffer& out, std::string_view text) {
  std::memcpy(out.Push(text.size()), text.data(), text.size());
}

// Compact JSON into rapidjson's buffer (which makes room once per string and then stores unchecked): its Writer
// also looks up every character of a string in its escape table, and keeps a stack of levels to place commas.
void write_compact(rapidjson::StringBuffer& out, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kNull: append_raw(out, "null"); break;
    case Value::Kind::kBool: append_raw(out, v.as_bool() ? "true" : "false"); break;
    case Value::Kind::kNumber: append_raw(out, v.text()); break;
    case Value::Kind::kString: append_string(out, v.text()); break;
    case Value::Kind::kArray: {
      out.Put('[');
      bool first = true;
      for (const auto& item : v.items()) {
        if (!first) out.Put(',');
        first = false;
        write_compact(out, item);
      }
      out.Put(']');
      break;
    }
    case Value::Kind::kObject: {
      out.Put('{');
      bool first = true;
      for (const auto& [k, item] : v.members()) {
        if (!first) out.Put(',');
        first = false;
        append_string(out, k);
        out.Put(':');
        write_compact(out, item);
      }
      out.Put('}');
      break;
    }
  }
}

}  // namespace

Result<Value> parse(std::string_view text, const ParseOptions& options) {
  if (const std::size_t bad = invalid_utf8_at(text); bad != std::string_view::npos)
    return fail(ErrorKind::kInvalid, "invalid",
                "The body is not valid JSON: it is not UTF-8 (at byte " + std::to_string(bad) + ")");
  // (Escapes decode to UTF-8, and a lone surrogate escape is an error of rapidjson's own.)
  constexpr unsigned kFlags =
      rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseIterativeFlag | rapidjson::kParseStopWhenDoneFlag;
  Builder builder(options);
  rapidjson::Reader reader;
  TextStream ms(text);
  rapidjson::ParseResult ok = reader.Parse<kFlags>(ms, builder);
  if (!ok) {
    std::string why = builder.failure().empty() ? rapidjson::GetParseError_En(ok.Code()) : builder.failure();
    return fail(ErrorKind::kInvalid, "invalid",
                "The body is not valid JSON: " + why + " (at byte " + std::to_string(ok.Offset()) + ")");
  }
  // Only white space may follow the value.
  for (std::size_t i = ms.Tell(); i < text.size(); ++i) {
    char c = text[i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
      return fail(ErrorKind::kInvalid, "invalid",
                  "The body is not valid JSON: unexpected text after the value (at byte " + std::to_string(i) + ")");
  }
  return builder.take();
}

void write_to(std::string& out, const Value& value, bool pretty) {
  // Into rapidjson's own buffer, then one copy: it stores unchecked once it has made room for a string, where a
  // std::string checks its capacity at every character.
  rapidjson::StringBuffer buffer(nullptr, 4096);  // (most resources fit: no regrowth)
  if (pretty) {
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buffer);
    w.SetIndent(' ', 2);
    emit(w, value);
  } else {
    write_compact(buffer, value);
  }
  out.append(buffer.GetString(), buffer.GetSize());
}

std::string write(const Value& value, bool pretty) {
  std::string out;
  out.reserve(256);
  write_to(out, value, pretty);
  return out;
}

void append_quoted(std::string& out, std::string_view text) {
  // Most strings (ids, URLs, types) need no escape: copied as they are.
  const char* const end = text.data() + text.size();
  if (find_escape(text.data(), end) == end) {
    out.reserve(out.size() + text.size() + 2);
    out.push_back('"');
    out.append(text);
    out.push_back('"');
    return;
  }
  rapidjson::StringBuffer buffer;
  append_string(buffer, text);
  out.append(buffer.GetString(), buffer.GetSize());
}

std::string reformat(std::string_view text, bool pretty) {
  constexpr unsigned kFlags = rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseIterativeFlag;
  std::string out;
  out.reserve(text.size() + text.size() / 2);
  StringSink sink{out};
  rapidjson::Reader reader;
  rapidjson::MemoryStream ms(text.data(), text.size());
  bool ok;
  if (pretty) {
    RawNumberFix<rapidjson::PrettyWriter<StringSink>> w(sink);
    w.SetIndent(' ', 2);
    ok = !reader.Parse<kFlags>(ms, w).IsError();
  } else {
    RawNumberFix<rapidjson::Writer<StringSink>> w(sink);
    ok = !reader.Parse<kFlags>(ms, w).IsError();
  }
  return ok ? out : std::string(text);
}

}  // namespace caduceus::fhir::json
