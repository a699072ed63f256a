// Lexer and recursive-descent (precedence climbing) parser for FHIRPath N1.

#include <cctype>
#include <charconv>
#include <string>
#include <string_view>

#include "ast.hpp"

namespace caduceus::resources::fhirpath {

namespace {

constexpr int kMaxDepth = 100;   // nesting of parentheses, function arguments and operators while parsing
constexpr int kMaxHeight = 300;  // height of the tree (long paths and operator chains included)

enum class Tok : std::uint8_t {
  kEnd,
  kIdentifier,
  kDelimited,
  kString,
  kNumber,
  kDate,
  kDateTime,
  kTime,
  kExternal,
  kDollar,
  kPunct,
};

struct Token {
  Tok kind = Tok::kEnd;
  std::size_t pos = 0;
  std::string text;  // identifier name, unescaped string, number, date text, punctuation
};

struct FunctionInfo {
  std::string_view name;
  Fn fn;
  int min_args;
  int max_args;
};

constexpr FunctionInfo kFunctions[] = {
    {"empty", Fn::kEmpty, 0, 0},
    {"exists", Fn::kExists, 0, 1},
    {"all", Fn::kAll, 1, 1},
    {"allTrue", Fn::kAllTrue, 0, 0},
    {"anyTrue", Fn::kAnyTrue, 0, 0},
    {"allFalse", Fn::kAllFalse, 0, 0},
    {"anyFalse", Fn::kAnyFalse, 0, 0},
    {"subsetOf", Fn::kSubsetOf, 1, 1},
    {"supersetOf", Fn::kSupersetOf, 1, 1},
    {"count", Fn::kCount, 0, 0},
    {"distinct", Fn::kDistinct, 0, 0},
    {"isDistinct", Fn::kIsDistinct, 0, 0},
    {"where", Fn::kWhere, 1, 1},
    {"select", Fn::kSelect, 1, 1},
    {"repeat", Fn::kRepeat, 1, 1},
    {"ofType", Fn::kOfType, 1, 1},
    {"first", Fn::kFirst, 0, 0},
    {"last", Fn::kLast, 0, 0},
    {"tail", Fn::kTail, 0, 0},
    {"skip", Fn::kSkip, 1, 1},
    {"take", Fn::kTake, 1, 1},
    {"single", Fn::kSingle, 0, 0},
    {"intersect", Fn::kIntersect, 1, 1},
    {"exclude", Fn::kExclude, 1, 1},
    {"union", Fn::kUnion, 1, 1},
    {"combine", Fn::kCombine, 1, 1},
    {"iif", Fn::kIif, 2, 3},
    {"toBoolean", Fn::kToBoolean, 0, 0},
    {"convertsToBoolean", Fn::kConvertsToBoolean, 0, 0},
    {"toInteger", Fn::kToInteger, 0, 0},
    {"convertsToInteger", Fn::kConvertsToInteger, 0, 0},
    {"toDecimal", Fn::kToDecimal, 0, 0},
    {"convertsToDecimal", Fn::kConvertsToDecimal, 0, 0},
    {"toString", Fn::kToString, 0, 0},
    {"convertsToString", Fn::kConvertsToString, 0, 0},
    {"toDate", Fn::kToDate, 0, 0},
    {"convertsToDate", Fn::kConvertsToDate, 0, 0},
    {"toDateTime", Fn::kToDateTime, 0, 0},
    {"convertsToDateTime", Fn::kConvertsToDateTime, 0, 0},
    {"toTime", Fn::kToTime, 0, 0},
    {"convertsToTime", Fn::kConvertsToTime, 0, 0},
    {"toQuantity", Fn::kToQuantity, 0, 1},
    {"convertsToQuantity", Fn::kConvertsToQuantity, 0, 1},
    {"indexOf", Fn::kIndexOf, 1, 1},
    {"substring", Fn::kSubstring, 1, 2},
    {"startsWith", Fn::kStartsWith, 1, 1},
    {"endsWith", Fn::kEndsWith, 1, 1},
    {"contains", Fn::kContains, 1, 1},
    {"upper", Fn::kUpper, 0, 0},
    {"lower", Fn::kLower, 0, 0},
    {"replace", Fn::kReplace, 2, 2},
    {"matches", Fn::kMatches, 1, 1},
    {"replaceMatches", Fn::kReplaceMatches, 2, 2},
    {"length", Fn::kLength, 0, 0},
    {"toChars", Fn::kToChars, 0, 0},
    {"trim", Fn::kTrim, 0, 0},
    {"split", Fn::kSplit, 1, 1},
    {"join", Fn::kJoin, 0, 1},
    {"abs", Fn::kAbs, 0, 0},
    {"ceiling", Fn::kCeiling, 0, 0},
    {"exp", Fn::kExp, 0, 0},
    {"floor", Fn::kFloor, 0, 0},
    {"ln", Fn::kLn, 0, 0},
    {"log", Fn::kLog, 1, 1},
    {"power", Fn::kPower, 1, 1},
    {"round", Fn::kRound, 0, 1},
    {"sqrt", Fn::kSqrt, 0, 0},
    {"truncate", Fn::kTruncate, 0, 0},
    {"children", Fn::kChildren, 0, 0},
    {"descendants", Fn::kDescendants, 0, 0},
    {"trace", Fn::kTrace, 1, 2},
    {"now", Fn::kNow, 0, 0},
    {"today", Fn::kToday, 0, 0},
    {"timeOfDay", Fn::kTimeOfDay, 0, 0},
    {"not", Fn::kNot, 0, 0},
    {"is", Fn::kIs, 1, 1},
    {"as", Fn::kAs, 1, 1},
    {"extension", Fn::kExtension, 1, 1},
    {"hasExtension", Fn::kHasExtension, 1, 1},
    {"resolve", Fn::kResolve, 0, 0},
    {"hasValue", Fn::kHasValue, 0, 0},
    {"getValue", Fn::kGetValue, 0, 0},
    {"memberOf", Fn::kMemberOf, 1, 1},
    {"conformsTo", Fn::kConformsTo, 1, 1},
    {"htmlChecks", Fn::kHtmlChecks, 0, 0},
    {"aggregate", Fn::kAggregate, 1, 2},
};

const FunctionInfo* find_function(std::string_view name) {
  for (const FunctionInfo& f : kFunctions) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

bool is_ident_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  explicit Parser(std::string_view src) : src_(src) {}

  fhir::Result<std::unique_ptr<Node>> parse() {
    if (auto t = advance(); !t) return std::unexpected(t.error());
    auto e = expression(0);
    if (!e) return e;
    if (tok_.kind != Tok::kEnd) return error(tok_.pos, "an operator or the end of the expression");
    return e;
  }

 private:
  std::unexpected<fhir::Error> error(std::size_t pos, std::string_view expected) const {
    std::string found = "the end";
    if (tok_.kind != Tok::kEnd) {
      found.assign(1, '\'');
      found.append(current_text());
      found.push_back('\'');
    }
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                      "FHIRPath syntax error at offset " + std::to_string(pos) + ": expected " + std::string(expected) +
                          ", found " + found,
                      std::string(src_));
  }
  std::unexpected<fhir::Error> error_msg(std::size_t pos, std::string_view message) const {
    return fhir::fail(fhir::ErrorKind::kInvalid, "invalid",
                      "FHIRPath error at offset " + std::to_string(pos) + ": " + std::string(message),
                      std::string(src_));
  }
  std::string_view current_text() const {
    return src_.substr(tok_.pos, std::max<std::size_t>(1, std::min<std::size_t>(end_ - tok_.pos, 40)));
  }

