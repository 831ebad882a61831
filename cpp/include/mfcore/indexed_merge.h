#pragma once
// Concatenation of indexed datasets without decoding a token: the .bin files are copied with
// copy_file_range (in-kernel, at disk speed), and the index arrays are rebased (pointers by the bytes
// before, document indices by the sequences before).
#include <string>
#include <vector>

namespace mfcore {

// Merges `prefixes` (in order) into `out_prefix`. All inputs must share one dtype (and, with
// `multimodal`, carry modes). Every input is validated first; the output is written atomically like
// IndexedDatasetBuilder's. Throws IndexedDatasetError naming the offending input.
void merge_datasets(const std::string& out_prefix, const std::vector<std::string>& prefixes,
                    bool multimodal = false);

}  // namespace mfcore
