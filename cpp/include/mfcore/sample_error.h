#pragma once
// The user-facing error of the GPT sample engine (bad split, weights, seq_length, empty dataset,
// unusable cache directory, ...): what() is one clear sentence naming the dataset or file.
// Python sees it as mfcore.data.SampleEngineError, a subclass of mfcore.errors.DataError.
#include <stdexcept>
#include <string>

namespace mfcore {

class SampleEngineError : public std::runtime_error {
 public:
  explicit SampleEngineError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace mfcore