  bool punct(std::string_view p) const { return tok_.kind == Tok::kPunct && tok_.text == p; }
  // A bare keyword (not a delimited identifier).
  bool keyword(std::string_view k) const { return tok_.kind == Tok::kIdentifier && tok_.text == k; }

  // Reads the next token into tok_.
  fhir::Result<void> advance() {
    std::size_t i = end_;
    for (;;) {
      while (i < src_.size() && std::isspace(static_cast<unsigned char>(src_[i]))) ++i;
      if (src_.compare(i, 2, "//") == 0) {
        while (i < src_.size() && src_[i] != '\n') ++i;
      } else if (src_.compare(i, 2, "/*") == 0) {
        const auto close = src_.find("*/", i + 2);
        if (close == std::string_view::npos) return error_msg(i, "unterminated comment");
        i = close + 2;
      } else {
        break;
      }
    }
    tok_ = Token{};
    tok_.pos = i;
    if (i >= src_.size()) {
      tok_.kind = Tok::kEnd;
      end_ = i;
      return {};
    }
    const char c = src_[i];
    if (is_ident_start(c)) {
      std::size_t j = i;
      while (j < src_.size() && is_ident_char(src_[j])) ++j;
      tok_.kind = Tok::kIdentifier;
      tok_.text = std::string(src_.substr(i, j - i));
      end_ = j;
      return {};
    }
    if (is_digit(c)) {
      std::size_t j = i;
      while (j < src_.size() && is_digit(src_[j])) ++j;
      if (j + 1 < src_.size() && src_[j] == '.' && is_digit(src_[j + 1])) {
        ++j;
        while (j < src_.size() && is_digit(src_[j])) ++j;
      }
      tok_.kind = Tok::kNumber;
      tok_.text = std::string(src_.substr(i, j - i));
      end_ = j;
      return {};
    }
    if (c == '\'' || c == '`') {
      auto s = quoted(i, c);
      if (!s) return std::unexpected(s.error());
      tok_.kind = c == '\'' ? Tok::kString : Tok::kDelimited;
      tok_.text = std::move(*s);
      return {};
    }
    if (c == '@') return date_time(i);
    if (c == '%') {
      std::size_t j = i + 1;
      if (j < src_.size() && (src_[j] == '\'' || src_[j] == '`')) {
        auto s = quoted(j, src_[j]);
        if (!s) return std::unexpected(s.error());
        tok_.text = std::move(*s);
      } else {
        std::size_t k = j;
        if (k < src_.size() && is_ident_start(src_[k])) {
          while (k < src_.size() && (is_ident_char(src_[k]) || src_[k] == '-')) ++k;
        }
        if (k == j) return error_msg(i, "expected a name after '%'");
        tok_.text = std::string(src_.substr(j, k - j));
        end_ = k;
      }
      tok_.kind = Tok::kExternal;
      return {};
    }
    if (c == '$') {
      std::size_t j = i + 1;
      while (j < src_.size() && is_ident_char(src_[j])) ++j;
      tok_.kind = Tok::kDollar;
      tok_.text = std::string(src_.substr(i + 1, j - i - 1));
      end_ = j;
      if (tok_.text != "this" && tok_.text != "index" && tok_.text != "total") {
        return error_msg(i, "expected $this, $index or $total");
      }
      return {};
    }
    static constexpr std::string_view kTwo[] = {"<=", ">=", "!=", "!~"};
    for (std::string_view p : kTwo) {
      if (src_.compare(i, 2, p) == 0) {
        tok_.kind = Tok::kPunct;
        tok_.text = std::string(p);
        end_ = i + 2;
        return {};
      }
    }
    static constexpr std::string_view kOne = ".[](){},+-*/&|<>=~";
    if (kOne.find(c) != std::string_view::npos) {
      tok_.kind = Tok::kPunct;
      tok_.text = std::string(1, c);
      end_ = i + 1;
      return {};
    }
    return error_msg(i, "unexpected character '" + std::string(1, c) + "'");
  }

