#include "mfcore/token_copy.h"

#include <cstring>
#include <stdexcept>

namespace mfcore {

namespace {
template <class T>
void widen(const uint8_t* src, size_t count, int32_t* out) {
  if (sizeof(T) == sizeof(int32_t) && std::is_signed<T>::value) {
    std::memcpy(out, src, count * sizeof(int32_t));
    return;
  }
  for (size_t i = 0; i < count; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));  // unaligned-safe; compiles to a plain load
    out[i] = static_cast<int32_t>(v);
  }
}
}  // namespace

void copy_tokens(const uint8_t* src, DType dtype, size_t count, int32_t* out) {
  switch (dtype) {
    case DType::UInt8: return widen<uint8_t>(src, count, out);
    case DType::Int8: return widen<int8_t>(src, count, out);
    case DType::Int16: return widen<int16_t>(src, count, out);
    case DType::UInt16: return widen<uint16_t>(src, count, out);
    case DType::Int32: return widen<int32_t>(src, count, out);
    case DType::Int64: return widen<int64_t>(src, count, out);
    default: throw std::invalid_argument("token ids must be integers");
  }
}

}  // namespace mfcore
