#pragma once
// What the loader reads samples from: a GPT dataset over one indexed dataset, or a blend of them.
// Sample i is L + X tokens of text; the fields are computed from it by sample_fields.h.
#include <cstdint>
#include <string>

namespace mfcore {

class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual int64_t size() const = 0;
  virtual int64_t seq_length() const = 0;
  virtual int add_extra_token() const = 0;
  // Writes the L + X tokens of sample i (0 <= i < size()) to `out`; a short final sample is padded
  // with `pad`. Thread-safe. Throws std::out_of_range for a bad i.
  virtual void read_text(int64_t i, int32_t* out, int32_t pad) const = 0;
  // Hex digest of everything that determines the sample order (sizes, split, seed, ...).
  virtual std::string fingerprint() const = 0;
};

}  // namespace mfcore
