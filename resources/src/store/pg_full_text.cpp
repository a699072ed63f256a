#include "pg_full_text.hpp"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>

#include "caduceus/fhir/search_text.hpp"
#include "pg_connection.hpp"

namespace caduceus::resources::pg {
namespace {

// The longest prefix of `s` of at most `max` bytes that ends on a UTF-8 character boundary, preferring to end
// before a space near the cut (so that the last word is not cut in two).
std::string_view cut(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  const auto space = s.rfind(' ', end);
  if (space != std::string_view::npos && end - space < 64) end = space;
  return s.substr(0, end);
}

fhir::Error bad(const std::string& why) {
  return fhir::Error::make(fhir::ErrorKind::kInvalid, "invalid", "full-text expression: " + why);
}

template <class F>
void for_each_word(std::string_view text, F&& word) {
  const auto* s = reinterpret_cast<const std::uint8_t*>(text.data());
  const auto n = static_cast<std::int32_t>(text.size());
  std::int32_t i = 0;
  std::int32_t start = -1;
  while (i < n) {
    const std::int32_t at = i;
    UChar32 c;
    U8_NEXT(s, i, n, c);
    // FTS5's unicode61: letters, digits, private use and (its diacritics removed) combining marks make words.
    bool part = false;
    if (c < 0x80) {
      part = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
    } else if (c > 0) {
      const std::int8_t type = u_charType(c);
      part = u_isalnum(c) || type == U_NON_SPACING_MARK || type == U_PRIVATE_USE_CHAR;
    }
    if (part && start < 0) start = at;
    if (!part && start >= 0) {
      word(text.substr(static_cast<std::size_t>(start), static_cast<std::size_t>(at - start)));
      start = -1;
    }
  }
  if (start >= 0) word(text.substr(static_cast<std::size_t>(start)));
}

void append_lexeme(std::string& out, std::string_view w) {
  out += '\'';
  for (char ch : w) {
    if (ch == '\'' || ch == '\\') out += ch;
    out += ch;
  }
  out += '\'';
}

// Recursive descent over an FTS5 expression of full_text.cpp's form, with FTS5's precedence (NOT, AND, OR).
struct Converter {
  std::string_view s;
  std::size_t pos = 0;
  int next_param;
  std::vector<std::string>& terms;
  bool narrative_only;
  int depth = 0;

  void skip_spaces() {
    while (pos < s.size() && s[pos] == ' ') ++pos;
  }
  bool at_word(std::string_view w) {
    skip_spaces();
    if (s.compare(pos, w.size(), w) != 0) return false;
    const std::size_t end = pos + w.size();
    if (end < s.size() && s[end] != ' ' && s[end] != '(' && s[end] != '"') return false;
    pos = end;
    return true;
  }

