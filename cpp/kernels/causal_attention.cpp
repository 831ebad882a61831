// Causal softmax attention with grouped-query heads for MindSpore's CPU backend, forward and
// backward, called through ops.Custom(func_type="aot") (see python/mfcore/models/layers/
// cpu_attention.py). One task per (batch, key/value head): its keys and values are transposed once
// into [dim, seq] scratch; query rows go in blocks of four so each loaded key or value serves four
// rows from registers; keys above the diagonal are never touched and no [seq, seq] tensor is
// materialised. Tasks write disjoint slices, so results do not depend on the thread count.
//
// Layouts (float32): q [b, s, nq, d], k [b, s, nkv, d], v [b, s, nkv, dv], mask: additive float32
// [mb, ..., s, s] with mb = 1 or b (added on and below the diagonal, on top of causality), scale [1];
// out [b, s, nq * dv], lse [b, nq, s] (log-sum-exp of each score row, kept for the backward).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vector_math.h"

namespace {

using namespace mfcore::kernels;
constexpr int64_t kRows = 4;  // query rows per block (the micro-kernels unroll four)

MF_VECTOR_CLONES
float max_of(const float* x, int64_t n) {
  float lanes[kLanes];
  std::fill(lanes, lanes + kLanes, x[0]);
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] = std::max(lanes[l], x[j + l]);
  for (; j < n; ++j) lanes[0] = std::max(lanes[0], x[j]);
  return *std::max_element(lanes, lanes + kLanes);
}

// x[j] = exp(x[j] - shift) for j < n; returns their sum (in lanes: a fixed, deterministic order).
MF_VECTOR_CLONES
float exp_shifted(float* x, int64_t n, float shift) {
  for (int64_t j = 0; j < n; ++j) x[j] = exp_nonpositive(x[j] - shift);
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += x[j + l];
  for (; j < n; ++j) lanes[0] += x[j];
  float total = 0.f;
  for (float lane : lanes) total += lane;
  return total;
}

// out[r][j] = scale * rows[r] . x_j for j <= last (in steps of 16 keys), xt [w, padded] holding
// the x_j as columns. Eight accumulators: two key vectors for each of the four rows.
MF_VECTOR_CLONES
void dot_block(const float* const* rows, const float* xt, int64_t w, int64_t padded, int64_t last,
               float scale, float* out) {
  for (int64_t j0 = 0; j0 <= last; j0 += 2 * kLanes) {
    v8 a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};
    for (int64_t c = 0; c < w; ++c) {
      const v8 x = load(xt + c * padded + j0), y = load(xt + c * padded + j0 + kLanes);
      const float r0 = rows[0][c], r1 = rows[1][c], r2 = rows[2][c], r3 = rows[3][c];
      a0 += r0 * x, a1 += r1 * x, a2 += r2 * x, a3 += r3 * x;
      b0 += r0 * y, b1 += r1 * y, b2 += r2 * y, b3 += r3 * y;
    }
    store(out + j0, a0 * scale), store(out + j0 + kLanes, b0 * scale);
    store(out + padded + j0, a1 * scale), store(out + padded + j0 + kLanes, b1 * scale);
    store(out + 2 * padded + j0, a2 * scale), store(out + 2 * padded + j0 + kLanes, b2 * scale);
    store(out + 3 * padded + j0, a3 * scale), store(out + 3 * padded + j0 + kLanes, b3 * scale);
  }
}

// out[r][c] = sum_{j <= last} p[r][j] * x_j[c], x rows of width w (a multiple of 8) at `stride`.
MF_VECTOR_CLONES
void combine_block(const float* p, int64_t padded, const float* x, int64_t stride, int64_t w,
                   int64_t last, float* const* out) {
  for (int64_t c0 = 0; c0 < w; c0 += kLanes) {
    v8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t j = 0; j <= last; ++j) {
      const v8 xj = load(x + j * stride + c0);
      a0 += p[j] * xj, a1 += p[padded + j] * xj, a2 += p[2 * padded + j] * xj;
      a3 += p[3 * padded + j] * xj;
    }
    store(out[0] + c0, a0), store(out[1] + c0, a1), store(out[2] + c0, a2), store(out[3] + c0, a3);
  }
}

