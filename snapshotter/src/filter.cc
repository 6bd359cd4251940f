// containerd's filter syntax, written from the behaviour of containerd 1.6's
// filters package (scanner.go, parser.go, quote.go, filter.go). The token
// rules are kept exactly, quirks included, because containerd (and its
// snapshotter conformance suite) sends these strings verbatim:
//  - a value starts right after an operator (spaces skipped) and runs to
//    "," or whitespace; it cannot begin with a quote (" / |), "," "." or an
//    operator character, which start other tokens;
//  - whitespace is skipped before a token, but trailing whitespace after a
//    selector (or before ",") is an error;
//  - fields are runs of [A-Za-z0-9_] or "..." (never /.../ or |...|).

// GCC 12 with -O2 and the sanitizers warns inside libstdc++'s <regex> (a
// std::function in _State "may be used uninitialized", GCC bug 105562). The
// warning is located in <functional>, which filter.h includes, so it has to
// be off before that.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "ocix/snapshotter/filter.h"

#include <cstdint>
#include <regex>
#include <string_view>
#include <utility>

#include "ocix/core/utf8.h"

namespace ocix::snapshotter {

enum class Op { kPresent, kEqual, kNotEqual, kMatches };

struct Filter::Selector {
  std::vector<std::string> fieldpath;
  Op op = Op::kPresent;
  std::string value;
  std::optional<std::regex> re;  // kMatches: nullopt when the pattern did not compile

