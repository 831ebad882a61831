// Merging without decoding: .bin bytes are copied in the kernel; only the index arrays are rebased.
#include "mfcore/indexed_merge.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "dataset_files.h"
#include "mfcore/indexed_dataset.h"

namespace mfcore {

namespace {
constexpr size_t kChunk = 1 << 16;

std::vector<std::unique_ptr<IndexedDataset>> open_inputs(const std::vector<std::string>& prefixes, bool multimodal) {
  std::vector<std::unique_ptr<IndexedDataset>> inputs;
  for (const auto& p : prefixes) {
    inputs.push_back(std::make_unique<IndexedDataset>(p, multimodal));
    const auto& first = *inputs.front();
    const auto& ds = *inputs.back();
    if (ds.dtype() != first.dtype())
      throw IndexedDatasetError(idx_path(ds.prefix()), "dtype",
                                std::string("expected ") + dtype_name(first.dtype()) + " like " + idx_path(first.prefix()) +
                                    ", found " + dtype_name(ds.dtype()));
  }
  return inputs;
}

// Writes `values[i] + shift` for i in [first, values.size()).
void write_shifted(detail::TempFile& out, const UnalignedArray<int64_t>& values, size_t first, int64_t shift) {
  std::vector<int64_t> chunk(kChunk);
  for (size_t i = first; i < values.size(); i += kChunk) {
    size_t n = std::min(kChunk, values.size() - i);
    values.copy_to(chunk.data(), i, n);
    for (size_t k = 0; k < n; ++k) chunk[k] += shift;
    out.write(chunk.data(), n * sizeof(int64_t));
  }
}

void write_index(detail::TempFile& idx, const std::vector<std::unique_ptr<IndexedDataset>>& inputs, bool multimodal) {
  uint64_t n = 0, d = 1;
  for (const auto& ds : inputs) {
    n += ds->num_sequences();
    d += ds->num_documents();
  }
  detail::write_index_header(idx, inputs.front()->dtype(), n, d);
  for (const auto& ds : inputs) idx.write(ds->sequence_lengths().bytes(), ds->sequence_lengths().size_bytes());
  int64_t byte_offset = 0;
  for (const auto& ds : inputs) {
    write_shifted(idx, ds->sequence_pointers(), 0, byte_offset);
    byte_offset += static_cast<int64_t>(ds->num_tokens() * ds->itemsize());
  }
  const int64_t zero = 0;
  idx.write(&zero, sizeof zero);
  int64_t sequence_offset = 0;
  for (const auto& ds : inputs) {
    write_shifted(idx, ds->document_indices(), 1, sequence_offset);
    sequence_offset += static_cast<int64_t>(ds->num_sequences());
  }
  if (multimodal)
    for (const auto& ds : inputs) idx.write(ds->sequence_modes().bytes(), ds->sequence_modes().size_bytes());
}
}  // namespace

void merge_datasets(const std::string& out_prefix_or_path, const std::vector<std::string>& prefixes, bool multimodal) {
  const std::string out_prefix = dataset_prefix(out_prefix_or_path);
  if (prefixes.empty()) throw IndexedDatasetError(idx_path(out_prefix), "inputs", "expected at least one dataset to merge, found none");
  auto inputs = open_inputs(prefixes, multimodal);
  for (const auto& ds : inputs)
    if (ds->prefix() == out_prefix)
      throw IndexedDatasetError(idx_path(out_prefix), "inputs", "the output must not be one of the inputs");
  detail::TempFile bin(bin_path(out_prefix));
  for (const auto& ds : inputs) bin.append_file(bin_path(ds->prefix()), ds->num_tokens() * ds->itemsize());
  detail::TempFile idx(idx_path(out_prefix));
  write_index(idx, inputs, multimodal);
  idx.sync_and_close();
  bin.sync_and_close();
  detail::commit_dataset(bin, idx);
}

}  // namespace mfcore
