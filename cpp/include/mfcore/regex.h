#pragma once
// A small backtracking regex matcher over code points, for the pre-tokenizer patterns of byte-level
// BPE tokenizers (GPT-2, Llama 3, Qwen 2, DeepSeek V3). Semantics are Oniguruma's (what Hugging Face
// `tokenizers` uses): leftmost-first alternation, greedy quantifiers, \s = White_Space, \d = Nd.
// Supported: literals, escapes (\n \r \t \f \v \xHH \x{H..} \uHHHH, escaped punctuation), '.',
// classes with ranges / negation / \p{..} \P{..} \s \S \d \D, groups (...) (?:...) (?i:...),
// ? * + {m} {m,} {m,n} (greedy), | and look-ahead (?=...) (?!...). Anything else throws
// RegexUnsupported, so the caller can fall back to `tokenizers` instead of matching differently.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mfcore/unicode.h"

namespace mfcore {

class RegexUnsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A match needed more backtracking steps than allowed (a pathological text for the pattern).
class RegexBudgetExceeded : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A set of code points: ranges, general categories and White_Space, possibly negated.
struct CharClass {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  CategoryMask categories = 0;
  bool white_space = false;
  bool negated = false;
  uint64_t ascii[2] = {0, 0};  // membership of U+0000..U+007F, filled by finish()

  void finish();
  bool contains_slow(uint32_t cp) const;
  bool contains(uint32_t cp) const {
    return cp < 128 ? ((ascii[cp >> 6] >> (cp & 63)) & 1) != 0 : contains_slow(cp);
  }
};

struct RegexInst {
  enum Op : uint8_t { kClass, kSplit, kJump, kLook, kMatch };
  Op op;
  bool negate;  // kLook: (?!...) rather than (?=...)
  uint32_t a;   // kClass: class index; kSplit: preferred target; kJump: target; kLook: program
  uint32_t b;   // kSplit: the alternative target
};

class Regex {
 public:
  // Throws RegexUnsupported for syntax outside the supported subset or a pattern matching "".
  explicit Regex(const std::string& pattern);

  // The leftmost match in text[from, end) (text[end] is the end of the subject: look-aheads see
  // nothing after it). Throws RegexBudgetExceeded after too many backtracking steps.
  bool find(const uint32_t* text, size_t from, size_t end, size_t& match_begin, size_t& match_end) const;

  // Whether a match starts at `pos`; its end in `match_end`.
  bool match_at(const uint32_t* text, size_t pos, size_t end, size_t& match_end) const;

  const std::string& pattern() const { return pattern_; }

 private:
  friend class RegexCompiler;
  bool run(size_t program, const uint32_t* text, size_t pos, size_t end, size_t& out, size_t& budget) const;
  bool may_start(uint32_t cp) const;
  void find_start_classes();

  std::string pattern_;
  std::vector<CharClass> classes_;
  std::vector<std::vector<RegexInst>> programs_;  // [0] the pattern, then one per look-ahead
  std::vector<uint32_t> start_classes_;           // a match must begin with one of these
  bool any_start_ = true;                         // start_classes_ is not a complete filter
  uint64_t ascii_start_[2] = {~0ull, ~0ull};      // the same filter for U+0000..U+007F
};

// The pieces of `text` under a Split(Isolated) pre-tokenizer: matches and the gaps between them, as
// [begin, end) code point ranges in order.
std::vector<std::pair<size_t, size_t>> split_isolated(const Regex& re, const uint32_t* text, size_t size);

}  // namespace mfcore
