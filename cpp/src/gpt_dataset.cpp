#include "mfcore/gpt_dataset.h"

#include <climits>
#include <cstdlib>
#include <sstream>

#include "mfcore/content_hash.h"
#include "mfcore/index_cache.h"
#include "mfcore/index_check.h"
#include "mfcore/sample_error.h"
#include "mfcore/token_copy.h"

namespace mfcore {

namespace {
const std::vector<std::string> kArrayNames{"document_index", "sample_index", "shuffle_index"};

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) ? std::string(buf) : path;
}

std::string key_json(const GptDatasetConfig& c, const IndexedDataset& ds, const std::string& sizes_hash, int split,
                     const GptIndexSpec& spec) {
  std::ostringstream s;
  s << "{\"class\": \"GPTDataset\", \"sizes_hash\": \"" << sizes_hash << "\", \"num_sequences\": "
    << ds.num_sequences() << ", \"split\": " << json_string(c.split) << ", \"split_name\": \"" << split_name(split)
    << "\", \"documents\": [" << spec.documents.begin << ", " << spec.documents.end
    << "], \"seq_length\": " << spec.seq_length << ", \"add_extra_token\": " << spec.add_extra_token
    << ", \"seed\": " << spec.seed << ", \"num_samples\": ";
  if (spec.num_samples == kUnsetNumSamples) s << "null"; else s << spec.num_samples;
  s << ", \"drop_last_partial_sequence\": " << (spec.drop_last ? "true" : "false") << "}";
  return s.str();
}

// What fixes the sample order: the cache key with the requested sample count replaced by the epoch
// plan it leads to. Extending a run within the same number of epochs keeps every sample index's
// tokens, so a checkpoint taken before the extension still matches.
std::string order_json(const std::string& key, const EpochPlan& plan) {
  const std::string marker = "\"num_samples\": ";
  const size_t at = key.find(marker);
  const size_t end = key.find(',', at);
  std::ostringstream s;
  s << key.substr(0, at) << "\"num_epochs\": " << plan.num_epochs << ", \"separate_last_epoch\": "
    << (plan.separate_last_epoch ? "true" : "false") << key.substr(end);
  return s.str();
}

std::string info_json(const IndexedDataset& ds) {
  std::ostringstream s;
  s << "{\"prefix\": " << json_string(real_path(ds.prefix())) << ", \"dtype\": \"" << dtype_name(ds.dtype())
    << "\", \"num_tokens\": " << ds.num_tokens() << ", \"bin_bytes\": " << ds.bin_size() << "}";
  return s.str();
}

// Cached arrays are checked against the plan before use, so a damaged entry cannot index out of range.
std::string shape_problem(const GptIndices& ix, const DocumentRange& docs) {
  const size_t doc_len = static_cast<size_t>(docs.size() * ix.plan.num_epochs);
  const IndexType doc_type = ix.document_index.type();
  const IndexType row_type = ix.sample_index.type();
  const bool narrow_ok = doc_type == IndexType::UInt16 && docs.end <= 65536;  // uint16 ids, see build_gpt_indices
  const bool ok = (doc_type == IndexType::Int32 || narrow_ok) && ix.document_index.size() == doc_len &&
                  (row_type == IndexType::Int32 || row_type == IndexType::Int64) && ix.sample_index.cols() == 2 &&
                  ix.sample_index.rows() >= 1 && ix.shuffle_index.size() + 1 == ix.sample_index.rows();
  return ok ? "" : "cached indices have inconsistent shapes";
}

void check_shapes(const GptIndices& ix, const DocumentRange& docs, const std::string& where) {
  const std::string problem = shape_problem(ix, docs);
  if (!problem.empty()) throw SampleEngineError(where + ": " + problem + "; delete the entry");
}

[[noreturn]] void damaged(const std::string& cache_path, const std::string& what) {
  throw SampleEngineError("the index cache entry " + (cache_path.empty() ? std::string("(in memory)") : cache_path) +
                          " is damaged: " + what + "; delete it to rebuild");
}

[[noreturn]] void too_short(const GptDatasetConfig& c, int split, int64_t tokens) {
  throw SampleEngineError(c.prefix + ": the " + std::string(split_name(split)) + " split holds " +
                          std::to_string(tokens) + " tokens, too few for one sample of seq_length " +
                          std::to_string(c.seq_length) + " (+" + std::to_string(c.add_extra_token) +
                          "); use a longer dataset, a shorter seq_length or another split");
}
}  // namespace

