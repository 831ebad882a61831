#pragma once
// A small persistent pool of worker threads for bulk sample assembly. parallel_for splits [0, n)
// into chunks taken from a shared counter by the workers and the calling thread alike; the first
// exception thrown by any chunk is rethrown in the caller after every chunk has finished.
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mfcore {

class ThreadPool {
 public:
  // `threads` workers besides the caller (0: the caller does all the work).
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t num_threads() const { return workers_.size() + 1; }

  // Calls fn(begin, end) over chunks of at most `grain` items covering [0, n). One call at a time
  // per pool (concurrent callers are serialised).
  void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

 private:
  struct Job;
  void worker_loop();
  static void run_chunks(Job& job);

  std::vector<std::thread> workers_;
  std::mutex mutex_, call_mutex_;
  std::condition_variable wake_, done_;
  Job* job_ = nullptr;
  size_t generation_ = 0;
  size_t busy_ = 0;
  bool stop_ = false;
};

// Hardware threads of this machine (at least 1).
size_t hardware_threads();

}  // namespace mfcore
