#pragma once
// Widening copy of stored token ids (any integer dtype of the indexed format) into int32.
#include <cstddef>
#include <cstdint>

#include "mfcore/dtype.h"

namespace mfcore {

// Copies `count` little-endian elements of `dtype` from `src` (any alignment) to `out` as int32.
// Throws std::invalid_argument for float dtypes.
void copy_tokens(const uint8_t* src, DType dtype, size_t count, int32_t* out);

}  // namespace mfcore
