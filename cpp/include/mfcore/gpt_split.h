#pragma once
// Megatron's train/valid/test split of a dataset's documents ("949,50,1"): parse, normalise, and turn
// into contiguous document ranges with Python's round-half-to-even on float64.
#include <array>
#include <cstdint>
#include <string>

namespace mfcore {

constexpr int kNumSplits = 3;  // train, valid, test
const char* split_name(int split);  // "train", "valid", "test"

// Parses up to three non-negative numbers separated by ',', '/' or blanks, right-pads with 0 and
// normalises by their sum. Throws std::invalid_argument with a message quoting the string when
// it holds anything else, more than three numbers, or only zeros.
std::array<double, kNumSplits> parse_split(const std::string& split);

struct DocumentRange {
  bool present = false;  // false for a zero-width split
  int64_t begin = 0;     // first document (sequence) of the split
  int64_t end = 0;       // one past the last
  int64_t size() const { return end - begin; }
};

// The document range of each split for `num_documents` documents: cumulative bounds
// [0, a, a+b, a+b+c] of the normalised weights, begin = round(lo * N), end = round(hi * N).
std::array<DocumentRange, kNumSplits> split_document_ranges(const std::array<double, kNumSplits>& weights,
                                                            int64_t num_documents);

}  // namespace mfcore
