#include "mfcore/random.h"

#include <algorithm>
#include <utility>

namespace mfcore {

namespace {
uint64_t fill_lower_bits(uint64_t m) {
  m |= m >> 1;
  m |= m >> 2;
  m |= m >> 4;
  m |= m >> 8;
  m |= m >> 16;
  m |= m >> 32;
  return m;
}
}  // namespace

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

// The swaps of a large shuffle are random memory accesses; the draws do not depend on the array, so
// a block of them is drawn first and each target is prefetched a few swaps before it is needed.
template <class T>
void NumpyRandom::shuffle(T* a, size_t n) {
  constexpr size_t kBlock = 512;
  constexpr size_t kAhead = 24;
  uint64_t targets[kBlock];
  size_t i = n;  // elements [i, n) are final; the next swap is at position i - 1
  while (i > 1) {
    const size_t count = std::min(kBlock, i - 1);
    for (size_t k = 0; k < count; ++k) targets[k] = bounded(i - 1 - k);
    for (size_t k = 0; k < std::min(kAhead, count); ++k) __builtin_prefetch(a + targets[k], 1);
    for (size_t k = 0; k < count; ++k) {
      if (k + kAhead < count) __builtin_prefetch(a + targets[k + kAhead], 1);
      std::swap(a[i - 1 - k], a[targets[k]]);
    }
    i -= count;
  }
}

template void NumpyRandom::shuffle<int32_t>(int32_t*, size_t);
template void NumpyRandom::shuffle<uint32_t>(uint32_t*, size_t);
template void NumpyRandom::shuffle<int64_t>(int64_t*, size_t);

}  // namespace mfcore
