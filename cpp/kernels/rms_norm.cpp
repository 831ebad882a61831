// RMSNorm y = x / sqrt(mean(x^2) + eps) * w over the last axis, forward and backward in one pass
// over the rows each, for MindSpore's CPU backend through ops.Custom(func_type="aot") (see
// python/mfcore/models/layers/norm.py). MindSpore's graph spent about ten element-wise kernels and
// four matrix-vector products per norm and step (the means), each a full pass over [tokens, hidden].
// The forward keeps each row's 1/rms for the backward:
//   dx = r * (g - x r * mean(g * x r)),  g = dy * w;   dw = sum over rows of dy * x r.
// dw is summed per fixed block of rows, then over the blocks in order: deterministic.
#include <cmath>
#include <cstdint>
#include <vector>

#include "vector_math.h"

namespace {

using namespace mfcore::kernels;

constexpr int64_t kRowsPerTask = 32;

// sum_j a[j] * b[j] in lanes (a fixed order: deterministic).
MF_VECTOR_CLONES
float dot(const float* a, const float* b, int64_t n) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += a[j + l] * b[j + l];
  for (; j < n; ++j) lanes[0] += a[j] * b[j];
  float total = 0.f;
  for (float lane : lanes) total += lane;
  return total;
}

MF_VECTOR_CLONES
void scale_row(const float* x, const float* w, float r, int64_t n, float* y) {
  for (int64_t j = 0; j < n; ++j) y[j] = x[j] * r * w[j];
}

// g = dy * w into dx, and returns sum(g * x); dw_part += dy * x * r.
MF_VECTOR_CLONES
float backward_first(const float* x, const float* w, const float* dy, float r, int64_t n, float* dx,
                     float* dw_part) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) {
      const float g = dy[j + l] * w[j + l];
      dx[j + l] = g;
      lanes[l] += g * x[j + l];
      dw_part[j + l] += dy[j + l] * x[j + l] * r;
    }
  for (; j < n; ++j) {
    dx[j] = dy[j] * w[j];
    lanes[0] += dx[j] * x[j];
    dw_part[j] += dy[j] * x[j] * r;
  }
  float total = 0.f;
  for (float lane : lanes) total += lane;
  return total;
}

// dx = r * (g - x * c) with g already in dx and c = r^2 * mean(g * x).
MF_VECTOR_CLONES
void backward_second(const float* x, float r, float c, int64_t n, float* dx) {
  for (int64_t j = 0; j < n; ++j) dx[j] = r * (dx[j] - x[j] * c);
}

struct Rows {
  int64_t rows, width;
};

// x [..., h] float32, w [h] float32: rows and width, or false.
bool read_rows(int* ndims, int64_t** shapes, const char** dtypes, Rows& p) {
  if (ndims[0] < 1 || ndims[1] != 1 || !is_float32(dtypes[0]) || !is_float32(dtypes[1])) return false;
  p.width = shapes[0][ndims[0] - 1];
  p.rows = p.width > 0 ? numel(ndims[0], shapes[0]) / p.width : 0;
  return shapes[1][0] == p.width;
}

template <class Body>
void over_row_blocks(int64_t rows, Body body) {
  const int64_t tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
  parallel_tasks(tasks, worker_count(tasks), [&](int64_t t, int64_t) {
    body(t, t * kRowsPerTask, std::min(rows, (t + 1) * kRowsPerTask));
  });
}

}  // namespace

// inputs x [..., h], w [h], eps [1]; outputs y (x's shape), inv_rms [rows] (1 / rms of each row).
extern "C" int MfRMSNormForward(int nparam, void** params, int* ndims, int64_t** shapes,
                                const char** dtypes, void* /*stream*/, void* /*extra*/) {
  Rows p;
  if (nparam != 5 || !read_rows(ndims, shapes, dtypes, p)) return 1;
  const auto* x = static_cast<const float*>(params[0]);
  const auto* w = static_cast<const float*>(params[1]);
  const float eps = *static_cast<const float*>(params[2]);
  auto* y = static_cast<float*>(params[3]);
  auto* inv = static_cast<float*>(params[4]);
  over_row_blocks(p.rows, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const float* row = x + i * p.width;
      inv[i] = 1.0f / std::sqrt(dot(row, row, p.width) / static_cast<float>(p.width) + eps);
      scale_row(row, w, inv[i], p.width, y + i * p.width);
    }
  });
  return 0;
}

namespace {

// dx and dw from x, w, inv_rms, dy.
void backward(const Rows& p, const float* x, const float* w, const float* inv, const float* dy, float* dx,
              float* dw) {
  const int64_t h = p.width, tasks = (p.rows + kRowsPerTask - 1) / kRowsPerTask;
  std::vector<float> parts(tasks * h, 0.f);  // dw of each block of rows
  over_row_blocks(p.rows, [&](int64_t t, int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const float r = inv[i];
      const float gx = backward_first(x + i * h, w, dy + i * h, r, h, dx + i * h, parts.data() + t * h);
      backward_second(x + i * h, r, r * r * gx / static_cast<float>(h), h, dx + i * h);
    }
  });
  std::fill(dw, dw + h, 0.f);
  for (int64_t t = 0; t < tasks; ++t)
    for (int64_t j = 0; j < h; ++j) dw[j] += parts[t * h + j];
}

}  // namespace

// inputs x, w, inv_rms [rows], dy (x's shape); outputs dx (x's shape), dw [h].
extern "C" int MfRMSNormBackward(int nparam, void** params, int* ndims, int64_t** shapes,
                                 const char** dtypes, void* /*stream*/, void* /*extra*/) {
  Rows p;
  if (nparam != 6 || !read_rows(ndims, shapes, dtypes, p) || !is_float32(dtypes[3]) ||
      numel(ndims[3], shapes[3]) != p.rows * p.width)
    return 1;
  backward(p, static_cast<const float*>(params[0]), static_cast<const float*>(params[1]),
           static_cast<const float*>(params[2]), static_cast<const float*>(params[3]),
           static_cast<float*>(params[4]), static_cast<float*>(params[5]));
  return 0;
}
