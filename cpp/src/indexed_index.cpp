// Parsing and validation of an .idx image: every check a reader must make before trusting the arrays.
#include <cstdint>
#include <cstring>
#include <sstream>

#include "mfcore/indexed_dataset.h"

namespace mfcore {

namespace {
std::string hex_bytes(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Collects problems up to a limit; returns false from add() once the limit is reached.
class Problems {
 public:
  explicit Problems(size_t limit) : limit_(limit ? limit : 1) {}
  bool full() const { return out.size() >= limit_; }
  void add(const std::string& file, const std::string& field, const std::string& problem) {
    if (!full()) out.push_back({file, field, problem});
  }
  std::vector<DatasetProblem> out;

 private:
  size_t limit_;
};

template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace

std::string dataset_prefix(const std::string& prefix_or_path) {
  auto ends_with = [&](const char* ext) {
    return prefix_or_path.size() > 4 && prefix_or_path.compare(prefix_or_path.size() - 4, 4, ext) == 0;
  };
  if (ends_with(".bin") || ends_with(".idx")) return prefix_or_path.substr(0, prefix_or_path.size() - 4);
  return prefix_or_path;
}

namespace {
// A text index opened with multimodal=true would otherwise fail with an obscure size message.
void check_modes_present(const uint8_t*, size_t size, const std::string& name, const IndexLayout& l) {
  const uint64_t body = size - kIndexHeaderSize;
  if (l.num_sequences > 0 && l.num_sequences <= body / 12 && l.num_document_indices <= (body - 12 * l.num_sequences) / 8 &&
      body == 12 * l.num_sequences + 8 * l.num_document_indices)
    throw IndexedDatasetError(name, "sequence modes", "expected " + std::to_string(l.num_sequences) +
                                                          " mode bytes after the document indices (multimodal), found none");
}
}  // namespace

IndexLayout parse_index_header(const uint8_t* idx, size_t size, const std::string& name, bool multimodal) {
  if (size >= 9 && std::memcmp(idx, kIndexMagic, 9) != 0)
    throw IndexedDatasetError(name, "magic", cat("expected 4d 4d 49 44 49 44 58 00 00 (MMIDIDX), found ", hex_bytes(idx, 9)));
  if (size < kIndexHeaderSize)
    throw IndexedDatasetError(name, "header", cat("expected at least ", kIndexHeaderSize, " bytes, found ", size));
  uint64_t version = load_u64(idx + 9);
  if (version != kIndexVersion) throw IndexedDatasetError(name, "version", cat("expected 1, found ", version));
  uint8_t code = idx[17];
  if (!is_dtype_code(code)) throw IndexedDatasetError(name, "dtype", cat("expected a code in 1..8, found ", int(code)));

  IndexLayout l;
  l.dtype = static_cast<DType>(code);
  l.num_sequences = load_u64(idx + 18);
  l.num_document_indices = load_u64(idx + 26);
  const uint64_t body = size - kIndexHeaderSize;
  if (multimodal) check_modes_present(idx, size, name, l);
  const uint64_t per_sequence = multimodal ? 13 : 12;  // length + pointer (+ mode)
  if (l.num_sequences > body / per_sequence)
    throw IndexedDatasetError(name, "sequence count", cat("N = ", l.num_sequences, " needs ", per_sequence,
                                                          " bytes each but only ", body, " bytes follow the header"));
  const uint64_t after_sequences = body - l.num_sequences * per_sequence;
  if (l.num_document_indices == 0)
    throw IndexedDatasetError(name, "document-index count", "expected D >= 1 (documents + 1), found 0");
  if (l.num_document_indices > after_sequences / 8)
    throw IndexedDatasetError(name, "document-index count", cat("D = ", l.num_document_indices, " needs ", 8 * l.num_document_indices,
                                                                " bytes but only ", after_sequences, " remain"));
  l.lengths_offset = kIndexHeaderSize;
  l.pointers_offset = l.lengths_offset + 4 * l.num_sequences;
  l.document_indices_offset = l.pointers_offset + 8 * l.num_sequences;
  l.modes_offset = l.document_indices_offset + 8 * l.num_document_indices;
  l.expected_size = l.modes_offset + (multimodal ? l.num_sequences : 0);
  // Megatron's reader ignores the modes of a multimodal file it reads as text; so do we.
  bool modes_ignored = !multimodal && size == l.expected_size + l.num_sequences;
  if (size != l.expected_size && !modes_ignored)
    throw IndexedDatasetError(name, "file size", cat("expected ", l.expected_size, " bytes for N = ", l.num_sequences, ", D = ",
                                                     l.num_document_indices, multimodal ? " with modes" : "", ", found ", size));
  return l;
}

namespace {
void check_pointers(const uint8_t* idx, const IndexLayout& l, uint64_t bin_size, const std::string& idx_name,
                    const std::string& bin_name, Problems& problems) {
  UnalignedArray<int32_t> lengths(idx + l.lengths_offset, l.num_sequences);
  UnalignedArray<int64_t> pointers(idx + l.pointers_offset, l.num_sequences);
  const uint64_t itemsize = dtype_size(l.dtype);
  uint64_t expected = 0;  // where sequence i must start; saturates, so an absurd sum never matches
  for (size_t i = 0; i < l.num_sequences && !problems.full(); ++i) {
    int32_t len = lengths[i];
    int64_t ptr = pointers[i];
    if (len < 0) problems.add(idx_name, "sequence lengths", cat("entry ", i, " is negative (", len, ")"));
    if (i == 0 && ptr != 0) {
      problems.add(idx_name, "sequence pointers", cat("expected entry 0 to be 0, found ", ptr));
    } else if (i > 0 && ptr < pointers[i - 1]) {
      problems.add(idx_name, "sequence pointers", cat("not monotonic: entry ", i, " (", ptr, ") < entry ", i - 1, " (", pointers[i - 1], ")"));
    } else if (ptr < 0 || static_cast<uint64_t>(ptr) != expected) {
      problems.add(idx_name, "sequence pointers", cat("entry ", i, " is ", ptr, ", expected ", expected,
                                                      " (previous pointer + length * itemsize ", itemsize, ")"));
    }
    const uint64_t step = static_cast<uint64_t>(len < 0 ? 0 : len) * itemsize;  // < 2^34
    expected = expected > UINT64_MAX - step ? UINT64_MAX : expected + step;
  }
  if (problems.out.empty() && expected > bin_size)
    problems.add(bin_name, "file size", cat("expected at least ", expected,
                                            " bytes (last pointer + length * itemsize), found ", bin_size));
}

void check_document_indices(const uint8_t* idx, const IndexLayout& l, const std::string& idx_name, Problems& problems) {
  UnalignedArray<int64_t> docs(idx + l.document_indices_offset, l.num_document_indices);
  if (docs[0] != 0) problems.add(idx_name, "document indices", cat("expected entry 0 to be 0, found ", docs[0]));
  for (size_t i = 1; i < docs.size() && !problems.full(); ++i)
    if (docs[i] < docs[i - 1])
      problems.add(idx_name, "document indices", cat("decreasing: entry ", i, " (", docs[i], ") < entry ", i - 1, " (", docs[i - 1], ")"));
  if (static_cast<uint64_t>(docs.back()) != l.num_sequences)
    problems.add(idx_name, "document indices", cat("expected the last entry to be N = ", l.num_sequences, ", found ", docs.back()));
}
}  // namespace

std::vector<DatasetProblem> validate_index_arrays(const uint8_t* idx, const IndexLayout& layout, uint64_t bin_size,
                                                  const std::string& idx_name, const std::string& bin_name,
                                                  size_t max_problems) {
  Problems problems(max_problems);
  check_pointers(idx, layout, bin_size, idx_name, bin_name, problems);
  check_document_indices(idx, layout, idx_name, problems);
  return std::move(problems.out);
}

std::vector<DatasetProblem> check_dataset(const std::string& prefix_or_path, bool multimodal, size_t max_problems) {
  const std::string prefix = dataset_prefix(prefix_or_path);
  std::vector<DatasetProblem> problems;
  MappedFile idx, bin;
  auto try_open = [&](MappedFile& f, const std::string& path) {
    try {
      f = MappedFile(path, MappedFile::Access::Sequential);
    } catch (const IndexedDatasetError& e) {
      problems.push_back({e.file(), e.field(), e.problem()});
    }
  };
  try_open(idx, idx_path(prefix));
  try_open(bin, bin_path(prefix));
  if (!idx.is_open()) return problems;
  if (!bin.is_open()) {
    // Still report a malformed index: the header check needs no .bin.
    auto more = check_index_image(idx.data(), idx.size(), UINT64_MAX, idx.path(), bin_path(prefix), multimodal, max_problems);
    problems.insert(problems.end(), more.begin(), more.end());
    return problems;
  }
  return check_index_image(idx.data(), idx.size(), bin.size(), idx.path(), bin.path(), multimodal, max_problems);
}

std::vector<DatasetProblem> check_index_image(const uint8_t* idx, size_t idx_size, uint64_t bin_size,
                                              const std::string& idx_name, const std::string& bin_name, bool multimodal,
                                              size_t max_problems) {
  IndexLayout layout;
  try {
    layout = parse_index_header(idx, idx_size, idx_name, multimodal);
  } catch (const IndexedDatasetError& e) {
    return {{e.file(), e.field(), e.problem()}};
  }
  return validate_index_arrays(idx, layout, bin_size, idx_name, bin_name, max_problems);
}

}  // namespace mfcore
