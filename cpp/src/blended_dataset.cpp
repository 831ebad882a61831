#include "mfcore/blended_dataset.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "mfcore/content_hash.h"
#include "mfcore/index_cache.h"
#include "mfcore/index_check.h"
#include "mfcore/sample_error.h"

namespace mfcore {

namespace {
std::string key_json(const std::vector<std::shared_ptr<const SampleSource>>& members, const std::vector<double>& w,
                     int64_t size) {
  std::ostringstream s;
  s << "{\"class\": \"BlendedDataset\", \"members\": [";
  for (size_t k = 0; k < members.size(); ++k) s << (k ? ", " : "") << '"' << members[k]->fingerprint() << '"';
  s << "], \"weights\": [";
  for (size_t k = 0; k < w.size(); ++k) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", w[k]);
    s << (k ? ", " : "") << buf;
  }
  s << "], \"size\": ";
  if (size < 0) s << "null"; else s << size;
  s << "}";
  return s.str();
}

void check_members(const std::vector<std::shared_ptr<const SampleSource>>& members) {
  if (members.empty()) throw SampleEngineError("a blend needs at least one dataset");
  for (size_t k = 0; k < members.size(); ++k) {
    if (!members[k]) throw SampleEngineError("blend member " + std::to_string(k) + " is absent");
    if (members[k]->seq_length() != members[0]->seq_length() ||
        members[k]->add_extra_token() != members[0]->add_extra_token()) {
      throw SampleEngineError("blend member " + std::to_string(k) + " has another seq_length than member 0");
    }
  }
}

IndexArray counts_array(const std::vector<int64_t>& counts) {
  IndexArray a = IndexArray::allocate(IndexType::Int64, counts.size());
  std::copy(counts.begin(), counts.end(), a.mutable_as<int64_t>());
  return a;
}

// The per-member counts are stored beside the indices, so a warm open stays O(members).
BlendingIndices from_cache(const std::vector<IndexArray>& arrays, size_t members) {
  BlendingIndices b;
  b.dataset_index = arrays[0];
  b.dataset_sample_index = arrays[1];
  const size_t n = b.dataset_index.size();
  if (b.dataset_index.type() != IndexType::Int16 || b.dataset_sample_index.size() != n ||
      arrays[2].size() != members || arrays[2].type() != IndexType::Int64) {
    throw SampleEngineError("cached blending indices have inconsistent shapes; delete the entry");
  }
  b.counts.assign(arrays[2].as<int64_t>(), arrays[2].as<int64_t>() + members);
  return b;
}
}  // namespace

std::shared_ptr<BlendedDataset> BlendedDataset::open(std::vector<std::shared_ptr<const SampleSource>> members,
                                                     const std::vector<double>& weights, int64_t size,
                                                     const std::string& cache_dir, const std::string& kind) {
  check_members(members);
  std::vector<double> w;
  std::vector<int64_t> lengths;
  for (const auto& m : members) lengths.push_back(m->size());
  try {
    if (size >= 0) {
      if (weights.size() != members.size()) {
        throw std::invalid_argument(std::to_string(weights.size()) + " weights for " + std::to_string(members.size()) +
                                    " datasets");
      }
      w = normalize_weights(weights);
    }
  } catch (const std::invalid_argument& e) {
    throw SampleEngineError(std::string("blend weights: ") + e.what());
  }
  const std::string key = key_json(members, w, size);
  CachedIndices cached = IndexCache(cache_dir).get_or_build(kind, key, "{}", {"dataset_index", "dataset_sample_index", "dataset_counts"}, [&] {
    BlendingIndices b = size >= 0 ? build_blending_indices(w, size) : build_exhaustive_blending_indices(lengths);
    return std::vector<IndexArray>{b.dataset_index, b.dataset_sample_index, counts_array(b.counts)};
  }, [&](const std::vector<IndexArray>& a) {
    try {
      from_cache(a, members.size());
    } catch (const SampleEngineError& e) {
      return std::string(e.what());
    }
    return check_blending_index_values(a[0], a[1], lengths);
  });
  std::shared_ptr<BlendedDataset> out(new BlendedDataset());
  out->indices_ = from_cache(cached.arrays, members.size());
  for (size_t k = 0; k < members.size(); ++k) {
    if (out->indices_.counts[k] > lengths[k]) {
      throw SampleEngineError("blend member " + std::to_string(k) + " is asked for " +
                              std::to_string(out->indices_.counts[k]) + " samples but has only " +
                              std::to_string(lengths[k]));
    }
  }
  out->members_ = std::move(members);
  out->weights_ = w;
  out->built_ = cached.built;
  // The greedy assignment never looks at the blend's size, so members and weights fix the order.
  out->fingerprint_ = hex64(hash64(key_json(out->members_, w, -1)));
  return out;
}

void BlendedDataset::read_text(int64_t i, int32_t* out, int32_t pad) const {
  if (i < 0 || i >= size()) {
    throw std::out_of_range("sample " + std::to_string(i) + " out of range [0, " + std::to_string(size()) + ")");
  }
  const int64_t k = indices_.dataset_index.get(static_cast<size_t>(i));
  if (k < 0 || static_cast<size_t>(k) >= members_.size()) throw std::out_of_range("blending index entry out of range");
  members_[static_cast<size_t>(k)]->read_text(indices_.dataset_sample_index.get(static_cast<size_t>(i)), out, pad);
}

}  // namespace mfcore