  bool Match(const Adaptor& adaptor) const;
};

namespace {

// Runes are code points; the scanner's two pseudo-runes are negative.
constexpr int32_t kEofRune = -1;
constexpr int32_t kIllegalRune = -2;
constexpr int32_t kRuneError = 0xFFFD;

// libstdc++'s std::regex compiles and matches recursively, so its stack use
// grows with the pattern (and with NFA size); RE2 has no such problem. These
// bound it well inside a thread's stack; RE2 itself refuses repeat counts
// above 1000.
constexpr size_t kMaxRegexBytes = 1024;
constexpr uint64_t kMaxRegexCost = 4000;
constexpr uint64_t kMaxRepeat = 1000;

// Go's utf8.DecodeRuneInString: {rune, width}; any malformed, overlong,
// surrogate or truncated sequence is {U+FFFD, 1}.
std::pair<int32_t, size_t> DecodeRune(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char b0 = b(0);
  if (b0 < 0x80) return {b0, 1};
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  int32_t r;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2, r = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3, r = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4, r = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {kRuneError, 1};
  }
  if (s.size() - i < n) return {kRuneError, 1};
  if (b(1) < lo || b(1) > hi) return {kRuneError, 1};
  r = (r << 6) | (b(1) & 0x3F);
  for (size_t k = 2; k < n; ++k) {
    if (b(k) < 0x80 || b(k) > 0xBF) return {kRuneError, 1};
    r = (r << 6) | (b(k) & 0x3F);
  }
  return {r, n};
}

// Go's utf8.EncodeRune: surrogates (and anything invalid) become U+FFFD.
void AppendRune(std::string& out, uint32_t r) {
  if ((r >= 0xD800 && r <= 0xDFFF) || r > 0x10FFFF) r = kRuneError;
  if (r < 0x80) {
    out += static_cast<char>(r);
  } else if (r < 0x800) {
    out += static_cast<char>(0xC0 | (r >> 6));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else if (r < 0x10000) {
    out += static_cast<char>(0xE0 | (r >> 12));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (r >> 18));
    out += static_cast<char>(0x80 | ((r >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  }
}

// Go's unicode.IsSpace (the White_Space property).
bool IsSpace(int32_t r) {
  switch (r) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000: return true;
    default: return r >= 0x2000 && r <= 0x200A;
  }
}

// Go's isValueRune asks for a letter, mark, number, punctuation or symbol
// (unicode.IsGraphic less spaces). Without Unicode tables this excludes
// what can occur in practice: controls, format characters, private use and
// noncharacters. An unassigned code point counts as graphic here, not in Go.
bool IsGraphic(int32_t r) {
  if (r < 0x20 || (r >= 0x7F && r <= 0x9F)) return false;  // Cc
  if (IsSpace(r)) return false;
  switch (r) {  // Cf
    case 0xAD:
    case 0x61C:
    case 0x6DD:
    case 0x70F:
    case 0x8E2:
    case 0x180E:
    case 0xFEFF:
    case 0x110BD:
    case 0x110CD:
    case 0xE0001: return false;
    default: break;
  }
  if ((r >= 0x600 && r <= 0x605) || (r >= 0x890 && r <= 0x891) || (r >= 0x200B && r <= 0x200F) ||
      (r >= 0x202A && r <= 0x202E) || (r >= 0x2060 && r <= 0x2064) || (r >= 0x2066 && r <= 0x206F) ||
      (r >= 0xFFF9 && r <= 0xFFFB) || (r >= 0x13430 && r <= 0x1343F) || (r >= 0x1BCA0 && r <= 0x1BCA3) ||
      (r >= 0x1D173 && r <= 0x1D17A) || (r >= 0xE0020 && r <= 0xE007F))
    return false;
  if ((r >= 0xE000 && r <= 0xF8FF) || r >= 0xF0000) return false;            // Co (planes 15, 16)
  if ((r >= 0xFDD0 && r <= 0xFDEF) || (r & 0xFFFE) == 0xFFFE) return false;  // noncharacters
  return true;
}

bool IsFieldRune(int32_t r) {
  return r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9');
}
bool IsOperatorRune(int32_t r) { return r == '=' || r == '!' || r == '~'; }
bool IsQuoteRune(int32_t r) { return r == '/' || r == '|' || r == '"'; }
bool IsSeparatorRune(int32_t r) { return r == ',' || r == '.'; }
bool IsValueRune(int32_t r) { return r >= 0 && r != ',' && IsGraphic(r); }

int DigitVal(int32_t r) {
  if (r >= '0' && r <= '9') return r - '0';
  if (r >= 'a' && r <= 'f') return r - 'a' + 10;
  if (r >= 'A' && r <= 'F') return r - 'A' + 10;
  return 16;  // larger than any digit of any base used
}

enum class Tok { kEof, kIllegal, kQuoted, kValue, kField, kSeparator, kOperator, kOther };

struct Token {
  Tok kind;
  size_t pos;             // byte offset of the token's first rune
  std::string_view text;  // quoted tokens keep their quotes
};

class Scanner {
 public:
  explicit Scanner(std::string_view in) : in_(in) {}

  // The first scanning error, for Tok::kIllegal.
  const std::string& error() const { return err_; }
  // Where the next rune starts.
  size_t offset() const { return next_; }

  int32_t Peek() {
    size_t pos = pos_, next = next_;
    int32_t r = Next();
    pos_ = pos, next_ = next;
    return r;
  }

  Token Scan() {
    int32_t ch = Next();
    while (ch >= 0 && IsSpace(ch)) ch = Next();
    size_t pos = pos_;
    if (ch == kEofRune) return {Tok::kEof, pos, {}};
    if (ch == kIllegalRune) return {Tok::kIllegal, pos, in_.substr(pos, next_ - pos)};
    if (IsQuoteRune(ch)) {
      bool ok = ScanQuoted(ch);
      return {ok ? Tok::kQuoted : Tok::kIllegal, pos, in_.substr(pos, next_ - pos)};
    }
    if (IsSeparatorRune(ch)) {
      value_next_ = false;
      return {Tok::kSeparator, pos, in_.substr(pos, next_ - pos)};
    }
    if (IsOperatorRune(ch)) {
      while (IsOperatorRune(Peek())) Next();
      value_next_ = true;
      return {Tok::kOperator, pos, in_.substr(pos, next_ - pos)};
    }
    if (value_next_) {
      // The first rune of a value may be anything the cases above left.
      while (IsValueRune(Peek())) Next();
      value_next_ = false;
      return {Tok::kValue, pos, in_.substr(pos, next_ - pos)};
    }
    if (IsFieldRune(ch)) {
      while (IsFieldRune(Peek())) Next();
      return {Tok::kField, pos, in_.substr(pos, next_ - pos)};
    }
    return {Tok::kOther, pos, {}};
  }

 private:
  int32_t Next() {
    if (next_ >= in_.size()) {
      pos_ = in_.size();
      return kEofRune;
    }
    pos_ = next_;
    auto [r, width] = DecodeRune(in_, next_);
    next_ += width;
    // Go cannot tell a literal U+FFFD from a decoding error: both are illegal.
    if (r == kRuneError) return Error("rune error");
    if (r == 0) return Error("unexpected null");
    return r;
  }

  int32_t Error(const char* msg) {
    if (err_.empty()) err_ = msg;
    return kIllegalRune;
  }

  // After the opening quote; true if the literal closes and every escape
  // is well formed (the scan goes on past a bad escape, as Go's does).
  bool ScanQuoted(int32_t quote) {
    bool legal = true;
    int32_t ch = Next();
    while (ch != quote) {
      if (ch == '\n' || ch < 0) {
        Error("quoted literal not terminated");
        return false;
      }
      if (ch == '\\') {
        if (!ScanEscape(quote, ch)) legal = false;
      } else {
        ch = Next();
      }
    }
    return legal;
  }

  // After a backslash; leaves in ch the first rune after the escape.
  bool ScanEscape(int32_t quote, int32_t& ch) {
    ch = Next();
    switch (ch) {
      case 'a':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
      case 'v':
      case '\\': ch = Next(); return true;
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7': return ScanDigits(8, 3, ch);
      case 'x': ch = Next(); return ScanDigits(16, 2, ch);
      case 'u': ch = Next(); return ScanDigits(16, 4, ch);
      case 'U': ch = Next(); return ScanDigits(16, 8, ch);
      default:
        if (ch == quote) {
          ch = Next();
          return true;
        }
        Error("illegal escape sequence");
        return false;
    }
  }

  bool ScanDigits(int base, int n, int32_t& ch) {
    for (; n > 0 && DigitVal(ch) < base; --n) ch = Next();
    if (n > 0) {
      Error("illegal numeric escape sequence");
      return false;
    }
    return true;
  }

  std::string_view in_;
  size_t pos_ = 0;   // start of the rune Next returned last
  size_t next_ = 0;  // start of the rune after it
  bool value_next_ = false;
  std::string err_;
};

// Go's strconv-style unquote as containerd's quote.go does it, for a token
// that still has its quotes (" / or |, all treated like Go's "). nullopt on
// any malformed escape. One deliberate difference: \U above U+10FFFF is an
// error here; containerd's int32 arithmetic lets \U80000000 and above
// through as a single byte.
std::optional<std::string> Unquote(std::string_view token) {
  if (token.size() < 2 || token.front() != token.back()) return std::nullopt;
  const char quote = token.front();
  std::string_view s = token.substr(1, token.size() - 2);
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    char c = s[0];
    if (c == quote || c == '\n') return std::nullopt;
    if (c != '\\') {
      out += c;
      s.remove_prefix(1);
      continue;
    }
    if (s.size() < 2) return std::nullopt;
    char e = s[1];
    s.remove_prefix(2);
    switch (e) {
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case '\\': out += '\\'; break;
      case 'x':
      case 'u':
      case 'U': {
        size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        if (s.size() < n) return std::nullopt;
        uint32_t v = 0;
        for (size_t j = 0; j < n; ++j) {
          int d = DigitVal(static_cast<unsigned char>(s[j]));
          if (d >= 16) return std::nullopt;
          v = (v << 4) | static_cast<uint32_t>(d);
        }
        s.remove_prefix(n);
        if (e == 'x') {
          out += static_cast<char>(v);  // one byte, possibly not UTF-8
        } else {
          if (v > 0x10FFFF) return std::nullopt;
          AppendRune(out, v);
        }
        break;
      }
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7': {
        if (s.size() < 2) return std::nullopt;
        uint32_t v = static_cast<uint32_t>(e - '0');
        for (size_t j = 0; j < 2; ++j) {
          if (s[j] < '0' || s[j] > '7') return std::nullopt;
          v = (v << 3) | static_cast<uint32_t>(s[j] - '0');
        }
        s.remove_prefix(2);
        if (v > 255) return std::nullopt;
        out += static_cast<char>(v);
        break;
      }
      case '\'':
      case '"':
      case '|':
      case '/':
        if (e != quote) return std::nullopt;
        out += e;
        break;
      default: return std::nullopt;
    }
  }
  return out;
}

// libstdc++ reads every digit after a backslash (\0 included) as one
// back-reference number, in a long that overflows (UB) on a long run.
// Back-references are refused anyway (RE2 has none), so \0-\9 are refused
// up front; the cost scan below bounds the digits of {n,m} the same way.
bool HasBackReference(std::string_view p) {
  for (size_t i = 0; i + 1 < p.size(); ++i) {
    if (p[i] != '\\') continue;
    if (p[i + 1] >= '0' && p[i + 1] <= '9') return true;
    ++i;  // the escaped character
  }
  return false;
}

// An over-estimate of the NFA libstdc++ builds: every atom counts once per
// enclosing repetition. Used only to refuse patterns whose compiled size
// would make std::regex recurse too deep; nullopt when over the limits.
std::optional<uint64_t> RegexCost(std::string_view p) {
  std::vector<uint64_t> groups{0};  // cost of each open group
  uint64_t last = 0;                // cost of the atom a quantifier would repeat
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '(') {
      groups.push_back(0);
      last = 0;
      continue;
    }
    if (c == ')') {
      if (groups.size() == 1) continue;  // unbalanced: std::regex will refuse it
      last = groups.back() + 2;
      groups.pop_back();
      groups.back() += last;
    } else if (c == '{') {
      // {n}, {n,} or {n,m}: the atom repeats up to max(n, m) times.
      uint64_t n = 0, m = 0;
      bool comma = false;
      size_t j = i + 1;
      for (; j < p.size() && p[j] != '}'; ++j) {
        if (p[j] == ',') {
          comma = true;
        } else if (p[j] >= '0' && p[j] <= '9') {
          uint64_t& x = comma ? m : n;
          x = x * 10 + static_cast<uint64_t>(p[j] - '0');
          if (x > kMaxRepeat) return std::nullopt;
        } else {
          break;
        }
      }
      if (j < p.size() && p[j] == '}') {
        groups.back() += last * (std::max(n, m) + 1);
        i = j;
        last = 0;
      } else {
        last = 1;
        groups.back() += 1;
      }
    } else if (c == '[') {
      // A bracket expression is one atom: skip to its closing ']' (in
      // ECMAScript "[]" and "[^]" are complete, unlike POSIX).
      size_t j = i + 1;
      for (; j < p.size() && p[j] != ']'; ++j)
        if (p[j] == '\\') ++j;
      i = j;
      last = 2;
      groups.back() += last;
    } else {
      if (c == '\\') ++i;
      last = 1;
      groups.back() += 1;
    }
    if (groups.back() > kMaxRegexCost) return std::nullopt;
  }
  uint64_t total = 0;
  for (uint64_t g : groups) total += g;
  if (total > kMaxRegexCost) return std::nullopt;
  return total;
}

