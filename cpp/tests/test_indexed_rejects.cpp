// Every malformed input of the spec's reject list raises IndexedDatasetError naming file and field.
#include <functional>

#include "harness.h"
#include "indexed_test_util.h"
#include "mfcore/indexed_dataset.h"

using namespace mfcore;
using idxtest::poke;
using idxtest::ScratchDir;

namespace {
// Base dataset: 3 int32 sequences of lengths 2, 3, 1 as 3 documents (N = 3, D = 4, 102-byte .idx).
constexpr size_t kLengths = 34, kPointers = 34 + 12, kDocs = 34 + 36;

// Writes the base dataset, lets `mutate` edit the .idx bytes, and returns "file|field" of the error
// raised on open ("" when none).
std::string open_error(const std::function<void(std::vector<uint8_t>&)>& mutate, bool multimodal = false) {
  ScratchDir dir;
  idxtest::write_docs(dir / "d", {{2}, {3}, {1}});
  auto idx = idxtest::read_file(dir / "d.idx");
  mutate(idx);
  idxtest::write_file(dir / "d.idx", idx);
  try {
    IndexedDataset ds(dir / "d", multimodal);
  } catch (const IndexedDatasetError& e) {
    std::string file = e.file().substr(dir.path.size() + 1);
    CHECK(std::string(e.what()).find(e.file()) == 0);
    auto problems = check_dataset(dir / "d", multimodal);
    CHECK(!problems.empty());
    if (!problems.empty()) CHECK_EQ(problems.front().message(), std::string(e.what()));
    return file + "|" + e.field();
  }
  return "";
}
}  // namespace

TEST(valid_base_opens) { CHECK_EQ(open_error([](auto&) {}), std::string("")); }
TEST(rejects_wrong_magic) { CHECK_EQ(open_error([](auto& b) { b[3] = 'X'; }), std::string("d.idx|magic")); }
TEST(rejects_version) { CHECK_EQ(open_error([](auto& b) { poke<uint64_t>(b, 9, 2); }), std::string("d.idx|version")); }
TEST(rejects_dtype_code_zero) { CHECK_EQ(open_error([](auto& b) { b[17] = 0; }), std::string("d.idx|dtype")); }
TEST(rejects_dtype_code_nine) { CHECK_EQ(open_error([](auto& b) { b[17] = 9; }), std::string("d.idx|dtype")); }
TEST(rejects_truncated_header) { CHECK_EQ(open_error([](auto& b) { b.resize(20); }), std::string("d.idx|header")); }
TEST(rejects_empty_idx) { CHECK_EQ(open_error([](auto& b) { b.clear(); }), std::string("d.idx|header")); }
TEST(rejects_huge_sequence_count) {
  CHECK_EQ(open_error([](auto& b) { poke<uint64_t>(b, 18, UINT64_MAX / 4); }), std::string("d.idx|sequence count"));
}
TEST(rejects_huge_document_count) {
  CHECK_EQ(open_error([](auto& b) { poke<uint64_t>(b, 26, 1ull << 62); }), std::string("d.idx|document-index count"));
}
TEST(rejects_zero_document_count) {
  CHECK_EQ(open_error([](auto& b) { poke<uint64_t>(b, 26, 0); }), std::string("d.idx|document-index count"));
}
TEST(rejects_truncated_arrays) {
  CHECK_EQ(open_error([](auto& b) { b.pop_back(); }), std::string("d.idx|document-index count"));
}
TEST(rejects_trailing_garbage) { CHECK_EQ(open_error([](auto& b) { b.push_back(0); }), std::string("d.idx|file size")); }
TEST(rejects_missing_modes) { CHECK_EQ(open_error([](auto&) {}, true), std::string("d.idx|sequence modes")); }
TEST(rejects_negative_length) {
  CHECK_EQ(open_error([](auto& b) { poke<int32_t>(b, kLengths + 4, -3); }), std::string("d.idx|sequence lengths"));
}
TEST(rejects_pointer_not_starting_at_zero) {
  CHECK_EQ(open_error([](auto& b) { poke<int64_t>(b, kPointers, 4); }), std::string("d.idx|sequence pointers"));
}
TEST(rejects_pointers_not_monotonic) {
  CHECK_EQ(open_error([](auto& b) { poke<int64_t>(b, kPointers + 16, 4); }), std::string("d.idx|sequence pointers"));
}
TEST(rejects_pointers_inconsistent_with_lengths) {
  CHECK_EQ(open_error([](auto& b) { poke<int32_t>(b, kLengths, 3); }), std::string("d.idx|sequence pointers"));
}
TEST(rejects_bin_shorter_than_last_sequence) {
  CHECK_EQ(open_error([](auto& b) { poke<int32_t>(b, kLengths + 8, 2); }), std::string("d.bin|file size"));
}
TEST(rejects_document_indices_not_starting_at_zero) {
  CHECK_EQ(open_error([](auto& b) { poke<int64_t>(b, kDocs, 1); }), std::string("d.idx|document indices"));
}
TEST(rejects_document_indices_decreasing) {
  CHECK_EQ(open_error([](auto& b) { poke<int64_t>(b, kDocs + 16, 0); }), std::string("d.idx|document indices"));
}
TEST(rejects_document_indices_not_ending_at_n) {
  CHECK_EQ(open_error([](auto& b) { poke<int64_t>(b, kDocs + 24, 2); }), std::string("d.idx|document indices"));
}

TEST(rejects_missing_files) {
  ScratchDir dir;
  idxtest::write_docs(dir / "d", {{2}});
  std::rename((dir / "d.bin").c_str(), (dir / "x.bin").c_str());
  bool bin_named = false, idx_named = false;
  try { IndexedDataset ds(dir / "d"); } catch (const IndexedDatasetError& e) { bin_named = e.file() == dir / "d.bin" && e.field() == "file"; }
  try { IndexedDataset ds(dir / "x"); } catch (const IndexedDatasetError& e) { idx_named = e.file() == dir / "x.idx" && e.field() == "file"; }
  CHECK(bin_named);
  CHECK(idx_named);
  CHECK_EQ(check_dataset(dir / "nothing").size(), size_t(2));
}

TEST(bin_shorter_on_disk_is_rejected) {
  ScratchDir dir;
  idxtest::write_docs(dir / "d", {{2}, {3}});
  auto bin = idxtest::read_file(dir / "d.bin");
  bin.resize(bin.size() - 1);
  idxtest::write_file(dir / "d.bin", bin);
  bool named = false;
  try { IndexedDataset ds(dir / "d"); } catch (const IndexedDatasetError& e) { named = e.file() == dir / "d.bin" && e.field() == "file size"; }
  CHECK(named);
}

TEST(check_collects_several_problems) {
  ScratchDir dir;
  idxtest::write_docs(dir / "d", {{2}, {3}, {1}});
  auto idx = idxtest::read_file(dir / "d.idx");
  poke<int32_t>(idx, kLengths, -1);
  poke<int64_t>(idx, kDocs + 24, 7);
  idxtest::write_file(dir / "d.idx", idx);
  auto problems = check_dataset(dir / "d");
  CHECK(problems.size() >= 2);
  CHECK_EQ(check_dataset(dir / "d", false, 1).size(), size_t(1));
}

int main() { return run_all(); }
