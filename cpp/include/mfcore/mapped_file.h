#pragma once
// Read-only memory mapping of a whole file, the error type of the indexed dataset engine, and an
// alignment-safe view over little-endian arrays that live inside a mapping.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mfcore reads the little-endian Megatron format in place; a big-endian host is not supported"
#endif

namespace mfcore {

// Every problem with an indexed dataset (or another mapped file): what() reads
// "<file>: <field>: <problem>", e.g. "/d/x.idx: version: expected 1, found 7".
class IndexedDatasetError : public std::runtime_error {
 public:
  IndexedDatasetError(const std::string& file, const std::string& field, const std::string& problem);
  const std::string& file() const { return file_; }
  const std::string& field() const { return field_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string file_, field_, problem_;
};

// RAII read-only, shared mmap of a whole file. An empty file maps to data() == nullptr, size() == 0.
// Movable, not copyable. Opening a missing or unreadable file throws IndexedDatasetError
// (field "file").
class MappedFile {
 public:
  enum class Access { Normal, Random, Sequential };  // madvise hint

  MappedFile() = default;
  explicit MappedFile(const std::string& path, Access access = Access::Normal);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool is_open() const { return !path_.empty(); }

  // Hint the kernel about the coming access pattern of the whole mapping.
  void advise(Access access) const;

 private:
  void release() noexcept;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// A zero-copy view of `size()` little-endian values of type T starting at an arbitrary byte address.
// The arrays of an `.idx` start at byte 34, so they are never naturally aligned: reading them through
// a `const T*` would be undefined behaviour. operator[] uses memcpy, which compiles to a plain load.
template <class T>
class UnalignedArray {
 public:
  UnalignedArray() = default;
  UnalignedArray(const uint8_t* bytes, size_t size) : bytes_(bytes), size_(size) {}

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Raw address of element 0 (for handing the bytes to numpy or memcpy); may be nullptr when empty.
  const uint8_t* bytes() const { return bytes_; }
  size_t size_bytes() const { return size_ * sizeof(T); }

  T operator[](size_t i) const {
    T v;
    std::memcpy(&v, bytes_ + i * sizeof(T), sizeof(T));
    return v;
  }
  // Bounds-checked element access; throws std::out_of_range.
  T at(size_t i) const {
    if (i >= size_) throw std::out_of_range("UnalignedArray index out of range");
    return (*this)[i];
  }
  T front() const { return (*this)[0]; }
  T back() const { return (*this)[size_ - 1]; }
  // Copy `count` elements starting at `first` into aligned storage.
  void copy_to(T* out, size_t first, size_t count) const {
    if (count) std::memcpy(out, bytes_ + first * sizeof(T), count * sizeof(T));
  }

 private:
  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mfcore
