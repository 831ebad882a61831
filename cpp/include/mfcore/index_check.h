#pragma once
// Value checks of index arrays read from the cache, before the sample engine trusts them: the shapes
// are checked by the datasets, these check every value (one vectorisable pass per array), so an
// edited or bit-rotten entry is rebuilt instead of indexing out of range. Each returns "" when the
// arrays are sound, else one sentence saying what is wrong.
#include <cstdint>
#include <string>
#include <vector>

#include "mfcore/gpt_indices.h"
#include "mfcore/index_array.h"
#include "mfcore/mapped_file.h"

namespace mfcore {

// document ids within `documents`; sample rows (position, offset) inside the document index,
// offsets within their document, rows non-decreasing; shuffle entries a permutation of [0, n).
std::string check_gpt_index_values(const GptIndices& ix, const UnalignedArray<int32_t>& sizes,
                                   const DocumentRange& documents);

// dataset ids < member count and sample ids < that member's size.
std::string check_blending_index_values(const IndexArray& dataset_index, const IndexArray& dataset_sample_index,
                                        const std::vector<int64_t>& member_sizes);

}  // namespace mfcore
