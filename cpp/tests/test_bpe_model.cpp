// The byte-level BPE model and document encoder on a tiny hand-made vocabulary.
#include <string>
#include <vector>

#include "harness.h"
#include "mfcore/bpe_encoder.h"

using namespace mfcore;

namespace {
using Vocab = std::vector<std::pair<std::string, uint32_t>>;
using Merges = std::vector<std::pair<std::string, std::string>>;

// All 256 ByteLevel characters (ids 0..255 in byte order), then merged tokens from 256 on.
Vocab base_vocab() {
  Vocab v;
  for (uint32_t b = 0; b < 256; ++b) v.push_back({byte_level_char(uint8_t(b)), b});
  return v;
}

std::vector<uint32_t> word(const BpeModel& m, const std::string& w) {
  std::vector<uint32_t> out;
  m.encode_word(w.data(), w.size(), out);
  return out;
}
}  // namespace

TEST(byte_level_alphabet_is_gpt2s) {
  CHECK_EQ(byte_level_char('a'), std::string("a"));
  CHECK_EQ(byte_level_char(' '), std::string("\xC4\xA0"));   // U+0120 'Ġ'
  CHECK_EQ(byte_level_char('\n'), std::string("\xC4\x8A"));  // U+010A 'Ċ'
  std::string raw;
  CHECK(byte_level_decode("\xC4\xA0the", raw));
  CHECK_EQ(raw, std::string(" the"));
  CHECK(!byte_level_decode("\xE4\xB8\xAD", raw));  // 中 is not a ByteLevel character
}

TEST(merges_apply_by_rank_leftmost_first) {
  Vocab v = base_vocab();
  v.push_back({"ab", 256});
  v.push_back({"bc", 257});
  v.push_back({"abc", 258});
  v.push_back({"aa", 259});
  // bc outranks ab, so "abc" becomes a + bc (abc is unreachable: no merge makes it).
  BpeModel m(v, {{"b", "c"}, {"a", "b"}, {"a", "a"}}, false);
  CHECK(word(m, "abc") == std::vector<uint32_t>({'a', 257}));
  CHECK(word(m, "abab") == std::vector<uint32_t>({256, 256}));
  CHECK(word(m, "aaa") == std::vector<uint32_t>({259, 'a'}));  // leftmost pair first
  CHECK(word(m, "x") == std::vector<uint32_t>({'x'}));
  BpeModel ignore(v, {{"b", "c"}, {"a", "b"}, {"a", "a"}}, true);  // a whole-word token wins
  CHECK(word(ignore, "abc") == std::vector<uint32_t>({258}));
}

TEST(unsupported_vocabularies_are_refused) {
  Vocab v = base_vocab();
  Vocab missing(v.begin() + 1, v.end());
  CHECK_THROWS(BpeModel(missing, {}, false));
  CHECK_THROWS(BpeModel(v, {{"a", "b"}}, false));  // "ab" is not in the vocabulary
}

TEST(encoder_splits_caches_and_hands_over) {
  Vocab v = base_vocab();
  v.push_back({"\xC4\xA0w", 256});  // " w"
  AddedTokens added;
  added.raw = {{"<eod>", 300}, {"<eo", 301}};  // leftmost-longest: <eod> wins over <eo
  added.detect_only = {{"<lstrip>", 302}};
  BpeEncoder enc(BpeModel(v, {{"\xC4\xA0", "w"}}, false), {R"( ?\p{L}+|\s+)"}, added);
  WordCache cache;
  std::vector<uint32_t> ids;
  CHECK(enc.encode("aw ww", ids, cache) == BpeStatus::kOk);
  CHECK(ids == std::vector<uint32_t>({'a', 'w', 256, 'w'}));
  ids.clear();
  CHECK(enc.encode("aw ww", ids, cache) == BpeStatus::kOk);  // from the cache now
  CHECK(ids == std::vector<uint32_t>({'a', 'w', 256, 'w'}));
  ids.clear();
  CHECK(enc.encode("x<eod><eo w", ids, cache) == BpeStatus::kOk);  // " w" after a token: a new piece
  CHECK(ids == std::vector<uint32_t>({'x', 300, 301, 256}));
  CHECK(enc.encode("a <lstrip>", ids, cache) == BpeStatus::kAddedToken);
  CHECK(enc.encode("\xCD\xB8", ids, cache) == BpeStatus::kUnassigned);  // U+0378
  CHECK(enc.encode("\xFF", ids, cache) == BpeStatus::kInvalidText);
}

TEST(word_cache_stays_exact_when_it_fills_up) {
  Vocab v = base_vocab();
  v.push_back({"ab", 256});
  BpeModel m(v, {{"a", "b"}}, false);
  WordCache tiny(2);  // emptied every third new word
  for (int round = 0; round < 3; ++round) {
    for (const std::string w : {"ab", "xab", "abab", "b", "aab", "ab"}) {
      std::vector<uint32_t> cached, direct;
      tiny.encode(m, w.data(), w.size(), cached);
      m.encode_word(w.data(), w.size(), direct);
      CHECK(cached == direct);
    }
  }
  std::string long_word(300, 'a');  // beyond the cached length: encoded directly
  std::vector<uint32_t> out;
  tiny.encode(m, long_word.data(), long_word.size(), out);
  CHECK_EQ(out.size(), size_t(300));
}

TEST(batches_are_identical_for_any_thread_count) {
  Vocab v = base_vocab();
  v.push_back({"ab", 256});
  BpeEncoder enc(BpeModel(v, {{"a", "b"}}, false), {R"(\p{L}+|\p{N}{1,3}|\s+)"}, AddedTokens{});
  std::vector<std::string> docs;
  for (int k = 0; k < 50; ++k) docs.push_back("ab " + std::to_string(k * 7919) + " abba" + std::string(k, 'b'));
  std::vector<std::string_view> views(docs.begin(), docs.end());
  std::vector<std::vector<uint32_t>> one, three;
  std::vector<BpeStatus> s1, s3;
  enc.encode_batch(views, 1, one, s1);
  enc.encode_batch(views, 3, three, s3);
  CHECK(one == three);
  CHECK(s1 == s3);
  CHECK(one[0] == std::vector<uint32_t>({256, ' ', '0', ' ', 256, 'b', 'a'}));
}

int main() { return run_all(); }
