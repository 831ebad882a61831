#include "mfcore/gpt_indices.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
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

// The sample index walked from the end: row r starts where the token r * L + X - 1 (the last of
// sample r - 1) lies, so walking the documents backwards from the total token count gives every
// row without the forward walk's per-sample state. `settled(d)` waits until entries >= d are
// final; `widened` (may be null) receives every entry as int32 on the way (the document index of a
// uint16 shuffle). Needs the document index to hold exactly `total` tokens (true for ours).
template <class T, class Doc, class Wait>
void walk_backward(T* row, const UnalignedArray<int32_t>& sizes, const Doc* docs, int32_t* widened, int64_t num_docs,
                   int64_t num_rows, int64_t L, int64_t x, int64_t total, Wait&& settled) {
  int64_t r = num_rows - 1, t = r * L + x - 1, d = num_docs - 1;
  settled(d & ~int64_t{4095});
  const int64_t last_size = sizes[static_cast<size_t>(docs[d])];
  for (; r >= 1 && t >= total; --r, t -= L) {  // the partial last sample (kept unless drop_last)
    row[2 * r] = static_cast<T>(d);
    row[2 * r + 1] = static_cast<T>(last_size - x);
  }
  for (int64_t end = total; d >= 0 && r >= 1; --d) {
    if ((d & 4095) == 4095) settled(d & ~int64_t{4095});
    if (widened) widened[d] = static_cast<int32_t>(docs[d]);
    const int64_t begin = end - sizes[static_cast<size_t>(docs[d])];
    for (; r >= 1 && t >= begin; --r, t -= L) {
      row[2 * r] = static_cast<T>(d);
      row[2 * r + 1] = static_cast<T>(t - x + 1 - begin);
    }
    end = begin;
  }
  row[0] = 0;
  row[1] = 0;
  if (!widened || d < 0) return;
  settled(0);
  for (; d >= 0; --d) widened[d] = static_cast<int32_t>(docs[d]);
}

// The helper's last step: the sample index (and, after a uint16 shuffle, the int32 document index)
// behind the swaps.
template <class Doc>
void index_behind_swaps(GptIndices& out, const UnalignedArray<int32_t>& sizes, const GptIndexSpec& spec, int64_t n,
                        const Doc* docs, size_t num_docs, const ShuffleTargets& targets) {
  const bool wide = num_docs > static_cast<size_t>(std::numeric_limits<int32_t>::max());
  out.sample_index = IndexArray::allocate(wide ? IndexType::Int64 : IndexType::Int32, static_cast<size_t>(n + 1), 2);
  int32_t* widened = nullptr;
  if (!std::is_same<Doc, int32_t>::value) {
    out.document_index = IndexArray::allocate(IndexType::Int32, num_docs);
    widened = out.document_index.mutable_as<int32_t>();
  }
  auto settled = [&](int64_t d) { targets.wait_final(static_cast<size_t>(d)); };
  const int64_t total = out.plan.num_epochs * out.plan.tokens_per_epoch, x = spec.add_extra_token;
  const int64_t L = spec.seq_length, docs_n = static_cast<int64_t>(num_docs);
  if (wide) {
    walk_backward(out.sample_index.mutable_as<int64_t>(), sizes, docs, widened, docs_n, n + 1, L, x, total, settled);
  } else {
    walk_backward(out.sample_index.mutable_as<int32_t>(), sizes, docs, widened, docs_n, n + 1, L, x, total, settled);
  }
}

// Two threads: the helper draws the document shuffle's swap targets, then (continuing the same
// generator) builds the shuffle index, then the sample index right behind the swaps, which settle
// the document index from its end down. This thread only fills and swaps, on uint16 ids when the
// documents allow it (half the memory traffic of the random swaps; the helper widens them to the
// int32 document index on its walk). The draws and results are the sequential ones.
template <class Doc>
void build_pipelined(GptIndices& out, const UnalignedArray<int32_t>& sizes, const GptIndexSpec& spec,
                     NumpyRandom& rng, int64_t n, int64_t first) {
  ShuffleTargets targets(document_segments(spec.documents, out.plan));
  const size_t num_docs = static_cast<size_t>(spec.documents.size() * out.plan.num_epochs);
  IndexArray work = IndexArray::allocate(sizeof(Doc) == 2 ? IndexType::Int16 : IndexType::Int32, num_docs);
  Doc* docs = work.mutable_as<Doc>();
  if (std::is_same<Doc, int32_t>::value) out.document_index = work;
  std::exception_ptr error;
  // The fill (and the page faults of the fresh buffer) is shared: the helper writes the lower half
  // before it starts drawing.
  const size_t mid = num_docs / 2;
  std::atomic<bool> lower_filled{false};
  std::thread helper([&] {
    fill_positions(docs, 0, mid, spec.documents);
    lower_filled.store(true, std::memory_order_release);
    targets.draw(rng);
    try {
      out.shuffle_index = shuffle_index(first, n, rng, false);
      index_behind_swaps(out, sizes, spec, n, docs, num_docs, targets);
    } catch (...) {
      error = std::current_exception();
    }
  });
  fill_positions(docs, mid, num_docs, spec.documents);
  while (!lower_filled.load(std::memory_order_acquire)) std::this_thread::yield();
  targets.apply(docs);
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
