#include "mfcore/index_check.h"

#include <algorithm>

namespace mfcore {

namespace {
std::string at(const char* array, size_t i, int64_t value, const std::string& problem) {
  return std::string(array) + "[" + std::to_string(i) + "] = " + std::to_string(value) + " " + problem;
}

// Min and max of a whole array in one branch-free pass (the compiler vectorises it).
template <class T>
void min_max(const T* p, size_t n, int64_t* lo, int64_t* hi) {
  T a = p[0], b = p[0];
  for (size_t i = 1; i < n; ++i) {
    a = std::min(a, p[i]);
    b = std::max(b, p[i]);
  }
  *lo = static_cast<int64_t>(a);
  *hi = static_cast<int64_t>(b);
}

void min_max(const IndexArray& a, int64_t* lo, int64_t* hi) {
  switch (a.type()) {
    case IndexType::Int16: return min_max(a.as<int16_t>(), a.size(), lo, hi);
    case IndexType::UInt16: return min_max(a.as<uint16_t>(), a.size(), lo, hi);
    case IndexType::Int32: return min_max(a.as<int32_t>(), a.size(), lo, hi);
    case IndexType::UInt32: return min_max(a.as<uint32_t>(), a.size(), lo, hi);
    default: return min_max(a.as<int64_t>(), a.size(), lo, hi);
  }
}

// The first element outside [lo, hi), for the message (only called once the pass found one).
std::string first_outside(const char* name, const IndexArray& a, int64_t lo, int64_t hi) {
  for (size_t i = 0; i < a.size(); ++i) {
    const int64_t v = a.get(i);
    if (v < lo || v >= hi) return at(name, i, v, "is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + ")");
  }
  return "";
}

std::string check_range(const char* name, const IndexArray& a, int64_t lo, int64_t hi) {
  if (a.empty()) return "";
  int64_t min = 0, max = 0;
  min_max(a, &min, &max);
  return min < lo || max >= hi ? first_outside(name, a, lo, hi) : "";
}

// Every entry already lies in [0, n): a bitset (n / 8 bytes, cache-resident) finds a repeat.
template <class T>
std::string first_repeat(const T* p, size_t n) {
  std::vector<uint64_t> seen((n + 63) / 64, 0);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t v = static_cast<uint64_t>(p[i]);
    const uint64_t bit = uint64_t(1) << (v & 63);
    if (seen[v >> 6] & bit) return at("shuffle_index", i, static_cast<int64_t>(v), "repeats an earlier entry");
    seen[v >> 6] |= bit;
  }
  return "";
}

std::string check_permutation(const IndexArray& shuffle) {
  const size_t n = shuffle.size();
  if (std::string e = check_range("shuffle_index", shuffle, 0, static_cast<int64_t>(n)); !e.empty()) return e;
  return shuffle.type() == IndexType::Int64 ? first_repeat(shuffle.as<int64_t>(), n)
                                            : first_repeat(shuffle.as<uint32_t>(), n);
}

template <class T, class D>
std::string check_rows(const T* row, size_t rows, const D* docs, size_t positions,
                       const UnalignedArray<int32_t>& sizes) {
  int64_t prev_d = 0, prev_o = 0;
  for (size_t r = 0; r < rows; ++r) {
    const int64_t d = row[2 * r], o = row[2 * r + 1];
    if (d < 0 || d >= static_cast<int64_t>(positions)) {
      return at("sample_index", 2 * r, d, "is outside the document index");
    }
    if (d < prev_d || (d == prev_d && o < prev_o)) return at("sample_index", 2 * r, d, "goes backwards");
    const int64_t size = sizes[static_cast<size_t>(docs[d])];
    // -1: the end of a last partial sample after an empty document (size - add_extra_token)
    if (o < -1 || o > size) return at("sample_index", 2 * r + 1, o, "is outside its document");
    prev_d = d;
    prev_o = o;
  }
  return "";
}

// The document ids are int32, or uint16 for splits of at most 65,536 documents.
template <class T>
std::string check_rows(const T* row, size_t rows, const IndexArray& docs, const UnalignedArray<int32_t>& sizes) {
  return docs.type() == IndexType::UInt16 ? check_rows(row, rows, docs.as<uint16_t>(), docs.size(), sizes)
                                          : check_rows(row, rows, docs.as<int32_t>(), docs.size(), sizes);
}
}  // namespace

std::string check_gpt_index_values(const GptIndices& ix, const UnalignedArray<int32_t>& sizes,
                                   const DocumentRange& documents) {
  std::string e = check_range("document_index", ix.document_index, documents.begin, documents.end);
  if (e.empty()) {
    const size_t rows = ix.sample_index.rows();
    e = ix.sample_index.type() == IndexType::Int64
            ? check_rows(ix.sample_index.as<int64_t>(), rows, ix.document_index, sizes)
            : check_rows(ix.sample_index.as<int32_t>(), rows, ix.document_index, sizes);
  }
  return e.empty() ? check_permutation(ix.shuffle_index) : e;
}

std::string check_blending_index_values(const IndexArray& dataset_index, const IndexArray& dataset_sample_index,
                                        const std::vector<int64_t>& member_sizes) {
  const int64_t members = static_cast<int64_t>(member_sizes.size());
  if (std::string e = check_range("dataset_index", dataset_index, 0, members); !e.empty()) return e;
  for (size_t i = 0; i < dataset_sample_index.size(); ++i) {
    const int64_t s = dataset_sample_index.get(i);
    if (s < 0 || s >= member_sizes[static_cast<size_t>(dataset_index.get(i))]) {
      return at("dataset_sample_index", i, s, "is outside its dataset");
    }
  }
  return "";
}

}  // namespace mfcore
