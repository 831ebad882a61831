#include "mfcore/random.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace mfcore {

namespace {
// max with every bit below its highest set bit set (max > 0).
uint64_t fill_lower_bits(uint64_t m) { return ~uint64_t{0} >> __builtin_clzll(m); }
}  // namespace

NumpyRandom::NumpyRandom(uint32_t seed) {
  state_[0] = seed;  // init_genrand
  for (uint32_t i = 1; i < kN; ++i) state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + i;
}

// MT19937's twist over the whole state, then tempering into out_. The first loop reads only words
// not yet rewritten, the second only words rewritten >= 227 steps earlier, so both vectorise.
void NumpyRandom::refill() {
  constexpr uint32_t kUpper = 0x80000000u, kLower = 0x7FFFFFFFu, kMatrix = 0x9908B0DFu;
  constexpr size_t kM = 397;
  uint32_t* mt = state_;
  size_t i = 0;
#pragma GCC ivdep
  for (; i < kN - kM; ++i) {
    const uint32_t y = (mt[i] & kUpper) | (mt[i + 1] & kLower);
    mt[i] = mt[i + kM] ^ (y >> 1) ^ ((0u - (y & 1u)) & kMatrix);
  }
#pragma GCC ivdep
  for (; i < kN - 1; ++i) {
    const uint32_t y = (mt[i] & kUpper) | (mt[i + 1] & kLower);
    mt[i] = mt[i + kM - kN] ^ (y >> 1) ^ ((0u - (y & 1u)) & kMatrix);
  }
  const uint32_t y = (mt[kN - 1] & kUpper) | (mt[0] & kLower);
  mt[kN - 1] = mt[kM - 1] ^ (y >> 1) ^ ((0u - (y & 1u)) & kMatrix);
  for (size_t k = 0; k < kN; ++k) {
    uint32_t v = mt[k];
    v ^= v >> 11;
    v ^= (v << 7) & 0x9D2C5680u;
    v ^= (v << 15) & 0xEFC60000u;
    v ^= v >> 18;
    out_[k] = v;
  }
  next_ = 0;
}

uint64_t NumpyRandom::bounded(uint64_t max) {
  if (max == 0) return 0;
  const uint64_t mask = fill_lower_bits(max);
  uint64_t v;
  if (max <= 0xFFFFFFFFull) {
    do {
      v = next32() & mask;
    } while (v > max);
  } else {
    do {
      uint64_t hi = next32();
      v = ((hi << 32) | next32()) & mask;
    } while (v > max);
  }
  return v;
}

void NumpyRandom::draw_targets(uint64_t top, size_t count, uint32_t* out) {
  if (top > 0xFFFFFFFFull || count > top) {
    throw std::invalid_argument("draw_targets: need count <= top <= 2^32 - 1");
  }
  uint32_t i = static_cast<uint32_t>(top);
  const uint32_t stop = static_cast<uint32_t>(top - count);
  size_t k = 0;
  while (i > stop) {
    // One stretch of equal mask (i down to the next power of two), within the tempered words left.
    const uint32_t mask = static_cast<uint32_t>(fill_lower_bits(i));
    const uint32_t low = std::max(mask >> 1, stop);
    if (next_ == kN) refill();
    size_t p = next_;
    while (i > low && p < kN) {
      const uint32_t v = out_[p++] & mask;
      const uint32_t ok = v <= i;
      out[k] = v;  // overwritten by the next candidate unless accepted
      k += ok;
      i -= ok;
    }
    next_ = p;
  }
}

