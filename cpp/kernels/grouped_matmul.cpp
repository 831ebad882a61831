// Grouped matrix product of a mixture-of-experts layer and its backward, for MindSpore's CPU backend
// through ops.Custom(func_type="aot") (see python/mfcore/models/layers/grouped_matmul.py).
//
// The rows of x [N, K] are sorted by expert: rows [off_e, off_e + sizes[e]) belong to expert e
// (off_e = sizes[0] + ... + sizes[e-1]); y[rows of e] = x[rows of e] @ w[e] with w [E, K, M]. Rows
// after the last group (tokens dropped over capacity) give zero outputs and zero gradients. Every
// expert multiplies only its own rows, so the work is N*K*M whatever E is, where MindSpore's graph
// (static shapes) would need a [E, N, K] product.
//
// The product is a packed, register-blocked GEMM (the BLIS loop order): a KC-deep slice of B is
// packed into 16-column panels, MC rows of A into 6-row panels, and a 6x16 micro-kernel keeps its
// tile in 12 vector registers. Each output element is a sum over k in increasing order, so results
// do not depend on the thread count.
#include <cstdint>
#include <vector>

#include "vector_math.h"

// The product wants FMA (twice AVX2's multiply-add throughput): its FMA build is chosen at run
// time (has_avx2_fma, vector_math.h).

