// The backtracking matcher: a priority-ordered depth-first search over the compiled program, which
// gives the leftmost-first (Perl/Oniguruma) match rather than the longest one.
#include <algorithm>

#include "mfcore/regex.h"

namespace mfcore {

namespace {
// Steps allowed per match attempt, beyond a few per character of the subject: the tokenizer
// patterns need about two; an exceeded budget hands the document to `tokenizers`.
constexpr size_t kBudgetBase = 1 << 20;
constexpr size_t kBudgetPerChar = 64;

struct Frame {
  uint32_t pc;
  uint32_t pos;
};

std::vector<Frame>& stack_for(size_t program) {
  thread_local std::vector<Frame> main_stack, look_stack;  // look-aheads do not nest
  return program == 0 ? main_stack : look_stack;
}
}  // namespace

bool CharClass::contains_slow(uint32_t cp) const {
  bool in = ((categories >> general_category(cp)) & 1) != 0 || (white_space && is_white_space(cp));
  for (size_t k = 0; !in && k < ranges.size(); ++k) in = cp >= ranges[k].first && cp <= ranges[k].second;
  return in != negated;
}

void CharClass::finish() {
  ascii[0] = ascii[1] = 0;
  for (uint32_t cp = 0; cp < 128; ++cp)
    if (contains_slow(cp)) ascii[cp >> 6] |= uint64_t(1) << (cp & 63);
}

bool Regex::run(size_t program, const uint32_t* text, size_t pos, size_t end, size_t& out,
                size_t& budget) const {
  const std::vector<RegexInst>& code = programs_[program];
  std::vector<Frame>& stack = stack_for(program);
  size_t base = stack.size();
  uint32_t pc = 0, p = uint32_t(pos);
  for (;;) {
    if (budget-- == 0) throw RegexBudgetExceeded("regex " + pattern_ + ": backtracking budget exceeded");
    const RegexInst& in = code[pc];
    bool ok = true;
    switch (in.op) {
      case RegexInst::kClass:
        ok = p < end && classes_[in.a].contains(text[p]);
        if (ok) { ++p; ++pc; }
        break;
      case RegexInst::kSplit:
        stack.push_back({in.b, p});
        pc = in.a;
        break;
      case RegexInst::kJump:
        pc = in.a;
        break;
      case RegexInst::kLook: {
        size_t ignored = 0;
        ok = run(in.a, text, p, end, ignored, budget) != in.negate;
        if (ok) ++pc;
        break;
      }
      case RegexInst::kMatch:
        stack.resize(base);
        out = p;
        return true;
    }
    if (ok) continue;
    if (stack.size() == base) return false;
    pc = stack.back().pc;
    p = stack.back().pos;
    stack.pop_back();
  }
}

bool Regex::match_at(const uint32_t* text, size_t pos, size_t end, size_t& match_end) const {
  size_t budget = kBudgetBase + kBudgetPerChar * (end - pos);
  stack_for(0).clear();
  stack_for(1).clear();
  return run(0, text, pos, end, match_end, budget);
}

bool Regex::may_start(uint32_t cp) const {
  if (cp < 128) return ((ascii_start_[cp >> 6] >> (cp & 63)) & 1) != 0;
  if (any_start_) return true;
  for (uint32_t c : start_classes_)
    if (classes_[c].contains(cp)) return true;
  return false;
}

bool Regex::find(const uint32_t* text, size_t from, size_t end, size_t& match_begin, size_t& match_end) const {
  for (size_t pos = from; pos < end; ++pos) {
    uint32_t cp = text[pos];
    if (cp < 128 ? ((ascii_start_[cp >> 6] >> (cp & 63)) & 1) == 0 : !may_start(cp)) continue;
    if (match_at(text, pos, end, match_end)) {
      match_begin = pos;
      return true;
    }
  }
  return false;
}

std::vector<std::pair<size_t, size_t>> split_isolated(const Regex& re, const uint32_t* text, size_t size) {
  std::vector<std::pair<size_t, size_t>> pieces;
  size_t pos = 0, mb = 0, me = 0;
  while (pos < size && re.find(text, pos, size, mb, me)) {
    if (mb > pos) pieces.push_back({pos, mb});
    pieces.push_back({mb, me});
    pos = me;
  }
  if (pos < size) pieces.push_back({pos, size});
  return pieces;
}

// The classes a match can begin with: every kClass reachable from the start through splits and
// jumps alone. A reachable look-ahead or match (impossible: patterns never match empty) disables
// the filter.
void Regex::find_start_classes() {
  const auto& code = programs_[0];
  std::vector<bool> seen(code.size(), false);
  std::vector<uint32_t> todo{0};
  any_start_ = false;
  while (!todo.empty()) {
    uint32_t pc = todo.back();
    todo.pop_back();
    if (seen[pc]) continue;
    seen[pc] = true;
    const RegexInst& in = code[pc];
    if (in.op == RegexInst::kClass) start_classes_.push_back(in.a);
    else if (in.op == RegexInst::kSplit) { todo.push_back(in.a); todo.push_back(in.b); }
    else if (in.op == RegexInst::kJump) todo.push_back(in.a);
    else any_start_ = true;
  }
  std::sort(start_classes_.begin(), start_classes_.end());
  start_classes_.erase(std::unique(start_classes_.begin(), start_classes_.end()), start_classes_.end());
  for (int half = 0; half < 2; ++half) {
    ascii_start_[half] = any_start_ ? ~0ull : 0;
    for (uint32_t c : start_classes_) ascii_start_[half] |= classes_[c].ascii[half];
  }
}

}  // namespace mfcore
