#pragma once
// Bulk sample assembly for the loader: reads the text of many samples and writes their fields
// straight into caller-owned batch arrays ([n, L] each, row k = sample indices[k]), in parallel.
#include <cstdint>

#include "mfcore/sample_fields.h"
#include "mfcore/sample_source.h"
#include "mfcore/thread_pool.h"

namespace mfcore {

// The same fields for n samples: row-major [n, L] arrays, attention_mask [n, L, L] bytes,
// actual_seq_len [n, eod_pad_length]; null pointers skip a field.
struct BatchOutputs : SampleOutputs {
  SampleOutputs row(int64_t k, const FieldOptions& o) const;
};

// Every index is checked before any work starts (std::out_of_range). `pool` may be null (run on the
// calling thread). Options must match the source's seq_length and add_extra_token.
void fill_batch(const SampleSource& source, const int64_t* indices, int64_t n, const FieldOptions& options,
                const BatchOutputs& out, ThreadPool* pool);

// Only the L + X tokens of text per sample, as int32 ([n, L + X]).
void fill_text(const SampleSource& source, const int64_t* indices, int64_t n, int32_t pad, int32_t* out,
               ThreadPool* pool);

}  // namespace mfcore