namespace {
constexpr size_t kAhead = 64;  // swaps between a target's prefetch and its use

// Swaps a[top - k] with a[targets[k]]; every target is prefetched kAhead swaps before its use (the
// descending `top` side is found by the hardware prefetcher).
template <class T>
void swap_block(T* a, size_t top, const uint32_t* targets, size_t count) {
  for (size_t k = 0; k < std::min(kAhead, count); ++k) __builtin_prefetch(a + targets[k], 1);
  size_t k = 0;
  for (; k + kAhead < count; ++k) {
    __builtin_prefetch(a + targets[k + kAhead], 1);
    std::swap(a[top - k], a[targets[k]]);
  }
  for (; k < count; ++k) std::swap(a[top - k], a[targets[k]]);
}

// Calls fn(segment offset, segment length, first swap, swap count) for each block of the swaps of
// the segments, in order; a block never spans two segments.
template <class F>
void for_each_block(const std::vector<size_t>& lengths, size_t block, F&& fn) {
  size_t offset = 0;
  for (size_t len : lengths) {
    const size_t swaps = len < 2 ? 0 : len - 1;
    for (size_t first = 0; first < swaps; first += block) fn(offset, len, first, std::min(block, swaps - first));
    offset += len;
  }
}

// Waits for the other thread: a few yields for a short wait, then short sleeps, so that a long wait
// (the drawing thread is ~3x faster than the swaps and mostly waits for ring space) leaves the core
// to other work instead of spinning on it.
template <class Ready>
void wait_for(Ready&& ready) {
  for (int spins = 0; !ready(); ++spins) {
    if (spins < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
}

void wait_until(const std::atomic<size_t>& value, size_t at_least) {
  wait_for([&] { return value.load(std::memory_order_acquire) >= at_least; });
}
}  // namespace

ShuffleTargets::ShuffleTargets(std::vector<size_t> segment_lengths) : lengths_(std::move(segment_lengths)) {
  size_t offset = 0;
  for (size_t len : lengths_) {
    if (len > (size_t(1) << 32)) throw std::length_error("ShuffleTargets: a segment of 2^32 or more swaps");
    offsets_.push_back(offset);
    first_blocks_.push_back(blocks_);
    blocks_ += len < 2 ? 0 : (len - 1 + kBlock - 1) / kBlock;  // as for_each_block cuts them
    offset += len;
  }
  first_blocks_.push_back(blocks_);
  slots_.resize(kBlock * std::min(kBlocks, std::max<size_t>(blocks_, 1)));
}

void ShuffleTargets::draw(NumpyRandom& rng, const std::function<bool()>& idle) {
  const size_t ring = slots_.size() / kBlock;
  size_t b = 0;
  for_each_block(lengths_, kBlock, [&](size_t, size_t len, size_t first, size_t count) {
    if (b >= ring) {  // wait until the slot's previous block is swapped, doing `idle` work meanwhile
      while (consumed_.load(std::memory_order_acquire) < b - ring + 1 && idle && idle()) {
      }
      wait_until(consumed_, b - ring + 1);
    }
    rng.draw_targets(len - 1 - first, count, slots_.data() + (b % ring) * kBlock);
    produced_.store(++b, std::memory_order_release);
  });
}

size_t ShuffleTargets::final_from(size_t segment) const {
  const size_t done = consumed_.load(std::memory_order_acquire);
  const size_t end = offsets_[segment] + lengths_[segment];
  if (done >= first_blocks_[segment + 1]) return offsets_[segment];
  if (done <= first_blocks_[segment]) return end;
  return end - (done - first_blocks_[segment]) * kBlock;  // swap k settles the position end - 1 - k
}

void ShuffleTargets::wait_final(size_t segment, size_t position) const {
  wait_for([&] { return final_from(segment) <= position; });
}

template <class T>
void ShuffleTargets::apply(T* a) {
  const size_t ring = slots_.size() / kBlock;
  size_t b = 0;
  for_each_block(lengths_, kBlock, [&](size_t offset, size_t len, size_t first, size_t count) {
    wait_until(produced_, b + 1);
    swap_block(a + offset, len - 1 - first, slots_.data() + (b % ring) * kBlock, count);
    consumed_.store(++b, std::memory_order_release);
  });
}

template <class T>
void NumpyRandom::shuffle_here(T* a, size_t n) {
  if (n < 2) return;
  if (n - 1 > 0xFFFFFFFFull) {  // beyond 32-bit targets: plain Fisher-Yates
    for (size_t i = n - 1; i > 0; --i) std::swap(a[i], a[bounded(i)]);
    return;
  }
  uint32_t targets[2048];
  for (size_t done = 0; done < n - 1;) {
    const size_t count = std::min<size_t>(2048, n - 1 - done);
    draw_targets(n - 1 - done, count, targets);
    swap_block(a, n - 1 - done, targets, count);
    done += count;
  }
}

// Fisher-Yates needs the draws in order but not the array, so for large arrays the draws are made
// on a helper thread while this one swaps (drawing and the cache-missing swaps then overlap).
template <class T>
void NumpyRandom::shuffle(T* a, size_t n) {
  constexpr size_t kParallelMin = 1 << 20;  // below this a helper thread costs more than it saves
  if (n < kParallelMin || n - 1 > 0xFFFFFFFFull) return shuffle_here(a, n);
  ShuffleTargets targets({n});
  std::thread drawer([&] { targets.draw(*this); });
  targets.apply(a);
  drawer.join();
}

#define MFCORE_SHUFFLE_TYPES(T)                              \
  template void NumpyRandom::shuffle<T>(T*, size_t);         \
  template void NumpyRandom::shuffle_here<T>(T*, size_t);    \
  template void ShuffleTargets::apply<T>(T*);
MFCORE_SHUFFLE_TYPES(uint16_t)
MFCORE_SHUFFLE_TYPES(int32_t)
MFCORE_SHUFFLE_TYPES(uint32_t)
MFCORE_SHUFFLE_TYPES(int64_t)
#undef MFCORE_SHUFFLE_TYPES

}  // namespace mfcore
