#include "mfcore/index_array.h"

namespace mfcore {

size_t index_type_size(IndexType t) {
  switch (t) {
    case IndexType::Int16: return 2;
    case IndexType::Int32:
    case IndexType::UInt32: return 4;
    default: return 8;
  }
}

const char* index_type_name(IndexType t) {
  switch (t) {
    case IndexType::Int16: return "int16";
    case IndexType::Int32: return "int32";
    case IndexType::UInt32: return "uint32";
    default: return "int64";
  }
}

const char* index_type_descr(IndexType t) {
  switch (t) {
    case IndexType::Int16: return "<i2";
    case IndexType::Int32: return "<i4";
    case IndexType::UInt32: return "<u4";
    default: return "<i8";
  }
}

bool index_type_from_descr(const std::string& descr, IndexType* out) {
  for (IndexType t : {IndexType::Int16, IndexType::Int32, IndexType::UInt32, IndexType::Int64}) {
    if (descr == index_type_descr(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

IndexArray IndexArray::allocate(IndexType type, size_t rows, size_t cols) {
  const size_t bytes = rows * cols * index_type_size(type);
  // Left uninitialised (the builders write every element; zeroing 100s of MB costs real time);
  // operator new[] aligns to 16 bytes.
  std::shared_ptr<uint8_t> storage(new uint8_t[bytes ? bytes : 1], std::default_delete<uint8_t[]>());
  return IndexArray(type, rows, cols, storage.get(), storage);
}

}  // namespace mfcore