// x_j[c] += sum_r coef[r][j] * rows[r][c] for j <= last (x is [s, w], w a multiple of 8).
MF_VECTOR_CLONES
void scatter_block(const float* coef, int64_t padded, const float* const* rows, int64_t w,
                   int64_t last, float* x) {
  for (int64_t c0 = 0; c0 < w; c0 += kLanes) {
    const v8 r0 = load(rows[0] + c0), r1 = load(rows[1] + c0), r2 = load(rows[2] + c0),
             r3 = load(rows[3] + c0);
    for (int64_t j = 0; j <= last; ++j) {
      float* xj = x + j * w + c0;
      store(xj, load(xj) + coef[j] * r0 + coef[padded + j] * r1 + coef[2 * padded + j] * r2 +
                    coef[3 * padded + j] * r3);
    }
  }
}

struct Dims {
  int64_t b, s, nq, nkv, d, dv, mask_batches, padded;  // padded: s rounded up to 16
};

struct Tensors {
  const float *q, *k, *v, *mask, *scale, *out, *lse, *dout;
  float *o_out, *o_lse, *dq, *dk, *dv;
};

// Per-thread scratch: transposed keys/values, a block's probabilities and their gradients, the
// head's key/value gradients, and a sink row for the rows a block has past the sequence end.
struct Scratch {
  std::vector<float> kt, vt, p, ds, dk, dv, sink;
  explicit Scratch(const Dims& m)
      : kt(m.d * m.padded), vt(m.dv * m.padded), p(kRows * m.padded), ds(kRows * m.padded),
        dk(m.s * m.d), dv(m.s * m.dv), sink(std::max(m.d, m.dv)) {}
};

// Rows i0 .. i0 + kRows - 1 of query head qh; rows past the sequence end read the last row and
// get zero weights, so the micro-kernels always see four rows.
struct Block {
  int64_t bi, h, qh, i0, last;  // last: the highest real row (and key) of the block
  int64_t row[kRows];           // position of each row (clamped to last)
  bool real[kRows];
  int64_t flat(int64_t r, const Dims& m) const { return (bi * m.s + row[r]) * m.nq + qh; }
};

Block make_block(const Dims& m, int64_t bi, int64_t h, int64_t qh, int64_t i0) {
  Block blk{bi, h, qh, i0, std::min(i0 + kRows, m.s) - 1, {}, {}};
  for (int64_t r = 0; r < kRows; ++r) {
    blk.real[r] = i0 + r <= blk.last;
    blk.row[r] = std::min(i0 + r, blk.last);
  }
  return blk;
}

// Copies head h of batch bi from x [b, s, n, w] into xt [w, padded] (padding stays zero).
void transpose_head(const float* x, const Dims& m, int64_t n, int64_t w, int64_t bi, int64_t h,
                    float* xt) {
  for (int64_t j = 0; j < m.s; ++j) {
    const float* row = x + ((bi * m.s + j) * n + h) * w;
    for (int64_t c = 0; c < w; ++c) xt[c * m.padded + j] = row[c];
  }
}

// Scores scale * q . k + mask of the block's rows into w.p (valid for j <= row).
void block_scores(const Tensors& t, const Dims& m, const Block& blk, Scratch& w) {
  const float* q_rows[kRows];
  for (int64_t r = 0; r < kRows; ++r) q_rows[r] = t.q + blk.flat(r, m) * m.d;
  dot_block(q_rows, w.kt.data(), m.d, m.padded, blk.last, *t.scale, w.p.data());
  const int64_t mb = m.mask_batches == 1 ? 0 : blk.bi;
  for (int64_t r = 0; r < kRows; ++r) {
    const float* mask_row = t.mask + (mb * m.s + blk.row[r]) * m.s;
    float* p = w.p.data() + r * m.padded;
    for (int64_t j = 0; j <= blk.row[r]; ++j) p[j] += mask_row[j];
  }
}

// Zeroes what a row must not contribute: keys after its diagonal (all keys for a padding row).
void clear_tail(const Block& blk, int64_t r, float* x) {
  std::fill(x + (blk.real[r] ? blk.row[r] + 1 : 0), x + blk.last + 1, 0.f);
}

