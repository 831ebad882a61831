#pragma once
// The three indices of Megatron's GPTDataset, built exactly as specified in
// docs/specs/gpt-sampling.md (sections 2-6):
//   document index  int32[E * D]        the split's documents repeated over E epochs, shuffled
//   sample index    [n + 1, 2]          (position in the document index, token offset) where each
//                                       sample starts; int32 unless the document index is too long
//   shuffle index   uint32[n] / int64   the order in which samples are served
// All builders are O(N) time and memory, single pass, no allocation beyond their result.
#include <cstdint>

#include "mfcore/gpt_split.h"
#include "mfcore/index_array.h"
#include "mfcore/mapped_file.h"
#include "mfcore/random.h"

namespace mfcore {

constexpr int64_t kUnsetNumSamples = -1;

// How many epochs over the split's tokens are needed, and whether the last one is shuffled apart.
struct EpochPlan {
  int64_t tokens_per_epoch = 0;     // T
  int64_t num_epochs = 1;           // E
  bool separate_last_epoch = false;
  int64_t samples_before_last = 0;  // ((E - 1) * T - X) // L, meaningful when separate
};

// Throws std::invalid_argument for seq_length < 1, add_extra_token not 0/1, tokens_per_epoch < 1
// or num_samples < 0 (other than kUnsetNumSamples).
EpochPlan plan_epochs(int64_t tokens_per_epoch, int64_t num_samples, int64_t seq_length, int add_extra_token);

// Sum of sizes over the documents of `range`.
int64_t count_tokens(const UnalignedArray<int32_t>& sizes, const DocumentRange& range);

// int32[E * range.size()]: epochs of ascending document ids, one shuffle over all of them, or, when
// the last epoch is separate, one over the first E-1 epochs and then one over the last.
IndexArray build_document_index(const DocumentRange& range, const EpochPlan& plan, NumpyRandom& rng);

// Samples of a split: n = (E*T - X) // L when drop_last, else ceil(float32(E*T - X) / L).
int64_t count_samples(const EpochPlan& plan, int64_t seq_length, int add_extra_token, bool drop_last);

// [n + 1, 2] rows (document-index position, offset) with n = count_samples(...). Throws std::invalid_argument if a document id is out of `sizes`.
IndexArray build_sample_index(const UnalignedArray<int32_t>& sizes, const IndexArray& document_index,
                              const EpochPlan& plan, int64_t seq_length, int add_extra_token, bool drop_last);

// [0, first) shuffled, then [first, total) shuffled with the next draws; uint32 unless
// total >= 2^32 - 1 (then int64).
IndexArray build_shuffle_index(int64_t first, int64_t total, NumpyRandom& rng);

struct GptIndices {
  EpochPlan plan;
  IndexArray document_index, sample_index, shuffle_index;
  int64_t num_samples() const { return static_cast<int64_t>(shuffle_index.size()); }
};

struct GptIndexSpec {
  DocumentRange documents;
  int64_t seq_length = 0;
  int add_extra_token = 1;
  uint32_t seed = 0;
  int64_t num_samples = kUnsetNumSamples;
  bool drop_last = true;
};

// Everything above in Megatron's order, with one random generator seeded once (the shuffle index
// is drawn on a second thread while the sample index is built; the draws are the same).
GptIndices build_gpt_indices(const UnalignedArray<int32_t>& sizes, const GptIndexSpec& spec);

}  // namespace mfcore
