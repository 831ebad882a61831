#pragma once
// Internal to the indexed dataset writers (builder and merge): files written under temporary names
// and committed atomically, and the .idx header bytes. Not part of the public API.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "mfcore/dtype.h"

namespace mfcore::detail {

// A file written as "<target>.tmp-<pid>-<n>" in the target's directory (so the final rename stays on
// one filesystem). Unless committed, the destructor removes it.
class TempFile {
 public:
  explicit TempFile(const std::string& target);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* bytes, size_t size);  // throws IndexedDatasetError naming the target
  // Appends `size` bytes of the file `src_path` from offset 0, copied in the kernel when possible.
  void append_file(const std::string& src_path, uint64_t size);
  void sync_and_close();                       // flush, fsync, close
  void discard() noexcept;                     // close and remove
  void mark_committed() { committed_ = true; }
  const std::string& target() const { return target_; }
  const std::string& tmp_path() const { return tmp_; }

 private:
  void fail(const std::string& what) const;
  std::string target_, tmp_;
  std::FILE* f_ = nullptr;
  bool committed_ = false;
};

// Renames the fsynced temporaries into place: the old .idx goes first, so a crash in between leaves
// no .idx (no dataset) rather than a new .bin paired with a stale .idx. Then fsyncs the directory.
void commit_dataset(TempFile& bin, TempFile& idx);

// The 34-byte header: magic, version 1, dtype code, N, D.
void write_index_header(TempFile& out, DType dtype, uint64_t num_sequences, uint64_t num_document_indices);

}  // namespace mfcore::detail
