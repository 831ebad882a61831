// Masked cross entropy summed over tokens, forward and backward in one pass over the logits each,
// for MindSpore's CPU backend through ops.Custom(func_type="aot") (see python/mfcore/models/layers/
// loss.py). The forward keeps each row's log-sum-exp so the backward writes
// (softmax(z) - onehot(label)) * mask * dout without another reduction; MindSpore's graph spends
// max, exp, sum, gather forward and softmax, one-hot, sub, mul backward on [tokens, vocab] tensors.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "vector_math.h"

namespace {

using namespace mfcore::kernels;

constexpr int64_t kRowsPerTask = 64;

MF_VECTOR_CLONES
float row_max(const float* x, int64_t n) {
  float lanes[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) lanes[l] = x[0];
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] = std::max(lanes[l], x[j + l]);
  for (; j < n; ++j) lanes[0] = std::max(lanes[0], x[j]);
  float top = lanes[0];
  for (float lane : lanes) top = std::max(top, lane);
  return top;
}

// sum_j exp(x[j] - shift), in lanes (a fixed order: deterministic).
MF_VECTOR_CLONES
float sum_exp(const float* x, int64_t n, float shift) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += exp_nonpositive(x[j + l] - shift);
  for (; j < n; ++j) lanes[0] += exp_nonpositive(x[j] - shift);
  float total = 0.f;
  for (float lane : lanes) total += lane;
  return total;
}

// grad[j] = exp(x[j] - lse) * weight
MF_VECTOR_CLONES
void softmax_row(const float* x, int64_t n, float lse, float weight, float* grad) {
  for (int64_t j = 0; j < n; ++j) grad[j] = exp_nonpositive(x[j] - lse) * weight;
}

struct Problem {
  int64_t rows, vocab;
  const float* logits;
  const int32_t* labels;
  const float* mask;
};

// rows, vocab and the label dtype; false on anything this kernel does not handle.
bool read_problem(int nparam, int expected, void** params, int* ndims, int64_t** shapes,
                  const char** dtypes, Problem& p) {
  if (nparam != expected || ndims[0] != 2 || !is_float32(dtypes[0]) || !is_float32(dtypes[2])) return false;
  p = Problem{shapes[0][0], shapes[0][1], static_cast<const float*>(params[0]),
              static_cast<const int32_t*>(params[1]), static_cast<const float*>(params[2])};
  const bool int32_labels = std::string(dtypes[1]) == "int32";
  return int32_labels && p.vocab > 0 && numel(ndims[1], shapes[1]) == p.rows &&
         numel(ndims[2], shapes[2]) == p.rows;
}

}  // namespace

// inputs logits [n, V], labels [n] int32, mask [n]; outputs per-row loss [n] (mask applied),
// log-sum-exp [n]. A label outside [0, V) on a row with a nonzero mask returns 1 (an error in
// MindSpore); masked rows may hold any label (an ignore index such as -100).
extern "C" int MfCrossEntropyForward(int nparam, void** params, int* ndims, int64_t** shapes,
                                     const char** dtypes, void* /*stream*/, void* /*extra*/) {
  Problem p;
  if (!read_problem(nparam, 5, params, ndims, shapes, dtypes, p)) return 1;
  for (int64_t i = 0; i < p.rows; ++i)
    if (p.mask[i] != 0.f && (p.labels[i] < 0 || p.labels[i] >= p.vocab)) return 1;
  auto* loss = static_cast<float*>(params[3]);
  auto* lse = static_cast<float*>(params[4]);
  const int64_t tasks = (p.rows + kRowsPerTask - 1) / kRowsPerTask;
  parallel_tasks(tasks, worker_count(tasks), [&](int64_t t, int64_t) {
    for (int64_t i = t * kRowsPerTask; i < std::min(p.rows, (t + 1) * kRowsPerTask); ++i) {
      const float* row = p.logits + i * p.vocab;
      const float top = row_max(row, p.vocab);
      lse[i] = top + std::log(sum_exp(row, p.vocab, top));
      const int32_t label = p.labels[i];
      loss[i] = p.mask[i] == 0.f ? 0.f : (lse[i] - row[label]) * p.mask[i];
    }
  });
  return 0;
}

// inputs logits, labels, mask, lse [n], dloss [n]; output dlogits [n, V].
extern "C" int MfCrossEntropyBackward(int nparam, void** params, int* ndims, int64_t** shapes,
                                      const char** dtypes, void* /*stream*/, void* /*extra*/) {
  Problem p;
  if (!read_problem(nparam, 6, params, ndims, shapes, dtypes, p)) return 1;
  const auto* lse = static_cast<const float*>(params[3]);
  const auto* dloss = static_cast<const float*>(params[4]);
  auto* grad = static_cast<float*>(params[5]);
  const int64_t tasks = (p.rows + kRowsPerTask - 1) / kRowsPerTask;
  parallel_tasks(tasks, worker_count(tasks), [&](int64_t t, int64_t) {
    for (int64_t i = t * kRowsPerTask; i < std::min(p.rows, (t + 1) * kRowsPerTask); ++i) {
      const float weight = p.mask[i] * dloss[i];
      float* out = grad + i * p.vocab;
      softmax_row(p.logits + i * p.vocab, p.vocab, lse[i], weight, out);
      const int32_t label = p.labels[i];
      if (label >= 0 && label < p.vocab) out[label] -= weight;
    }
  });
  return 0;
}
