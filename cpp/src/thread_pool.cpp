#include "mfcore/thread_pool.h"

#include <algorithm>
#include <atomic>

namespace mfcore {

struct ThreadPool::Job {
  size_t n = 0, grain = 1;
  const std::function<void(size_t, size_t)>* fn = nullptr;
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;
};

size_t hardware_threads() { return std::max<size_t>(1, std::thread::hardware_concurrency()); }

ThreadPool::ThreadPool(size_t threads) {
  for (size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks(Job& job) {
  for (;;) {
    const size_t begin = job.next.fetch_add(job.grain);
    if (begin >= job.n) return;
    try {
      (*job.fn)(begin, std::min(job.n, begin + job.grain));
    } catch (...) {
      std::lock_guard<std::mutex> lock(job.error_mutex);
      if (!job.error) job.error = std::current_exception();
      job.next.store(job.n);  // stop handing out further chunks
    }
  }
}

void ThreadPool::worker_loop() {
  size_t seen = 0;
  for (;;) {
    Job* job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      if (job == nullptr) continue;  // woke after the caller finished that job alone
      ++busy_;
    }
    run_chunks(*job);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --busy_;
    }
    done_.notify_all();
  }
}

void ThreadPool::parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  Job job;
  job.n = n;
  job.grain = std::max<size_t>(1, grain);
  job.fn = &fn;
  const bool use_workers = !workers_.empty() && n > job.grain;
  if (use_workers) {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &job;
    ++generation_;
  }
  if (use_workers) wake_.notify_all();
  run_chunks(job);
  if (use_workers) {
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = nullptr;  // late wakers skip it; the ones inside are waited for
    done_.wait(lock, [&] { return busy_ == 0; });
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace mfcore