void forward_block(const Tensors& t, const Dims& m, const Block& blk, Scratch& w) {
  block_scores(t, m, blk, w);
  float total[kRows];
  float* out_rows[kRows];
  for (int64_t r = 0; r < kRows; ++r) {
    float* p = w.p.data() + r * m.padded;
    const float top = max_of(p, blk.row[r] + 1);
    total[r] = exp_shifted(p, blk.row[r] + 1, top);
    clear_tail(blk, r, p);
    out_rows[r] = blk.real[r] ? t.o_out + blk.flat(r, m) * m.dv : w.sink.data();
    if (blk.real[r]) t.o_lse[(blk.bi * m.nq + blk.qh) * m.s + blk.row[r]] = top + std::log(total[r]);
  }
  combine_block(w.p.data(), m.padded, t.v + (blk.bi * m.s * m.nkv + blk.h) * m.dv, m.nkv * m.dv,
                m.dv, blk.last, out_rows);
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t c = 0; c < m.dv; ++c) out_rows[r][c] /= total[r];
}

// p = exp(score - lse) and ds = p * (dout . v - dout . out) * scale for the block's rows.
void probability_gradients(const Tensors& t, const Dims& m, const Block& blk, Scratch& w) {
  const float* dout_rows[kRows];
  for (int64_t r = 0; r < kRows; ++r) dout_rows[r] = t.dout + blk.flat(r, m) * m.dv;
  dot_block(dout_rows, w.vt.data(), m.dv, m.padded, blk.last, 1.0f, w.ds.data());
  for (int64_t r = 0; r < kRows; ++r) {
    float* p = w.p.data() + r * m.padded;
    float* ds = w.ds.data() + r * m.padded;
    const int64_t n = blk.row[r] + 1;
    exp_shifted(p, n, t.lse[(blk.bi * m.nq + blk.qh) * m.s + blk.row[r]]);
    const float* out_row = t.out + blk.flat(r, m) * m.dv;
    float delta = 0.f;
    for (int64_t c = 0; c < m.dv; ++c) delta += dout_rows[r][c] * out_row[c];
    for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - delta) * *t.scale;
    clear_tail(blk, r, p);
    clear_tail(blk, r, ds);
  }
}

void backward_block(const Tensors& t, const Dims& m, const Block& blk, Scratch& w) {
  block_scores(t, m, blk, w);
  probability_gradients(t, m, blk, w);
  const float *q_rows[kRows], *dout_rows[kRows];
  float* dq_rows[kRows];
  for (int64_t r = 0; r < kRows; ++r) {
    q_rows[r] = t.q + blk.flat(r, m) * m.d;
    dout_rows[r] = t.dout + blk.flat(r, m) * m.dv;
    dq_rows[r] = blk.real[r] ? t.dq + blk.flat(r, m) * m.d : w.sink.data();
  }
  combine_block(w.ds.data(), m.padded, t.k + (blk.bi * m.s * m.nkv + blk.h) * m.d, m.nkv * m.d,
                m.d, blk.last, dq_rows);
  scatter_block(w.ds.data(), m.padded, q_rows, m.d, blk.last, w.dk.data());
  scatter_block(w.p.data(), m.padded, dout_rows, m.dv, blk.last, w.dv.data());
}

void forward_task(const Tensors& t, const Dims& m, int64_t bi, int64_t h, Scratch& w) {
  transpose_head(t.k, m, m.nkv, m.d, bi, h, w.kt.data());
  const int64_t g = m.nq / m.nkv;
  for (int64_t qh = h * g; qh < (h + 1) * g; ++qh)
    for (int64_t i0 = 0; i0 < m.s; i0 += kRows) forward_block(t, m, make_block(m, bi, h, qh, i0), w);
}

void backward_task(const Tensors& t, const Dims& m, int64_t bi, int64_t h, Scratch& w) {
  transpose_head(t.k, m, m.nkv, m.d, bi, h, w.kt.data());
  transpose_head(t.v, m, m.nkv, m.dv, bi, h, w.vt.data());
  std::fill(w.dk.begin(), w.dk.end(), 0.f);
  std::fill(w.dv.begin(), w.dv.end(), 0.f);
  const int64_t g = m.nq / m.nkv;
  for (int64_t qh = h * g; qh < (h + 1) * g; ++qh)
    for (int64_t i0 = 0; i0 < m.s; i0 += kRows) backward_block(t, m, make_block(m, bi, h, qh, i0), w);
  for (int64_t j = 0; j < m.s; ++j) {
    const int64_t kv = (bi * m.s + j) * m.nkv + h;
    std::copy(w.dk.begin() + j * m.d, w.dk.begin() + (j + 1) * m.d, t.dk + kv * m.d);
    std::copy(w.dv.begin() + j * m.dv, w.dv.begin() + (j + 1) * m.dv, t.dv + kv * m.dv);
  }
}

