// MappedFile: whole-file read-only mappings, moves, empty files and clear errors.
#include "harness.h"
#include "indexed_test_util.h"
#include "mfcore/mapped_file.h"

using namespace mfcore;
using idxtest::ScratchDir;

TEST(maps_whole_file) {
  ScratchDir dir;
  idxtest::write_file(dir / "f", {1, 2, 3, 4, 5});
  MappedFile f(dir / "f", MappedFile::Access::Random);
  CHECK(f.is_open());
  CHECK_EQ(f.size(), size_t(5));
  CHECK_EQ(int(f.data()[4]), 5);
  CHECK_EQ(f.path(), dir / "f");
}

TEST(moves_transfer_the_mapping) {
  ScratchDir dir;
  idxtest::write_file(dir / "f", {9, 8});
  MappedFile a(dir / "f");
  const uint8_t* p = a.data();
  MappedFile b(std::move(a));
  CHECK(!a.is_open());
  CHECK(a.data() == nullptr);
  CHECK(b.data() == p);
  MappedFile c;
  c = std::move(b);
  CHECK_EQ(int(c.data()[1]), 8);
  CHECK(!b.is_open());
}

TEST(empty_file_maps_to_nothing) {
  ScratchDir dir;
  idxtest::write_file(dir / "e", {});
  MappedFile f(dir / "e");
  CHECK(f.is_open());
  CHECK(f.data() == nullptr);
  CHECK_EQ(f.size(), size_t(0));
}

TEST(errors_name_the_file) {
  ScratchDir dir;
  std::string what;
  try {
    MappedFile f(dir / "missing");
  } catch (const IndexedDatasetError& e) {
    what = e.what();
  }
  CHECK_EQ(what, dir / "missing" + ": file: missing (no such file)");
  bool dir_refused = false;
  try {
    MappedFile f(dir.path);
  } catch (const IndexedDatasetError& e) {
    dir_refused = e.field() == "file" && e.problem() == "not a regular file";
  }
  CHECK(dir_refused);
}

TEST(unaligned_array_reads_odd_offsets) {
  uint8_t bytes[1 + 2 * 8] = {0xff};
  int64_t values[2] = {-5, 1LL << 40};
  std::memcpy(bytes + 1, values, sizeof values);
  UnalignedArray<int64_t> a(bytes + 1, 2);
  CHECK_EQ(a[0], int64_t(-5));
  CHECK_EQ(a.back(), int64_t(1) << 40);
  CHECK_EQ(a.size_bytes(), size_t(16));
  CHECK_THROWS(a.at(2));
  int64_t out[2];
  a.copy_to(out, 0, 2);
  CHECK_EQ(out[1], values[1]);
}

int main() { return run_all(); }
