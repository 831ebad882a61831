#include "mfcore/gpt_split.h"

#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <vector>

namespace mfcore {

const char* split_name(int split) {
  static const char* names[kNumSplits] = {"train", "valid", "test"};
  return (split >= 0 && split < kNumSplits) ? names[split] : "?";
}

namespace {
[[noreturn]] void bad_split(const std::string& split, const std::string& why) {
  throw std::invalid_argument("split '" + split + "': " + why +
                              " (expected up to three non-negative weights like \"949,50,1\")");
}

bool is_separator(char c) { return c == ',' || c == '/' || c == ' ' || c == '\t'; }
bool is_number_char(char c) { return (c >= '0' && c <= '9') || c == '.'; }

std::vector<double> split_numbers(const std::string& split) {
  std::vector<double> values;
  size_t i = 0;
  while (i < split.size()) {
    if (is_separator(split[i])) { ++i; continue; }
    if (!is_number_char(split[i])) {
      bad_split(split, split[i] == '-' ? "negative weight" : std::string("unexpected character '") + split[i] + "'");
    }
    size_t j = i;
    while (j < split.size() && is_number_char(split[j])) ++j;
    const std::string token = split.substr(i, j - i);
    char* end = nullptr;
    double v = std::strtod(token.c_str(), &end);
    if (end != token.c_str() + token.size() || !std::isfinite(v)) bad_split(split, "'" + token + "' is not a number");
    values.push_back(v);
    i = j;
  }
  return values;
}
}  // namespace

std::array<double, kNumSplits> parse_split(const std::string& split) {
  std::vector<double> values = split_numbers(split);
  if (values.empty()) bad_split(split, "no weights");
  if (values.size() > kNumSplits) bad_split(split, "more than three weights");
  std::array<double, kNumSplits> w{0.0, 0.0, 0.0};
  double sum = 0.0;  // the same left-to-right float64 sum as numpy for three elements
  for (size_t k = 0; k < values.size(); ++k) w[k] = values[k];
  for (double v : w) sum += v;
  if (!(sum > 0.0)) bad_split(split, "all weights are zero");
  for (double& v : w) v /= sum;
  return w;
}

std::array<DocumentRange, kNumSplits> split_document_ranges(const std::array<double, kNumSplits>& weights,
                                                            int64_t num_documents) {
  std::array<double, kNumSplits + 1> bounds{0.0, 0.0, 0.0, 0.0};
  for (int k = 0; k < kNumSplits; ++k) bounds[k + 1] = bounds[k] + weights[k];
  std::array<DocumentRange, kNumSplits> ranges;
  const double n = static_cast<double>(num_documents);
  for (int k = 0; k < kNumSplits; ++k) {
    if (bounds[k + 1] <= bounds[k]) continue;  // zero width: absent
    ranges[k].present = true;
    // nearbyint in the default rounding mode is round-half-to-even, as Python's round().
    ranges[k].begin = static_cast<int64_t>(std::nearbyint(bounds[k] * n));
    ranges[k].end = static_cast<int64_t>(std::nearbyint(bounds[k + 1] * n));
  }
  return ranges;
}

}  // namespace mfcore
