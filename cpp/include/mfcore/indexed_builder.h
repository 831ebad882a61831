#pragma once
// Streaming writer of Megatron indexed datasets. Tokens go to the .bin as they arrive; the .idx is
// written at finalize(). Atomic: both files are written under temporary names in the target
// directory, fsynced, and renamed into place only at finalize(), so a crash leaves either no dataset
// or a complete one. A builder destroyed without finalize() removes its temporaries.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mfcore/dtype.h"

namespace mfcore {

namespace detail {
class TempFile;
}

class IndexedDatasetBuilder {
 public:
  // `prefix` as for IndexedDataset ("out/x" → out/x.bin + out/x.idx). With `multimodal`, every
  // sequence carries an int8 mode written after the document indices. Throws IndexedDatasetError
  // when the temporaries cannot be created.
  IndexedDatasetBuilder(const std::string& prefix, DType dtype, bool multimodal = false);
  ~IndexedDatasetBuilder();
  IndexedDatasetBuilder(const IndexedDatasetBuilder&) = delete;
  IndexedDatasetBuilder& operator=(const IndexedDatasetBuilder&) = delete;

  // Appends one sequence of `n` tokens (n * dtype_size(dtype) bytes at `tokens`) to the open document.
  // `mode` is recorded only for multimodal datasets. n must fit the format's int32 length.
  void add_sequence(const void* tokens, size_t n, int8_t mode = 0);
  // Closes the open document (the sequences added since the previous end_document()).
  void end_document();
  // add_sequence + end_document: one document made of one sequence.
  void add_document(const void* tokens, size_t n, int8_t mode = 0);

  // Ends an open document, writes the .idx, fsyncs and renames both files into place. Calling
  // add_*/end_document/finalize after finalize() or abort() throws std::logic_error.
  void finalize();
  // Drops everything written so far (removes the temporaries). Safe to call twice.
  void abort() noexcept;

  const std::string& prefix() const { return prefix_; }
  DType dtype() const { return dtype_; }
  size_t num_sequences() const { return lengths_.size(); }
  size_t num_documents() const { return document_indices_.size() - 1; }
  bool finished() const { return finished_; }

 private:
  void require_open(const char* what) const;
  void write_index();

  std::string prefix_;
  DType dtype_;
  bool multimodal_;
  std::unique_ptr<detail::TempFile> bin_;  // the .bin under its temporary name
  uint64_t bin_bytes_ = 0;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> document_indices_{0};
  std::vector<int8_t> modes_;
  bool finished_ = false;
};

}  // namespace mfcore
