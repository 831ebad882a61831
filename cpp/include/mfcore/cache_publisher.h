#pragma once
// Background publication of index-cache entries. Writing a built entry (hundreds of MB for a long
// run) and waiting for its fsync costs about as long again as building it; a dataset does not need
// the files, so the write is done on a background thread while training starts. The process waits
// for its started writes before it exits (normal exit: static destructor; Python: atexit), so an
// entry is only lost to a kill, and then the next run finds it absent and builds it again.
#include <functional>

namespace mfcore {

// Runs `job` on a background thread; at most a few run at once (the others wait their turn). A
// job must not throw (report its own failures). `lock_fd` (or -1) is a descriptor holding a file
// lock that the job's captures close when they are destroyed: a child forked meanwhile closes its
// copy at once, so it cannot keep the lock held after the job is done.
void publish_in_background(std::function<void()> job, int lock_fd = -1);

// Blocks until every job started by this process has finished.
void wait_for_index_cache_writes();

}  // namespace mfcore