// Compiles a ~= pattern. Differences from containerd's Go regexp (RE2):
// ECMAScript syntax (no (?P<name>), \pL, \z, octal \123; "[]" is an empty
// class; only a leading (?i) is understood), lookahead accepted, matching by
// byte rather than by code point, back-references and \0 refused. Search
// time is quadratic in the subject (RE2's is linear). nullopt for anything
// that does not compile or is over the limits above.
std::optional<std::regex> CompileRegex(std::string_view pattern) {
  if (pattern.size() > kMaxRegexBytes || !core::IsValidUtf8(pattern) || HasBackReference(pattern) ||
      !RegexCost(pattern))
    return std::nullopt;
  auto flags = std::regex::ECMAScript;
#ifdef __GLIBCXX__
  // libstdc++'s breadth-first executor: no exponential backtracking, stack
  // depth bounded by the pattern rather than the subject.
  flags |= std::regex_constants::__polynomial;
#endif
  if (pattern.starts_with("(?i)")) {
    flags |= std::regex::icase;
    pattern.remove_prefix(4);
  }
  try {
    return std::regex(pattern.begin(), pattern.end(), flags);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string Quote(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : s) {
    auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b < 0x7F && b != '"' && b != '\\') {
      out += c;
    } else {
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 0xF];
    }
  }
  return out + "\"";
}

