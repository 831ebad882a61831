#pragma once
// Reader of Megatron indexed datasets (PREFIX.bin + PREFIX.idx), byte-compatible with Megatron-LM and
// MindSpore Transformers. Both files are mmapped read-only; no token is copied until asked for.
// Layout of the .idx (little-endian, no padding), see docs/specs/indexed-dataset-format.md:
//   magic "MMIDIDX\0\0" | u64 version=1 | u8 dtype code | u64 N | u64 D |
//   i32 lengths[N] | i64 pointers[N] | i64 document_indices[D] | (multimodal only) i8 modes[N]
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mfcore/dtype.h"
#include "mfcore/mapped_file.h"

namespace mfcore {

constexpr char kIndexMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr uint64_t kIndexVersion = 1;
constexpr size_t kIndexHeaderSize = 34;  // magic 9 + version 8 + dtype 1 + N 8 + D 8

// "data/x", "data/x.bin" and "data/x.idx" all name the prefix "data/x".
std::string dataset_prefix(const std::string& prefix_or_path);
inline std::string idx_path(const std::string& prefix) { return prefix + ".idx"; }
inline std::string bin_path(const std::string& prefix) { return prefix + ".bin"; }

// Where the parts of an .idx image are. Produced by parse_index_header, which has checked that every
// array lies inside the image (no overflow), so the offsets can be used without further checks.
struct IndexLayout {
  DType dtype = DType::UInt8;
  uint64_t num_sequences = 0;         // N
  uint64_t num_document_indices = 0;  // D = documents + 1
  size_t lengths_offset = 0;          // int32[N]
  size_t pointers_offset = 0;         // int64[N]
  size_t document_indices_offset = 0; // int64[D]
  size_t modes_offset = 0;            // int8[N], only meaningful when multimodal
  size_t expected_size = 0;           // bytes the header and arrays occupy
};

// Checks magic, version, dtype code and that N and D fit the image size (exactly; a non-multimodal
// read of a multimodal file, i.e. N trailing mode bytes, is accepted). Throws IndexedDatasetError
// naming `idx_name` and the field.
IndexLayout parse_index_header(const uint8_t* idx, size_t idx_size, const std::string& idx_name,
                               bool multimodal);

// One problem found in a dataset: the file, the field and what was expected versus found.
struct DatasetProblem {
  std::string file, field, problem;
  std::string message() const { return file + ": " + field + ": " + problem; }
  IndexedDatasetError error() const { return IndexedDatasetError(file, field, problem); }
};

// Checks the arrays of a parsed image against each other and against the .bin size: lengths >= 0;
// pointers start at 0 and each equals the previous pointer + length * itemsize; the .bin holds the
// last sequence; document indices start at 0, never decrease and end at N. Returns the problems
// found, at most `max_problems`; empty means every sequence read is in bounds.
std::vector<DatasetProblem> validate_index_arrays(const uint8_t* idx, const IndexLayout& layout,
                                                  uint64_t bin_size, const std::string& idx_name,
                                                  const std::string& bin_name, size_t max_problems = 20);

// Header + arrays check of an .idx image held in memory (what check_dataset does after mapping the
// files; also the entry point of the fuzzer). Never throws for malformed bytes.
std::vector<DatasetProblem> check_index_image(const uint8_t* idx, size_t idx_size, uint64_t bin_size,
                                              const std::string& idx_name, const std::string& bin_name,
                                              bool multimodal = false, size_t max_problems = 20);

// Full check of a dataset on disk, collecting problems instead of stopping at the first (for
// `mf-data check`): missing files, a bad header, then the arrays. Empty means the dataset is valid.
std::vector<DatasetProblem> check_dataset(const std::string& prefix, bool multimodal = false,
                                          size_t max_problems = 20);

class IndexedDataset {
 public:
  // Opens and fully validates PREFIX.idx / PREFIX.bin (a path ending in .bin/.idx is accepted).
  // Throws IndexedDatasetError on the first problem. `multimodal` says whether the index carries
  // per-sequence modes (the file itself does not say).
  explicit IndexedDataset(const std::string& prefix, bool multimodal = false);

  const std::string& prefix() const { return prefix_; }
  bool multimodal() const { return multimodal_; }
  DType dtype() const { return layout_.dtype; }
  size_t itemsize() const { return itemsize_; }

  size_t num_sequences() const { return layout_.num_sequences; }
  size_t num_documents() const { return layout_.num_document_indices - 1; }
  uint64_t num_tokens() const { return num_tokens_; }

  // Zero-copy views into the mapped .idx (see UnalignedArray for why these are not raw pointers).
  UnalignedArray<int32_t> sequence_lengths() const;
  UnalignedArray<int64_t> sequence_pointers() const;
  UnalignedArray<int64_t> document_indices() const;  // num_documents() + 1 entries
  UnalignedArray<int8_t> sequence_modes() const;     // empty unless multimodal

  // Single-element accessors (no bounds check beyond the caller's; use at() on the views for one).
  size_t sequence_length(size_t i) const { return static_cast<size_t>(sequence_lengths()[i]); }
  uint64_t sequence_pointer(size_t i) const { return static_cast<uint64_t>(sequence_pointers()[i]); }

  // The mapped .bin and .idx (e.g. to build zero-copy numpy views; keep this object alive).
  const uint8_t* bin_data() const { return bin_.data(); }
  size_t bin_size() const { return bin_.size(); }
  const uint8_t* idx_data() const { return idx_.data(); }
  size_t idx_size() const { return idx_.size(); }
  const IndexLayout& layout() const { return layout_; }

  // Address of element `offset` of sequence `seq`, after checking that [offset, offset + length)
  // lies inside the sequence. Throws std::out_of_range naming the sequence otherwise.
  const uint8_t* sequence_data(size_t seq, size_t offset, size_t length) const;

  // Copies `length` tokens of sequence `seq` starting at token `offset` into `out`
  // (length * itemsize() bytes). Bounds-checked as sequence_data.
  void read_tokens(size_t seq, size_t offset, size_t length, void* out) const;

  // Bulk form: for k < count, copies lengths[k] tokens of sequence seqs[k] from offsets[k], packed one
  // after the other into `out` (capacity `out_bytes`). Every request is checked before any byte is
  // copied; throws std::out_of_range / std::length_error. Thread-safe (read-only).
  void read_many(const int64_t* seqs, const int64_t* offsets, const int64_t* lengths, size_t count,
                 void* out, size_t out_bytes) const;

 private:
  std::string prefix_;
  bool multimodal_;
  MappedFile idx_;
  MappedFile bin_;
  IndexLayout layout_;
  size_t itemsize_ = 1;  // cached: the per-request hot path must not look it up
  uint64_t num_tokens_ = 0;
};

}  // namespace mfcore