  // A '...' or `...` starting at i; sets end_.
  fhir::Result<std::string> quoted(std::size_t i, char q) {
    std::string out;
    std::size_t j = i + 1;
    while (j < src_.size() && src_[j] != q) {
      if (src_[j] != '\\') {
        out += src_[j++];
        continue;
      }
      if (j + 1 >= src_.size()) break;
      const char e = src_[j + 1];
      j += 2;
      switch (e) {
        case '\'':
        case '"':
        case '`':
        case '\\':
        case '/': out += e; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = 0;
          if (j + 4 > src_.size() ||
              std::from_chars(src_.data() + j, src_.data() + j + 4, cp, 16).ptr != src_.data() + j + 4) {
            return error_msg(j - 2, "invalid \\u escape");
          }
          append_utf8(out, cp);
          j += 4;
          break;
        }
        default: return error_msg(j - 2, "invalid escape '\\" + std::string(1, e) + "'");
      }
    }
    if (j >= src_.size()) return error_msg(i, "unterminated string or identifier");
    end_ = j + 1;
    return out;
  }

  static std::size_t digits(std::string_view s, std::size_t i, std::size_t n) {
    std::size_t k = 0;
    while (k < n && i + k < s.size() && is_digit(s[i + k])) ++k;
    return k;
  }

