#pragma once
// A typed one- or two-dimensional integer array of the sample engine (document, sample, shuffle and
// blending indices). It either owns its memory (just built) or views a memory-mapped cache file;
// copies share the storage, so a dataset can hand its indices to numpy without copying.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

namespace mfcore {

enum class IndexType : uint8_t { Int16, UInt16, Int32, UInt32, Int64 };

size_t index_type_size(IndexType t);
const char* index_type_name(IndexType t);   // numpy spelling: "int16", "uint16", "int32", "uint32", "int64"
const char* index_type_descr(IndexType t);  // .npy descr: "<i2", "<u2", "<i4", "<u4", "<i8"
bool index_type_from_descr(const std::string& descr, IndexType* out);

class IndexArray {
 public:
  IndexArray() = default;
  // Uninitialised owned storage of rows x cols elements.
  static IndexArray allocate(IndexType type, size_t rows, size_t cols = 1);
  // A view of foreign memory kept alive by `owner` (e.g. a MappedFile).
  IndexArray(IndexType type, size_t rows, size_t cols, const void* data, std::shared_ptr<const void> owner)
      : type_(type), rows_(rows), cols_(cols), data_(data), owner_(std::move(owner)) {}

  IndexType type() const { return type_; }
  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }
  size_t size() const { return rows_ * cols_; }
  size_t nbytes() const { return size() * index_type_size(type_); }
  const void* data() const { return data_; }
  bool empty() const { return size() == 0; }

  // Element i of the flattened array, widened to int64.
  int64_t get(size_t i) const {
    switch (type_) {
      case IndexType::Int16: return static_cast<const int16_t*>(data_)[i];
      case IndexType::UInt16: return static_cast<const uint16_t*>(data_)[i];
      case IndexType::Int32: return static_cast<const int32_t*>(data_)[i];
      case IndexType::UInt32: return static_cast<const uint32_t*>(data_)[i];
      default: return static_cast<const int64_t*>(data_)[i];
    }
  }
  // Typed access for the builders (the array must own its storage and hold T).
  template <class T>
  T* mutable_as() { return static_cast<T*>(const_cast<void*>(data_)); }
  template <class T>
  const T* as() const { return static_cast<const T*>(data_); }

 private:
  IndexType type_ = IndexType::Int32;
  size_t rows_ = 0, cols_ = 1;
  const void* data_ = nullptr;
  std::shared_ptr<const void> owner_;
};

}  // namespace mfcore
