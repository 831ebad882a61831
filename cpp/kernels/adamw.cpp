// The AdamW update of one parameter in one pass, in place, for MindSpore's CPU backend through
// ops.Custom(func_type="aot") (see python/mfcore/optim/adamw.py). MindSpore's graph needs a Cast and
// a Mul to scale the gradient (a temporary the size of the parameter), its AdamWeightDecay kernel,
// and a ZerosLike + Assign to clear the gradient buffer (another temporary); every temporary of a
// graph stays in MindSpore's CPU memory pool. Here each element of the parameter, both moments and
// the gradient is read and written once, and nothing is allocated.
//
// The arithmetic is AdamWeightDecay's (bias correction folded into lr/eps/decay by the caller):
//   g = grad * coeff;  m += (g - m) * (1 - beta1);  v += (g*g - v) * (1 - beta2)
//   param -= lr * (m / (sqrt(v) + eps) + decay * param);  grad = 0
#include <cmath>
#include <cstdint>

#include "vector_math.h"

namespace {

using namespace mfcore::kernels;

constexpr int64_t kChunk = 1 << 15;  // elements per parallel task
constexpr int kScalars = 6;          // lr, beta1, beta2, eps, decay, grad coeff

struct Scalars {
  float lr, one_minus_beta1, one_minus_beta2, eps, decay, coeff;
};

// Rounded as MindSpore's CPU AdamWeightDecay (nnacl, built with FMA contraction) rounds on hosts
// without AVX-512: fused multiply-adds for the moments, the parameter step in double precision
// (C's sqrt), so the fused update stays bit-identical to the graph it replaces. The FMA build makes
// std::fma one instruction; the baseline build calls libm for it (same result, ~6x slower).
__attribute__((always_inline)) inline void update_body(float* param, float* m, float* v, float* grad,
                                                       Scalars s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * s.coeff;
    const float mi = std::fma(g - m[i], s.one_minus_beta1, m[i]);
    const float vi = std::fma(std::fma(g, g, -v[i]), s.one_minus_beta2, v[i]);
    m[i] = mi;
    v[i] = vi;
    const double step = mi / (std::sqrt(static_cast<double>(vi)) + s.eps) + static_cast<double>(s.decay * param[i]);
    param[i] = static_cast<float>(std::fma(-static_cast<double>(s.lr), step, static_cast<double>(param[i])));
    grad[i] = 0.0f;
  }
}

#ifdef MF_HAVE_FMA_BUILD
MF_FMA_TARGET void update_fma(float* param, float* m, float* v, float* grad, Scalars s, int64_t n) {
  update_body(param, m, v, grad, s, n);
}
#endif

void update_baseline(float* param, float* m, float* v, float* grad, Scalars s, int64_t n) {
  update_body(param, m, v, grad, s, n);
}

void update_chunk(float* param, float* m, float* v, float* grad, Scalars s, int64_t n) {
#ifdef MF_HAVE_FMA_BUILD
  if (has_avx2_fma()) return update_fma(param, m, v, grad, s, n);
#endif
  update_baseline(param, m, v, grad, s, n);
}

}  // namespace

// inputs param, exp_avg, exp_avg_sq, grad (float32, one shape; all updated in place),
// scalars [lr, beta1, beta2, eps, decay, grad_coeff]; output: one float32 (0), the value the graph
// depends on to order later reads after the update. Returns 1 on a mismatch.
extern "C" int MfAdamWStep(int nparam, void** params, int* ndims, int64_t** shapes, const char** dtypes,
                           void* /*stream*/, void* /*extra*/) {
  if (nparam != 6) return 1;
  const int64_t n = numel(ndims[0], shapes[0]);
  for (int i = 0; i < 6; ++i)
    if (!is_float32(dtypes[i])) return 1;
  for (int i = 1; i < 4; ++i)
    if (numel(ndims[i], shapes[i]) != n) return 1;
  if (numel(ndims[4], shapes[4]) != kScalars) return 1;
  const float* k = static_cast<const float*>(params[4]);
  const Scalars s{k[0], 1.0f - k[1], 1.0f - k[2], k[3], k[4], k[5]};
  auto* param = static_cast<float*>(params[0]);
  auto* m = static_cast<float*>(params[1]);
  auto* v = static_cast<float*>(params[2]);
  auto* grad = static_cast<float*>(params[3]);
  const int64_t tasks = (n + kChunk - 1) / kChunk;
  parallel_tasks(tasks, worker_count(tasks), [&](int64_t t, int64_t) {
    const int64_t start = t * kChunk;
    update_chunk(param + start, m + start, v + start, grad + start, s, std::min(kChunk, n - start));
  });
  static_cast<float*>(params[5])[0] = 0.0f;
  return 0;
}