  // Time part "HH(:mm(:ss(.fff)?)?)?" at i; returns the end, or npos.
  std::size_t time_part(std::size_t i) const {
    if (digits(src_, i, 2) != 2) return std::string_view::npos;
    i += 2;
    if (i < src_.size() && src_[i] == ':' && digits(src_, i + 1, 2) == 2) {
      i += 3;
      if (i < src_.size() && src_[i] == ':' && digits(src_, i + 1, 2) == 2) {
        i += 3;
        if (i + 1 < src_.size() && src_[i] == '.' && is_digit(src_[i + 1])) {
          ++i;
          while (i < src_.size() && is_digit(src_[i])) ++i;
        }
      }
    }
    return i;
  }

  fhir::Result<void> date_time(std::size_t at) {
    std::size_t i = at + 1;
    if (i < src_.size() && src_[i] == 'T') {
      const std::size_t e = time_part(i + 1);
      if (e == std::string_view::npos) return error_msg(at, "invalid time literal");
      tok_.kind = Tok::kTime;
      tok_.text = std::string(src_.substr(i + 1, e - i - 1));
      end_ = e;
      return {};
    }
    if (digits(src_, i, 4) != 4) return error_msg(at, "invalid date literal");
    i += 4;
    if (i < src_.size() && src_[i] == '-' && digits(src_, i + 1, 2) == 2) {
      i += 3;
      if (i < src_.size() && src_[i] == '-' && digits(src_, i + 1, 2) == 2) i += 3;
    }
    tok_.kind = Tok::kDate;
    if (i < src_.size() && src_[i] == 'T') {
      tok_.kind = Tok::kDateTime;
      ++i;
      if (const std::size_t e = time_part(i); e != std::string_view::npos) {
        i = e;
        if (i < src_.size() && src_[i] == 'Z') {
          ++i;
        } else if (i < src_.size() && (src_[i] == '+' || src_[i] == '-') && digits(src_, i + 1, 2) == 2 &&
                   i + 3 < src_.size() && src_[i + 3] == ':' && digits(src_, i + 4, 2) == 2) {
          i += 6;
        }
      }
    }
    tok_.text = std::string(src_.substr(at + 1, i - at - 1));
    if (tok_.kind == Tok::kDateTime && tok_.text.back() == 'T') tok_.text.pop_back();
    end_ = i;
    return {};
  }

