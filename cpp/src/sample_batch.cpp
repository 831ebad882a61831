#include "mfcore/sample_batch.h"

#include <emmintrin.h>

#include <cstdint>
#include <cstring>
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

namespace {
// A batch bigger than this cannot stay in the caches until it is read: its fields are assembled in
// a per-thread staging area that stays in L1/L2 and then written out with non-temporal stores,
// which skip the read-for-ownership of every output line (half the memory traffic) and do not
// evict the source tokens. Smaller batches are written in place, so they stay cached for the reader.
constexpr int64_t kStreamMinBytes = int64_t(16) << 20;

int64_t row_bytes(const SampleOutputs& o, const FieldOptions& f) {
  const int64_t L = f.seq_length;
  return (o.tokens ? 4 * L : 0) + (o.labels ? 4 * L : 0) + (o.loss_mask ? 4 * L : 0) + (o.position_ids ? 4 * L : 0) +
         (o.attention_mask ? L * L : 0) + (o.actual_seq_len ? 4 * f.eod_pad_length : 0);
}

// Copies `bytes` from the staging area to `dst` with streaming stores where `dst` is 16-byte aligned.
void stream_copy(void* dst, const void* src, size_t bytes) {
  if (dst == nullptr) return;
  if ((reinterpret_cast<uintptr_t>(dst) & 15) != 0) {
    std::memcpy(dst, src, bytes);
    return;
  }
  auto* d = static_cast<__m128i*>(dst);
  const auto* s = static_cast<const __m128i*>(src);
  const size_t blocks = bytes / 16;
  for (size_t i = 0; i < blocks; ++i) _mm_stream_si128(d + i, _mm_loadu_si128(s + i));
  std::memcpy(d + blocks, s + blocks, bytes % 16);
}

// One thread's reusable buffers (a sample's text stays in L1/L2 while its fields are written).
struct Workspace {
  std::vector<int32_t> text, scratch, tokens, labels, position_ids, actual_seq_len;
  std::vector<float> loss_mask;

  void size_for(const FieldOptions& o, bool staged) {
    const size_t L = static_cast<size_t>(o.seq_length);
    text.resize(L + static_cast<size_t>(o.add_extra_token) + 1);
    scratch.resize(2 * (L + 1));
    const size_t staged_len = staged ? L : 0;
    for (auto* v : {&tokens, &labels, &position_ids}) v->resize(staged_len);
    loss_mask.resize(staged_len);
    actual_seq_len.resize(staged ? static_cast<size_t>(o.eod_pad_length) : 0);
  }
  // The staging twin of `out` (same fields present; attention_mask, L * L bytes, is never staged).
  SampleOutputs staging(const SampleOutputs& out) {
    return SampleOutputs{out.tokens ? tokens.data() : nullptr,          out.labels ? labels.data() : nullptr,
                         out.loss_mask ? loss_mask.data() : nullptr,    out.position_ids ? position_ids.data() : nullptr,
                         out.attention_mask,                            out.actual_seq_len ? actual_seq_len.data() : nullptr};
  }
};

void write_out(const SampleOutputs& out, const SampleOutputs& staged, const FieldOptions& o) {
  const size_t row = static_cast<size_t>(o.seq_length) * 4;
  stream_copy(out.tokens, staged.tokens, row);
  stream_copy(out.labels, staged.labels, row);
  stream_copy(out.loss_mask, staged.loss_mask, row);
  stream_copy(out.position_ids, staged.position_ids, row);
  stream_copy(out.actual_seq_len, staged.actual_seq_len, static_cast<size_t>(o.eod_pad_length) * 4);
}
}  // namespace

void fill_batch(const SampleSource& source, const int64_t* indices, int64_t n, const FieldOptions& options,
                const BatchOutputs& out, ThreadPool* pool) {
  options.validate();
  if (options.seq_length != source.seq_length() || options.add_extra_token != source.add_extra_token()) {
    throw std::invalid_argument("field options do not match the dataset's seq_length / add_extra_token");
  }
  check_indices(source, indices, n);
  const int32_t pad = static_cast<int32_t>(options.pad_id);
  const bool staged = n * row_bytes(out, options) >= kStreamMinBytes;
  run(pool, n, [&](size_t begin, size_t end) {
    thread_local Workspace w;
    w.size_for(options, staged);
    for (size_t k = begin; k < end; ++k) {
      const SampleOutputs dst = out.row(static_cast<int64_t>(k), options);
      source.read_text(indices[k], w.text.data(), pad);
      if (!staged) {
        assemble_fields(w.text.data(), options, dst, w.scratch.data());
        continue;
      }
      const SampleOutputs tmp = w.staging(dst);
      assemble_fields(w.text.data(), options, tmp, w.scratch.data());
      write_out(dst, tmp, options);
    }
    if (staged) _mm_sfence();  // streaming stores are weakly ordered: publish them before returning
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
