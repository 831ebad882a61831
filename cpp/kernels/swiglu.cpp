// SwiGLU activation silu(gate) * up and its backward in one pass each, for MindSpore's CPU backend
// through ops.Custom(func_type="aot") (see python/mfcore/models/layers/mlp.py). MindSpore's own
// graph runs Sigmoid, Mul, Mul forward and SigmoidGrad plus four element-wise kernels backward,
// each a full pass over [tokens, ffn] float32 tensors; here every element is read and written once.
#include <cstdint>

#include "vector_math.h"

namespace {

using namespace mfcore::kernels;

constexpr int64_t kChunk = 1 << 14;  // elements per parallel task

// sigmoid(x) from exp(-|x|) <= 1, branch-free.
inline float sigmoid(float x) {
  const float e = exp_nonpositive(x < 0.0f ? x : -x);
  const float inv = 1.0f / (1.0f + e);
  return x < 0.0f ? e * inv : inv;
}

MF_VECTOR_CLONES
void forward_chunk(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

// d/dgate silu(g) = s * (1 + g * (1 - s)) with s = sigmoid(g); d/dup = silu(g).
MF_VECTOR_CLONES
void backward_chunk(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                    int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], s = sigmoid(g);
    dgate[i] = dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
    dup[i] = dout[i] * g * s;
  }
}

// All parameters float32 with the same element count (gate and up share a shape).
bool same_float32(int nparam, int* ndims, int64_t** shapes, const char** dtypes, int64_t& n) {
  n = numel(ndims[0], shapes[0]);
  for (int i = 0; i < nparam; ++i)
    if (!is_float32(dtypes[i]) || numel(ndims[i], shapes[i]) != n) return false;
  return true;
}

template <class Body>
void over_chunks(int64_t n, Body body) {
  const int64_t tasks = (n + kChunk - 1) / kChunk;
  parallel_tasks(tasks, worker_count(tasks), [&](int64_t t, int64_t) {
    const int64_t start = t * kChunk;
    body(start, std::min(kChunk, n - start));
  });
}

}  // namespace

// inputs gate, up; output out. Returns 1 on mismatched shapes or non-float32 tensors.
extern "C" int MfSwiGLUForward(int nparam, void** params, int* ndims, int64_t** shapes,
                               const char** dtypes, void* /*stream*/, void* /*extra*/) {
  int64_t n = 0;
  if (nparam != 3 || !same_float32(nparam, ndims, shapes, dtypes, n)) return 1;
  const auto* gate = static_cast<const float*>(params[0]);
  const auto* up = static_cast<const float*>(params[1]);
  auto* out = static_cast<float*>(params[2]);
  over_chunks(n, [&](int64_t i, int64_t len) { forward_chunk(gate + i, up + i, out + i, len); });
  return 0;
}

// inputs gate, up, dout; outputs dgate, dup.
extern "C" int MfSwiGLUBackward(int nparam, void** params, int* ndims, int64_t** shapes,
                                const char** dtypes, void* /*stream*/, void* /*extra*/) {
  int64_t n = 0;
  if (nparam != 5 || !same_float32(nparam, ndims, shapes, dtypes, n)) return 1;
  const auto* gate = static_cast<const float*>(params[0]);
  const auto* up = static_cast<const float*>(params[1]);
  const auto* dout = static_cast<const float*>(params[2]);
  auto* dgate = static_cast<float*>(params[3]);
  auto* dup = static_cast<float*>(params[4]);
  over_chunks(n, [&](int64_t i, int64_t len) {
    backward_chunk(gate + i, up + i, dout + i, dgate + i, dup + i, len);
  });
  return 0;
}