  static int precedence(const Token& t, BinOp& op) {
    if (t.kind == Tok::kPunct) {
      const std::string& p = t.text;
      if (p == "*") return op = BinOp::kMul, 10;
      if (p == "/") return op = BinOp::kDiv, 10;
      if (p == "+") return op = BinOp::kAdd, 9;
      if (p == "-") return op = BinOp::kSub, 9;
      if (p == "&") return op = BinOp::kConcat, 9;
      if (p == "|") return op = BinOp::kUnion, 7;
      if (p == "<") return op = BinOp::kLt, 6;
      if (p == ">") return op = BinOp::kGt, 6;
      if (p == "<=") return op = BinOp::kLe, 6;
      if (p == ">=") return op = BinOp::kGe, 6;
      if (p == "=") return op = BinOp::kEq, 5;
      if (p == "~") return op = BinOp::kEquiv, 5;
      if (p == "!=") return op = BinOp::kNe, 5;
      if (p == "!~") return op = BinOp::kNotEquiv, 5;
      return -1;
    }
    if (t.kind != Tok::kIdentifier) return -1;
    const std::string& k = t.text;
    if (k == "div") return op = BinOp::kIntDiv, 10;
    if (k == "mod") return op = BinOp::kMod, 10;
    if (k == "is" || k == "as") return 8;
    if (k == "in") return op = BinOp::kIn, 4;
    if (k == "contains") return op = BinOp::kContains, 4;
    if (k == "and") return op = BinOp::kAnd, 3;
    if (k == "or") return op = BinOp::kOr, 2;
    if (k == "xor") return op = BinOp::kXor, 2;
    if (k == "implies") return op = BinOp::kImplies, 1;
    return -1;
  }

  // Precedence climbing: operators binding tighter than min_prec.
  fhir::Result<std::unique_ptr<Node>> expression(int min_prec) {
    if (++depth_ > kMaxDepth) return error_msg(tok_.pos, "expression nested too deeply");
    auto lhs = unary();
    if (!lhs) return lhs;
    for (;;) {
      BinOp op{};
      const int prec = precedence(tok_, op);
      if (prec < 0 || prec <= min_prec) break;
      const std::size_t pos = tok_.pos;
      const bool is_type_op = tok_.kind == Tok::kIdentifier && (tok_.text == "is" || tok_.text == "as");
      const bool is_is = is_type_op && tok_.text == "is";
      if (auto t = advance(); !t) return std::unexpected(t.error());
      auto node = std::make_unique<Node>();
      node->pos = pos;
      node->children.push_back(std::move(*lhs));
      if (is_type_op) {
        node->op = is_is ? Op::kIs : Op::kAs;
        auto spec = type_specifier();
        if (!spec) return std::unexpected(spec.error());
        node->type = std::move(*spec);
      } else {
        node->op = Op::kBinary;
        node->bin = op;
        auto rhs = expression(prec);
        if (!rhs) return rhs;
        node->children.push_back(std::move(*rhs));
      }
      if (auto g = grown(*node); !g) return std::unexpected(g.error());
      lhs = std::move(node);
    }
    --depth_;
    return lhs;
  }

  // Records the height of a node whose children are set; an error when the tree grows too high.
  fhir::Result<void> grown(Node& node) const {
    int h = 0;
    for (const auto& c : node.children) {
      if (c) h = std::max(h, c->height);
    }
    node.height = h + 1;
    if (node.height > kMaxHeight) return error_msg(node.pos, "expression nested too deeply");
    return {};
  }

  bool identifier_token() const { return tok_.kind == Tok::kIdentifier || tok_.kind == Tok::kDelimited; }

  fhir::Result<TypeSpec> type_specifier() {
    if (!identifier_token()) return error(tok_.pos, "a type name");
    TypeSpec spec;
    spec.name = tok_.text;
    if (auto t = advance(); !t) return std::unexpected(t.error());
    if (punct(".")) {
      if (auto t = advance(); !t) return std::unexpected(t.error());
      if (!identifier_token()) return error(tok_.pos, "a type name after '.'");
      spec.ns = std::move(spec.name);
      spec.name = tok_.text;
      if (auto t = advance(); !t) return std::unexpected(t.error());
    }
    return spec;
  }

  fhir::Result<std::unique_ptr<Node>> unary() {
    if (punct("+") || punct("-")) {
      const bool minus = tok_.text == "-";
      const std::size_t pos = tok_.pos;
      if (auto t = advance(); !t) return std::unexpected(t.error());
      if (++depth_ > kMaxDepth) return error_msg(pos, "expression nested too deeply");
      auto operand = unary();
      --depth_;
      if (!operand) return operand;
      if (!minus) return operand;
      auto node = std::make_unique<Node>();
      node->op = Op::kUnary;
      node->pos = pos;
      node->children.push_back(std::move(*operand));
      if (auto g = grown(*node); !g) return std::unexpected(g.error());
      return node;
    }
    return postfix();
  }

