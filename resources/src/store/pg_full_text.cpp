#include "pg_full_text.hpp"

#include "caduceus/fhir/search_text.hpp"

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

// Recursive descent over an FTS5 expression of full_text.cpp's form, with FTS5's precedence (NOT, AND, OR).
struct Converter {
  std::string_view s;
  std::size_t pos = 0;
  int next_param;
  std::vector<std::string>& terms;
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
    terms.push_back(fhir::search::normalize_for_search(term));
    return "phraseto_tsquery('simple', $" + std::to_string(next_param++) + "::text)";
  }
};

}  // namespace

std::string full_text_document(std::string_view text) {
  // (Folding can lengthen text a little, ß -> ss: cut generously before, exactly after.)
  return std::string(cut(fhir::search::normalize_for_search(cut(text, 2 * kMaxFullTextBytes)), kMaxFullTextBytes));
}

fhir::Result<std::string> tsquery_sql(std::string_view fts5, int first_param, std::vector<std::string>& terms) {
  Converter c{fts5, 0, first_param, terms};
  auto expr = c.or_expr();
  if (!expr) return expr;
  c.skip_spaces();
  if (c.pos != fts5.size()) return std::unexpected(bad("unexpected input after the expression"));
  return expr;
}

}  // namespace caduceus::resources::pg
