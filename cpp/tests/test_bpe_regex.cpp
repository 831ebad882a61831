// The pre-tokenizer regex matcher and Unicode tables: hand-derived expectations (leftmost-first
// alternation, greedy repeats, look-ahead at the subject's end) and rejected syntax.
#include <string>
#include <vector>

#include "harness.h"
#include "mfcore/regex.h"
#include "mfcore/unicode.h"

using namespace mfcore;

namespace {
// The Isolated split of `text` by `pattern`, pieces as UTF-8 strings.
std::vector<std::string> split(const std::string& pattern, const std::string& text) {
  Regex re(pattern);
  DecodedText d;
  CHECK(decode_utf8(text.data(), text.size(), d));
  std::vector<std::string> out;
  size_t n = d.cps.size(), pos = 0, mb = 0, me = 0;
  auto piece = [&](size_t b, size_t e) { out.push_back(text.substr(d.offsets[b], d.offsets[e] - d.offsets[b])); };
  while (pos < n && re.find(d.cps.data(), pos, n, mb, me)) {
    if (mb > pos) piece(pos, mb);
    piece(mb, me);
    pos = me;
  }
  if (pos < n) piece(pos, n);
  return out;
}

using Pieces = std::vector<std::string>;
const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
}  // namespace

TEST(unicode_categories_and_white_space) {
  CHECK_EQ(int(general_category('A')), int(kLu));
  CHECK_EQ(int(general_category(0x4E2D)), int(kLo));   // 中
  CHECK_EQ(int(general_category(0x0301)), int(kMn));   // combining acute
  CHECK_EQ(int(general_category(0x0663)), int(kNd));   // Arabic-Indic three
  CHECK_EQ(int(general_category(0x1F98A)), int(kSo));  // fox face
  CHECK_EQ(int(general_category(0x0378)), int(kCn));   // unassigned
  CHECK_EQ(int(general_category(0x110000)), int(kCn));
  CHECK(is_white_space(0x3000) && is_white_space(0xA0) && is_white_space(0x85) && is_white_space('\t'));
  CHECK(!is_white_space(0x200B) && !is_white_space('x'));
  CHECK_EQ(category_mask("L"), category_bit(kLu) | category_bit(kLl) | category_bit(kLt) | category_bit(kLm) |
                                   category_bit(kLo));
  CHECK_EQ(category_mask("Xy"), CategoryMask(0));
}

TEST(utf8_decoding_rejects_malformed_bytes) {
  DecodedText d;
  CHECK(decode_utf8("a\xC3\xA9\xF0\x9F\xA6\x8A", 7, d));
  CHECK_EQ(d.cps.size(), size_t(3));
  CHECK_EQ(d.cps[2], uint32_t(0x1F98A));
  CHECK_EQ(d.offsets[2], uint32_t(3));
  CHECK(!decode_utf8("\xC0\x80", 2, d));      // overlong
  CHECK(!decode_utf8("\xED\xA0\x80", 3, d));  // surrogate
  CHECK(!decode_utf8("\xE4\xB8", 2, d));      // truncated
}

TEST(gpt2_pattern_splits_like_tokenizers) {
  CHECK(split(kGpt2, "Hello world's  end\n") == Pieces({"Hello", " world", "'s", " ", " end", "\n"}));
  CHECK(split(kGpt2, "x   ") == Pieces({"x", "   "}));          // \s+(?!\S) takes the run at the end
  CHECK(split(kGpt2, "a  b") == Pieces({"a", " ", " b"}));      // leaves one space to the word
  CHECK(split(kGpt2, "12ab!?") == Pieces({"12", "ab", "!?"}));
}

TEST(leftmost_first_not_longest) {
  CHECK(split("a|ab", "ab") == Pieces({"a", "b"}));
  CHECK(split("ab|a", "ab") == Pieces({"ab"}));
}

TEST(counted_repeat_and_classes) {
  CHECK(split(R"(\p{N}{1,3})", "12345x6") == Pieces({"123", "45", "x", "6"}));
  CHECK(split(R"(\p{N}{2})", "12345") == Pieces({"12", "34", "5"}));
  CHECK(split(R"([\u4e00-\u9fa5]+)", "ab中文c") == Pieces({"ab", "中文", "c"}));
  CHECK(split(R"([^\r\n\p{L}]+)", "ab, \ncd") == Pieces({"ab", ", ", "\ncd"}));
  CHECK(split(R"([!\-.\[\\\]]+)", R"(a-.[\]b)") == Pieces({"a", R"(-.[\])", "b"}));
  CHECK(split(R"(\x41+|\x{1F98A})", "AAB🦊") == Pieces({"AA", "B", "🦊"}));
}

TEST(case_insensitive_contractions) {
  const char* p = R"((?i:'s|'ll)|\p{L}+)";
  CHECK(split(p, "IT'S we'LL") == Pieces({"IT", "'S", " ", "we", "'LL"}));
  CHECK(split(p, "x'\xC5\xBF") == Pieces({"x", "'\xC5\xBF"}));  // U+017F folds to s
}

TEST(look_ahead_sees_subject_end) {
  // (?!\S) succeeds at the end of the subject, whatever the text would continue with.
  Regex re(R"(\s+(?!\S))");
  DecodedText d;
  decode_utf8("  x", 3, d);
  size_t b = 0, e = 0;
  CHECK(re.find(d.cps.data(), 0, 2, b, e));
  CHECK_EQ(e, size_t(2));
  CHECK(re.find(d.cps.data(), 0, 3, b, e));
  CHECK_EQ(e, size_t(1));
}

TEST(unsupported_syntax_is_refused) {
  for (const char* p : {"a*?", "a++", "^a", "a$", "(?<=a)b", "(?i)a", "\\w+", "\\bx", "[[:alpha:]]", "[a&&b]",
                        "a*", "(a|)", "\\p{Greek}", "(?=(?!a))b", "(a", "a)", "a{2,1}", "[]a]",
                        "(?i:ss)", "(?i:'st)", "(?i:Fi)", "(?i:\\p{Lu})", "(?i:\xC3\xA9)"}) {
    bool refused = false;
    try {
      Regex re(p);
    } catch (const RegexUnsupported&) {
      refused = true;
    }
    if (!refused) std::fprintf(stderr, "accepted: %s\n", p);
    CHECK(refused);
  }
}

TEST(backtracking_budget_is_enforced) {
  Regex re("(a|a)+b");  // exponential on a run of a's without b
  std::vector<uint32_t> text(40, 'a');
  size_t b = 0, e = 0;
  CHECK_THROWS(re.find(text.data(), 0, text.size(), b, e));
}

int main() { return run_all(); }
