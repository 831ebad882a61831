#pragma once
// Whole-document encoding with a byte-level BPE tokenizer: added tokens split out, the Split
// pre-tokenizer sequence, the BPE model behind a per-thread word cache, and batches of documents
// on a few threads. A document the engine cannot vouch for gets a status other than kOk and no
// ids: the caller encodes it with `tokenizers`, so the ids are always exactly tokenizers' ones.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mfcore/bpe_model.h"
#include "mfcore/regex.h"

namespace mfcore {

enum class BpeStatus : uint8_t {
  kOk,
  kAddedToken,   // holds an added token with lstrip / rstrip / single_word
  kUnassigned,   // holds a code point unassigned in our Unicode table (a newer Unicode may differ)
  kRegexBudget,  // the pre-tokenizer regex backtracked too much
  kInvalidText,  // not valid UTF-8
};

const char* bpe_status_name(BpeStatus s);

// Pre-token bytes -> ids, bounded (emptied when full); one per thread. An open-addressing table
// over flat key and id arrays: natural text repeats its words, so most pre-tokens are found here
// and the lookup, not BPE, is the hot path.
class WordCache {
 public:
  explicit WordCache(size_t max_entries = 1 << 18);
  // Appends the ids of `word` to `out`, from the cache or from `model`.
  void encode(const BpeModel& model, const char* word, size_t size, std::vector<uint32_t>& out);

 private:
  struct Slot {
    uint64_t hash;  // 0: empty
    uint32_t key_offset, ids_offset;
    uint16_t key_size, ids_count;
  };
  static constexpr size_t kMaxWordBytes = 128;
  void clear();

  std::vector<Slot> slots_;  // a power of two, at most half full
  std::string keys_;
  std::vector<uint32_t> ids_;
  size_t used_ = 0, max_entries_;
};

struct AddedToken {
  std::string content;
  uint32_t id;
};

// Added tokens as tokenizers' AddedVocabulary finds them: the leftmost occurrence of any, the
// longest one among those starting there (Aho-Corasick LeftmostLongest). A two-byte prefix filter,
// then memcmp.
class AddedTokenSet {
 public:
  explicit AddedTokenSet(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }
  // The leftmost-longest token within text[from, end): its byte position, length and id.
  bool find(const char* text, size_t from, size_t end, size_t& pos, size_t& len, uint32_t& id) const;

 private:
  std::vector<AddedToken> tokens_;
  std::vector<int64_t> single_;                               // byte -> one-byte token index, or -1
  std::vector<uint64_t> pair_bits_;                           // 65536 bits: first two bytes of a token
  std::unordered_map<uint16_t, std::vector<uint32_t>> by_prefix_;  // longest first
};

// The added tokens of a tokenizer, in tokenizers' two passes: tokens with normalized=false are
// split out of the raw text first, then those with normalized=true out of the remaining pieces (no
// normalizer here, so both see the same text). Tokens with lstrip / rstrip / single_word are only
// detected: a document holding one goes to tokenizers.
struct AddedTokens {
  std::vector<AddedToken> raw, normalized, detect_only;
};

class BpeEncoder {
 public:
  // split_patterns: the Split(Isolated) regexes in order (throws RegexUnsupported / BpeUnsupported).
  BpeEncoder(BpeModel model, const std::vector<std::string>& split_patterns, const AddedTokens& added_tokens);

  // Ids of one document (appended to `ids`), or a status saying why the caller must encode it.
  BpeStatus encode(std::string_view text, std::vector<uint32_t>& ids, WordCache& cache) const;

  // Encodes every text on `threads` threads (the caller's included); output independent of it.
  void encode_batch(const std::vector<std::string_view>& texts, size_t threads,
                    std::vector<std::vector<uint32_t>>& ids, std::vector<BpeStatus>& status);

 private:
  void added_level(size_t pass, const DecodedText& text, size_t begin, size_t end, const char* bytes,
                   std::vector<uint32_t>& ids, WordCache& cache) const;
  void split_level(size_t level, const DecodedText& text, size_t begin, size_t end, const char* bytes,
                   std::vector<uint32_t>& ids, WordCache& cache) const;

  BpeModel model_;
  std::vector<std::unique_ptr<Regex>> splits_;
  AddedTokenSet added_[2];     // the two passes: normalized=false, then normalized=true
  AddedTokenSet detect_only_;  // lstrip / rstrip / single_word tokens
  std::mutex batch_mutex_;
  std::vector<std::unique_ptr<WordCache>> caches_;  // one per thread slot, kept across batches
};

}  // namespace mfcore
