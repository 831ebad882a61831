#include "mfcore/content_hash.h"

#include <cstring>

namespace mfcore {

namespace {
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
// MurmurHash3's finaliser: every input bit affects every output bit.
uint64_t fmix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return h;
}
}  // namespace

// Four independent lanes over 32-byte blocks (so the loop runs at memory speed), then the tail.
uint64_t hash64(const void* data, size_t size, uint64_t seed) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t lane[4] = {seed + kP1, seed + kP2, seed, seed - kP1};
  size_t i = 0;
  for (; i + 32 <= size; i += 32) {
    for (int k = 0; k < 4; ++k) lane[k] = rotl(lane[k] + load64(p + i + 8 * k) * kP2, 31) * kP1;
  }
  uint64_t h = rotl(lane[0], 1) + rotl(lane[1], 7) + rotl(lane[2], 12) + rotl(lane[3], 18) + size;
  for (; i + 8 <= size; i += 8) h = rotl(h ^ (load64(p + i) * kP2), 27) * kP1;
  for (; i < size; ++i) h = rotl(h ^ (p[i] * kP1), 11) * kP2;
  return fmix(h);
}

std::string hex64(uint64_t value) {
  static const char* digits = "0123456789abcdef";
  std::string out(16, '0');
  for (int k = 15; k >= 0; --k, value >>= 4) out[static_cast<size_t>(k)] = digits[value & 15];
  return out;
}

}  // namespace mfcore
