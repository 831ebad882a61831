#pragma once
// Megatron's GPTDataset over one indexed dataset: the three indices of one split (built once and
// cached, see index_cache.h) and the assembly of a sample's text from them (spec section 7).
#include <array>
#include <memory>
#include <string>

#include "mfcore/gpt_indices.h"
#include "mfcore/indexed_dataset.h"
#include "mfcore/sample_source.h"

namespace mfcore {

struct GptDatasetConfig {
  std::string prefix;
  std::string split = "969,30,1";
  int64_t seq_length = 0;
  int add_extra_token = 1;
  uint32_t seed = 1234;
  std::array<int64_t, kNumSplits> num_samples{kUnsetNumSamples, kUnsetNumSamples, kUnsetNumSamples};
  bool drop_last_partial_validation_sequence = true;
  std::string cache_dir;  // "" = no cache
};

class GptDataset : public SampleSource {
 public:
  // Opens the dataset once and builds (or maps from the cache) every present split; absent splits
  // are null. Throws SampleEngineError for a bad split string, a split without documents, a split
  // too short for one sample, a float dataset, or an unusable cache directory; IndexedDatasetError
  // for a bad dataset.
  static std::array<std::shared_ptr<GptDataset>, kNumSplits> open_splits(const GptDatasetConfig& config);

  int64_t size() const override { return static_cast<int64_t>(indices_.shuffle_index.size()); }
  int64_t seq_length() const override { return seq_length_; }
  int add_extra_token() const override { return add_extra_token_; }
  void read_text(int64_t i, int32_t* out, int32_t pad) const override;
  std::string fingerprint() const override { return fingerprint_; }

  const GptIndices& indices() const { return indices_; }
  const IndexedDataset& dataset() const { return *dataset_; }
  int split() const { return split_; }
  DocumentRange documents() const { return documents_; }
  bool built() const { return built_; }                 // built by this process (not mapped from the cache)
  const std::string& cache_path() const { return cache_path_; }

 private:
  GptDataset() = default;
  static std::shared_ptr<GptDataset> open_split(const GptDatasetConfig& config, std::shared_ptr<const IndexedDataset> ds,
                                                int split, const DocumentRange& range, const std::string& sizes_hash);
  std::shared_ptr<const IndexedDataset> dataset_;
  GptIndices indices_;
  DocumentRange documents_;
  int split_ = 0;
  int64_t seq_length_ = 0;
  int add_extra_token_ = 1;
  bool built_ = false;
  std::string cache_path_, fingerprint_;
};

}  // namespace mfcore
