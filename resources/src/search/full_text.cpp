#include "caduceus/resources/full_text.hpp"

#include <cstdint>
#include <vector>

namespace caduceus::resources {
namespace {

namespace json = fhir::json;

void append_utf8(std::uint32_t cp, std::string& out) {
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    out.push_back(' ');
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes the entity `name` (between '&' and ';'); false if it is not one.
bool append_entity(std::string_view name, std::string& out) {
  if (name == "amp") return out.push_back('&'), true;
  if (name == "lt") return out.push_back('<'), true;
  if (name == "gt") return out.push_back('>'), true;
  if (name == "quot") return out.push_back('"'), true;
  if (name == "apos") return out.push_back('\''), true;
  if (name == "nbsp") return out.push_back(' '), true;
  if (name.size() < 2 || name[0] != '#') return false;
  bool hex = name[1] == 'x' || name[1] == 'X';
  std::string_view digits = name.substr(hex ? 2 : 1);
  if (digits.empty()) return false;
  std::uint32_t cp = 0;
  for (char ch : digits) {
    int d;
    if (ch >= '0' && ch <= '9')
      d = ch - '0';
    else if (hex && ch >= 'a' && ch <= 'f')
      d = ch - 'a' + 10;
    else if (hex && ch >= 'A' && ch <= 'F')
      d = ch - 'A' + 10;
    else
      return false;
    cp = cp * (hex ? 16 : 10) + static_cast<std::uint32_t>(d);
    if (cp > 0x10FFFF) return false;
  }
  append_utf8(cp, out);
  return true;
}

void append_string(const std::string& s, std::string& out) {
  if (s.empty()) return;
  if (!out.empty()) out.push_back(' ');
  out.append(s);
}

// One walk of a resource's JSON with its R4 definition at hand, so that each value is known by its type: the
// `string` and `markdown` values are its text; codes, ids, URIs, dates, numbers and Reference.reference (an
// address, which the reference parameters search) are not.
class TextWalker {
 public:
  TextWalker(const Definitions& definitions, std::string& content)
      : definitions_(definitions),
        content_(content),
        element_(definitions.type("Element")),
        reference_(definitions.type("Reference")) {}

  // A resource (top-level or contained): its narrative's text goes to `narrative` (nullptr: to the content).
  void resource(const json::Value& v, std::string* narrative) {
    const json::Value* rt = v.find("resourceType");
    const TypeDefinition* type = rt != nullptr && rt->is_string() ? definitions_.type(rt->text()) : nullptr;
    if (type == nullptr || type->kind != TypeKind::kResource) return;
    for (const auto& [name, value] : v.members()) {
      const std::string_view key = name;  // (compared by length first)
      if (key == "text" && value.is_object()) {
        if (const json::Value* div = value.find("div"); div != nullptr && div->is_string()) {
          std::string& out = narrative != nullptr ? *narrative : content_;
          if (!out.empty()) out.push_back(' ');
          append_xhtml_text(div->text(), out);
        }
        continue;  // (Narrative's other element, status, is a code)
      }
      if (key == "contained" && value.is_array()) {
        for (const auto& c : value.items())
          if (c.is_object()) resource(c, nullptr);
        continue;
      }
      member(key, value, *type);
    }
  }

 private:
  void member(std::string_view key, const json::Value& value, const TypeDefinition& type) {
    if (key.starts_with('_')) {  // a primitive's id and extensions (`_birthDate`)
      if (element_ != nullptr) walk(value, *element_);
      return;
    }
    const ElementMatch* m = type.find(key);
    if (m == nullptr || m->type == nullptr) return;  // (not a property of the type: the checker refuses it)
    if (&type == reference_ && key == "reference") return;
    walk(value, *m->type);
  }

  void walk(const json::Value& v, const TypeDefinition& type) {
    if (v.is_array()) {
      for (const auto& item : v.items()) walk(item, type);
      return;
    }
    switch (type.kind) {
      case TypeKind::kPrimitive:
        if (v.is_string() &&
            (type.primitive == fhir::Primitive::kString || type.primitive == fhir::Primitive::kMarkdown))
          append_string(v.text(), content_);
        break;
      case TypeKind::kComplex:
        if (v.is_object())
          for (const auto& [key, value] : v.members()) member(key, value, type);
        break;
      case TypeKind::kResource:  // Bundle.entry.resource, Parameters.parameter.resource
        if (v.is_object()) resource(v, nullptr);
        break;
    }
  }

  const Definitions& definitions_;
  std::string& content_;
  const TypeDefinition* element_;
  const TypeDefinition* reference_;
};

// The query language of _text and _content.

struct Token {
  enum class Kind { kTerm, kAnd, kOr, kNot, kOpen, kClose } kind;
  std::string text;  // kTerm: the word or the phrase's content
};

fhir::Error invalid(std::string message) {
  return fhir::Error::make(fhir::ErrorKind::kInvalid, "invalid", std::move(message));
}

bool has_letter_or_digit(std::string_view s) {
  for (char ch : s) {
    auto u = static_cast<unsigned char>(ch);
    if (u >= 0x80 || (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) return true;
  }
  return false;
}

// Blanks and every other control character (a NUL would end FTS5's reading of the string) separate terms.
bool is_space(char ch) {
  return static_cast<unsigned char>(ch) <= ' ' || ch == '\x7f';
}

fhir::Result<std::vector<Token>> lex(std::string_view s) {
  std::vector<Token> out;
  std::size_t i = 0;
  while (i < s.size()) {
    char ch = s[i];
    if (is_space(ch)) {
      ++i;
    } else if (ch == '(' || ch == ')') {
      out.push_back({ch == '(' ? Token::Kind::kOpen : Token::Kind::kClose, {}});
      ++i;
    } else if (ch == '"') {
      auto end = s.find('"', i + 1);
      if (end == std::string_view::npos) return std::unexpected(invalid("a quoted phrase is not closed"));
      std::string phrase(s.substr(i + 1, end - i - 1));
      for (char& c : phrase)
        if (is_space(c)) c = ' ';
      if (!has_letter_or_digit(phrase))
        return std::unexpected(invalid("the phrase \"" + phrase + "\" has no letter or digit to search for"));
      out.push_back({Token::Kind::kTerm, std::move(phrase)});
      i = end + 1;
    } else {
      std::size_t start = i;
      while (i < s.size() && !is_space(s[i]) && s[i] != '(' && s[i] != ')' && s[i] != '"') ++i;
      std::string word(s.substr(start, i - start));
      if (word == "AND") {
        out.push_back({Token::Kind::kAnd, {}});
      } else if (word == "OR") {
        out.push_back({Token::Kind::kOr, {}});
      } else if (word == "NOT") {
        out.push_back({Token::Kind::kNot, {}});
      } else {
        if (!has_letter_or_digit(word))
          return std::unexpected(invalid("'" + word + "' has no letter or digit to search for"));
        out.push_back({Token::Kind::kTerm, std::move(word)});
      }
    }
  }
  return out;
}

// Recursive descent, with FTS5's precedence (NOT, then AND, then OR), writing every group in parentheses.
struct QueryParser {
  // Each level of parentheses is at most a few levels of FTS5's (whose parser stack is bounded).
  static constexpr int kMaxDepth = 8;
  const std::vector<Token>& tokens;
  std::size_t pos = 0;
  int depth = 0;

  bool at(Token::Kind k) const { return pos < tokens.size() && tokens[pos].kind == k; }
  bool at_operand() const { return at(Token::Kind::kTerm) || at(Token::Kind::kOpen); }

  fhir::Result<std::string> or_expr() {
    auto left = and_expr();
    if (!left) return left;
    std::string out = *left;
    bool many = false;
    while (at(Token::Kind::kOr)) {
      ++pos;
      auto right = and_expr();
      if (!right) return right;
      out += " OR " + *right;
      many = true;
    }
    return many ? "(" + out + ")" : out;
  }

  fhir::Result<std::string> and_expr() {
    auto left = not_expr();
    if (!left) return left;
    std::string out = *left;
    bool many = false;
    for (;;) {
      if (at(Token::Kind::kAnd)) {
        ++pos;
      } else if (!at_operand()) {
        break;  // adjacent terms are ANDed
      }
      auto right = not_expr();
      if (!right) return right;
      out += " AND " + *right;
      many = true;
    }
    return many ? "(" + out + ")" : out;
  }

  fhir::Result<std::string> not_expr() {
    auto left = primary();
    if (!left) return left;
    std::string out = *left;
    bool many = false;
    while (at(Token::Kind::kNot)) {
      ++pos;
      auto right = primary();
      if (!right) return right;
      out += " NOT " + *right;
      many = true;
    }
    return many ? "(" + out + ")" : out;
  }

  fhir::Result<std::string> primary() {
    if (pos >= tokens.size()) return std::unexpected(invalid("a term is missing at the end"));
    const Token& t = tokens[pos];
    switch (t.kind) {
      case Token::Kind::kTerm: {
        ++pos;
        std::string quoted = "\"";
        for (char ch : t.text) {
          if (ch == '"') quoted.push_back('"');
          quoted.push_back(ch);
        }
        return quoted + "\"";
      }
      case Token::Kind::kOpen: {
        if (++depth > kMaxDepth)
          return std::unexpected(invalid("parentheses nest " + std::to_string(kMaxDepth) + " levels at most"));
        ++pos;
        auto inner = or_expr();
        if (!inner) return inner;
        if (!at(Token::Kind::kClose)) return std::unexpected(invalid("a parenthesis is not closed"));
        ++pos;
        --depth;
        return inner;  // a term, or a group already in parentheses
      }
      case Token::Kind::kClose: return std::unexpected(invalid("a ')' has no '(' or closes an empty group"));
      case Token::Kind::kAnd:
      case Token::Kind::kOr:
      case Token::Kind::kNot: {
        const char* op = t.kind == Token::Kind::kAnd ? "AND" : t.kind == Token::Kind::kOr ? "OR" : "NOT";
        return std::unexpected(invalid(std::string(op) + " needs a term on each side" +
                                       (t.kind == Token::Kind::kNot ? " (as in 'cancer NOT benign')" : "")));
      }
    }
    return std::unexpected(invalid("unexpected input"));
  }
};

}  // namespace

bool is_full_text(const SearchParameter& p) noexcept {
  return p.code == "_text" || p.code == "_content";
}

void append_xhtml_text(std::string_view x, std::string& out) {
  std::size_t i = 0;
  while (i < x.size()) {
    char ch = x[i];
    if (ch == '<') {
      if (x.compare(i, 4, "<!--") == 0) {
        auto end = x.find("-->", i + 4);
        i = end == std::string_view::npos ? x.size() : end + 3;
      } else {
        // A tag: skip to its '>', past any quoted attribute value.
        char quote = 0;
        ++i;
        while (i < x.size() && (quote != 0 || x[i] != '>')) {
          if (quote != 0 && x[i] == quote)
            quote = 0;
          else if (quote == 0 && (x[i] == '"' || x[i] == '\''))
            quote = x[i];
          ++i;
        }
        ++i;
      }
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else if (ch == '&') {
      auto semi = x.find(';', i + 1);
      if (semi != std::string_view::npos && semi - i <= 10 && append_entity(x.substr(i + 1, semi - i - 1), out)) {
        i = semi + 1;
      } else {
        out.push_back('&');
        ++i;
      }
    } else {
      out.push_back(ch);
      ++i;
    }
  }
}

void extract_full_text(const json::Value& resource, const Definitions& definitions, std::string& narrative,
                       std::string& content) {
  if (resource.is_object()) TextWalker(definitions, content).resource(resource, &narrative);
}

fhir::Result<std::string> fts5_match_expression(std::string_view value) {
  auto tokens = lex(value);
  if (!tokens) return std::unexpected(tokens.error());
  if (tokens->empty()) return std::unexpected(invalid("the value has no term to search for"));
  QueryParser p{*tokens};
  auto expr = p.or_expr();
  if (!expr) return expr;
  if (p.pos < tokens->size()) {
    if (tokens->at(p.pos).kind == Token::Kind::kClose) return std::unexpected(invalid("a ')' has no '('"));
    return std::unexpected(invalid("unexpected input after the query"));
  }
  return expr;
}

}  // namespace caduceus::resources
