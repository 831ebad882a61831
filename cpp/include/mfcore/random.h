#pragma once
// The random stream of numpy's legacy `RandomState(seed)`: MT19937 seeded with init_genrand(seed)
// (identical to std::mt19937(seed)), numpy's bounded draw `random_interval` and its in-place
// Fisher-Yates shuffle. Megatron shuffles its document and sample orders with exactly these, so
// reproducing them draw for draw is what makes mfcore's sample order equal Megatron's.
#include <cstddef>
#include <cstdint>

namespace mfcore {

class NumpyRandom {
 public:
  explicit NumpyRandom(uint32_t seed);

  // The next raw 32-bit output of MT19937 (equal to std::mt19937's). The state is twisted and
  // tempered 624 words at a time in vectorisable loops, ~3x faster than std::mt19937 per draw.
  uint32_t next32() {
    if (next_ == kN) refill();
    return out_[next_++];
  }

  // numpy's random_interval(max): uniform in [0, max] by masked rejection; 32-bit draws while
  // max fits 32 bits, else two draws (high word first) per candidate.
  uint64_t bounded(uint64_t max);

  // numpy's RandomState.shuffle of a 1-D array: for i = n-1 down to 1, swap a[i] with
  // a[bounded(i)]. Implemented for int32, uint32 and int64 elements.
  template <class T>
  void shuffle(T* a, size_t n);

 private:
  static constexpr size_t kN = 624;
  void refill();
  uint32_t state_[kN];
  uint32_t out_[kN];
  size_t next_ = kN;
};

}  // namespace mfcore