namespace {

using namespace mfcore::kernels;

constexpr int64_t kMR = 6;     // rows of the micro tile
constexpr int64_t kNR = 16;    // columns of the micro tile (two vectors)
constexpr int64_t kKC = 256;   // depth of a packed slice
constexpr int64_t kMC = 120;   // rows of A packed at once (a multiple of kMR)
constexpr int64_t kRowTask = 240;  // output rows per parallel task

// Element (r, c) of a strided matrix view: data[r * rs + c * cs].
struct View {
  const float* data;
  int64_t rs, cs;
  float at(int64_t r, int64_t c) const { return data[r * rs + c * cs]; }
  View block(int64_t r, int64_t c) const { return {data + r * rs + c * cs, rs, cs}; }
};

// B[p0 : p0 + kc, 0 : n] into ceil(n / kNR) panels of [kc][kNR], zero-padded on the right.
void pack_b(View b, int64_t kc, int64_t n, float* out) {
  for (int64_t j0 = 0; j0 < n; j0 += kNR) {
    const int64_t width = std::min(kNR, n - j0);
    for (int64_t p = 0; p < kc; ++p, out += kNR) {
      int64_t j = 0;
      if (b.cs == 1) {
        std::memcpy(out, b.data + p * b.rs + j0, width * sizeof(float));
        j = width;
      }
      for (; j < width; ++j) out[j] = b.at(p, j0 + j);
      for (; j < kNR; ++j) out[j] = 0.0f;
    }
  }
}

// A[0 : m, 0 : kc] into ceil(m / kMR) panels of [kc][kMR], zero-padded below.
void pack_a(View a, int64_t m, int64_t kc, float* out) {
  for (int64_t i0 = 0; i0 < m; i0 += kMR, out += kc * kMR) {
    const int64_t height = std::min(kMR, m - i0);
    for (int64_t i = 0; i < kMR; ++i)
      for (int64_t p = 0; p < kc; ++p) out[p * kMR + i] = i < height ? a.at(i0 + i, p) : 0.0f;
  }
}

// C[0:rows, 0:cols] (+)= Ap (one kMR panel) x Bp (one kNR panel) over kc. Always inlined, so it
// is compiled with the instruction set of the gemm clone that calls it.
__attribute__((always_inline)) inline void micro_kernel(const float* ap, const float* bp, int64_t kc,
                                                        float* c, int64_t ldc, int64_t rows, int64_t cols,
                                                        bool accumulate) {
  v8 acc[kMR][2] = {};
  for (int64_t p = 0; p < kc; ++p, ap += kMR, bp += kNR) {
    const v8 b0 = load(bp), b1 = load(bp + 8);
    for (int64_t i = 0; i < kMR; ++i) {
      acc[i][0] += ap[i] * b0;
      acc[i][1] += ap[i] * b1;
    }
  }
  if (rows == kMR && cols == kNR) {
    for (int64_t i = 0; i < kMR; ++i) {
      float* row = c + i * ldc;
      store(row, accumulate ? load(row) + acc[i][0] : acc[i][0]);
      store(row + 8, accumulate ? load(row + 8) + acc[i][1] : acc[i][1]);
    }
    return;
  }
  float tile[kMR][kNR];
  for (int64_t i = 0; i < kMR; ++i) {
    store(tile[i], acc[i][0]);
    store(tile[i] + 8, acc[i][1]);
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i][j] : tile[i][j];
}

// C [m, n] (row stride ldc) = A [m, k] x B [k, n]; k == 0 writes zeros.
__attribute__((always_inline)) inline void gemm_body(int64_t m, int64_t n, int64_t k, View a, View b,
                                                     float* c, int64_t ldc) {
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  const int64_t panels = (n + kNR - 1) / kNR;
  std::vector<float> bp(panels * kNR * std::min(k, kKC)), ap(kMC * std::min(k, kKC));
  for (int64_t p0 = 0; p0 < k; p0 += kKC) {
    const int64_t kc = std::min(kKC, k - p0);
    pack_b(b.block(p0, 0), kc, n, bp.data());
    for (int64_t i0 = 0; i0 < m; i0 += kMC) {
      const int64_t mc = std::min(kMC, m - i0);
      pack_a(a.block(i0, p0), mc, kc, ap.data());
      for (int64_t jp = 0; jp < panels; ++jp) {
        const int64_t j0 = jp * kNR;
        for (int64_t ip = 0; ip * kMR < mc; ++ip) {
          const int64_t r0 = i0 + ip * kMR;
          micro_kernel(ap.data() + ip * kMR * kc, bp.data() + jp * kNR * kc, kc, c + r0 * ldc + j0, ldc,
                       std::min(kMR, m - r0), std::min(kNR, n - j0), p0 > 0);
        }
      }
    }
  }
}

#ifdef MF_HAVE_FMA_BUILD
MF_FMA_TARGET void gemm_fma(int64_t m, int64_t n, int64_t k, View a, View b,
                                                  float* c, int64_t ldc) {
  gemm_body(m, n, k, a, b, c, ldc);
}
#endif

void gemm_baseline(int64_t m, int64_t n, int64_t k, View a, View b, float* c, int64_t ldc) {
  gemm_body(m, n, k, a, b, c, ldc);
}

void gemm(int64_t m, int64_t n, int64_t k, View a, View b, float* c, int64_t ldc) {
#ifdef MF_HAVE_FMA_BUILD
  if (has_avx2_fma()) return gemm_fma(m, n, k, a, b, c, ldc);
#endif
  gemm_baseline(m, n, k, a, b, c, ldc);
}

// One unit of parallel work: output rows [row0, row0 + rows) of expert `expert`'s product.
struct Task {
  int64_t expert, row0, rows;
};

// Group offsets from the sizes; false if a size is negative or the groups overrun the n rows.
bool group_offsets(const int32_t* sizes, int64_t experts, int64_t n, std::vector<int64_t>& offsets) {
  offsets.assign(experts + 1, 0);
  for (int64_t e = 0; e < experts; ++e) {
    if (sizes[e] < 0) return false;
    offsets[e + 1] = offsets[e] + sizes[e];
  }
  return offsets[experts] <= n;
}

// Splits every expert's `extent(e)` output rows into tasks of at most kRowTask rows.
template <class Extent>
std::vector<Task> row_tasks(int64_t experts, Extent extent) {
  std::vector<Task> tasks;
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t r = 0; r < extent(e); r += kRowTask)
      tasks.push_back({e, r, std::min(kRowTask, extent(e) - r)});
  return tasks;
}

template <class Body>
void run_tasks(const std::vector<Task>& tasks, Body body) {
  const int64_t n = static_cast<int64_t>(tasks.size());
  parallel_tasks(n, worker_count(n), [&](int64_t t, int64_t) { body(tasks[t]); });
}

struct Shapes {
  int64_t n, k, m, experts;
};

