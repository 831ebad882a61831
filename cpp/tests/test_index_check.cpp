// The value checks of cached indices (index_check.h): built indices pass; each kind of damaged value
// is named; the checks read within the arrays whatever the values say.
#include <string>
#include <vector>

#include "harness.h"
#include "mfcore/gpt_indices.h"
#include "mfcore/index_check.h"

using namespace mfcore;

namespace {
UnalignedArray<int32_t> view(const std::vector<int32_t>& v) {
  return UnalignedArray<int32_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size());
}

struct Built {
  std::vector<int32_t> sizes;
  GptIndexSpec spec;
  GptIndices ix;
};

Built build() {
  Built b;
  for (int i = 0; i < 40; ++i) b.sizes.push_back(3 + (i * 7) % 11);
  b.spec = GptIndexSpec{DocumentRange{true, 0, 40}, 8, 1, 5, 60, true};
  b.ix = build_gpt_indices(view(b.sizes), b.spec);
  return b;
}

template <class T>
void set(IndexArray& a, size_t i, int64_t v) { a.mutable_as<T>()[i] = static_cast<T>(v); }
}  // namespace

TEST(built_indices_pass) {
  Built b = build();
  CHECK_EQ(check_gpt_index_values(b.ix, view(b.sizes), b.spec.documents), std::string());
}

TEST(each_damaged_value_is_named) {
  {
    Built b = build();
    set<int32_t>(b.ix.document_index, 3, 1000);
    CHECK(check_gpt_index_values(b.ix, view(b.sizes), b.spec.documents).find("document_index[3]") == 0);
  }
  {
    Built b = build();
    set<int32_t>(b.ix.sample_index, 4, 1 << 30);  // row 2's document position
    CHECK(check_gpt_index_values(b.ix, view(b.sizes), b.spec.documents).find("sample_index[4]") == 0);
  }
  {
    Built b = build();
    set<int32_t>(b.ix.sample_index, 7, 100000);  // row 3's offset
    CHECK(check_gpt_index_values(b.ix, view(b.sizes), b.spec.documents).find("outside its document") !=
          std::string::npos);
  }
  {
    Built b = build();
    const int64_t first = b.ix.shuffle_index.get(0);
    CHECK(b.ix.shuffle_index.type() == IndexType::UInt32);
    set<uint32_t>(b.ix.shuffle_index, 1, first);
    CHECK(check_gpt_index_values(b.ix, view(b.sizes), b.spec.documents).find("repeats") != std::string::npos);
  }
}

TEST(blending_ids_are_checked_against_the_members) {
  IndexArray ds = IndexArray::allocate(IndexType::Int16, 4), sample = IndexArray::allocate(IndexType::Int64, 4);
  for (int i = 0; i < 4; ++i) {
    set<int16_t>(ds, i, i % 2);
    set<int64_t>(sample, i, i / 2);
  }
  CHECK_EQ(check_blending_index_values(ds, sample, {2, 2}), std::string());
  CHECK(check_blending_index_values(ds, sample, {2, 1}).find("dataset_sample_index[3]") == 0);
  set<int16_t>(ds, 0, 7);
  CHECK(check_blending_index_values(ds, sample, {2, 2}).find("dataset_index[0]") == 0);
}

int main() { return run_all(); }