  fhir::Result<std::string> or_expr() {
    auto left = and_expr();
    if (!left) return left;
    std::string out = *left;
    while (at_word("OR")) {
      auto right = and_expr();
      if (!right) return right;
      out = "(" + out + " || " + *right + ")";
    }
    return out;
  }
  fhir::Result<std::string> and_expr() {
    auto left = not_expr();
    if (!left) return left;
    std::string out = *left;
    while (at_word("AND")) {
      auto right = not_expr();
      if (!right) return right;
      out = "(" + out + " && " + *right + ")";
    }
    return out;
  }
  fhir::Result<std::string> not_expr() {
    auto left = primary();
    if (!left) return left;
    std::string out = *left;
    while (at_word("NOT")) {
      auto right = primary();
      if (!right) return right;
      out = "(" + out + " && !!" + *right + ")";
    }
    return out;
  }
  fhir::Result<std::string> primary() {
    skip_spaces();
    if (pos >= s.size()) return std::unexpected(bad("a term is missing"));
    if (s[pos] == '(') {
      if (++depth > 64) return std::unexpected(bad("too deep"));
      ++pos;
      auto inner = or_expr();
      if (!inner) return inner;
      skip_spaces();
      if (pos >= s.size() || s[pos] != ')') return std::unexpected(bad("a parenthesis is not closed"));
      ++pos;
      --depth;
      return inner;
    }
    if (s[pos] != '"') return std::unexpected(bad("a term is not quoted"));
    std::string term;
    for (++pos;; ++pos) {
      if (pos >= s.size()) return std::unexpected(bad("a quoted term is not closed"));
      if (s[pos] == '"') {
        if (pos + 1 < s.size() && s[pos + 1] == '"') {
          term += '"';
          ++pos;
          continue;
        }
        ++pos;
        break;
      }
      term += s[pos];
    }
    terms.push_back(tsquery_literal(fhir::search::normalize_for_search(term), narrative_only));
    return "$" + std::to_string(next_param++) + "::tsquery";
  }
};

}  // namespace

std::string full_text_document(std::string_view text) {
  // (Folding can lengthen text a little, ß -> ss: cut generously before, exactly after.)
  return std::string(cut(fhir::search::normalize_for_search(cut(text, 2 * kMaxFullTextBytes)), kMaxFullTextBytes));
}

namespace {

// The lexemes of a resource's text in tsvector's order, each with its positions (weight A: negative), for both
// encodings below. PostgreSQL's limits: a lexeme under 2 KB (to_tsvector leaves longer words out too), positions up
// to 16,383 (later words share the last), at most 256 positions per lexeme (the first ones are kept).
template <class Lexeme>
void for_each_lexeme(std::string_view narrative, std::string_view content, Lexeme&& lexeme) {
  constexpr std::size_t kMaxLexeme = 2047;
  constexpr int kMaxPosition = 16383;
  constexpr std::size_t kMaxPositions = 256;
  // The words with their positions, sorted by word then position: each lexeme once.
  std::vector<std::pair<std::string_view, int>> words;
  words.reserve((narrative.size() + content.size()) / 4 + 1);
  int position = 0;
  auto add = [&](std::string_view w, bool weight_a) {
    if (w.size() > kMaxLexeme) return;
    position = std::min(position + 1, kMaxPosition);
    words.emplace_back(w, weight_a ? -position : position);
  };
  for_each_word(narrative, [&](std::string_view w) { add(w, true); });
  for_each_word(content, [&](std::string_view w) { add(w, false); });
  std::stable_sort(words.begin(), words.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<int> positions;  // (weight A: negative)
  for (std::size_t i = 0; i < words.size();) {
    const std::string_view w = words[i].first;
    positions.clear();
    int last = 0;
    for (; i < words.size() && words[i].first == w; ++i) {
      const int p = std::abs(words[i].second);
      if (p == last || positions.size() == kMaxPositions) continue;  // (positions past 16,383 share the last)
      last = p;
      positions.push_back(words[i].second);
    }
    lexeme(w, positions);
  }
}

}  // namespace

std::string tsvector_literal(std::string_view narrative, std::string_view content) {
  std::string out;
  out.reserve(narrative.size() + content.size() + 16);
  char digits[16];
  for_each_lexeme(narrative, content, [&](std::string_view w, const std::vector<int>& positions) {
    if (!out.empty()) out += ' ';
    append_lexeme(out, w);
    char sep = ':';
    for (int p : positions) {
      out += sep;
      sep = ',';
      out.append(digits, std::to_chars(digits, digits + sizeof digits, std::abs(p)).ptr);
      if (p < 0) out += 'A';
    }
  });
  return out;
}

std::string tsvector_binary(std::string_view narrative, std::string_view content) {
  std::string out(4, '\0');  // (the count of lexemes, written over at the end)
  out.reserve(narrative.size() + content.size() + 16);
  std::uint32_t count = 0;
  for_each_lexeme(narrative, content, [&](std::string_view w, const std::vector<int>& positions) {
    out += w;
    out += '\0';
    put_be16(out, static_cast<std::uint16_t>(positions.size()));
    for (int p : positions)  // (WordEntryPos: the weight in the top two bits, A = 3; the position below)
      put_be16(out, static_cast<std::uint16_t>((p < 0 ? 3u << 14 : 0u) | static_cast<unsigned>(std::abs(p))));
    ++count;
  });
  std::string head;
  put_be32(head, count);
  out.replace(0, head.size(), head);
  return out;
}

std::string tsquery_literal(std::string_view folded, bool narrative_only) {
  std::string out;
  for_each_word(folded, [&](std::string_view w) {
    if (w.size() > 2047) return;  // (as tsvector_literal)
    if (!out.empty()) out += " <-> ";
    append_lexeme(out, w);
    if (narrative_only) out += ":A";
  });
  return out;
}

fhir::Result<std::string> tsquery_sql(std::string_view fts5, int first_param, std::vector<std::string>& terms,
                                      bool narrative_only) {
  Converter c{fts5, 0, first_param, terms, narrative_only};
  auto expr = c.or_expr();
  if (!expr) return expr;
  c.skip_spaces();
  if (c.pos != fts5.size()) return std::unexpected(bad("unexpected input after the expression"));
  return expr;
}

}  // namespace caduceus::resources::pg
