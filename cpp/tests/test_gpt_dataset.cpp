// GPT and blended datasets end to end in C++ (so ASan/UBSan see the sample path): a dataset written
// with the builder, indices built and cached, samples assembled in parallel and checked against the
// documents they come from.
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "harness.h"
#include "mfcore/blended_dataset.h"
#include "mfcore/gpt_dataset.h"
#include "mfcore/indexed_builder.h"
#include "mfcore/sample_batch.h"
#include "mfcore/sample_error.h"

using namespace mfcore;

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/mfcore_gpt_ds_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path).c_str()); }
};

// Documents 0..n-1 where document d holds d+3 tokens valued 1000*d + position (EOD = 1 last).
std::vector<std::vector<uint16_t>> write_docs(const std::string& prefix, int n) {
  std::vector<std::vector<uint16_t>> docs;
  IndexedDatasetBuilder b(prefix, DType::UInt16);
  for (int d = 0; d < n; ++d) {
    std::vector<uint16_t> doc(static_cast<size_t>(d % 7 + 3));
    for (size_t i = 0; i < doc.size(); ++i) doc[i] = static_cast<uint16_t>(100 * (d % 50) + i + 2);
    doc.back() = 1;
    b.add_document(doc.data(), doc.size());
    docs.push_back(doc);
  }
  b.finalize();
  return docs;
}

// The text of sample i straight from the definition (spec section 7).
std::vector<int32_t> expected_text(const GptDataset& g, const std::vector<std::vector<uint16_t>>& docs, int64_t i) {
  const auto& ix = g.indices();
  const int64_t j = ix.shuffle_index.get(static_cast<size_t>(i));
  const int64_t d0 = ix.sample_index.get(2 * j), o0 = ix.sample_index.get(2 * j + 1);
  const int64_t d1 = ix.sample_index.get(2 * j + 2), o1 = ix.sample_index.get(2 * j + 3);
  std::vector<int32_t> out;
  for (int64_t d = d0; d <= d1; ++d) {
    const auto& doc = docs[static_cast<size_t>(ix.document_index.get(static_cast<size_t>(d)))];
    const int64_t b = d == d0 ? o0 : 0, e = d == d1 ? o1 + 1 : static_cast<int64_t>(doc.size());
    for (int64_t t = b; t < e; ++t) out.push_back(doc[static_cast<size_t>(t)]);
  }
  return out;
}
// The whole ("1" split) GPT dataset of 200 written documents, sequence length 32.
std::shared_ptr<GptDataset> train_split_of_200_docs(const TempDir& dir) {
  write_docs(dir.path + "/x", 200);
  GptDatasetConfig c;
  c.prefix = dir.path + "/x";
  c.split = "1";
  c.seq_length = 32;
  return GptDataset::open_splits(c)[0];
}

// Every EOD option on, compressed EOD mask of length 40.
FieldOptions reset_options() {
  FieldOptions o;
  o.seq_length = 32;
  o.has_eod = true;
  o.eod_id = 1;
  o.reset_position_ids = o.eod_mask_loss = o.compressed_eod_mask = true;
  o.eod_pad_length = 40;
  return o;
}
}  // namespace

TEST(samples_are_the_documents_they_index) {
  TempDir dir;
  auto docs = write_docs(dir.path + "/x", 300);
  GptDatasetConfig c;
  c.prefix = dir.path + "/x";
  c.split = "90,10,0";
  c.seq_length = 16;
  c.num_samples = {500, 20, 0};
  c.cache_dir = dir.path + "/cache";
  auto splits = GptDataset::open_splits(c);
  CHECK(splits[0] && splits[1] && !splits[2]);
  CHECK(splits[0]->built());
  const GptDataset& train = *splits[0];
  CHECK(train.size() >= 500);
  std::vector<int32_t> text(17);
  for (int64_t i = 0; i < train.size(); i += 7) {
    train.read_text(i, text.data(), -1);
    CHECK(text == expected_text(train, docs, i));
  }
  auto again = GptDataset::open_splits(c);
  CHECK(!again[0]->built());
  CHECK_EQ(again[0]->fingerprint(), train.fingerprint());
  CHECK_THROWS(train.read_text(train.size(), text.data(), -1));
}

