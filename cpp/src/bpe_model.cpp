#include "mfcore/bpe_model.h"

#include <queue>

namespace mfcore {

namespace {
void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += char(cp);
  } else {  // the ByteLevel alphabet stays below U+0800
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others (controls,
// space, soft hyphen...) for U+0100 upwards in byte order.
const std::vector<std::string>& alphabet() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t extra = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      append_utf8(t[b], printable ? b : 256 + extra++);
    }
    return t;
  }();
  return table;
}

const std::unordered_map<std::string, uint8_t>& inverse_alphabet() {
  static const std::unordered_map<std::string, uint8_t> inverse = [] {
    std::unordered_map<std::string, uint8_t> m;
    for (uint32_t b = 0; b < 256; ++b) m[alphabet()[b]] = uint8_t(b);
    return m;
  }();
  return inverse;
}

size_t utf8_length(uint8_t lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

// tokenizers' Symbol: a merged run of bytes in a doubly linked list (len 0 = merged away).
struct Symbol {
  uint32_t id;
  int32_t prev, next;
  uint32_t len;
};

struct QueuedMerge {
  uint32_t rank, pos, new_id;
  bool operator<(const QueuedMerge& o) const {  // std::priority_queue pops the largest
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};
}  // namespace

const std::string& byte_level_char(uint8_t b) { return alphabet()[b]; }

bool byte_level_decode(const std::string& token, std::string& raw) {
  raw.clear();
  const auto& inverse = inverse_alphabet();
  for (size_t i = 0; i < token.size();) {
    size_t len = utf8_length(uint8_t(token[i]));
    auto it = inverse.find(token.substr(i, len));
    if (it == inverse.end()) return false;
    raw += char(it->second);
    i += len;
  }
  return true;
}

BpeModel::BpeModel(const std::vector<std::pair<std::string, uint32_t>>& vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges)
    : ignore_merges_(ignore_merges) {
  std::unordered_map<std::string, uint32_t> ids(vocab.begin(), vocab.end());
  for (uint32_t b = 0; b < 256; ++b) {
    auto it = ids.find(byte_level_char(uint8_t(b)));
    if (it == ids.end()) throw BpeUnsupported("the vocabulary lacks the ByteLevel token of byte " + std::to_string(b));
    byte_ids_[b] = it->second;
  }
  std::string raw;
  for (const auto& [token, id] : vocab)
    if (byte_level_decode(token, raw)) raw_vocab_[raw] = id;
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto a = ids.find(left), b = ids.find(right), ab = ids.find(left + right);
    if (a == ids.end() || b == ids.end() || ab == ids.end())
      throw BpeUnsupported("merge '" + left + " " + right + "' names a token outside the vocabulary");
    merges_[pair_key(a->second, b->second)] = Merge{uint32_t(rank), ab->second};  // later duplicates win, as in tokenizers
  }
}

const BpeModel::Merge* BpeModel::find_merge(uint32_t a, uint32_t b) const {
  auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::encode_word(const char* bytes, size_t size, std::vector<uint32_t>& out) const {
  if (ignore_merges_) {
    auto whole = raw_vocab_.find(std::string(bytes, size));
    if (whole != raw_vocab_.end()) {
      out.push_back(whole->second);
      return;
    }
  }
  std::vector<Symbol> sym(size);
  std::priority_queue<QueuedMerge> queue;
  for (size_t i = 0; i < size; ++i) {
    sym[i] = Symbol{byte_ids_[uint8_t(bytes[i])], int32_t(i) - 1, i + 1 < size ? int32_t(i + 1) : -1, 1};
    if (i > 0)
      if (const Merge* m = find_merge(sym[i - 1].id, sym[i].id)) queue.push({m->rank, uint32_t(i - 1), m->new_id});
  }
  while (!queue.empty()) {
    QueuedMerge top = queue.top();
    queue.pop();
    Symbol& cur = sym[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    Symbol right = sym[cur.next];
    const Merge* now = find_merge(cur.id, right.id);
    if (now == nullptr || now->new_id != top.new_id) continue;  // an expired entry
    sym[cur.next].len = 0;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    if (right.next >= 0) sym[right.next].prev = int32_t(top.pos);
    if (cur.prev >= 0)
      if (const Merge* m = find_merge(sym[cur.prev].id, cur.id)) queue.push({m->rank, uint32_t(cur.prev), m->new_id});
    if (cur.next >= 0)
      if (const Merge* m = find_merge(cur.id, sym[cur.next].id)) queue.push({m->rank, top.pos, m->new_id});
  }
  for (const Symbol& s : sym)
    if (s.len != 0) out.push_back(s.id);
}

}  // namespace mfcore