// Shapes and dtypes shared by both entry points; false on anything this kernel does not handle
// (the Python side only selects it for layouts that pass, so this guards against misuse).
bool read_dims(int nparam, int expected, int* ndims, int64_t** shapes, const char** dtypes, Dims& m) {
  if (nparam != expected || ndims[0] != 4 || ndims[1] != 4 || ndims[2] != 4 || ndims[3] < 2) return false;
  for (int i = 0; i < nparam; ++i)
    if (!is_float32(dtypes[i])) return false;
  m = Dims{shapes[0][0], shapes[0][1], shapes[0][2], shapes[1][2], shapes[0][3], shapes[2][3], 0, 0};
  m.padded = (m.s + 2 * kLanes - 1) / (2 * kLanes) * (2 * kLanes);
  const int64_t mask_size = numel(ndims[3], shapes[3]);
  m.mask_batches = m.s > 0 ? mask_size / (m.s * m.s) : 0;
  const bool kv_ok = shapes[1][0] == m.b && shapes[1][1] == m.s && shapes[1][3] == m.d &&
                     shapes[2][0] == m.b && shapes[2][1] == m.s && shapes[2][2] == m.nkv;
  return kv_ok && m.s > 0 && m.nkv > 0 && m.nq % m.nkv == 0 && m.d % kLanes == 0 &&
         m.dv % kLanes == 0 && (m.mask_batches == 1 || m.mask_batches == m.b) &&
         m.mask_batches * m.s * m.s == mask_size;
}

// Runs task(batch, kv_head, scratch) over all pairs, one scratch per worker thread.
template <class Task>
void run_heads(const Dims& m, Task task) {
  const int64_t tasks = m.b * m.nkv, workers = worker_count(tasks);
  std::vector<Scratch> scratch(workers, Scratch(m));
  parallel_tasks(tasks, workers, [&](int64_t t, int64_t id) { task(t / m.nkv, t % m.nkv, scratch[id]); });
}

// Both entry points take q, k, v, mask, scale first.
Tensors leading_inputs(void** params) {
  Tensors t{};
  t.q = static_cast<const float*>(params[0]), t.k = static_cast<const float*>(params[1]);
  t.v = static_cast<const float*>(params[2]), t.mask = static_cast<const float*>(params[3]);
  t.scale = static_cast<const float*>(params[4]);
  return t;
}

}  // namespace

// inputs q, k, v, mask, scale; outputs out, lse. Returns 1 on unsupported shapes or dtypes.
extern "C" int MfCausalAttentionForward(int nparam, void** params, int* ndims, int64_t** shapes,
                                        const char** dtypes, void* /*stream*/, void* /*extra*/) {
  Dims m;
  if (!read_dims(nparam, 7, ndims, shapes, dtypes, m)) return 1;
  Tensors t = leading_inputs(params);
  t.o_out = static_cast<float*>(params[5]), t.o_lse = static_cast<float*>(params[6]);
  run_heads(m, [&](int64_t bi, int64_t h, Scratch& w) { forward_task(t, m, bi, h, w); });
  return 0;
}

// inputs q, k, v, mask, scale, out, lse, dout; outputs dq, dk, dv.
extern "C" int MfCausalAttentionBackward(int nparam, void** params, int* ndims, int64_t** shapes,
                                         const char** dtypes, void* /*stream*/, void* /*extra*/) {
  Dims m;
  if (!read_dims(nparam, 11, ndims, shapes, dtypes, m)) return 1;
  Tensors t = leading_inputs(params);
  t.out = static_cast<const float*>(params[5]), t.lse = static_cast<const float*>(params[6]);
  t.dout = static_cast<const float*>(params[7]);
  t.dq = static_cast<float*>(params[8]), t.dk = static_cast<float*>(params[9]);
  t.dv = static_cast<float*>(params[10]);
  run_heads(m, [&](int64_t bi, int64_t h, Scratch& w) { backward_task(t, m, bi, h, w); });
  return 0;
}