  fhir::Result<std::unique_ptr<Node>> postfix() {
    auto base = term();
    if (!base) return base;
    for (;;) {
      if (punct(".")) {
        if (auto t = advance(); !t) return std::unexpected(t.error());
        if (!identifier_token()) return error(tok_.pos, "a name or function after '.'");
        auto next = invocation(std::move(*base), /*term=*/false);
        if (!next) return next;
        base = std::move(next);
      } else if (punct("[")) {
        const std::size_t pos = tok_.pos;
        if (auto t = advance(); !t) return std::unexpected(t.error());
        auto index = expression(0);
        if (!index) return index;
        if (!punct("]")) return error(tok_.pos, "']'");
        if (auto t = advance(); !t) return std::unexpected(t.error());
        auto node = std::make_unique<Node>();
        node->op = Op::kIndexer;
        node->pos = pos;
        node->children.push_back(std::move(*base));
        node->children.push_back(std::move(*index));
        if (auto g = grown(*node); !g) return std::unexpected(g.error());
        base = std::move(node);
      } else {
        return base;
      }
    }
  }

  // An identifier or function call (tok_ is the identifier), applied to `focus` (nullptr: the input).
  fhir::Result<std::unique_ptr<Node>> invocation(std::unique_ptr<Node> focus, bool term) {
    const std::size_t pos = tok_.pos;
    const bool delimited = tok_.kind == Tok::kDelimited;
    std::string name = tok_.text;
    if (auto t = advance(); !t) return std::unexpected(t.error());
    auto node = std::make_unique<Node>();
    node->pos = pos;
    if (!delimited && punct("(")) {
      const FunctionInfo* info = find_function(name);
      if (info == nullptr) return error_msg(pos, "unknown function '" + name + "'");
      node->op = Op::kFunction;
      node->fn = info->fn;
      node->name = std::move(name);
      node->children.push_back(std::move(focus));
      if (auto t = advance(); !t) return std::unexpected(t.error());
      if (!punct(")")) {
        for (;;) {
          auto arg = expression(0);
          if (!arg) return arg;
          node->children.push_back(std::move(*arg));
          if (punct(",")) {
            if (auto t = advance(); !t) return std::unexpected(t.error());
            continue;
          }
          break;
        }
        if (!punct(")")) return error(tok_.pos, "',' or ')'");
      }
      if (auto t = advance(); !t) return std::unexpected(t.error());
      const int n = static_cast<int>(node->children.size()) - 1;
      if (n < info->min_args || n > info->max_args) {
        return error_msg(pos, "function '" + node->name + "' takes " + std::to_string(info->min_args) +
                                  (info->max_args != info->min_args ? " to " + std::to_string(info->max_args) : "") +
                                  " argument(s), given " + std::to_string(n));
      }
      if (node->fn == Fn::kIs || node->fn == Fn::kAs || node->fn == Fn::kOfType) {
        auto spec = type_from_node(*node->children[1]);
        if (!spec) return error_msg(node->children[1]->pos, "expected a type name as argument of " + node->name);
        node->type = std::move(*spec);
      }
      if (auto g = grown(*node); !g) return std::unexpected(g.error());
      return node;
    }
    node->name = std::move(name);
    if (term) {
      node->op = Op::kIdentifier;
      node->upper = !node->name.empty() && std::isupper(static_cast<unsigned char>(node->name[0]));
    } else {
      node->op = Op::kMember;
      node->children.push_back(std::move(focus));
      if (auto g = grown(*node); !g) return std::unexpected(g.error());
    }
    return node;
  }

  static std::optional<TypeSpec> type_from_node(const Node& n) {
    if (n.op == Op::kIdentifier) return TypeSpec{"", n.name};
    if (n.op == Op::kMember && n.children[0] && n.children[0]->op == Op::kIdentifier) {
      return TypeSpec{n.children[0]->name, n.name};
    }
    return std::nullopt;
  }

