// Shared pieces of the CPU kernels in this directory: 8-float vectors, a vectorisable exp, and a
// parallel loop over independent tasks. Header-only; each kernel source is one shared library unit.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

// Hot loops are compiled twice, for AVX2 and the baseline, and picked at load time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define MF_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MF_VECTOR_CLONES
#endif

// Loops that want FMA are built a second time for AVX2 + FMA and chosen by hand with
// has_avx2_fma(): target_clones("arch=haswell") tests the CPU *model*, not its features (an AMD
// EPYC with AVX2 and FMA got the baseline clone, and std::fma became a libm call per element).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define MF_HAVE_FMA_BUILD 1
#define MF_FMA_TARGET __attribute__((target("avx2,fma")))
#endif

namespace mfcore {
namespace kernels {

inline bool has_avx2_fma() {
#ifdef MF_HAVE_FMA_BUILD
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

typedef float v8 __attribute__((vector_size(32)));  // 8 floats: one AVX register, two SSE ones
constexpr int64_t kLanes = 8;

inline v8 load(const float* p) {
  v8 x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

inline void store(float* p, v8 x) { std::memcpy(p, &x, sizeof x); }

// exp(x) for x <= 0 (Cephes' single-precision polynomial, ~1 ulp), branch-free so the loops that
// call it vectorise; x below -87 (masked scores) gives exactly 0.
inline float exp_nonpositive(float x) {
  const float clamped = std::min(std::max(x, -87.0f), 0.3f);
  // round to nearest by truncating a positive number (0.5 - t > 0 on the clamped range)
  const int32_t n = -static_cast<int32_t>(0.5f - clamped * 1.44269504088896341f);
  const float nf = static_cast<float>(n);
  const float r = clamped - nf * 0.693359375f + nf * 2.12194440e-4f;
  float poly = 1.9875691500e-4f;
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  poly = poly * r * r + r + 1.0f;
  const int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float keep = x < -87.0f ? 0.0f : 1.0f;
  return poly * scale * keep;
}

// Runs task(t, worker) for t in [0, tasks) on `workers` threads (worker < that count); each task
// must write its own outputs, so results do not depend on the thread count.
template <class Task>
void parallel_tasks(int64_t tasks, int64_t workers, Task task) {
  std::atomic<int64_t> next{0};
  auto worker = [&](int64_t id) {
    for (int64_t t = next++; t < tasks; t = next++) task(t, id);
  };
  std::vector<std::thread> pool;
  for (int64_t id = 1; id < workers; ++id) pool.emplace_back(worker, id);
  worker(0);
  for (auto& th : pool) th.join();
}

// Threads a kernel may use: MFCORE_KERNEL_THREADS when set to a positive number (run.threads, so
// ranks sharing a host do not each take every core), else the host's cores.
inline int64_t thread_budget() {
  const char* env = std::getenv("MFCORE_KERNEL_THREADS");
  const long configured = env != nullptr ? std::strtol(env, nullptr, 10) : 0;
  return configured > 0 ? configured : std::max<int64_t>(1, std::thread::hardware_concurrency());
}

inline int64_t worker_count(int64_t tasks) {
  return std::max<int64_t>(1, std::min<int64_t>(tasks, thread_budget()));
}

inline bool is_float32(const char* dtype) {
  return std::strcmp(dtype, "float32") == 0 || std::strcmp(dtype, "float") == 0;
}

inline int64_t numel(int ndim, const int64_t* shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

}  // namespace kernels
}  // namespace mfcore
