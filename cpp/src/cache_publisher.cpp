#include "mfcore/cache_publisher.h"

#include <pthread.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>

namespace mfcore {

namespace {
constexpr int kMaxRunning = 4;  // concurrent writes: enough to overlap the fsync waits of small entries

struct Jobs {
  std::mutex mutex;
  std::condition_variable changed;
  int pending = 0;  // started and not finished (running or waiting for a turn)
  int running = 0;
};

Jobs* jobs() {
  static Jobs* shared = [] {
    // A forked child does not inherit the threads, so it must not wait for them: it starts afresh.
    pthread_atfork(nullptr, nullptr, [] { new (jobs()) Jobs(); });
    return new Jobs();
  }();
  return shared;
}

// Waits for the writes when the process exits normally (destroyed after main returns / exit()).
struct WaitAtExit {
  ~WaitAtExit() { wait_for_index_cache_writes(); }
} wait_at_exit;

void run(std::function<void()> job) {
  Jobs* j = jobs();
  {
    std::unique_lock<std::mutex> lock(j->mutex);
    j->changed.wait(lock, [j] { return j->running < kMaxRunning; });
    ++j->running;
  }
  job();
  std::lock_guard<std::mutex> lock(j->mutex);
  --j->running;
  --j->pending;
  j->changed.notify_all();
}
}  // namespace

void publish_in_background(std::function<void()> job) {
  Jobs* j = jobs();
  {
    std::lock_guard<std::mutex> lock(j->mutex);
    ++j->pending;
  }
  try {
    std::thread(run, job).detach();
  } catch (const std::system_error&) {  // no thread to be had: write here
    run(std::move(job));
  }
}

void wait_for_index_cache_writes() {
  Jobs* j = jobs();
  std::unique_lock<std::mutex> lock(j->mutex);
  j->changed.wait(lock, [j] { return j->pending == 0; });
}

}  // namespace mfcore