// x [N, K] float32, w [E, K, M] float32, sizes [E] int32 (the checks shared by both directions).
bool read_shapes(int* ndims, int64_t** shapes, const char** dtypes, Shapes& s) {
  if (ndims[0] != 2 || ndims[1] != 3 || ndims[2] != 1) return false;
  if (!is_float32(dtypes[0]) || !is_float32(dtypes[1]) || std::strcmp(dtypes[2], "int32") != 0) return false;
  s = {shapes[0][0], shapes[0][1], shapes[1][2], shapes[1][0]};
  return shapes[1][1] == s.k && shapes[2][0] == s.experts;
}

void zero_rows(float* data, int64_t from, int64_t to, int64_t width) {
  std::fill(data + from * width, data + to * width, 0.0f);
}

}  // namespace

// inputs x, w, sizes; output y [N, M]. Returns 1 on bad shapes, dtypes or group sizes.
extern "C" int MfGroupedMatmulForward(int nparam, void** params, int* ndims, int64_t** shapes,
                                      const char** dtypes, void* /*stream*/, void* /*extra*/) {
  Shapes s;
  std::vector<int64_t> off;
  if (nparam != 4 || !read_shapes(ndims, shapes, dtypes, s)) return 1;
  const auto* x = static_cast<const float*>(params[0]);
  const auto* w = static_cast<const float*>(params[1]);
  if (!group_offsets(static_cast<const int32_t*>(params[2]), s.experts, s.n, off)) return 1;
  auto* y = static_cast<float*>(params[3]);
  auto tasks = row_tasks(s.experts, [&](int64_t e) { return off[e + 1] - off[e]; });
  run_tasks(tasks, [&](const Task& t) {
    const int64_t r = off[t.expert] + t.row0;
    gemm(t.rows, s.m, s.k, View{x + r * s.k, s.k, 1}, View{w + t.expert * s.k * s.m, s.m, 1}, y + r * s.m, s.m);
  });
  zero_rows(y, off[s.experts], s.n, s.m);
  return 0;
}

// inputs x, w, sizes, dy [N, M]; outputs dx [N, K] = dy_e w_e^T, dw [E, K, M] = x_e^T dy_e.
extern "C" int MfGroupedMatmulBackward(int nparam, void** params, int* ndims, int64_t** shapes,
                                       const char** dtypes, void* /*stream*/, void* /*extra*/) {
  Shapes s;
  std::vector<int64_t> off;
  if (nparam != 6 || !read_shapes(ndims, shapes, dtypes, s)) return 1;
  if (!is_float32(dtypes[3]) || ndims[3] != 2 || shapes[3][0] != s.n || shapes[3][1] != s.m) return 1;
  const auto* x = static_cast<const float*>(params[0]);
  const auto* w = static_cast<const float*>(params[1]);
  if (!group_offsets(static_cast<const int32_t*>(params[2]), s.experts, s.n, off)) return 1;
  const auto* dy = static_cast<const float*>(params[3]);
  auto* dx = static_cast<float*>(params[4]);
  auto* dw = static_cast<float*>(params[5]);
  auto dx_tasks = row_tasks(s.experts, [&](int64_t e) { return off[e + 1] - off[e]; });
  run_tasks(dx_tasks, [&](const Task& t) {
    const int64_t r = off[t.expert] + t.row0;
    gemm(t.rows, s.k, s.m, View{dy + r * s.m, s.m, 1}, View{w + t.expert * s.k * s.m, 1, s.m},
         dx + r * s.k, s.k);
  });
  zero_rows(dx, off[s.experts], s.n, s.k);
  // dw rows are the K input features; an expert without rows gets zeros (gemm with k = 0)
  auto dw_tasks = row_tasks(s.experts, [&](int64_t) { return s.k; });
  run_tasks(dw_tasks, [&](const Task& t) {
    const int64_t r = off[t.expert];
    gemm(t.rows, s.m, off[t.expert + 1] - r, View{x + r * s.k + t.row0, 1, s.k}, View{dy + r * s.m, s.m, 1},
         dw + (t.expert * s.k + t.row0) * s.m, s.m);
  });
  return 0;
}
