#include "mfcore/sample_batch.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace mfcore {

namespace {
template <class T>
T* offset(T* base, int64_t k, int64_t stride) {
  return base ? base + k * stride : nullptr;
}

void check_indices(const SampleSource& source, const int64_t* indices, int64_t n) {
  const int64_t size = source.size();
  for (int64_t k = 0; k < n; ++k) {
    if (indices[k] < 0 || indices[k] >= size) {
      throw std::out_of_range("sample index " + std::to_string(indices[k]) + " out of range [0, " +
                              std::to_string(size) + ")");
    }
  }
}

void run(ThreadPool* pool, int64_t n, const std::function<void(size_t, size_t)>& fn) {
  if (pool) {
    pool->parallel_for(static_cast<size_t>(n), 1, fn);
  } else {
    fn(0, static_cast<size_t>(n));
  }
}
}  // namespace

SampleOutputs BatchOutputs::row(int64_t k, const FieldOptions& o) const {
  const int64_t L = o.seq_length;
  return SampleOutputs{offset(tokens, k, L),        offset(labels, k, L),
                       offset(loss_mask, k, L),     offset(position_ids, k, L),
                       offset(attention_mask, k, L * L), offset(actual_seq_len, k, o.eod_pad_length)};
}

void fill_batch(const SampleSource& source, const int64_t* indices, int64_t n, const FieldOptions& options,
                const BatchOutputs& out, ThreadPool* pool) {
  options.validate();
  if (options.seq_length != source.seq_length() || options.add_extra_token != source.add_extra_token()) {
    throw std::invalid_argument("field options do not match the dataset's seq_length / add_extra_token");
  }
  check_indices(source, indices, n);
  const int64_t text_len = options.seq_length + options.add_extra_token;
  const int32_t pad = static_cast<int32_t>(options.pad_id);
  run(pool, n, [&](size_t begin, size_t end) {
    // Per-thread buffers, reused across calls (a sample's text stays in L1/L2 while its fields are written).
    thread_local std::vector<int32_t> text, scratch;
    text.resize(static_cast<size_t>(text_len) + 1);
    scratch.resize(2 * static_cast<size_t>(options.seq_length + 1));
    for (size_t k = begin; k < end; ++k) {
      source.read_text(indices[k], text.data(), pad);
      assemble_fields(text.data(), options, out.row(static_cast<int64_t>(k), options), scratch.data());
    }
  });
}

void fill_text(const SampleSource& source, const int64_t* indices, int64_t n, int32_t pad, int32_t* out,
               ThreadPool* pool) {
  check_indices(source, indices, n);
  const int64_t text_len = source.seq_length() + source.add_extra_token();
  run(pool, n, [&](size_t begin, size_t end) {
    for (size_t k = begin; k < end; ++k) source.read_text(indices[k], out + static_cast<int64_t>(k) * text_len, pad);
  });
}

}  // namespace mfcore
