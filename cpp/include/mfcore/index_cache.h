#pragma once
// On-disk cache of built indices. Each entry is a directory CACHE/<kind>-<hash>/ holding one .npy
// per array and description.json, where <hash> is hash64 of the canonical JSON description of
// everything that determines the arrays (the description is stored inside and compared on open, so
// a hash collision cannot serve wrong arrays).
//   - warm open: map the .npy files in place (no read, no copy);
//   - writes are atomic: built in CACHE/<entry>.tmp-<pid>, fsynced, renamed into place, on a
//     background thread (cache_publisher.h);
//   - several processes opening the same missing entry at once: an exclusive lock on
//     CACHE/<entry>.lock lets exactly one build it; the others wait, then map it;
//   - an entry that does not verify (missing or truncated file, other description) is removed and
//     rebuilt, never used. A read-only directory with a valid entry is fine.
//   - values: description.json records each file's stamp (inode, size, mtime, ctime) as written. A
//     file whose stamp still matches is trusted as is (the warm open stays O(1)); any other (edited,
//     copied, restored) has every value checked by the caller's `check` before use: a passing entry
//     gets its stamps recorded anew (checked once, then trusted; best effort), a failing one is
//     rebuilt with a warning. The datasets' reads stay bounds-checked for anything else.
#include <functional>
#include <string>
#include <vector>

#include "mfcore/index_array.h"

namespace mfcore {

constexpr int kIndexCacheFormat = 1;

// Returns "" when the mapped arrays are sound, else what is wrong with them.
using IndexCheck = std::function<std::string(const std::vector<IndexArray>&)>;

struct CachedIndices {
  std::vector<IndexArray> arrays;  // in the order of `names`
  bool built = false;              // true when this call built them
  std::string path;                // the entry directory ("" without a cache)
};

class IndexCache {
 public:
  // An empty directory means no cache: every call builds in memory.
  explicit IndexCache(std::string directory) : directory_(std::move(directory)) {}
  const std::string& directory() const { return directory_; }

  // `kind` names the entry ("GPTDataset-train"); `key_json` is the canonical description that is
  // hashed; `info_json` holds readable facts that do not change the arrays (paths, sizes).
  // Throws SampleEngineError when the directory cannot be created or locked. A built entry is
  // written in the background (see cache_publisher.h): the arrays returned are then in memory, and
  // the entry appears, complete and synced, once written; the lock is held until then.
  CachedIndices get_or_build(const std::string& kind, const std::string& key_json, const std::string& info_json,
                             const std::vector<std::string>& names,
                             const std::function<std::vector<IndexArray>()>& build,
                             const IndexCheck& check = nullptr) const;

  std::string entry_path(const std::string& kind, const std::string& key_json) const;

 private:
  std::string directory_;
};

// Escapes a string for a JSON string literal (quotes included).
std::string json_string(const std::string& s);

}  // namespace mfcore
