#include "mfcore/blending.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace mfcore {

namespace {
// numpy's pairwise summation (npy_pairwise_sum), so normalised weights match numpy bit for bit.
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.0;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// numpy.sum of a contiguous 1-D float64 array (checked against numpy 2.4 up to 300 elements).
double numpy_sum(const std::vector<double>& v) { return pairwise_sum(v.data(), v.size()); }

BlendingIndices allocate_blending(size_t size, size_t members) {
  if (members == 0) throw std::invalid_argument("a blend needs at least one dataset");
  if (members > kMaxBlendedDatasets) {
    throw std::invalid_argument("a blend holds at most " + std::to_string(kMaxBlendedDatasets) + " datasets, got " +
                                std::to_string(members));
  }
  BlendingIndices out;
  out.dataset_index = IndexArray::allocate(IndexType::Int16, size);
  out.dataset_sample_index = IndexArray::allocate(IndexType::Int64, size);
  out.counts.assign(members, 0);
  return out;
}
}  // namespace

std::vector<double> normalize_weights(const std::vector<double>& weights) {
  if (weights.empty()) throw std::invalid_argument("no blend weights");
  for (size_t k = 0; k < weights.size(); ++k) {
    if (!std::isfinite(weights[k]) || weights[k] < 0.0) {
      throw std::invalid_argument("blend weight " + std::to_string(k) + " is " + std::to_string(weights[k]) +
                                  "; weights must be finite and >= 0");
    }
  }
  const double sum = numpy_sum(weights);
  if (!(sum > 0.0)) throw std::invalid_argument("all blend weights are zero");
  std::vector<double> out(weights.size());
  for (size_t k = 0; k < weights.size(); ++k) out[k] = weights[k] / sum;
  return out;
}

std::vector<int64_t> blend_targets(const std::vector<double>& weights, int64_t size) {
  std::vector<int64_t> out;
  for (double w : weights) out.push_back(static_cast<int64_t>(std::ceil(static_cast<double>(size) * w)));
  return out;
}

std::vector<int64_t> blend_member_sizes(const std::vector<double>& weights, int64_t size) {
  std::vector<int64_t> out;
  for (int64_t target : blend_targets(weights, size)) {
    out.push_back(static_cast<int64_t>(std::ceil(static_cast<double>(target) * 1.005)));
  }
  return out;
}

BlendingIndices build_blending_indices(const std::vector<double>& weights, int64_t size) {
  if (size < 0) throw std::invalid_argument("blend size must be >= 0");
  const size_t members = weights.size();
  BlendingIndices out = allocate_blending(static_cast<size_t>(size), members);
  int16_t* which = out.dataset_index.mutable_as<int16_t>();
  int64_t* sample = out.dataset_sample_index.mutable_as<int64_t>();
  int64_t* count = out.counts.data();
  const double* w = weights.data();
  for (int64_t s = 0; s < size; ++s) {
    const double x = std::max(static_cast<double>(s), 1.0);
    size_t best = 0;
    double best_error = w[0] * x - static_cast<double>(count[0]);
    for (size_t k = 1; k < members; ++k) {
      const double error = w[k] * x - static_cast<double>(count[k]);
      if (error > best_error) {
        best_error = error;
        best = k;
      }
    }
    which[s] = static_cast<int16_t>(best);
    sample[s] = count[best]++;
  }
  return out;
}

BlendingIndices build_exhaustive_blending_indices(const std::vector<int64_t>& member_sizes) {
  int64_t total = 0;
  for (int64_t n : member_sizes) {
    if (n < 0) throw std::invalid_argument("a blend member has a negative size");
    total += n;
  }
  BlendingIndices out = allocate_blending(static_cast<size_t>(total), member_sizes.size());
  std::vector<double> w(member_sizes.size());
  std::vector<size_t> active;  // ascending, so ties go to the lowest id
  for (size_t k = 0; k < member_sizes.size(); ++k) {
    w[k] = static_cast<double>(member_sizes[k]) / static_cast<double>(total);
    if (member_sizes[k] > 0) active.push_back(k);
  }
  int16_t* which = out.dataset_index.mutable_as<int16_t>();
  int64_t* sample = out.dataset_sample_index.mutable_as<int64_t>();
  int64_t* count = out.counts.data();
  for (int64_t s = 0; s < total; ++s) {
    const double x = std::max(static_cast<double>(s), 1.0);
    size_t best_pos = 0;
    double best_error = std::numeric_limits<double>::lowest();
    for (size_t p = 0; p < active.size(); ++p) {
      const double error = w[active[p]] * x - static_cast<double>(count[active[p]]);
      if (error > best_error) {
        best_error = error;
        best_pos = p;
      }
    }
    const size_t best = active[best_pos];
    which[s] = static_cast<int16_t>(best);
    sample[s] = count[best]++;
    if (count[best] == member_sizes[best]) active.erase(active.begin() + static_cast<std::ptrdiff_t>(best_pos));
  }
  return out;
}

}  // namespace mfcore
