#pragma once
// Megatron's BlendedDataset indices (docs/specs/gpt-sampling.md section 9): which member dataset
// serves blend sample s, and which of that member's samples it is.
//   dataset_index         int16[size]
//   dataset_sample_index  int64[size]
#include <cstdint>
#include <vector>

#include "mfcore/index_array.h"

namespace mfcore {

constexpr size_t kMaxBlendedDatasets = 32767;  // dataset ids are int16

struct BlendingIndices {
  IndexArray dataset_index, dataset_sample_index;
  // How many samples each member serves (the largest dataset_sample_index + 1 of each).
  std::vector<int64_t> counts;
};

// Weights normalised to sum 1 in float64, summed in numpy's pairwise order so the result equals
// Megatron's numpy normalisation bit for bit. Throws
// std::invalid_argument for no weights, a negative or non-finite weight, or an all-zero list.
std::vector<double> normalize_weights(const std::vector<double>& weights);

// Per-member sample counts Megatron builds for a blend of `size` samples: target ceil(size * w) and,
// with the 0.5% surplus, ceil(target * 1.005). `weights` must be normalised.
std::vector<int64_t> blend_targets(const std::vector<double>& weights, int64_t size);
std::vector<int64_t> blend_member_sizes(const std::vector<double>& weights, int64_t size);

// Greedy error-minimising assignment of `size` samples: sample s goes to the k with the largest
// w[k] * max(s, 1) - count[k] (ties: lowest k). `weights` must be normalised.
BlendingIndices build_blending_indices(const std::vector<double>& weights, int64_t size);

// Exhaustive mode: every sample of every member exactly once, weights = len_k / sum(len), a member
// leaving the competition once all of its samples are assigned.
BlendingIndices build_exhaustive_blending_indices(const std::vector<int64_t>& member_sizes);

}  // namespace mfcore
