#pragma once
// Megatron's BlendedDataset: blend sample s is sample dataset_sample_index[s] of member
// dataset_index[s] (indices from blending.h, cached like the GPT indices).
#include <memory>
#include <string>
#include <vector>

#include "mfcore/blending.h"
#include "mfcore/sample_source.h"

namespace mfcore {

class BlendedDataset : public SampleSource {
 public:
  // With `size` >= 0: weighted greedy blend of `size` samples (weights are normalised here); with
  // size == -1: exhaustive blend of every member sample, weighted by member length (weights unused).
  // `kind` names the cache entry ("BlendedDataset-train"). Throws SampleEngineError for bad weights,
  // members of different sequence lengths, or a member asked for more samples than it has.
  static std::shared_ptr<BlendedDataset> open(std::vector<std::shared_ptr<const SampleSource>> members,
                                              const std::vector<double>& weights, int64_t size,
                                              const std::string& cache_dir, const std::string& kind);

  int64_t size() const override { return static_cast<int64_t>(indices_.dataset_index.size()); }
  int64_t seq_length() const override { return members_[0]->seq_length(); }
  int add_extra_token() const override { return members_[0]->add_extra_token(); }
  void read_text(int64_t i, int32_t* out, int32_t pad) const override;
  std::string fingerprint() const override { return fingerprint_; }

  const BlendingIndices& indices() const { return indices_; }
  const std::vector<double>& weights() const { return weights_; }
  size_t num_members() const { return members_.size(); }
  bool built() const { return built_; }

 private:
  BlendedDataset() = default;
  std::vector<std::shared_ptr<const SampleSource>> members_;
  std::vector<double> weights_;
  BlendingIndices indices_;
  bool built_ = false;
  std::string fingerprint_;
};

}  // namespace mfcore