  fhir::Result<std::unique_ptr<Node>> term() {
    auto node = std::make_unique<Node>();
    node->pos = tok_.pos;
    switch (tok_.kind) {
      case Tok::kEnd: return error(tok_.pos, "an expression");
      case Tok::kString: node->literal = Item::of_text(Item::Kind::kString, tok_.text); break;
      case Tok::kNumber: {
        const std::string number = tok_.text;
        if (auto t = advance(); !t) return std::unexpected(t.error());
        // A quantity: a number followed by a unit string or a calendar duration keyword.
        static constexpr std::string_view kUnits[] = {
            "year", "years", "month",  "months",  "week",   "weeks",   "day",         "days",
            "hour", "hours", "minute", "minutes", "second", "seconds", "millisecond", "milliseconds"};
        bool unit = false;
        if (tok_.kind == Tok::kString) unit = true;
        if (tok_.kind == Tok::kIdentifier) {
          for (std::string_view u : kUnits) unit = unit || tok_.text == u;
        }
        if (unit) {
          node->literal = Item::of_text(Item::Kind::kQuantity, number, tok_.text);
          if (auto t = advance(); !t) return std::unexpected(t.error());
        } else if (number.find('.') != std::string::npos) {
          node->literal = Item::of_text(Item::Kind::kDecimal, number);
        } else {
          std::int64_t v = 0;
          const auto r = std::from_chars(number.data(), number.data() + number.size(), v);
          if (r.ec != std::errc()) return error_msg(node->pos, "integer literal out of range");
          node->literal = Item::of_integer(v);
        }
        return node;
      }
      case Tok::kDate: node->literal = Item::of_text(Item::Kind::kDate, tok_.text); break;
      case Tok::kDateTime: node->literal = Item::of_text(Item::Kind::kDateTime, tok_.text); break;
      case Tok::kTime: node->literal = Item::of_text(Item::Kind::kTime, tok_.text); break;
      case Tok::kExternal:
        node->op = Op::kExternal;
        node->name = tok_.text;
        break;
      case Tok::kDollar:
        node->op = tok_.text == "this" ? Op::kThis : tok_.text == "index" ? Op::kIndex : Op::kTotal;
        break;
      case Tok::kIdentifier:
        if (tok_.text == "true" || tok_.text == "false") {
          node->literal = Item::of_bool(tok_.text == "true");
          break;
        }
        return invocation(nullptr, /*term=*/true);
      case Tok::kDelimited: return invocation(nullptr, /*term=*/true);
      case Tok::kPunct:
        if (punct("(")) {
          if (auto t = advance(); !t) return std::unexpected(t.error());
          auto inner = expression(0);
          if (!inner) return inner;
          if (!punct(")")) return error(tok_.pos, "')'");
          if (auto t = advance(); !t) return std::unexpected(t.error());
          return inner;
        }
        if (punct("{")) {
          if (auto t = advance(); !t) return std::unexpected(t.error());
          if (!punct("}")) return error(tok_.pos, "'}'");
          node->op = Op::kEmpty;
          break;
        }
        return error(tok_.pos, "an expression");
    }
    if (auto t = advance(); !t) return std::unexpected(t.error());
    return node;
  }

  std::string_view src_;
  std::size_t end_ = 0;  // where the next token starts being looked for
  Token tok_;
  int depth_ = 0;
};

}  // namespace

fhir::Result<FhirPath> FhirPath::compile(std::string_view expression) {
  try {
    Parser parser(expression);
    auto root = parser.parse();
    if (!root) return std::unexpected(root.error());
    return FhirPath(std::string(expression), std::shared_ptr<const Node>(std::move(*root)));
  } catch (const std::exception& e) {
    return fhir::fail(fhir::ErrorKind::kInternal, "exception", std::string("FHIRPath compile: ") + e.what(),
                      std::string(expression));
  }
}

}  // namespace caduceus::resources::fhirpath
