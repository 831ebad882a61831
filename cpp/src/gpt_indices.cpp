#include "mfcore/gpt_indices.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

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
void fill_epochs(int32_t* out, const DocumentRange& range, int64_t epochs) {
  for (int64_t e = 0; e < epochs; ++e) {
    for (int64_t d = range.begin; d < range.end; ++d) *out++ = static_cast<int32_t>(d);
  }
}
}  // namespace

IndexArray build_document_index(const DocumentRange& range, const EpochPlan& plan, NumpyRandom& rng) {
  if (range.end > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("more than 2^31 documents");
  const size_t per_epoch = static_cast<size_t>(range.size());
  IndexArray index = IndexArray::allocate(IndexType::Int32, per_epoch * static_cast<size_t>(plan.num_epochs));
  int32_t* a = index.mutable_as<int32_t>();
  fill_epochs(a, range, plan.num_epochs);
  if (!plan.separate_last_epoch || plan.num_epochs == 1) {
    rng.shuffle(a, index.size());
  } else {
    const size_t first = per_epoch * static_cast<size_t>(plan.num_epochs - 1);
    rng.shuffle(a, first);
    rng.shuffle(a + first, per_epoch);
  }
  return index;
}

namespace {
template <class T>
void fill_sample_index(T* row, const UnalignedArray<int32_t>& sizes, const int32_t* docs, int64_t num_docs,
                       int64_t num_rows, int64_t seq_length, int64_t x) {
  int64_t d = 0, off = 0;
  row[0] = 0;
  row[1] = 0;
  for (int64_t r = 1; r < num_rows; ++r) {
    int64_t remaining = seq_length + x;
    while (remaining != 0) {
      const int64_t size = sizes[static_cast<size_t>(docs[d])];
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
  for (int64_t i = 0; i < num_docs; ++i) {
    if (docs[i] < 0 || static_cast<size_t>(docs[i]) >= sizes.size()) {
      throw std::invalid_argument("document index entry " + std::to_string(docs[i]) + " is out of range");
    }
  }
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
void fill_shuffle(T* a, int64_t first, int64_t total, NumpyRandom& rng) {
  for (int64_t i = 0; i < total; ++i) a[i] = static_cast<T>(i);
  rng.shuffle(a, static_cast<size_t>(first));
  if (first != total) rng.shuffle(a + first, static_cast<size_t>(total - first));
}
}  // namespace

IndexArray build_shuffle_index(int64_t first, int64_t total, NumpyRandom& rng) {
  if (first < 0 || first > total) throw std::invalid_argument("shuffle index: need 0 <= first <= total");
  const bool wide = total >= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()) - 1;
  IndexArray index = IndexArray::allocate(wide ? IndexType::Int64 : IndexType::UInt32, static_cast<size_t>(total));
  if (wide) {
    fill_shuffle(index.mutable_as<int64_t>(), first, total, rng);
  } else {
    fill_shuffle(index.mutable_as<uint32_t>(), first, total, rng);
  }
  return index;
}

GptIndices build_gpt_indices(const UnalignedArray<int32_t>& sizes, const GptIndexSpec& spec) {
  GptIndices out;
  out.plan = plan_epochs(count_tokens(sizes, spec.documents), spec.num_samples, spec.seq_length, spec.add_extra_token);
  NumpyRandom rng(spec.seed);
  out.document_index = build_document_index(spec.documents, out.plan, rng);
  // The shuffle index needs only the sample count and the generator, not the sample index: the two
  // are built at the same time.
  const int64_t n = count_samples(out.plan, spec.seq_length, spec.add_extra_token, spec.drop_last);
  const int64_t first = out.plan.separate_last_epoch ? out.plan.samples_before_last : n;
  std::exception_ptr error;
  std::thread shuffler([&] {
    try {
      out.shuffle_index = build_shuffle_index(first, n, rng);
    } catch (...) {
      error = std::current_exception();
    }
  });
  try {
    out.sample_index =
        build_sample_index(sizes, out.document_index, out.plan, spec.seq_length, spec.add_extra_token, spec.drop_last);
  } catch (...) {
    shuffler.join();
    throw;
  }
  shuffler.join();
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace mfcore