TEST(fill_batch_in_parallel_equals_one_by_one) {
  TempDir dir;
  auto train = train_split_of_200_docs(dir);
  const FieldOptions o = reset_options();
  const int64_t n = std::min<int64_t>(train->size(), 64);
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::vector<int32_t> tok(n * 32), lab(n * 32), pos(n * 32), ends(n * 40), tok1(n * 32);
  std::vector<float> loss(n * 32);
  ThreadPool pool(2);
  fill_batch(*train, idx.data(), n, o, {tok.data(), lab.data(), loss.data(), pos.data(), nullptr, ends.data()}, &pool);
  fill_batch(*train, idx.data(), n, o, {tok1.data(), nullptr, nullptr, nullptr, nullptr, nullptr}, nullptr);
  CHECK(tok == tok1);
  std::vector<int32_t> text(33);
  train->read_text(5, text.data(), -1);
  CHECK(std::equal(text.begin() + 1, text.end(), lab.begin() + 5 * 32));
  std::vector<int64_t> bad{0, train->size()};
  CHECK_THROWS(fill_batch(*train, bad.data(), 2, o, {tok.data(), nullptr, nullptr, nullptr, nullptr, nullptr}, &pool));
}

// A batch of >= 16 MB is assembled in per-thread staging buffers and streamed out; it must equal
// the same samples written in place in small batches (also for a destination that is not 16-byte
// aligned, which falls back to plain copies).
TEST(large_streamed_batch_equals_small_batches) {
  TempDir dir;
  auto train = train_split_of_200_docs(dir);
  const FieldOptions o = reset_options();
  const int64_t n = 30000, L = 32, E = 40;  // 30000 rows x 672 bytes = 20 MB
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) idx[k] = (k * 7919) % train->size();
  std::vector<int32_t> tok(n * L + 1), lab(n * L), pos(n * L), ends(n * E);
  std::vector<float> loss(n * L);
  ThreadPool pool(2);
  fill_batch(*train, idx.data(), n, o, {tok.data() + 1, lab.data(), loss.data(), pos.data(), nullptr, ends.data()},
             &pool);
  std::vector<int32_t> tok1(8 * L), lab1(8 * L), pos1(8 * L), ends1(8 * E);
  std::vector<float> loss1(8 * L);
  bool same = true;
  for (int64_t k = 0; k < n; k += 8) {
    fill_batch(*train, idx.data() + k, 8, o, {tok1.data(), lab1.data(), loss1.data(), pos1.data(), nullptr, ends1.data()},
               nullptr);
    same = same && std::equal(tok1.begin(), tok1.end(), tok.begin() + 1 + k * L) &&
           std::equal(lab1.begin(), lab1.end(), lab.begin() + k * L) &&
           std::equal(loss1.begin(), loss1.end(), loss.begin() + k * L) &&
           std::equal(pos1.begin(), pos1.end(), pos.begin() + k * L) &&
           std::equal(ends1.begin(), ends1.end(), ends.begin() + k * E);
  }
  CHECK(same);
  CHECK_EQ(tok[0], 0);  // nothing written before the destination
}

TEST(blend_reads_members_in_their_own_order) {
  TempDir dir;
  write_docs(dir.path + "/a", 100);
  write_docs(dir.path + "/b", 150);
  GptDatasetConfig c;
  c.split = "1";
  c.seq_length = 8;
  c.prefix = dir.path + "/a";
  std::shared_ptr<const SampleSource> a = GptDataset::open_splits(c)[0];
  c.prefix = dir.path + "/b";
  std::shared_ptr<const SampleSource> b = GptDataset::open_splits(c)[0];
  auto blend = BlendedDataset::open({a, b}, {1, 3}, 40, dir.path + "/cache", "BlendedDataset-train");
  CHECK_EQ(blend->size(), 40);
  CHECK_EQ(blend->indices().counts[1], 30);
  std::vector<int32_t> x(9), y(9);
  for (int64_t s = 0; s < 40; ++s) {
    blend->read_text(s, x.data(), -1);
    const auto& member = blend->indices().dataset_index.get(static_cast<size_t>(s)) == 0 ? a : b;
    member->read_text(blend->indices().dataset_sample_index.get(static_cast<size_t>(s)), y.data(), -1);
    CHECK(x == y);
  }
  CHECK_THROWS(BlendedDataset::open({a, b}, {1, -1}, 40, "", "BlendedDataset-train"));
  CHECK_THROWS(BlendedDataset::open({a, b}, {1}, 40, "", "BlendedDataset-train"));
  CHECK_THROWS(BlendedDataset::open({a, b}, {1, 1}, 1000000, "", "BlendedDataset-train"));  // members too short
}

TEST(bad_configs_are_sample_engine_errors) {
  TempDir dir;
  write_docs(dir.path + "/x", 10);
  GptDatasetConfig c;
  c.prefix = dir.path + "/x";
  c.seq_length = 1000;
  c.split = "1";
  bool caught = false;
  try {
    GptDataset::open_splits(c);
  } catch (const SampleEngineError&) {
    caught = true;
  }
  CHECK(caught);
  c.seq_length = 4;
  c.split = "x";
  CHECK_THROWS(GptDataset::open_splits(c));
}

int main() { return run_all(); }
