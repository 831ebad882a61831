#include "mfcore/bpe_encoder.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <thread>

namespace mfcore {

const char* bpe_status_name(BpeStatus s) {
  switch (s) {
    case BpeStatus::kOk: return "ok";
    case BpeStatus::kAddedToken: return "added token";
    case BpeStatus::kUnassigned: return "unassigned code point";
    case BpeStatus::kRegexBudget: return "regex backtracking budget";
    case BpeStatus::kInvalidText: return "invalid UTF-8";
  }
  return "?";
}

namespace {
// Code points a thread keeps decoding room for between documents (8 bytes each).
constexpr size_t kKeptDecodeCapacity = size_t(1) << 22;

// A fast non-cryptographic hash of a short byte string, never 0 (0 marks an empty slot).
uint64_t word_hash(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 29;
  return h | 1;
}
}  // namespace

WordCache::WordCache(size_t max_entries) : max_entries_(max_entries) {
  size_t size = 16;
  while (size < 2 * max_entries) size *= 2;
  slots_.assign(size, Slot{0, 0, 0, 0, 0});
}

void WordCache::clear() {
  std::fill(slots_.begin(), slots_.end(), Slot{0, 0, 0, 0, 0});
  keys_.clear();
  ids_.clear();
  used_ = 0;
}

void WordCache::encode(const BpeModel& model, const char* word, size_t size, std::vector<uint32_t>& out) {
  if (size > kMaxWordBytes) return model.encode_word(word, size, out);
  uint64_t hash = word_hash(word, size);
  size_t mask = slots_.size() - 1, i = size_t(hash) & mask;
  for (; slots_[i].hash != 0; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.hash == hash && s.key_size == size && std::memcmp(keys_.data() + s.key_offset, word, size) == 0) {
      out.insert(out.end(), ids_.begin() + s.ids_offset, ids_.begin() + s.ids_offset + s.ids_count);
      return;
    }
  }
  if (used_ >= max_entries_) {
    clear();
    i = size_t(hash) & mask;
  }
  size_t before = out.size();
  model.encode_word(word, size, out);
  slots_[i] = Slot{hash, uint32_t(keys_.size()), uint32_t(ids_.size()), uint16_t(size), uint16_t(out.size() - before)};
  keys_.append(word, size);
  ids_.insert(ids_.end(), out.begin() + before, out.end());
  ++used_;
}

