// The streaming writer: tokens to a temporary .bin as they come, the index in memory until finalize().
#include "mfcore/indexed_builder.h"

#include <limits>
#include <stdexcept>

#include "dataset_files.h"
#include "mfcore/indexed_dataset.h"

namespace mfcore {

IndexedDatasetBuilder::IndexedDatasetBuilder(const std::string& prefix, DType dtype, bool multimodal)
    : prefix_(dataset_prefix(prefix)), dtype_(dtype), multimodal_(multimodal) {
  if (!is_dtype_code(static_cast<uint8_t>(dtype)))
    throw IndexedDatasetError(idx_path(prefix_), "dtype", "unknown code " + std::to_string(int(dtype)));
  bin_ = std::make_unique<detail::TempFile>(bin_path(prefix_));
}

IndexedDatasetBuilder::~IndexedDatasetBuilder() { abort(); }

void IndexedDatasetBuilder::require_open(const char* what) const {
  if (finished_) throw std::logic_error(std::string("IndexedDatasetBuilder::") + what + " after finalize() or abort() of " + prefix_);
}

void IndexedDatasetBuilder::add_sequence(const void* tokens, size_t n, int8_t mode) {
  require_open("add_sequence");
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw IndexedDatasetError(bin_->target(), "sequence lengths",
                              "a sequence of " + std::to_string(n) + " tokens does not fit the format's int32 length");
  size_t bytes = n * dtype_size(dtype_);
  try {
    bin_->write(tokens, bytes);
  } catch (...) {
    abort();  // a partial write (disk full) would shift every later pointer: never continue after one
    throw;
  }
  bin_bytes_ += bytes;
  lengths_.push_back(static_cast<int32_t>(n));
  if (multimodal_) modes_.push_back(mode);
}

void IndexedDatasetBuilder::end_document() {
  require_open("end_document");
  document_indices_.push_back(static_cast<int64_t>(lengths_.size()));
}

void IndexedDatasetBuilder::add_document(const void* tokens, size_t n, int8_t mode) {
  add_sequence(tokens, n, mode);
  end_document();
}

void IndexedDatasetBuilder::write_index() {
  detail::TempFile idx(idx_path(prefix_));
  detail::write_index_header(idx, dtype_, lengths_.size(), document_indices_.size());
  idx.write(lengths_.data(), lengths_.size() * sizeof(int32_t));
  // Pointers are derived, never stored: written in chunks to keep memory at the index's own size.
  std::vector<int64_t> chunk;
  chunk.reserve(1 << 16);
  int64_t pointer = 0;
  const int64_t itemsize = static_cast<int64_t>(dtype_size(dtype_));
  for (size_t i = 0; i < lengths_.size(); ++i) {
    chunk.push_back(pointer);
    pointer += lengths_[i] * itemsize;
    if (chunk.size() == chunk.capacity() || i + 1 == lengths_.size()) {
      idx.write(chunk.data(), chunk.size() * sizeof(int64_t));
      chunk.clear();
    }
  }
  idx.write(document_indices_.data(), document_indices_.size() * sizeof(int64_t));
  if (multimodal_) idx.write(modes_.data(), modes_.size());
  idx.sync_and_close();
  bin_->sync_and_close();
  detail::commit_dataset(*bin_, idx);
}

void IndexedDatasetBuilder::finalize() {
  require_open("finalize");
  // Sequences added after the last end_document() form a final document, or the index would be invalid.
  if (static_cast<size_t>(document_indices_.back()) != lengths_.size()) end_document();
  try {
    write_index();
  } catch (...) {
    abort();
    throw;
  }
  finished_ = true;
  bin_.reset();
}

void IndexedDatasetBuilder::abort() noexcept {
  finished_ = true;
  bin_.reset();  // an uncommitted TempFile removes itself
}

}  // namespace mfcore
