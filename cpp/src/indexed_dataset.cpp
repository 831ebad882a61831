// The reader: maps both files, validates everything once at open, then serves bounds-checked reads.
#include "mfcore/indexed_dataset.h"

#include <cstring>
#include <stdexcept>
#include <vector>

namespace mfcore {

IndexedDataset::IndexedDataset(const std::string& prefix, bool multimodal)
    : prefix_(dataset_prefix(prefix)), multimodal_(multimodal) {
  idx_ = MappedFile(idx_path(prefix_));
  layout_ = parse_index_header(idx_.data(), idx_.size(), idx_.path(), multimodal_);
  itemsize_ = dtype_size(layout_.dtype);
  bin_ = MappedFile(bin_path(prefix_));
  auto problems = validate_index_arrays(idx_.data(), layout_, bin_.size(), idx_.path(), bin_.path(), 1);
  if (!problems.empty()) throw problems.front().error();
  if (layout_.num_sequences > 0) {
    size_t last = layout_.num_sequences - 1;
    num_tokens_ = (sequence_pointer(last) + sequence_length(last) * itemsize()) / itemsize();
  }
}

UnalignedArray<int32_t> IndexedDataset::sequence_lengths() const {
  return {idx_.data() + layout_.lengths_offset, layout_.num_sequences};
}

UnalignedArray<int64_t> IndexedDataset::sequence_pointers() const {
  return {idx_.data() + layout_.pointers_offset, layout_.num_sequences};
}

UnalignedArray<int64_t> IndexedDataset::document_indices() const {
  return {idx_.data() + layout_.document_indices_offset, layout_.num_document_indices};
}

UnalignedArray<int8_t> IndexedDataset::sequence_modes() const {
  if (!multimodal_) return {};
  return {idx_.data() + layout_.modes_offset, layout_.num_sequences};
}

const uint8_t* IndexedDataset::sequence_data(size_t seq, size_t offset, size_t length) const {
  if (seq >= num_sequences())
    throw std::out_of_range(prefix_ + ": sequence " + std::to_string(seq) + " out of range (dataset has " +
                            std::to_string(num_sequences()) + ")");
  size_t len = sequence_length(seq);
  if (offset > len || length > len - offset)
    throw std::out_of_range(prefix_ + ": tokens [" + std::to_string(offset) + ", " + std::to_string(offset) + " + " +
                            std::to_string(length) + ") out of range of sequence " + std::to_string(seq) +
                            " (length " + std::to_string(len) + ")");
  return bin_.data() + sequence_pointer(seq) + offset * itemsize();
}

void IndexedDataset::read_tokens(size_t seq, size_t offset, size_t length, void* out) const {
  const uint8_t* src = sequence_data(seq, offset, length);
  if (length) std::memcpy(out, src, length * itemsize());
}

void IndexedDataset::read_many(const int64_t* seqs, const int64_t* offsets, const int64_t* lengths, size_t count,
                               void* out, size_t out_bytes) const {
  // Pass 1 checks every request and records where its bytes are, so pass 2 (after which nothing can
  // fail) is only memcpy and never goes back to the index, whose lines the copies have evicted.
  std::vector<const uint8_t*> sources(count);
  size_t total = 0;
  for (size_t k = 0; k < count; ++k) {
    if (seqs[k] < 0 || offsets[k] < 0 || lengths[k] < 0)
      throw std::out_of_range(prefix_ + ": request " + std::to_string(k) + " has a negative index, offset or length");
    sources[k] = sequence_data(static_cast<size_t>(seqs[k]), static_cast<size_t>(offsets[k]), static_cast<size_t>(lengths[k]));
    total += static_cast<size_t>(lengths[k]) * itemsize_;
  }
  if (total > out_bytes)
    throw std::length_error(prefix_ + ": read_many needs " + std::to_string(total) + " bytes, the output holds " +
                            std::to_string(out_bytes));
  auto* dst = static_cast<uint8_t*>(out);
  for (size_t k = 0; k < count; ++k) {
    size_t bytes = static_cast<size_t>(lengths[k]) * itemsize_;
    if (bytes) std::memcpy(dst, sources[k], bytes);
    dst += bytes;
  }
}

}  // namespace mfcore
