// Pattern text -> syntax tree -> backtracking program (see mfcore/regex.h for the subset).
#include <memory>

#include "mfcore/regex.h"

namespace mfcore {

namespace {
constexpr int kInfinite = -1;
constexpr size_t kMaxProgram = 1 << 16;  // counted repeats are expanded: keep that bounded

struct Node {
  enum Kind { kClass, kSeq, kAlt, kRepeat, kLook } kind;
  uint32_t cls = 0;
  int min = 0, max = 0;
  bool negate = false;
  std::vector<Node> kids;
};

bool nullable(const Node& n) {
  switch (n.kind) {
    case Node::kClass: return false;
    case Node::kLook: return true;
    case Node::kRepeat: return n.min == 0 || nullable(n.kids[0]);
    case Node::kSeq:
      for (const auto& k : n.kids) if (!nullable(k)) return false;
      return true;
    case Node::kAlt:
      for (const auto& k : n.kids) if (nullable(k)) return true;
      return false;
  }
  return true;
}

int hex_value(uint32_t c) {
  if (c >= '0' && c <= '9') return int(c - '0');
  if (c >= 'a' && c <= 'f') return int(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return int(c - 'A' + 10);
  return -1;
}

bool is_ascii_alnum(uint32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
}  // namespace

class RegexCompiler {
 public:
  RegexCompiler(Regex& re, const std::vector<uint32_t>& cps) : re_(re), p_(cps) {}

  void compile() {
    Node root = parse_alt();
    if (pos_ != p_.size()) fail("unbalanced ')'");
    if (nullable(root)) fail("the pattern can match the empty string");
    re_.programs_.emplace_back();
    emit_program(root, 0);
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    throw RegexUnsupported("regex " + re_.pattern_ + ": " + why);
  }
  bool at_end() const { return pos_ >= p_.size(); }
  uint32_t peek(size_t ahead = 0) const { return pos_ + ahead < p_.size() ? p_[pos_ + ahead] : 0; }
  uint32_t next() {
    if (at_end()) fail("unexpected end");
    return p_[pos_++];
  }
  bool accept(uint32_t c) {
    if (!at_end() && p_[pos_] == c) { ++pos_; return true; }
    return false;
  }

  Node parse_alt() {
    Node alt{Node::kAlt};
    alt.kids.push_back(parse_seq());
    while (accept('|')) alt.kids.push_back(parse_seq());
    return alt.kids.size() == 1 ? std::move(alt.kids[0]) : alt;
  }

  Node parse_seq() {
    Node seq{Node::kSeq};
    while (!at_end() && peek() != '|' && peek() != ')') seq.kids.push_back(parse_quantified());
    return seq;
  }

  Node parse_quantified() {
    Node atom = parse_atom();
    int min = 1, max = 1;
    uint32_t c = peek();
    if (c == '?') { min = 0; max = 1; ++pos_; }
    else if (c == '*') { min = 0; max = kInfinite; ++pos_; }
    else if (c == '+') { min = 1; max = kInfinite; ++pos_; }
    else if (c == '{') parse_braces(min, max);
    else return atom;
    if (peek() == '?' || peek() == '+') fail("lazy or possessive quantifier");
    if (atom.kind == Node::kLook) fail("quantified look-ahead");
    if (max == kInfinite && nullable(atom)) fail("unbounded repeat of something that can match empty");
    Node rep{Node::kRepeat};
    rep.min = min;
    rep.max = max;
    rep.kids.push_back(std::move(atom));
    return rep;
  }

  int parse_number() {
    int n = 0, digits = 0;
    while (peek() >= '0' && peek() <= '9') {
      n = n * 10 + int(next() - '0');
      if (++digits > 4) fail("repeat count too large");
    }
    return digits ? n : -2;
  }

  void parse_braces(int& min, int& max) {
    ++pos_;  // '{'
    min = parse_number();
    if (min < 0) fail("'{' that is not a repeat count");
    max = min;
    if (accept(',')) {
      max = parse_number();
      if (max == -2) max = kInfinite;
    }
    if (!accept('}') || (max != kInfinite && max < min)) fail("malformed {m,n}");
  }

  Node parse_atom() {
    uint32_t c = next();
    switch (c) {
      case '(': return parse_group();
      case '[': return class_node(parse_class());
      case '\\': return class_node(parse_escape(false));
      case '.': {
        CharClass cc;
        cc.ranges.push_back({'\n', '\n'});
        cc.negated = true;
        return class_node(cc);
      }
      case '^': case '$': fail("anchors");
      case ')': case '*': case '+': case '?': case '{': fail("misplaced metacharacter");
      default: return class_node(literal(c));
    }
  }

  Node parse_group() {
    if (!accept('?')) return close_group(parse_alt());
    uint32_t c = next();
    if (c == ':') return close_group(parse_alt());
    if (c == '=' || c == '!') {
      if (in_look_) fail("nested look-ahead");
      in_look_ = true;
      Node look{Node::kLook};
      look.negate = c == '!';
      look.kids.push_back(close_group(parse_alt()));
      in_look_ = false;
      return look;
    }
    if (c == 'i' && accept(':')) {
      bool saved = icase_;
      size_t start = pos_;
      icase_ = true;
      Node inner = close_group(parse_alt());
      icase_ = saved;
      check_no_multichar_fold(start, pos_);
      return inner;
    }
    fail("group kind (?" + std::string(1, char(c < 128 ? c : '?')) + "...)");
  }

  Node close_group(Node inner) {
    if (!accept(')')) fail("missing ')'");
    return inner;
  }

  // Under (?i) Oniguruma also matches a ligature or ß against the letters it folds to ("ss", "st",
  // "ff", "fi", "fl"): a pattern holding such a pair is refused rather than matched differently.
  void check_no_multichar_fold(size_t begin, size_t end) {
    auto lower = [](uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
    for (size_t k = begin; k + 1 < end; ++k) {
      uint32_t a = lower(p_[k]), b = lower(p_[k + 1]);
      if ((a == 's' && (b == 's' || b == 't')) || (a == 'f' && (b == 'f' || b == 'i' || b == 'l')))
        fail("(?i) letters that a ligature or sharp s folds to");
    }
  }

  // One literal code point; under (?i) an ASCII letter matches both cases plus the two non-ASCII
  // characters whose simple case folding is an ASCII letter (U+017F long s, U+212A Kelvin sign).
  CharClass literal(uint32_t c) {
    CharClass cc;
    cc.ranges.push_back({c, c});
    if (!icase_) return cc;
    bool lower = c >= 'a' && c <= 'z', upper = c >= 'A' && c <= 'Z';
    if (!lower && !upper) {
      if (c >= 128) fail("(?i) non-ASCII character");  // its case folding is not modelled
      return cc;
    }
    uint32_t low = lower ? c : c + 32;
    cc.ranges = {{low - 32, low - 32}, {low, low}};
    if (low == 's') cc.ranges.push_back({0x17F, 0x17F});
    if (low == 'k') cc.ranges.push_back({0x212A, 0x212A});
    return cc;
  }

  uint32_t parse_hex(size_t digits) {
    uint32_t v = 0;
    for (size_t k = 0; k < digits; ++k) {
      int h = hex_value(next());
      if (h < 0) fail("bad hex escape");
      v = v * 16 + uint32_t(h);
    }
    return v;
  }

  // An escape as a class (`in_class` only changes the error message).
  CharClass parse_escape(bool in_class) {
    uint32_t c = next();
    CharClass cc;
    if (icase_ && (c == 'p' || c == 'P' || c == 's' || c == 'S' || c == 'd' || c == 'D'))
      fail("a class escape under (?i)");  // Oniguruma case-folds those sets too
    switch (c) {
      case 'p': case 'P': return property(c == 'P');
      case 's': case 'S': cc.white_space = true; cc.negated = c == 'S'; return cc;
      case 'd': case 'D': cc.categories = category_bit(kNd); cc.negated = c == 'D'; return cc;
      case 'n': return literal('\n');
      case 'r': return literal('\r');
      case 't': return literal('\t');
      case 'f': return literal('\f');
      case 'v': return literal('\v');
      case 'u': return literal(parse_hex(4));
      case 'x': {
        if (!accept('{')) return literal(parse_hex(2));
        uint32_t v = 0;
        for (int n = 0; !accept('}'); ++n) {
          int h = hex_value(next());
          if (h < 0 || n >= 6) fail("bad \\x{...} escape");
          v = v * 16 + uint32_t(h);
        }
        return literal(v);
      }
      default:
        if (is_ascii_alnum(c) || c >= 128) fail(std::string("escape \\") + char(c < 128 ? c : '?') +
                                               (in_class ? " in a class" : ""));
        return literal(c);
    }
  }

  CharClass property(bool negated) {
    if (!accept('{')) fail("\\p without braces");
    std::string name;
    while (!accept('}')) {
      uint32_t c = next();
      if (!is_ascii_alnum(c) && c != '_') fail("property name");
      name += char(c);
    }
    CharClass cc;
    cc.categories = name.size() <= 2 ? category_mask(name) : 0;
    if (!cc.categories) fail("property \\p{" + name + "}");
    cc.negated = negated;
    return cc;
  }

  // [...]: items are single code points, ranges a-b, or escapes that stand for sets.
  CharClass parse_class() {
    if (icase_) fail("character class under (?i)");
    CharClass cc;
    cc.negated = accept('^');
    if (peek() == ']') fail("']' first in a class");
    while (!accept(']')) {
      uint32_t c = next();
      if (c == '[' || (c == '&' && peek() == '&')) fail("nested class or class intersection");
      CharClass item = c == '\\' ? parse_escape(true) : literal(c);
      bool single = item.ranges.size() == 1 && !item.categories && !item.white_space && !item.negated;
      if (single && peek() == '-' && peek(1) != ']' && peek(1) != 0) {
        ++pos_;
        uint32_t d = next();
        CharClass hi = d == '\\' ? parse_escape(true) : literal(d);
        if (hi.ranges.size() != 1 || hi.categories || hi.white_space || hi.negated) fail("range to a set");
        if (hi.ranges[0].first < item.ranges[0].first) fail("reversed range");
        cc.ranges.push_back({item.ranges[0].first, hi.ranges[0].first});
        continue;
      }
      merge_item(cc, item);
    }
    return cc;
  }

  void merge_item(CharClass& cc, const CharClass& item) {
    if (item.negated) fail("negated set inside a class");  // [\S...] would need set algebra
    cc.ranges.insert(cc.ranges.end(), item.ranges.begin(), item.ranges.end());
    cc.categories |= item.categories;
    cc.white_space = cc.white_space || item.white_space;
  }

  Node class_node(CharClass cc) {
    // A negated escape (\S, \D, \P{..}) outside a class is a plain negated class.
    cc.finish();
    re_.classes_.push_back(std::move(cc));
    Node n{Node::kClass};
    n.cls = uint32_t(re_.classes_.size() - 1);
    return n;
  }

  // ---- code generation ----
  std::vector<RegexInst>& code(size_t prog) { return re_.programs_[prog]; }

  uint32_t emit(size_t prog, RegexInst inst) {
    if (code(prog).size() >= kMaxProgram) fail("pattern too large once counted repeats are expanded");
    code(prog).push_back(inst);
    return uint32_t(code(prog).size() - 1);
  }

  void emit_program(const Node& root, size_t prog) {
    emit_node(root, prog);
    emit(prog, {RegexInst::kMatch, false, 0, 0});
  }

  void emit_node(const Node& n, size_t prog) {
    switch (n.kind) {
      case Node::kClass: emit(prog, {RegexInst::kClass, false, n.cls, 0}); return;
      case Node::kSeq: for (const auto& k : n.kids) emit_node(k, prog); return;
      case Node::kAlt: return emit_alt(n, prog);
      case Node::kRepeat: return emit_repeat(n, prog);
      case Node::kLook: {
        size_t sub = re_.programs_.size();
        re_.programs_.emplace_back();
        emit_program(n.kids[0], sub);
        emit(prog, {RegexInst::kLook, n.negate, uint32_t(sub), 0});
        return;
      }
    }
  }

  void emit_alt(const Node& n, size_t prog) {
    std::vector<uint32_t> jumps;
    for (size_t k = 0; k < n.kids.size(); ++k) {
      uint32_t split = 0;
      bool last = k + 1 == n.kids.size();
      if (!last) split = emit(prog, {RegexInst::kSplit, false, 0, 0});
      if (!last) code(prog)[split].a = split + 1;
      emit_node(n.kids[k], prog);
      if (!last) {
        jumps.push_back(emit(prog, {RegexInst::kJump, false, 0, 0}));
        code(prog)[split].b = uint32_t(code(prog).size());
      }
    }
    for (uint32_t j : jumps) code(prog)[j].a = uint32_t(code(prog).size());
  }

  void emit_repeat(const Node& n, size_t prog) {
    for (int k = 0; k < n.min; ++k) emit_node(n.kids[0], prog);
    if (n.max == kInfinite) {
      uint32_t loop = emit(prog, {RegexInst::kSplit, false, 0, 0});
      code(prog)[loop].a = loop + 1;
      emit_node(n.kids[0], prog);
      emit(prog, {RegexInst::kJump, false, loop, 0});
      code(prog)[loop].b = uint32_t(code(prog).size());
      return;
    }
    std::vector<uint32_t> splits;
    for (int k = n.min; k < n.max; ++k) {
      uint32_t split = emit(prog, {RegexInst::kSplit, false, 0, 0});
      code(prog)[split].a = split + 1;
      splits.push_back(split);
      emit_node(n.kids[0], prog);
    }
    for (uint32_t s : splits) code(prog)[s].b = uint32_t(code(prog).size());
  }

  Regex& re_;
  const std::vector<uint32_t>& p_;
  size_t pos_ = 0;
  bool icase_ = false;
  bool in_look_ = false;
};

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  DecodedText decoded;
  if (!decode_utf8(pattern.data(), pattern.size(), decoded)) throw RegexUnsupported("regex is not valid UTF-8");
  RegexCompiler(*this, decoded.cps).compile();
  find_start_classes();
}

}  // namespace mfcore
