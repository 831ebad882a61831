#include "mfcore/gpt_indices.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace mfcore {

EpochPlan plan_epochs(int64_t tokens_per_epoch, int64_t num_samples, int64_t seq_length, int add_extra_token) {
  if (seq_length < 1) throw std::invalid_argument("seq_length must be >= 1, got " + std::to_string(seq_length));
  if (add_extra_token != 0 && add_extra_token != 1) throw std::invalid_argument("add_extra_token must be 0 or 1");
  if (tokens_per_epoch < 1) throw std::invalid_argument("the split holds no tokens");
  if (num_samples < 0 && num_samples != kUnsetNumSamples) {
    throw std::invalid_argument("num_samples must be >= 0, got " + std::to_string(num_samples));
  }
  EpochPlan plan;
  plan.tokens_per_epoch = tokens_per_epoch;
  if (num_samples == kUnsetNumSamples) return plan;
  const int64_t wanted = num_samples * seq_length + add_extra_token;
  plan.num_epochs = std::max<int64_t>(1, (wanted + tokens_per_epoch - 1) / tokens_per_epoch);
  if (plan.num_epochs == 1) return plan;
  const int64_t x = add_extra_token;
  plan.samples_before_last = ((plan.num_epochs - 1) * tokens_per_epoch - x) / seq_length;
  const int64_t in_last = num_samples - plan.samples_before_last;
  const int64_t per_epoch = (tokens_per_epoch - x) / seq_length;
  // Megatron: int(0.80 * per_epoch), a float64 product truncated toward zero.
  plan.separate_last_epoch = in_last < static_cast<int64_t>(0.80 * static_cast<double>(per_epoch));
  return plan;
}

int64_t count_tokens(const UnalignedArray<int32_t>& sizes, const DocumentRange& range) {
  if (range.begin < 0 || range.end < range.begin || static_cast<size_t>(range.end) > sizes.size()) {
    throw std::invalid_argument("document range [" + std::to_string(range.begin) + ", " + std::to_string(range.end) +
                                ") is outside the dataset's " + std::to_string(sizes.size()) + " sequences");
  }
  int64_t total = 0;
  for (int64_t d = range.begin; d < range.end; ++d) total += sizes[static_cast<size_t>(d)];
  return total;
}

namespace {
// Positions [from, to) of the unshuffled document index (epochs of ascending ids).
template <class T>
void fill_positions(T* out, size_t from, size_t to, const DocumentRange& range) {
  const size_t per_epoch = static_cast<size_t>(range.size());
  for (size_t p = from; p < to;) {
    const size_t in_epoch = p % per_epoch, count = std::min(per_epoch - in_epoch, to - p);
    const int64_t id = range.begin + static_cast<int64_t>(in_epoch);
    for (size_t k = 0; k < count; ++k) out[p + k] = static_cast<T>(id + static_cast<int64_t>(k));
    p += count;
  }
}

template <class T>
void fill_epochs(T* out, const DocumentRange& range, int64_t epochs) {
  for (int64_t e = 0; e < epochs; ++e) {
    for (int64_t d = range.begin; d < range.end; ++d) *out++ = static_cast<T>(d);
  }
}
}  // namespace