using Selectors = std::vector<std::shared_ptr<const Filter::Selector>>;

class Parser {
 public:
  explicit Parser(std::string_view in) : in_(in), scanner_(in) {}

  core::Result<Selectors> Parse() {
    Selectors out;
    if (in_.empty()) return out;  // matches everything
    while (true) {
      OCIX_ASSIGN_OR_RETURN(auto selector, ParseSelector());
      out.push_back(std::move(selector));
      int32_t r = scanner_.Peek();
      if (r == kEofRune) break;
      if (r != ',') {
        std::string rune;
        AppendRune(rune, r < 0 ? kRuneError : static_cast<uint32_t>(r));
        return Error(scanner_.offset(), "unexpected input: " + rune);
      }
      scanner_.Scan();
    }
    return out;
  }

 private:
  core::Result<std::shared_ptr<const Filter::Selector>> ParseSelector() {
    auto s = std::make_shared<Filter::Selector>();
    OCIX_ASSIGN_OR_RETURN(std::string field, ParseField());
    s->fieldpath.push_back(std::move(field));
    while (scanner_.Peek() == '.') {
      scanner_.Scan();
      OCIX_ASSIGN_OR_RETURN(field, ParseField());
      s->fieldpath.push_back(std::move(field));
    }
    int32_t r = scanner_.Peek();
    if (r == ',' || r == kEofRune) return std::shared_ptr<const Filter::Selector>(std::move(s));

    Token op = scanner_.Scan();
    if (op.kind == Tok::kIllegal) return Error(op.pos, scanner_.error());
    if (op.kind != Tok::kOperator) return Error(op.pos, "expected an operator (\"==\"|\"!=\"|\"~=\")");
    if (op.text == "==") {
      s->op = Op::kEqual;
    } else if (op.text == "!=") {
      s->op = Op::kNotEqual;
    } else if (op.text == "~=") {
      s->op = Op::kMatches;
    } else {
      return Error(op.pos, "unsupported operator \"" + std::string(op.text) + "\"");
    }

    Token value = scanner_.Scan();
    switch (value.kind) {
      case Tok::kValue:
      case Tok::kField: s->value = std::string(value.text); break;
      case Tok::kQuoted: {
        // Only a regular expression may be written /.../ or |...|.
        OCIX_ASSIGN_OR_RETURN(s->value, Unquoted(value, s->op == Op::kMatches));
        break;
      }
      case Tok::kIllegal: return Error(value.pos, scanner_.error());
      default: return Error(value.pos, "expected value or quoted");
    }
    if (s->op == Op::kMatches) s->re = CompileRegex(s->value);
    return std::shared_ptr<const Filter::Selector>(std::move(s));
  }

