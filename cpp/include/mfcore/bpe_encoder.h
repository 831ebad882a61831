#pragma once
// Whole-document encoding with a byte-level BPE tokenizer: added-token check, the Split
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
  kAddedToken,   // holds an added token's text: tokenizers splits those out first
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

// Whether a text contains any of a set of strings (a two-byte prefix filter, then memcmp).
class AddedTokenScan {
 public:
  explicit AddedTokenScan(const std::vector<std::string>& tokens);
  bool occurs_in(const char* text, size_t size) const;

 private:
  bool single_[256] = {};
  std::vector<uint64_t> pair_bits_;  // 65536 bits: first two bytes of some token
  std::unordered_map<uint16_t, std::vector<std::string>> by_prefix_;
};

class BpeEncoder {
 public:
  // split_patterns: the Split(Isolated) regexes in order (throws RegexUnsupported / BpeUnsupported).
  BpeEncoder(BpeModel model, const std::vector<std::string>& split_patterns,
             const std::vector<std::string>& added_tokens);

  // Ids of one document (appended to `ids`), or a status saying why the caller must encode it.
  BpeStatus encode(std::string_view text, std::vector<uint32_t>& ids, WordCache& cache) const;

  // Encodes every text on `threads` threads (the caller's included); output independent of it.
  void encode_batch(const std::vector<std::string_view>& texts, size_t threads,
                    std::vector<std::vector<uint32_t>>& ids, std::vector<BpeStatus>& status);

 private:
  void split_level(size_t level, const DecodedText& text, size_t begin, size_t end, const char* bytes,
                   std::vector<uint32_t>& ids, WordCache& cache) const;

  BpeModel model_;
  std::vector<std::unique_ptr<Regex>> splits_;
  AddedTokenScan added_;
  std::mutex batch_mutex_;
  std::vector<std::unique_ptr<WordCache>> caches_;  // one per thread slot, kept across batches
};

}  // namespace mfcore