namespace {
// The document index's shuffles: one over everything, or one over the first E-1 epochs and one
// over the last.
std::vector<size_t> document_segments(const DocumentRange& range, const EpochPlan& plan) {
  const size_t per_epoch = static_cast<size_t>(range.size());
  if (!plan.separate_last_epoch || plan.num_epochs == 1) return {per_epoch * static_cast<size_t>(plan.num_epochs)};
  return {per_epoch * static_cast<size_t>(plan.num_epochs - 1), per_epoch};
}

IndexArray unshuffled_document_index(const DocumentRange& range, const EpochPlan& plan) {
  if (range.end > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("more than 2^31 documents");
  const size_t per_epoch = static_cast<size_t>(range.size());
  IndexArray index = IndexArray::allocate(IndexType::Int32, per_epoch * static_cast<size_t>(plan.num_epochs));
  fill_epochs(index.mutable_as<int32_t>(), range, plan.num_epochs);
  return index;
}
}  // namespace

IndexArray build_document_index(const DocumentRange& range, const EpochPlan& plan, NumpyRandom& rng) {
  IndexArray index = unshuffled_document_index(range, plan);
  int32_t* a = index.mutable_as<int32_t>();
  for (size_t len : document_segments(range, plan)) {
    rng.shuffle(a, len);
    a += len;
  }
  return index;
}

namespace {
template <class T>
void fill_sample_index(T* row, const UnalignedArray<int32_t>& sizes, const int32_t* docs, int64_t num_docs,
                       int64_t num_rows, int64_t seq_length, int64_t x) {
  // Every entry is checked where it is read (entries past the last sample are never read).
  const auto size_of = [&](int64_t d) -> int64_t {
    if (static_cast<uint32_t>(docs[d]) >= sizes.size()) {
      throw std::invalid_argument("document index entry " + std::to_string(docs[d]) + " is out of range");
    }
    return sizes[static_cast<size_t>(docs[d])];
  };
  int64_t d = 0, off = 0;
  row[0] = 0;
  row[1] = 0;
  for (int64_t r = 1; r < num_rows; ++r) {
    int64_t remaining = seq_length + x;
    while (remaining != 0) {
      const int64_t size = size_of(d);
      const int64_t doc_len = size - off;
      remaining -= doc_len;
      if (remaining <= 0) {
        off += remaining + doc_len - x;
        remaining = 0;
      } else {
        if (d == num_docs - 1) {  // out of documents: the last partial sample ends here
          off = size - x;
          break;
        }
        ++d;
        off = 0;
      }
    }
    row[2 * r] = static_cast<T>(d);
    row[2 * r + 1] = static_cast<T>(off);
  }
}
}  // namespace

int64_t count_samples(const EpochPlan& plan, int64_t seq_length, int add_extra_token, bool drop_last) {
  const int64_t tokens = plan.num_epochs * plan.tokens_per_epoch - add_extra_token;
  int64_t n = 0;
  if (drop_last) {
    n = tokens / seq_length;
  } else {  // single precision, as the reference computes it
    n = static_cast<int64_t>(std::ceil(static_cast<float>(tokens) / static_cast<float>(seq_length)));
  }
  return std::max<int64_t>(n, 0);
}

IndexArray build_sample_index(const UnalignedArray<int32_t>& sizes, const IndexArray& document_index,
                              const EpochPlan& plan, int64_t seq_length, int add_extra_token, bool drop_last) {
  const int64_t x = add_extra_token;
  const int64_t n = count_samples(plan, seq_length, add_extra_token, drop_last);
  const int64_t num_docs = static_cast<int64_t>(document_index.size());
  const int32_t* docs = document_index.as<int32_t>();
  if (n > 0 && num_docs == 0) throw std::invalid_argument("empty document index");
  const bool wide = num_docs > std::numeric_limits<int32_t>::max();
  IndexArray index = IndexArray::allocate(wide ? IndexType::Int64 : IndexType::Int32, static_cast<size_t>(n + 1), 2);
  if (wide) {
    fill_sample_index(index.mutable_as<int64_t>(), sizes, docs, num_docs, n + 1, seq_length, x);
  } else {
    fill_sample_index(index.mutable_as<int32_t>(), sizes, docs, num_docs, n + 1, seq_length, x);
  }
  return index;
}

namespace {
template <class T>
void fill_shuffle(T* a, int64_t first, int64_t total, NumpyRandom& rng, bool helper_thread) {
  for (int64_t i = 0; i < total; ++i) a[i] = static_cast<T>(i);
  const size_t lengths[2] = {static_cast<size_t>(first), static_cast<size_t>(total - first)};
  for (size_t len : lengths) {
    if (helper_thread) rng.shuffle(a, len); else rng.shuffle_here(a, len);
    a += len;
  }
}
}  // namespace

namespace {
IndexArray shuffle_index(int64_t first, int64_t total, NumpyRandom& rng, bool helper_thread) {
  if (first < 0 || first > total) throw std::invalid_argument("shuffle index: need 0 <= first <= total");
  const bool wide = total >= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()) - 1;
  IndexArray index = IndexArray::allocate(wide ? IndexType::Int64 : IndexType::UInt32, static_cast<size_t>(total));
  if (wide) {
    fill_shuffle(index.mutable_as<int64_t>(), first, total, rng, helper_thread);
  } else {
    fill_shuffle(index.mutable_as<uint32_t>(), first, total, rng, helper_thread);
  }
  return index;
}
}  // namespace