  core::Result<std::string> ParseField() {
    Token t = scanner_.Scan();
    switch (t.kind) {
      case Tok::kField: return std::string(t.text);
      case Tok::kQuoted: return Unquoted(t, false);
      case Tok::kIllegal: return Error(t.pos, scanner_.error());
      default: return Error(t.pos, "expected field or quoted");
    }
  }

  core::Result<std::string> Unquoted(const Token& t, bool allow_alt_quotes) {
    if (!allow_alt_quotes && t.text.front() != '"') return Error(t.pos, "invalid quote encountered");
    auto s = Unquote(t.text);
    if (!s) return Error(t.pos, "unquoting failed: quote syntax error");
    return std::move(*s);
  }

  // containerd's form: "[before >|x|< after]: message".
  core::Status Error(size_t pos, std::string_view msg) const {
    std::string where;
    if (pos < in_.size()) {
      where = "[" + std::string(in_.substr(0, pos)) + " >|" + std::string(in_.substr(pos, 1)) + "|< " +
              std::string(in_.substr(pos + 1)) + "]";
    } else {
      where = "[" + std::string(in_) + "]";
    }
    return core::InvalidArgument("filters: parse error: " + where + ": " + std::string(msg));
  }

  std::string_view in_;
  Scanner scanner_;
};

}  // namespace

bool Filter::Selector::Match(const Adaptor& adaptor) const {
  std::optional<std::string> field = adaptor(fieldpath);
  switch (op) {
    case Op::kPresent: return field.has_value();
    case Op::kEqual: return field && *field == value;
    case Op::kNotEqual: return field.value_or("") != value;
    case Op::kMatches: {
      if (!re) return false;
      const std::string subject = field.value_or("");
      try {
        return std::regex_search(subject, *re);
      } catch (const std::exception&) {  // error_complexity / error_stack
        return false;
      }
    }
  }
  return false;
}

core::Result<Filter> Filter::Parse(std::span<const std::string> filters) {
  Filter f;
  for (size_t i = 0; i < filters.size(); ++i) {
    auto selectors = Parser(filters[i]).Parse();
    if (!selectors.ok()) {
      if (filters.size() == 1) return selectors.status();
      return selectors.status().WithContext("filter " + std::to_string(i + 1) + " of " +
                                            std::to_string(filters.size()));
    }
    f.any_.push_back(std::move(selectors).value());
  }
  return f;
}

bool Filter::Match(const Adaptor& adaptor) const {
  if (any_.empty()) return true;
  for (const auto& all : any_) {
    bool ok = true;
    for (const auto& s : all) {
      if (!s->Match(adaptor)) {
        ok = false;
        break;
      }
    }
    if (ok) return true;
  }
  return false;
}

std::vector<std::string> Filter::Canonical() const {
  std::vector<std::string> out;
  for (const auto& all : any_) {
    std::string f;
    for (const auto& s : all) {
      if (!f.empty()) f += ',';
      for (size_t i = 0; i < s->fieldpath.size(); ++i) {
        const std::string& field = s->fieldpath[i];
        if (i > 0) f += '.';
        bool bare = !field.empty();
        for (char c : field) bare = bare && IsFieldRune(static_cast<unsigned char>(c));
        f += bare ? field : Quote(field);
      }
      switch (s->op) {
        case Op::kPresent: continue;
        case Op::kEqual: f += "=="; break;
        case Op::kNotEqual: f += "!="; break;
        case Op::kMatches: f += "~="; break;
      }
      f += Quote(s->value);
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace ocix::snapshotter
