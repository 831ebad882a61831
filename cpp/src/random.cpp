#include "mfcore/random.h"

#include <algorithm>
#include <atomic>
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

namespace {
constexpr size_t kAhead = 24;           // swaps between a target's prefetch and its use
constexpr size_t kParallelMin = 1 << 20;  // below this a helper thread costs more than it saves

template <class T>
void swap_block(T* a, size_t top, const uint64_t* targets, size_t count) {
  for (size_t k = 0; k < std::min(kAhead, count); ++k) __builtin_prefetch(a + targets[k], 1);
  for (size_t k = 0; k < count; ++k) {
    if (k + kAhead < count) __builtin_prefetch(a + targets[k + kAhead], 1);
    std::swap(a[top - k], a[targets[k]]);
  }
}

// Targets of swaps n-1 .. 1, drawn by a producer, consumed through a ring of blocks. The producer
// never runs more than the ring ahead; the consumer never passes the producer.
struct TargetRing {
  static constexpr size_t kBlock = 4096, kBlocks = 64;
  std::vector<uint64_t> slots = std::vector<uint64_t>(kBlock * kBlocks);
  std::atomic<size_t> produced{0}, consumed{0};  // in blocks
};
}  // namespace

// Fisher-Yates needs the draws in order but not the array, so the draws are made ahead: in blocks
// on this thread for small arrays, on a helper thread for large ones (drawing and the cache-missing
// swaps then overlap). Each swap target is prefetched a few swaps before it is needed.
template <class T>
void NumpyRandom::shuffle(T* a, size_t n) {
  if (n < 2) return;
  const size_t swaps = n - 1;
  if (n < kParallelMin) {
    uint64_t targets[512];
    for (size_t done = 0; done < swaps;) {
      const size_t count = std::min<size_t>(512, swaps - done);
      for (size_t k = 0; k < count; ++k) targets[k] = bounded(n - 1 - done - k);
      swap_block(a, n - 1 - done, targets, count);
      done += count;
    }
    return;
  }
  TargetRing ring;
  const size_t blocks = (swaps + TargetRing::kBlock - 1) / TargetRing::kBlock;
  std::thread producer([&] {
    for (size_t b = 0; b < blocks; ++b) {
      while (b - ring.consumed.load(std::memory_order_acquire) >= TargetRing::kBlocks) std::this_thread::yield();
      uint64_t* out = ring.slots.data() + (b % TargetRing::kBlocks) * TargetRing::kBlock;
      const size_t first = b * TargetRing::kBlock, count = std::min(TargetRing::kBlock, swaps - first);
      for (size_t k = 0; k < count; ++k) out[k] = bounded(n - 1 - first - k);
      ring.produced.store(b + 1, std::memory_order_release);
    }
  });
  for (size_t b = 0; b < blocks; ++b) {
    while (ring.produced.load(std::memory_order_acquire) <= b) std::this_thread::yield();
    const size_t first = b * TargetRing::kBlock, count = std::min(TargetRing::kBlock, swaps - first);
    swap_block(a, n - 1 - first, ring.slots.data() + (b % TargetRing::kBlocks) * TargetRing::kBlock, count);
    ring.consumed.store(b + 1, std::memory_order_release);
  }
  producer.join();
}

template void NumpyRandom::shuffle<int32_t>(int32_t*, size_t);
template void NumpyRandom::shuffle<uint32_t>(uint32_t*, size_t);
template void NumpyRandom::shuffle<int64_t>(int64_t*, size_t);

}  // namespace mfcore