IndexArray build_shuffle_index(int64_t first, int64_t total, NumpyRandom& rng) {
  return shuffle_index(first, total, rng, true);
}

namespace {
constexpr size_t kPipelineMin = size_t(1) << 20;  // document-index entries; below, one thread is faster

// The sample index walked from the end, in resumable steps: row r starts where the token
// r * L + X - 1 (the last of sample r - 1) lies, so walking the documents backwards from a known
// token count gives every row without the forward walk's per-sample state, and the walk can follow
// the swaps, which settle a shuffled segment of the document index from its end down. One walk
// covers the positions [first_doc, last_doc], holding the tokens that end at `end_tokens`, and the
// rows [first_row, last_row] that start there (the last walk also gets the partial last sample).
template <class T, class Doc>
class BackwardWalk {
 public:
  BackwardWalk(T* rows, const UnalignedArray<int32_t>& sizes, const Doc* docs, int64_t first_doc, int64_t last_doc,
               int64_t first_row, int64_t last_row, int64_t L, int64_t x, int64_t end_tokens)
      : row_(rows), sizes_(sizes), docs_(docs), first_doc_(first_doc), first_row_(first_row), L_(L), x_(x),
        r_(last_row), t_(last_row * L + x - 1), d_(last_doc), end_(end_tokens), last_end_(end_tokens) {}
  bool done() const { return d_ < first_doc_ || r_ < first_row_; }
  int64_t next_document() const { return d_; }
  int64_t first_document() const { return first_doc_; }

  // Walks the document-index positions >= limit not walked yet; false when there were none.
  bool advance(int64_t limit) {
    if (done() || d_ < limit) return false;
    if (!started_) {  // rows past the last token: the partial last sample (kept unless drop_last)
      started_ = true;
      const int64_t last_size = size_of(d_);
      for (; r_ >= first_row_ && t_ >= last_end_; --r_, t_ -= L_) set_row(d_, last_size - x_);
    }
    for (limit = std::max(limit, first_doc_); d_ >= limit && r_ >= first_row_; --d_) {
      const int64_t begin = end_ - size_of(d_);
      // Most documents start no row or one: the first is taken without a branch (row r_ is written
      // either way and rewritten later if it does not start here), further ones in a loop.
      const int64_t hit = t_ >= begin;
      set_row(d_, t_ - x_ + 1 - begin);
      r_ -= hit;
      t_ -= hit * L_;
      for (; r_ >= first_row_ && t_ >= begin; --r_, t_ -= L_) set_row(d_, t_ - x_ + 1 - begin);
      end_ = begin;
    }
    return true;
  }

