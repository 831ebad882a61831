#pragma once
// A fast, portable, non-cryptographic 64-bit hash (for cache keys and dataset fingerprints: it
// detects changes, it does not resist an adversary). Stable across runs, machines and versions.
#include <cstddef>
#include <cstdint>
#include <string>

namespace mfcore {

uint64_t hash64(const void* data, size_t size, uint64_t seed = 0);
inline uint64_t hash64(const std::string& s, uint64_t seed = 0) { return hash64(s.data(), s.size(), seed); }
std::string hex64(uint64_t value);  // 16 lower-case hex digits

}  // namespace mfcore
