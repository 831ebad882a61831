#pragma once
// Token element types of the Megatron indexed dataset format, with the on-disk codes of its `.idx`.
#include <cstddef>
#include <cstdint>
#include <string>

namespace mfcore {

// The codes are Megatron's (see shared spec); an older MindSpore Transformers reader swaps 6 and 7.
enum class DType : uint8_t {
  UInt8 = 1,
  Int8 = 2,
  Int16 = 3,
  Int32 = 4,
  Int64 = 5,
  Float64 = 6,
  Float32 = 7,
  UInt16 = 8,
};

// Bytes per element (1, 2, 4 or 8).
size_t dtype_size(DType dtype);

// numpy spelling: "uint8", "int8", "int16", "int32", "int64", "float64", "float32", "uint16".
const char* dtype_name(DType dtype);

// True when `code` is one of the eight codes above.
bool is_dtype_code(uint8_t code);

// The DType of a numpy-style name (as returned by dtype_name); throws std::invalid_argument.
DType dtype_from_name(const std::string& name);

// Megatron's choice for token ids: uint16 when the vocabulary has fewer than 65,500 entries, else int32.
DType best_dtype(uint64_t vocab_size);

}  // namespace mfcore
