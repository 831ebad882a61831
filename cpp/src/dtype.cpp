#include "mfcore/dtype.h"

#include <stdexcept>

namespace mfcore {

namespace {
struct DTypeInfo {
  DType dtype;
  size_t size;
  const char* name;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::UInt8, 1, "uint8"},     {DType::Int8, 1, "int8"},       {DType::Int16, 2, "int16"},
    {DType::Int32, 4, "int32"},     {DType::Int64, 8, "int64"},     {DType::Float64, 8, "float64"},
    {DType::Float32, 4, "float32"}, {DType::UInt16, 2, "uint16"},
};

const DTypeInfo& info(DType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d;
  throw std::invalid_argument("unknown dtype code " + std::to_string(static_cast<int>(dtype)));
}
}  // namespace

size_t dtype_size(DType dtype) { return info(dtype).size; }

const char* dtype_name(DType dtype) { return info(dtype).name; }

bool is_dtype_code(uint8_t code) {
  for (const auto& d : kDTypes)
    if (static_cast<uint8_t>(d.dtype) == code) return true;
  return false;
}

DType dtype_from_name(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.dtype;
  throw std::invalid_argument("unknown dtype name '" + name +
                              "' (expected uint8, int8, int16, int32, int64, float64, float32 or uint16)");
}

DType best_dtype(uint64_t vocab_size) { return vocab_size < 65500 ? DType::UInt16 : DType::Int32; }

}  // namespace mfcore