std::shared_ptr<GptDataset> GptDataset::open_split(const GptDatasetConfig& c,
                                                   std::shared_ptr<const IndexedDataset> ds, int k,
                                                   const DocumentRange& range, const std::string& sizes_hash) {
  const std::string where = c.prefix + " (" + split_name(k) + " split)";
  if (range.size() == 0) {
    throw SampleEngineError(where + ": split '" + c.split + "' gives it no documents out of " +
                            std::to_string(ds->num_sequences()) + "; adjust the split");
  }
  const auto sizes = ds->sequence_lengths();
  GptIndexSpec spec{range, c.seq_length, c.add_extra_token, c.seed, c.num_samples[k],
                    k != 1 || c.drop_last_partial_validation_sequence};
  EpochPlan plan;
  try {
    plan = plan_epochs(count_tokens(sizes, spec.documents), spec.num_samples, spec.seq_length, spec.add_extra_token);
  } catch (const std::invalid_argument& e) {
    throw SampleEngineError(where + ": " + e.what());
  }
  const int64_t usable = plan.num_epochs * plan.tokens_per_epoch - spec.add_extra_token;
  if (spec.drop_last ? usable < spec.seq_length : usable < 1) too_short(c, k, plan.tokens_per_epoch);
  const std::string key = key_json(c, *ds, sizes_hash, k, spec);
  CachedIndices cached = IndexCache(c.cache_dir).get_or_build(
      std::string("GPTDataset-") + split_name(k), key, info_json(*ds), kArrayNames, [&] {
        GptIndices ix = build_gpt_indices(sizes, spec);
        return std::vector<IndexArray>{ix.document_index, ix.sample_index, ix.shuffle_index};
      },
      [&](const std::vector<IndexArray>& a) {
        const GptIndices ix{plan, a[0], a[1], a[2]};
        const std::string shape = shape_problem(ix, range);
        return shape.empty() ? check_gpt_index_values(ix, sizes, range) : shape;
      });
  std::shared_ptr<GptDataset> g(new GptDataset());
  g->dataset_ = std::move(ds);
  g->indices_ = GptIndices{plan, cached.arrays[0], cached.arrays[1], cached.arrays[2]};
  check_shapes(g->indices_, range, where);
  g->documents_ = range;
  g->split_ = k;
  g->seq_length_ = c.seq_length;
  g->add_extra_token_ = c.add_extra_token;
  g->built_ = cached.built;
  g->cache_path_ = cached.path;
  g->fingerprint_ = hex64(hash64(order_json(key, plan)));
  return g;
}

std::array<std::shared_ptr<GptDataset>, kNumSplits> GptDataset::open_splits(const GptDatasetConfig& c) {
  std::array<double, kNumSplits> weights;
  try {
    weights = parse_split(c.split);
  } catch (const std::invalid_argument& e) {
    throw SampleEngineError(c.prefix + ": " + e.what());
  }
  if (c.seq_length < 1) throw SampleEngineError("seq_length must be >= 1, got " + std::to_string(c.seq_length));
  auto ds = std::make_shared<const IndexedDataset>(c.prefix);
  if (ds->dtype() == DType::Float32 || ds->dtype() == DType::Float64) {
    throw SampleEngineError(c.prefix + ": holds " + dtype_name(ds->dtype()) + " values, not token ids");
  }
  const auto sizes = ds->sequence_lengths();
  const std::string sizes_hash = hex64(hash64(sizes.bytes(), sizes.size_bytes(), static_cast<uint64_t>(ds->dtype())));
  const auto ranges = split_document_ranges(weights, static_cast<int64_t>(ds->num_sequences()));
  std::array<std::shared_ptr<GptDataset>, kNumSplits> out;
  for (int k = 0; k < kNumSplits; ++k) {
    if (ranges[k].present && c.num_samples[k] != 0) out[k] = open_split(c, ds, k, ranges[k], sizes_hash);
  }
  return out;
}

void GptDataset::read_text(int64_t i, int32_t* out, int32_t pad) const {
  if (i < 0 || i >= size()) {
    throw std::out_of_range("sample " + std::to_string(i) + " out of range [0, " + std::to_string(size()) + ")");
  }
  // Every value read from the indices is checked before it indexes anything (they may come from a
  // cache file edited after it was validated): a damaged entry is an error, never a wild read.
  const int64_t j = indices_.shuffle_index.get(static_cast<size_t>(i));
  if (j < 0 || static_cast<size_t>(j) + 1 >= indices_.sample_index.rows()) {
    damaged(cache_path_, "shuffle_index[" + std::to_string(i) + "] = " + std::to_string(j) + " is out of range");
  }
  const IndexArray& rows = indices_.sample_index;
  const int64_t d0 = rows.get(2 * j), o0 = rows.get(2 * j + 1);
  const int64_t d1 = rows.get(2 * j + 2), o1 = rows.get(2 * j + 3);
  const int64_t positions = static_cast<int64_t>(indices_.document_index.size());
  if (d0 < 0 || d1 < d0 || d1 >= positions || o0 < 0) {
    damaged(cache_path_, "sample_index rows " + std::to_string(j) + "-" + std::to_string(j + 1) + " = (" +
                             std::to_string(d0) + ", " + std::to_string(o0) + "), (" + std::to_string(d1) + ", " +
                             std::to_string(o1) + ") are out of range");
  }
  const int64_t want = seq_length_ + add_extra_token_;
  int64_t filled = 0;
  for (int64_t d = d0; d <= d1 && filled < want; ++d) {
    const int64_t seq = indices_.document_index.get(static_cast<size_t>(d));
    if (seq < 0 || static_cast<size_t>(seq) >= dataset_->num_sequences()) {
      damaged(cache_path_, "document_index[" + std::to_string(d) + "] = " + std::to_string(seq) + " is out of range");
    }
    const int64_t length = static_cast<int64_t>(dataset_->sequence_length(static_cast<size_t>(seq)));
    const int64_t begin = d == d0 ? o0 : 0;
    const int64_t end = d == d1 ? o1 + add_extra_token_ : length;
    const int64_t count = std::min(end - begin, want - filled);
    if (count <= 0) continue;
    if (end > length) damaged(cache_path_, "sample " + std::to_string(j) + " ends past its document");
    const uint8_t* src = dataset_->sequence_data(static_cast<size_t>(seq), static_cast<size_t>(begin), static_cast<size_t>(count));
    copy_tokens(src, dataset_->dtype(), static_cast<size_t>(count), out + filled);
    filled += count;
  }
  for (; filled < want; ++filled) out[filled] = pad;
}

}  // namespace mfcore
