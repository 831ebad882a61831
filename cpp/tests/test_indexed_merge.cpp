// Merging equals writing every document into one dataset.
#include "harness.h"
#include "indexed_test_util.h"
#include "mfcore/indexed_dataset.h"
#include "mfcore/indexed_merge.h"

using namespace mfcore;
using idxtest::ScratchDir;

TEST(merge_equals_single_write) {
  ScratchDir dir;
  idxtest::write_docs(dir / "a", {{3, 2}, {5}});
  idxtest::write_docs(dir / "b", {});
  idxtest::write_docs(dir / "c", {{1}, {}, {4, 4}});
  merge_datasets(dir / "m", {dir / "a", dir / "b", dir / "c.idx"});
  // The same documents written in one go (token values differ per position, so write the bytes).
  IndexedDataset a(dir / "a"), c(dir / "c");
  {
    IndexedDatasetBuilder one(dir / "one", DType::Int32);
    for (const IndexedDataset* ds : {&a, &c}) {
      for (size_t doc = 0; doc < ds->num_documents(); ++doc) {
        for (int64_t s = ds->document_indices()[doc]; s < ds->document_indices()[doc + 1]; ++s)
          one.add_sequence(ds->sequence_data(s, 0, 0), ds->sequence_length(s));
        one.end_document();
      }
    }
    one.finalize();
  }
  CHECK(idxtest::read_file(dir / "m.idx") == idxtest::read_file(dir / "one.idx"));
  CHECK(idxtest::read_file(dir / "m.bin") == idxtest::read_file(dir / "one.bin"));
  IndexedDataset m(dir / "m");
  CHECK_EQ(m.num_documents(), size_t(5));
  CHECK_EQ(m.num_sequences(), size_t(6));
}

TEST(merge_multimodal_keeps_modes) {
  ScratchDir dir;
  for (int k = 0; k < 2; ++k) {
    IndexedDatasetBuilder b(dir / ("mm" + std::to_string(k)), DType::UInt8, true);
    uint8_t t[2] = {1, 2};
    b.add_document(t, 2, static_cast<int8_t>(k + 3));
    b.finalize();
  }
  merge_datasets(dir / "out", {dir / "mm0", dir / "mm1"}, true);
  IndexedDataset m(dir / "out", true);
  CHECK_EQ(int(m.sequence_modes()[0]), 3);
  CHECK_EQ(int(m.sequence_modes()[1]), 4);
  CHECK_EQ(m.sequence_pointers()[1], int64_t(2));
}

TEST(merge_rejects_mixed_dtypes_and_bad_inputs) {
  ScratchDir dir;
  idxtest::write_docs(dir / "i32", {{2}});
  idxtest::write_docs(dir / "u16", {{2}}, DType::UInt16);
  bool named = false;
  try {
    merge_datasets(dir / "out", {dir / "i32", dir / "u16"});
  } catch (const IndexedDatasetError& e) {
    named = e.file() == dir / "u16.idx" && e.field() == "dtype";
  }
  CHECK(named);
  CHECK_THROWS(merge_datasets(dir / "out", {}));
  CHECK_THROWS(merge_datasets(dir / "out", {dir / "missing"}));
  CHECK_THROWS(merge_datasets(dir / "i32", {dir / "i32"}));
  CHECK(!idxtest::exists(dir / "out.idx"));
  CHECK(!idxtest::exists(dir / "out.bin"));
}

int main() { return run_all(); }
