#pragma once
// The byte-level BPE model of Hugging Face `tokenizers`: a pre-token's bytes become the ids of
// their ByteLevel characters, which are merged pair by pair, lowest merge rank first (leftmost
// first among equal ranks), exactly as tokenizers' Word::merge_all does.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mfcore {

// A tokenizer.json this engine cannot reproduce exactly (the caller falls back to `tokenizers`).
class BpeUnsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The ByteLevel alphabet of GPT-2: the UTF-8 text of the character that stands for byte `b`.
const std::string& byte_level_char(uint8_t b);

// The raw bytes a ByteLevel token string stands for; false if it holds a non-ByteLevel character.
bool byte_level_decode(const std::string& token, std::string& raw);

class BpeModel {
 public:
  // vocab: (ByteLevel token string, id); merges: (left, right) in rank order. Throws
  // BpeUnsupported when a byte has no token or a merge names tokens outside the vocabulary.
  BpeModel(const std::vector<std::pair<std::string, uint32_t>>& vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges);

  // Appends the ids of one pre-token (raw bytes) to `out`.
  void encode_word(const char* bytes, size_t size, std::vector<uint32_t>& out) const;

  size_t merge_count() const { return merges_.size(); }

 private:
  struct Merge {
    uint32_t rank;
    uint32_t new_id;
  };
  static uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t(a) << 32) | b; }
  const Merge* find_merge(uint32_t a, uint32_t b) const;

  uint32_t byte_ids_[256];
  std::unordered_map<uint64_t, Merge> merges_;
  std::unordered_map<std::string, uint32_t> raw_vocab_;  // raw bytes -> id, for ignore_merges
  bool ignore_merges_;
};

}  // namespace mfcore
