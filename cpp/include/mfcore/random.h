#pragma once
// The random stream of numpy's legacy `RandomState(seed)`: MT19937 seeded with init_genrand(seed)
// (identical to std::mt19937(seed)), numpy's bounded draw `random_interval` and its in-place
// Fisher-Yates shuffle. Megatron shuffles its document and sample orders with exactly these, so
// reproducing them draw for draw is what makes mfcore's sample order equal Megatron's.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

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

  // out[k] = bounded(top - k) for k in [0, count): the swap targets of a Fisher-Yates stretch, in
  // order. Needs count <= top <= 2^32 - 1 (std::invalid_argument otherwise). Branch-free over the
  // raw draws (a rejected draw costs no misprediction): ~3x faster than bounded() in a loop.
  void draw_targets(uint64_t top, size_t count, uint32_t* out);

  // numpy's RandomState.shuffle of a 1-D array: for i = n-1 down to 1, swap a[i] with
  // a[bounded(i)]. Implemented for uint16, int32, uint32 and int64 elements. Large arrays draw on a helper
  // thread (see ShuffleTargets); shuffle_here never starts a thread.
  template <class T>
  void shuffle(T* a, size_t n);
  template <class T>
  void shuffle_here(T* a, size_t n);

 private:
  static constexpr size_t kN = 624;
  void refill();
  uint32_t state_[kN];
  uint32_t out_[kN];
  size_t next_ = kN;
};

// The shuffles of consecutive segments of one array with one generator (numpy shuffles each
// segment in turn), split into their two halves so that two threads can share them: draw() makes
// every swap target in order (generator work only), apply() performs the swaps (cache misses).
// They meet in a bounded ring of target blocks: draw() never runs more than the ring ahead, apply()
// never passes draw(). One thread calls draw(), one other calls apply(). Segments of more than 2^32
// elements are refused (std::length_error; NumpyRandom::shuffle handles them on one thread).
class ShuffleTargets {
 public:
  explicit ShuffleTargets(std::vector<size_t> segment_lengths);
  // `idle` (may be empty) is called whenever the ring is full, to do other work instead of waiting;
  // it returns false when it had none.
  void draw(NumpyRandom& rng, const std::function<bool()>& idle = {});
  template <class T>
  void apply(T* a);
  // Every position >= final_from(s) of segment s (positions counted from the array's start) holds
  // its final value: Fisher-Yates settles a segment from its end down, and the segments are
  // shuffled in order. Safe to call from any thread while apply() runs; reads behind it see the
  // final values.
  size_t final_from(size_t segment) const;
  // Blocks until final_from(segment) <= position (yields briefly, then sleeps in short steps).
  void wait_final(size_t segment, size_t position) const;

 private:
  static constexpr size_t kBlock = 8192, kBlocks = 48;
  std::vector<size_t> lengths_;
  std::vector<uint32_t> slots_;
  size_t blocks_ = 0;                         // blocks of targets in all
  std::vector<size_t> offsets_, first_blocks_;  // per segment: first position, first block of targets
  std::atomic<size_t> produced_{0}, consumed_{0};  // in blocks
};

}  // namespace mfcore
