// Builder -> reader round trips, the byte layout of the .idx, bounds checks and atomicity.
#include <sys/resource.h>

#include <csignal>

#include "harness.h"
#include "indexed_test_util.h"
#include "mfcore/indexed_dataset.h"

using namespace mfcore;
using idxtest::ScratchDir;

TEST(dtype_table_matches_spec) {
  CHECK_EQ(static_cast<int>(DType::UInt8), 1);
  CHECK_EQ(static_cast<int>(DType::Float64), 6);
  CHECK_EQ(static_cast<int>(DType::Float32), 7);
  CHECK_EQ(static_cast<int>(DType::UInt16), 8);
  CHECK_EQ(dtype_size(DType::Int16), size_t(2));
  CHECK_EQ(dtype_size(DType::Float64), size_t(8));
  CHECK_EQ(std::string(dtype_name(DType::UInt16)), std::string("uint16"));
  CHECK(dtype_from_name("float32") == DType::Float32);
  CHECK_THROWS(dtype_from_name("bfloat16"));
  CHECK(!is_dtype_code(0));
  CHECK(!is_dtype_code(9));
  CHECK(best_dtype(65499) == DType::UInt16);
  CHECK(best_dtype(65500) == DType::Int32);
}

TEST(prefix_accepts_bin_and_idx_paths) {
  CHECK_EQ(dataset_prefix("a/b.bin"), std::string("a/b"));
  CHECK_EQ(dataset_prefix("a/b.idx"), std::string("a/b"));
  CHECK_EQ(dataset_prefix("a/b"), std::string("a/b"));
  CHECK_EQ(dataset_prefix(".bin"), std::string(".bin"));
}

TEST(round_trip_multi_sequence_documents) {
  ScratchDir dir;
  idxtest::write_docs(dir / "ds", {{3, 2}, {5}, {}, {1, 1, 1}});
  IndexedDataset ds(dir / "ds.bin");
  CHECK_EQ(ds.num_sequences(), size_t(6));
  CHECK_EQ(ds.num_documents(), size_t(4));
  CHECK_EQ(ds.num_tokens(), uint64_t(13));
  CHECK(ds.dtype() == DType::Int32);
  const int64_t docs[] = {0, 2, 3, 3, 6};
  for (size_t i = 0; i < 5; ++i) CHECK_EQ(ds.document_indices()[i], docs[i]);
  const int64_t ptrs[] = {0, 12, 20, 40, 44, 48};
  for (size_t i = 0; i < 6; ++i) CHECK_EQ(ds.sequence_pointers()[i], ptrs[i]);
  int32_t out[5];
  ds.read_tokens(2, 0, 5, out);
  for (int k = 0; k < 5; ++k) CHECK_EQ(out[k], 10 + k);
  ds.read_tokens(0, 1, 2, out);
  CHECK_EQ(out[0], 1);
  CHECK_EQ(out[1], 2);
  CHECK(ds.sequence_modes().empty());
}

TEST(idx_bytes_follow_the_spec) {
  ScratchDir dir;
  idxtest::write_docs(dir / "g", {{2}, {1}}, DType::UInt16);
  auto b = idxtest::read_file(dir / "g.idx");
  CHECK_EQ(b.size(), size_t(34 + 12 * 2 + 8 * 3));
  CHECK(std::memcmp(b.data(), "MMIDIDX\0\0", 9) == 0);
  uint64_t version, n, d;
  std::memcpy(&version, &b[9], 8);
  std::memcpy(&n, &b[18], 8);
  std::memcpy(&d, &b[26], 8);
  CHECK_EQ(version, uint64_t(1));
  CHECK_EQ(int(b[17]), 8);
  CHECK_EQ(n, uint64_t(2));
  CHECK_EQ(d, uint64_t(3));
  int64_t p1;
  std::memcpy(&p1, &b[34 + 8 + 8], 8);
  CHECK_EQ(p1, int64_t(4));  // 2 tokens * 2 bytes
  CHECK_EQ(idxtest::read_file(dir / "g.bin").size(), size_t(6));
}

TEST(multimodal_modes_round_trip) {
  ScratchDir dir;
  {
    IndexedDatasetBuilder b(dir / "mm", DType::UInt8, /*multimodal=*/true);
    uint8_t t[3] = {1, 2, 3};
    b.add_sequence(t, 3, 0);
    b.add_sequence(t, 2, 1);
    b.end_document();
    b.add_document(t, 1, 2);
    b.finalize();
  }
  IndexedDataset ds(dir / "mm", true);
  CHECK_EQ(ds.sequence_modes().size(), size_t(3));
  CHECK_EQ(int(ds.sequence_modes()[1]), 1);
  CHECK_EQ(int(ds.sequence_modes()[2]), 2);
  // Read as text, the modes are ignored, as Megatron's reader does.
  IndexedDataset text(dir / "mm");
  CHECK_EQ(text.num_sequences(), size_t(3));
  CHECK(text.sequence_modes().empty());
}