AddedTokenSet::AddedTokenSet(std::vector<AddedToken> tokens) : single_(256, -1), pair_bits_(1024, 0) {
  for (auto& t : tokens)
    if (!t.content.empty()) tokens_.push_back(std::move(t));
  for (size_t k = 0; k < tokens_.size(); ++k) {
    const std::string& c = tokens_[k].content;
    if (c.size() == 1) {
      single_[uint8_t(c[0])] = int64_t(k);
      continue;
    }
    uint16_t prefix = uint16_t(uint8_t(c[0]) << 8 | uint8_t(c[1]));
    pair_bits_[prefix >> 6] |= uint64_t(1) << (prefix & 63);
    by_prefix_[prefix].push_back(uint32_t(k));
  }
  for (auto& entry : by_prefix_)
    std::stable_sort(entry.second.begin(), entry.second.end(), [&](uint32_t a, uint32_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
}

bool AddedTokenSet::find(const char* text, size_t from, size_t end, size_t& pos, size_t& len, uint32_t& id) const {
  if (tokens_.empty()) return false;
  const auto* p = reinterpret_cast<const uint8_t*>(text);
  for (size_t i = from; i < end; ++i) {
    if (i + 1 < end) {
      uint16_t prefix = uint16_t(p[i] << 8 | p[i + 1]);
      if ((pair_bits_[prefix >> 6] >> (prefix & 63)) & 1) {
        for (uint32_t k : by_prefix_.at(prefix)) {
          const std::string& c = tokens_[k].content;
          if (c.size() <= end - i && std::memcmp(text + i, c.data(), c.size()) == 0) {
            pos = i, len = c.size(), id = tokens_[k].id;
            return true;
          }
        }
      }
    }
    if (single_[p[i]] >= 0) {
      pos = i, len = 1, id = tokens_[size_t(single_[p[i]])].id;
      return true;
    }
  }
  return false;
}

BpeEncoder::BpeEncoder(BpeModel model, const std::vector<std::string>& split_patterns, const AddedTokens& added)
    : model_(std::move(model)),
      added_{AddedTokenSet(added.raw), AddedTokenSet(added.normalized)},
      detect_only_(added.detect_only) {
  for (const auto& p : split_patterns) splits_.push_back(std::make_unique<Regex>(p));
}

// Added-token pass `pass` over the code points [begin, end): tokens found give their id, the text
// between them goes to the next pass and finally to the pre-tokenizer (each piece on its own).
void BpeEncoder::added_level(size_t pass, const DecodedText& text, size_t begin, size_t end, const char* bytes,
                             std::vector<uint32_t>& ids, WordCache& cache) const {
  if (pass == 2) return split_level(0, text, begin, end, bytes, ids, cache);
  size_t from = text.offsets[begin], stop = text.offsets[end], pos = 0, len = 0, piece = begin;
  uint32_t id = 0;
  auto index_of = [&](size_t byte) {  // a valid UTF-8 token starts and ends on character boundaries
    return size_t(std::lower_bound(text.offsets.begin(), text.offsets.end(), uint32_t(byte)) - text.offsets.begin());
  };
  while (added_[pass].find(bytes, from, stop, pos, len, id)) {
    size_t at = index_of(pos);
    if (at > piece) added_level(pass + 1, text, piece, at, bytes, ids, cache);
    ids.push_back(id);
    from = pos + len;
    piece = index_of(from);
  }
  if (piece < end) added_level(pass + 1, text, piece, end, bytes, ids, cache);
}

// Split(Isolated) number `level` over text[begin, end): matches and the gaps between them are
// pieces, each split further by the next level; the last level's pieces go to the BPE model.
void BpeEncoder::split_level(size_t level, const DecodedText& text, size_t begin, size_t end,
                             const char* bytes, std::vector<uint32_t>& ids, WordCache& cache) const {
  if (level == splits_.size()) {
    size_t b = text.offsets[begin], e = text.offsets[end];
    return cache.encode(model_, bytes + b, e - b, ids);
  }
  const Regex& re = *splits_[level];
  const uint32_t* cps = text.cps.data() + begin;  // the piece is the regex's whole subject
  size_t n = end - begin, pos = 0, mb = 0, me = 0;
  while (pos < n && re.find(cps, pos, n, mb, me)) {
    if (mb > pos) split_level(level + 1, text, begin + pos, begin + mb, bytes, ids, cache);
    split_level(level + 1, text, begin + mb, begin + me, bytes, ids, cache);
    pos = me;
  }
  if (pos < n) split_level(level + 1, text, begin + pos, end, bytes, ids, cache);
}

BpeStatus BpeEncoder::encode(std::string_view text, std::vector<uint32_t>& ids, WordCache& cache) const {
  size_t pos = 0, len = 0;
  uint32_t id = 0;
  if (detect_only_.find(text.data(), 0, text.size(), pos, len, id)) return BpeStatus::kAddedToken;
  thread_local DecodedText decoded;
  if (!decode_utf8(text.data(), text.size(), decoded)) return BpeStatus::kInvalidText;
  for (uint32_t cp : decoded.cps)
    if (cp >= 128 && general_category(cp) == kCn) return BpeStatus::kUnassigned;
  size_t before = ids.size();
  BpeStatus status = BpeStatus::kOk;
  try {
    added_level(0, decoded, 0, decoded.cps.size(), text.data(), ids, cache);
  } catch (const RegexBudgetExceeded&) {
    ids.resize(before);
    status = BpeStatus::kRegexBudget;
  }
  if (decoded.cps.capacity() > kKeptDecodeCapacity) decoded = DecodedText();  // one huge document
  return status;
}

void BpeEncoder::encode_batch(const std::vector<std::string_view>& texts, size_t threads,
                              std::vector<std::vector<uint32_t>>& ids, std::vector<BpeStatus>& status) {
  std::lock_guard<std::mutex> lock(batch_mutex_);
  threads = std::max<size_t>(1, std::min(threads, texts.size()));
  while (caches_.size() < threads) caches_.push_back(std::make_unique<WordCache>());
  ids.assign(texts.size(), {});
  status.assign(texts.size(), BpeStatus::kOk);
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&](size_t slot) {
    try {
      for (size_t k; (k = next.fetch_add(1)) < texts.size();) status[k] = encode(texts[k], ids[k], *caches_[slot]);
    } catch (...) {
      std::lock_guard<std::mutex> g(error_mutex);
      if (!error) error = std::current_exception();
      next = texts.size();
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace mfcore
