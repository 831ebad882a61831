#include "mfcore/index_array.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace mfcore {

size_t index_type_size(IndexType t) {
  switch (t) {
    case IndexType::Int16:
    case IndexType::UInt16: return 2;
    case IndexType::Int32:
    case IndexType::UInt32: return 4;
    default: return 8;
  }
}

const char* index_type_name(IndexType t) {
  switch (t) {
    case IndexType::Int16: return "int16";
    case IndexType::UInt16: return "uint16";
    case IndexType::Int32: return "int32";
    case IndexType::UInt32: return "uint32";
    default: return "int64";
  }
}

const char* index_type_descr(IndexType t) {
  switch (t) {
    case IndexType::Int16: return "<i2";
    case IndexType::UInt16: return "<u2";
    case IndexType::Int32: return "<i4";
    case IndexType::UInt32: return "<u4";
    default: return "<i8";
  }
}

bool index_type_from_descr(const std::string& descr, IndexType* out) {
  for (IndexType t : {IndexType::Int16, IndexType::UInt16, IndexType::Int32, IndexType::UInt32, IndexType::Int64}) {
    if (descr == index_type_descr(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugeMin = size_t(8) << 20;  // smaller arrays stay on the heap

// Large indices are shuffled and scanned at random: on transparent huge pages (madvise mode) one
// TLB entry covers 2 MB instead of 4 KB, which removes most of the page walks of the random swaps.
// The mapping is aligned to 2 MB so every page of it can be huge.
std::shared_ptr<uint8_t> allocate_huge(size_t bytes) {
  const size_t length = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* raw = ::mmap(nullptr, length + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned != start) ::munmap(raw, aligned - start);
  const size_t tail = start + length + kHugePage - (aligned + length);
  if (tail) ::munmap(reinterpret_cast<void*>(aligned + length), tail);
  (void)::madvise(reinterpret_cast<void*>(aligned), length, MADV_HUGEPAGE);  // advisory: fine if refused
  return std::shared_ptr<uint8_t>(reinterpret_cast<uint8_t*>(aligned),
                                  [length](uint8_t* p) { ::munmap(p, length); });
}
}  // namespace

IndexArray IndexArray::allocate(IndexType type, size_t rows, size_t cols) {
  const size_t bytes = rows * cols * index_type_size(type);
  // Left uninitialised (the builders write every element; zeroing 100s of MB costs real time);
  // operator new[] aligns to 16 bytes.
  std::shared_ptr<uint8_t> storage = bytes >= kHugeMin
                                         ? allocate_huge(bytes)
                                         : std::shared_ptr<uint8_t>(new uint8_t[bytes ? bytes : 1],
                                                                    std::default_delete<uint8_t[]>());
  return IndexArray(type, rows, cols, storage.get(), storage);
}

}  // namespace mfcore