TEST(reads_are_bounds_checked) {
  ScratchDir dir;
  idxtest::write_docs(dir / "b", {{4}});
  IndexedDataset ds(dir / "b");
  int32_t out[8];
  CHECK_THROWS(ds.read_tokens(1, 0, 1, out));
  CHECK_THROWS(ds.read_tokens(0, 3, 2, out));
  CHECK_THROWS(ds.read_tokens(0, 5, 0, out));
  CHECK_THROWS(ds.read_tokens(0, 1, SIZE_MAX, out));
  ds.read_tokens(0, 4, 0, out);  // empty read at the end is fine
  int64_t seqs[] = {0, 0}, offs[] = {0, 2}, lens[] = {2, 2};
  ds.read_many(seqs, offs, lens, 2, out, sizeof out);
  CHECK_EQ(out[2], 2);
  CHECK_THROWS(ds.read_many(seqs, offs, lens, 2, out, 15));
  int64_t bad[] = {-1};
  CHECK_THROWS(ds.read_many(bad, offs, lens, 1, out, sizeof out));
}

TEST(empty_dataset_is_valid) {
  ScratchDir dir;
  IndexedDatasetBuilder(dir / "e", DType::Int64).finalize();
  IndexedDataset ds(dir / "e");
  CHECK_EQ(ds.num_sequences(), size_t(0));
  CHECK_EQ(ds.num_documents(), size_t(0));
  CHECK_EQ(ds.bin_size(), size_t(0));
}

TEST(unfinished_builder_leaves_no_dataset) {
  ScratchDir dir;
  {
    IndexedDatasetBuilder b(dir / "a", DType::Int32);
    int32_t t[2] = {1, 2};
    b.add_document(t, 2);
  }
  CHECK(!idxtest::exists(dir / "a.bin"));
  CHECK(!idxtest::exists(dir / "a.idx"));
  CHECK_EQ(std::system(("test -z \"$(ls -A '" + dir.path + "')\"").c_str()), 0);
  IndexedDatasetBuilder b(dir / "a", DType::Int32);
  b.abort();
  int32_t t = 0;
  CHECK_THROWS(b.add_document(&t, 1));
  CHECK_THROWS(b.finalize());
}

TEST(finalize_closes_an_open_document_and_replaces_old_dataset) {
  ScratchDir dir;
  idxtest::write_docs(dir / "r", {{9}, {9}});
  IndexedDatasetBuilder b(dir / "r", DType::Int32);
  int32_t t[2] = {7, 8};
  b.add_sequence(t, 2);
  b.finalize();
  IndexedDataset ds(dir / "r");
  CHECK_EQ(ds.num_documents(), size_t(1));
  CHECK_EQ(ds.num_tokens(), uint64_t(2));
}

TEST(missing_directory_is_a_clear_error) {
  bool named = false;
  try {
    IndexedDatasetBuilder b("/nonexistent-dir-mfcore/x", DType::Int32);
  } catch (const IndexedDatasetError& e) {
    named = std::string(e.what()).find("/nonexistent-dir-mfcore/x.bin") != std::string::npos;
  }
  CHECK(named);
}

TEST(failed_write_poisons_the_builder) {
  // A file-size limit makes the .bin write fail like a full disk would.
  ScratchDir dir;
  struct rlimit old;
  ::getrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = {1 << 16, old.rlim_max};
  ::setrlimit(RLIMIT_FSIZE, &small);
  IndexedDatasetBuilder b(dir / "full", DType::Int32);
  std::vector<int32_t> tokens(1 << 20, 7);  // 4 MB: larger than the limit and the write buffer
  bool threw = false;
  try {
    b.add_document(tokens.data(), tokens.size());
  } catch (const IndexedDatasetError& e) {
    threw = e.field() == "write";
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, SIG_DFL);
  CHECK(threw);
  int32_t t = 1;
  CHECK_THROWS(b.add_document(&t, 1));  // no silent continuation with shifted pointers
  CHECK(!idxtest::exists(dir / "full.bin"));
  CHECK_EQ(std::system(("test -z \"$(ls -A '" + dir.path + "')\"").c_str()), 0);
}

int main() { return run_all(); }