 private:
  int64_t size_of(int64_t d) const { return sizes_[static_cast<size_t>(docs_[d])]; }
  void set_row(int64_t d, int64_t offset) {
    row_[2 * r_] = static_cast<T>(d);
    row_[2 * r_ + 1] = static_cast<T>(offset);
  }
  T* row_;
  const UnalignedArray<int32_t>& sizes_;
  const Doc* docs_;
  int64_t first_doc_, first_row_, L_, x_, r_, t_, d_, end_, last_end_;
  bool started_ = false;
};

// One walk per shuffled segment of the document index: a segment holds whole epochs, so the token
// count at its end is known before it is shuffled, and its walk can start as soon as its swaps do
// (with a separate last epoch, the first segment's walk need not wait for the last epoch's shuffle).
template <class T, class Doc>
std::vector<BackwardWalk<T, Doc>> segment_walks(T* rows, const UnalignedArray<int32_t>& sizes, const Doc* docs,
                                                const GptIndexSpec& spec, const EpochPlan& plan, int64_t n) {
  std::vector<BackwardWalk<T, Doc>> walks;
  const int64_t per_epoch = spec.documents.size(), L = spec.seq_length, x = spec.add_extra_token;
  const std::vector<size_t> segments = document_segments(spec.documents, plan);
  int64_t first_doc = 0, tokens = 0, first_row = 1;
  for (size_t s = 0; s < segments.size(); ++s) {
    const int64_t len = static_cast<int64_t>(segments[s]);
    tokens += len / per_epoch * plan.tokens_per_epoch;
    const int64_t last_row = s + 1 == segments.size() ? n : std::min(n, (tokens - x) / L);  // t_r < tokens
    walks.emplace_back(rows, sizes, docs, first_doc, first_doc + len - 1, first_row, last_row, L, x, tokens);
    first_doc += len;
    first_row = last_row + 1;
  }
  return walks;
}

// Shuffle-index entries: 32-bit, drawn in the pipeline, unless the split has 2^32 - 1 samples or more.
bool wide_shuffle(int64_t n) { return n >= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()) - 1; }

// What the two threads of the pipelined build share.
template <class Doc>
struct Pipeline {
  GptIndices& out;
  const UnalignedArray<int32_t>& sizes;
  const GptIndexSpec& spec;
  NumpyRandom& rng;
  int64_t n, first;
  Doc* docs = nullptr;
  uint32_t* order = nullptr;  // the 32-bit shuffle index, or null when it is built apart (too long)
  ShuffleTargets doc_targets;
  std::unique_ptr<ShuffleTargets> sample_targets;
  std::atomic<bool> lower_filled{false}, order_filled{false};
};

// The helper thread's share: the swap targets of the document shuffle and then of the shuffle index
// (one generator, in Megatron's order); whenever the ring of targets is full, the shuffle index's
// initial fill and then the sample index over the document-index positions the swaps have settled.
template <class T, class Doc>
void draw_and_walk(Pipeline<Doc>& p) {
  constexpr int64_t kStep = int64_t{1} << 16;  // entries filled or documents walked per idle call
  T* rows = p.out.sample_index.template mutable_as<T>();
  rows[0] = 0;
  rows[1] = 0;
  auto walks = segment_walks(rows, p.sizes, p.docs, p.spec, p.out.plan, p.n);
  int64_t ordered = p.order ? 0 : p.n;
  auto idle = [&] {
    if (ordered < p.n) {
      const int64_t stop = std::min(p.n, ordered + 16 * kStep);
      for (; ordered < stop; ++ordered) p.order[ordered] = static_cast<uint32_t>(ordered);
      if (ordered == p.n) p.order_filled.store(true, std::memory_order_release);
      return true;
    }
    for (size_t s = 0; s < walks.size(); ++s) {
      const int64_t settled = static_cast<int64_t>(p.doc_targets.final_from(s));
      if (walks[s].advance(std::max(settled, walks[s].next_document() - kStep))) return true;
    }
    return false;
  };
  p.doc_targets.draw(p.rng, idle);
  while (ordered < p.n) idle();
  p.order_filled.store(true, std::memory_order_release);
  if (p.sample_targets) {
    p.sample_targets->draw(p.rng, idle);
  } else {
    p.out.shuffle_index = shuffle_index(p.first, p.n, p.rng, false);
  }
  for (size_t s = 0; s < walks.size(); ++s) {
    while (!walks[s].done()) {
      const int64_t upto = std::max(walks[s].next_document() - kStep, walks[s].first_document());
      p.doc_targets.wait_final(s, static_cast<size_t>(upto));
      idle();
    }
  }
}

