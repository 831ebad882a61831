#pragma once
// Background publication of index-cache entries. Writing a built entry (hundreds of MB for a long
// run) and waiting for its fsync costs about as long again as building it; a dataset does not need
// the files, so the write is done on a background thread while training starts. The process waits
// for its started writes before it exits (normal exit: static destructor; Python: atexit), so an
// entry is only lost to a kill, and then the next run finds it absent and builds it again.
#include <functional>

namespace mfcore {

// Runs `job` on a background thread; at most a few run at once (the others wait their turn). A
// job must not throw (report its own failures).
void publish_in_background(std::function<void()> job);

// Blocks until every job started by this process has finished.
void wait_for_index_cache_writes();

}  // namespace mfcore
