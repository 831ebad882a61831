#include "mfcore/cache_publisher.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
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

// Lock descriptors of running jobs, lock-free so that a forked child can read them safely.
constexpr int kSlots = 64;
std::atomic<int> held_fds[kSlots];

int hold(int fd) {
  for (int i = 0; fd >= 0 && i < kSlots; ++i) {
    int free_slot = -1;
    if (held_fds[i].compare_exchange_strong(free_slot, fd)) return i;
  }
  return -1;  // not tracked: a child forked during the job keeps the lock until it exits
}

void after_fork_in_child();

Jobs* jobs() {
  static Jobs* shared = [] {
    for (auto& fd : held_fds) fd.store(-1);
    pthread_atfork(nullptr, nullptr, after_fork_in_child);
    return new Jobs();
  }();
  return shared;
}

// The child has none of the parent's threads: it must not wait for their jobs nor hold their locks.
void after_fork_in_child() {
  for (auto& slot : held_fds) {
    const int fd = slot.exchange(-1);
    if (fd >= 0) ::close(fd);
  }
  new (jobs()) Jobs();
}

// Waits for the writes when the process exits normally (destroyed after main returns / exit()).
struct WaitAtExit {
  ~WaitAtExit() { wait_for_index_cache_writes(); }
} wait_at_exit;

void run(std::function<void()> job, int slot) {
  Jobs* j = jobs();
  {
    std::unique_lock<std::mutex> lock(j->mutex);
    j->changed.wait(lock, [j] { return j->running < kMaxRunning; });
    ++j->running;
  }
  job();
  if (slot >= 0) held_fds[slot].store(-1);  // before the captures close the descriptor
  job = nullptr;
  std::lock_guard<std::mutex> lock(j->mutex);
  --j->running;
  --j->pending;
  j->changed.notify_all();
}
}  // namespace

void publish_in_background(std::function<void()> job, int lock_fd) {
  Jobs* j = jobs();
  {
    std::lock_guard<std::mutex> lock(j->mutex);
    ++j->pending;
  }
  const int slot = hold(lock_fd);
  try {
    std::thread(run, job, slot).detach();
  } catch (const std::system_error&) {  // no thread to be had: write here
    run(std::move(job), slot);
  }
}

void wait_for_index_cache_writes() {
  Jobs* j = jobs();
  std::unique_lock<std::mutex> lock(j->mutex);
  j->changed.wait(lock, [j] { return j->pending == 0; });
}

}  // namespace mfcore