// Two threads. The helper draws every swap target and walks the sample index right behind the
// swaps (see draw_and_walk); this thread performs the swaps of the document shuffle and then of the
// shuffle index: the random memory accesses that bound the build. The document index holds uint16
// ids while the documents allow it (half the memory traffic of the random swaps, and half the
// memory to fault in). The draws and results are the sequential ones.
template <class Doc>
void build_pipelined(GptIndices& out, const UnalignedArray<int32_t>& sizes, const GptIndexSpec& spec,
                     NumpyRandom& rng, int64_t n, int64_t first) {
  Pipeline<Doc> p{out, sizes, spec, rng, n, first, nullptr, nullptr, ShuffleTargets(document_segments(spec.documents, out.plan)), nullptr};
  const int64_t num_docs = spec.documents.size() * out.plan.num_epochs;
  out.document_index = IndexArray::allocate(sizeof(Doc) == 2 ? IndexType::UInt16 : IndexType::Int32,
                                            static_cast<size_t>(num_docs));
  p.docs = out.document_index.mutable_as<Doc>();
  const bool wide_rows = num_docs > std::numeric_limits<int32_t>::max();
  out.sample_index = IndexArray::allocate(wide_rows ? IndexType::Int64 : IndexType::Int32, static_cast<size_t>(n + 1), 2);
  if (!wide_shuffle(n)) {
    p.sample_targets.reset(new ShuffleTargets({static_cast<size_t>(first), static_cast<size_t>(n - first)}));
    out.shuffle_index = IndexArray::allocate(IndexType::UInt32, static_cast<size_t>(n));
    p.order = out.shuffle_index.mutable_as<uint32_t>();
  }
  // The initial fill (and the page faults of the fresh buffer) is shared: the helper writes the
  // lower half of the document index before it starts drawing.
  const size_t mid = static_cast<size_t>(num_docs) / 2;
  std::exception_ptr error;
  std::thread helper([&] {
    fill_positions(p.docs, 0, mid, spec.documents);
    p.lower_filled.store(true, std::memory_order_release);
    try {
      if (wide_rows) draw_and_walk<int64_t>(p); else draw_and_walk<int32_t>(p);
    } catch (...) {
      error = std::current_exception();
    }
  });
  fill_positions(p.docs, mid, static_cast<size_t>(num_docs), spec.documents);
  while (!p.lower_filled.load(std::memory_order_acquire)) std::this_thread::yield();
  p.doc_targets.apply(p.docs);
  if (p.sample_targets) {
    while (!p.order_filled.load(std::memory_order_acquire)) std::this_thread::yield();
    p.sample_targets->apply(p.order);
  }
  helper.join();
  if (error) std::rethrow_exception(error);
}
}  // namespace

GptIndices build_gpt_indices(const UnalignedArray<int32_t>& sizes, const GptIndexSpec& spec) {
  GptIndices out;
  out.plan = plan_epochs(count_tokens(sizes, spec.documents), spec.num_samples, spec.seq_length, spec.add_extra_token);
  NumpyRandom rng(spec.seed);
  const int64_t n = count_samples(out.plan, spec.seq_length, spec.add_extra_token, spec.drop_last);
  const int64_t first = out.plan.separate_last_epoch ? out.plan.samples_before_last : n;
  if (spec.documents.end > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("more than 2^31 documents");
  const size_t num_docs = static_cast<size_t>(spec.documents.size() * out.plan.num_epochs);
  if (num_docs >= kPipelineMin && num_docs <= (size_t(1) << 32)) {  // 32-bit swap targets
    if (spec.documents.end <= 65536) {
      build_pipelined<uint16_t>(out, sizes, spec, rng, n, first);
    } else {
      build_pipelined<int32_t>(out, sizes, spec, rng, n, first);
    }
    return out;
  }
  out.document_index = unshuffled_document_index(spec.documents, out.plan);
  int32_t* a = out.document_index.mutable_as<int32_t>();
  for (size_t len : document_segments(spec.documents, out.plan)) {
    rng.shuffle_here(a, len);
    a += len;
  }
  out.shuffle_index = shuffle_index(first, n, rng, true);
  out.sample_index =
      build_sample_index(sizes, out.document_index, out.plan, spec.seq_length, spec.add_extra_token, spec.drop_last);
  return out;
}

}  // namespace mfcore
