// Unit tests of sample assembly pieces: fields, thread pool, .npy files, the index cache, hashing.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "mfcore/cache_publisher.h"
#include "mfcore/content_hash.h"
#include "mfcore/index_cache.h"
#include "mfcore/npy_file.h"
#include "mfcore/sample_fields.h"
#include "mfcore/thread_pool.h"

using namespace mfcore;

namespace {
std::string temp_dir() {
  char tmpl[] = "/tmp/mfcore_gpt_test_XXXXXX";
  return std::string(::mkdtemp(tmpl));
}

IndexArray iota_array(size_t n) {
  IndexArray a = IndexArray::allocate(IndexType::Int64, n);
  for (size_t i = 0; i < n; ++i) a.mutable_as<int64_t>()[i] = static_cast<int64_t>(i * 3);
  return a;
}
}  // namespace

TEST(fields_follow_megatron_with_resets) {
  // text (L = 6, X = 1): 5 7 E 8 E 9 P   (E = eod 1, P = pad -1)
  std::vector<int32_t> text{5, 7, 1, 8, 1, 9, -1};
  FieldOptions o;
  o.seq_length = 6;
  o.has_eod = true;
  o.eod_id = 1;
  o.eod_mask_loss = o.reset_position_ids = o.reset_attention_mask = o.create_attention_mask = true;
  o.compressed_eod_mask = true;
  o.eod_pad_length = 4;
  std::vector<int32_t> tokens(6), labels(6), pos(6), ends(4), scratch(14);
  std::vector<float> loss(6);
  std::vector<uint8_t> mask(36);
  assemble_fields(text.data(), o, {tokens.data(), labels.data(), loss.data(), pos.data(), mask.data(), ends.data()},
                  scratch.data());
  CHECK((tokens == std::vector<int32_t>{5, 7, 1, 8, 1, 9}));
  CHECK((labels == std::vector<int32_t>{7, 1, 8, 1, 9, 0}));  // pad label written as 0
  CHECK((loss == std::vector<float>{1, 1, 0, 1, 0, 0}));       // EOD inputs and the pad label
  CHECK((pos == std::vector<int32_t>{0, 1, 2, 0, 1, 0}));
  CHECK((ends == std::vector<int32_t>{3, 5, 6, 6}));
  CHECK_EQ(int(mask[3 * 6 + 2]), 1);  // position 3 cannot see the EOD at 2
  CHECK_EQ(int(mask[3 * 6 + 3]), 0);
  CHECK_EQ(int(mask[2 * 6 + 0]), 0);  // the EOD still sees its own document
  CHECK_EQ(int(mask[0 * 6 + 1]), 1);  // causal
  o.eod_pad_length = 2;
  CHECK_THROWS(assemble_fields(text.data(), o, {nullptr, nullptr, nullptr, nullptr, nullptr, ends.data()},
                               scratch.data()));
}

TEST(options_needing_eod_are_refused_without_it) {
  FieldOptions o;
  o.seq_length = 4;
  o.reset_position_ids = true;
  CHECK_THROWS(o.validate());
  o.has_eod = true;
  o.validate();
}

TEST(thread_pool_covers_every_item_and_rethrows) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> seen(1000);
  pool.parallel_for(1000, 7, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) seen[i]++;
  });
  bool all_once = true;
  for (auto& s : seen) all_once = all_once && s.load() == 1;
  CHECK(all_once);
  CHECK_THROWS(pool.parallel_for(100, 1, [](size_t b, size_t) {
    if (b == 50) throw std::runtime_error("boom");
  }));
  std::atomic<int> again{0};
  pool.parallel_for(10, 1, [&](size_t, size_t) { again++; });  // still usable after an error
  CHECK_EQ(again.load(), 10);
}

TEST(npy_round_trip_and_truncation_is_detected) {
  std::string dir = temp_dir();
  IndexArray a = IndexArray::allocate(IndexType::Int32, 5, 2);
  for (int i = 0; i < 10; ++i) a.mutable_as<int32_t>()[i] = i - 3;
  write_npy(dir + "/a.npy", a);
  IndexArray b = map_npy(dir + "/a.npy");
  CHECK_EQ(b.rows(), 5u);
  CHECK_EQ(b.cols(), 2u);
  CHECK_EQ(b.get(9), 6);
  CHECK(reinterpret_cast<uintptr_t>(b.data()) % 64 == 0);
  CHECK_EQ(::truncate((dir + "/a.npy").c_str(), 100), 0);
  CHECK_THROWS(map_npy(dir + "/a.npy"));
  std::system(("rm -rf " + dir).c_str());
}

TEST(index_cache_builds_once_and_rebuilds_a_damaged_entry) {
  std::string dir = temp_dir() + "/cache";
  IndexCache cache(dir);
  int builds = 0;
  auto build = [&] {
    ++builds;
    return std::vector<IndexArray>{iota_array(1000)};
  };
  auto first = cache.get_or_build("Test", "{\"k\": 1}", "{}", {"values"}, build);
  auto second = cache.get_or_build("Test", "{\"k\": 1}", "{}", {"values"}, build);
  CHECK(first.built && !second.built);
  CHECK_EQ(builds, 1);
  CHECK_EQ(second.arrays[0].get(999), 2997);
  CHECK_EQ(::truncate((second.path + "/values.npy").c_str(), 200), 0);
  auto third = cache.get_or_build("Test", "{\"k\": 1}", "{}", {"values"}, build);
  CHECK(third.built);
  CHECK_EQ(builds, 2);
  CHECK_EQ(third.arrays[0].get(999), 2997);
  auto other = cache.get_or_build("Test", "{\"k\": 2}", "{}", {"values"}, build);
  CHECK(other.path != third.path);
  std::system(("rm -rf " + dir.substr(0, dir.size() - 6)).c_str());
}

TEST(background_cache_write_is_waited_for_and_its_lock_not_kept_by_a_forked_child) {
  std::string dir = temp_dir();
  const int fd = ::open((dir + "/x.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  CHECK(fd >= 0 && ::flock(fd, LOCK_EX) == 0);
  std::atomic<bool> finished{false};
  std::atomic<bool> release{false};
  publish_in_background([&, fd] {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ::close(fd);  // as the job's LockFile does when its captures are destroyed
    finished.store(true);
  }, fd);
  const pid_t child = ::fork();
  if (child == 0) {  // the child: no copy of the lock, no jobs of its own to wait for
    wait_for_index_cache_writes();
    ::_exit(::fcntl(fd, F_GETFD) == -1 && errno == EBADF ? 0 : 1);
  }
  int status = -1;
  CHECK_EQ(::waitpid(child, &status, 0), child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(!finished.load());
  release.store(true);
  wait_for_index_cache_writes();
  CHECK(finished.load());
  const int other = ::open((dir + "/x.lock").c_str(), O_RDWR | O_CLOEXEC);
  CHECK(other >= 0 && ::flock(other, LOCK_EX | LOCK_NB) == 0);  // the lock went with the job
  ::close(other);
  std::system(("rm -rf " + dir).c_str());
}

TEST(hash_is_stable_and_sensitive) {
  CHECK_EQ(hex64(hash64(std::string(""))).size(), 16u);
  CHECK_EQ(hash64(std::string("abc")), hash64(std::string("abc")));
  CHECK(hash64(std::string("abc")) != hash64(std::string("abd")));
  std::vector<int32_t> v(1000, 7);
  uint64_t h = hash64(v.data(), v.size() * 4);
  v[500] = 8;
  CHECK(h != hash64(v.data(), v.size() * 4));
}

int main() { return run_all(); }
