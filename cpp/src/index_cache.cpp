#include "mfcore/index_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <fstream>
#include <sstream>

#include "mfcore/cache_publisher.h"
#include "mfcore/content_hash.h"
#include "mfcore/npy_file.h"
#include "mfcore/sample_error.h"

namespace mfcore {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

namespace {
std::string errno_text() { return std::strerror(errno); }

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void make_directories(const std::string& dir) {
  std::string partial;
  std::stringstream parts(dir);
  std::string part;
  if (!dir.empty() && dir[0] == '/') partial = "/";
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    partial += part + "/";
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      throw SampleEngineError("cache directory " + dir + " cannot be created: " + partial + ": " + errno_text());
    }
  }
}

void remove_tree(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") ::unlink((dir + "/" + name).c_str());
    }
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

// Removes leftovers of builds that died (their lock is ours now, so nobody is writing them).
void remove_partial_builds(const std::string& dir, const std::string& entry_name) {
  const std::string prefix = entry_name + ".tmp-";
  std::vector<std::string> doomed;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) doomed.push_back(dir + "/" + e->d_name);
    }
    ::closedir(d);
  }
  for (const auto& p : doomed) remove_tree(p);
}

std::string describe(const std::string& kind, const std::string& key_json, const std::string& info_json,
                     const std::vector<std::string>& names, const std::vector<IndexArray>& arrays) {
  std::ostringstream s;
  s << "{\n  \"format\": " << kIndexCacheFormat << ",\n  \"kind\": " << json_string(kind) << ",\n  \"key\": " << key_json
    << ",\n  \"info\": " << info_json << ",\n  \"files\": {";
  for (size_t i = 0; i < names.size(); ++i) {
    s << (i ? ", " : "") << json_string(names[i] + ".npy") << ": {\"dtype\": \"" << index_type_name(arrays[i].type())
      << "\", \"shape\": [" << arrays[i].rows();
    if (arrays[i].cols() != 1) s << ", " << arrays[i].cols();
    s << "]}";
  }
  s << "}\n}\n";
  return s.str();
}

std::string key_line(const std::string& key_json) { return "\n  \"key\": " + key_json + ",\n"; }

// What identifies the files as written: an edit, a copy or a restore changes the ctime at least
// (which, unlike the mtime, cannot be set back by hand).
std::string stamps_line(const std::string& dir, const std::vector<std::string>& names) {
  std::ostringstream s;
  s << "  \"stamps\": {";
  for (size_t i = 0; i < names.size(); ++i) {
    struct stat st;
    if (::stat((dir + "/" + names[i] + ".npy").c_str(), &st) != 0) return "";
    s << (i ? ", " : "") << json_string(names[i] + ".npy") << ": \"" << st.st_ino << ' ' << st.st_size << ' '
      << st.st_mtim.tv_sec << '.' << st.st_mtim.tv_nsec << ' ' << st.st_ctim.tv_sec << '.' << st.st_ctim.tv_nsec << '"';
  }
  s << "}\n";
  return s.str();
}

// The description with the stamps of the files just written (before its closing brace).
std::string with_stamps(const std::string& description, const std::string& stamps) {
  const size_t end = description.rfind("\n}");
  if (stamps.empty() || end == std::string::npos) return description;
  return description.substr(0, end) + ",\n" + stamps + "}\n";
}

// Records the current stamps after the values passed their check (a copied or restored entry is
// checked once, then trusted); best effort: a read-only cache is checked at every open instead.
void restamp(const std::string& path, const std::string& description, const std::string& stamps) {
  const size_t at = description.find(",\n  \"stamps\": ");
  const std::string base = at == std::string::npos ? description : description.substr(0, at) + "\n}\n";
  const std::string tmp = path + "/description.json.tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out << with_stamps(base, stamps);
    if (!out.flush()) {
      ::unlink(tmp.c_str());
      return;
    }
  }
  if (::rename(tmp.c_str(), (path + "/description.json").c_str()) != 0) ::unlink(tmp.c_str());
}

// "" when the mapped entry can be used: unchanged since written, or its values pass `check`.
std::string problem_with(const std::string& path, const std::string& description,
                         const std::vector<std::string>& names, const std::vector<IndexArray>& arrays,
                         const IndexCheck& check) {
  if (!check) return "";
  const std::string stamps = stamps_line(path, names);
  if (!stamps.empty() && description.find(stamps) != std::string::npos) return "";
  std::string problem = check(arrays);
  if (problem.empty() && !stamps.empty()) restamp(path, description, stamps);
  return problem;
}

// The entry's arrays, or false when the entry is absent, partial, or describes something else.
bool try_map(const std::string& path, const std::string& key_json, const std::vector<std::string>& names,
             std::vector<IndexArray>* out, std::string* description_out = nullptr) {
  const std::string description = read_text_file(path + "/description.json");
  if (description_out) *description_out = description;
  if (description.find(key_line(key_json)) == std::string::npos) return false;
  std::vector<IndexArray> arrays;
  try {
    for (const auto& name : names) arrays.push_back(map_npy(path + "/" + name + ".npy"));
  } catch (const std::exception&) {
    return false;
  }
  *out = std::move(arrays);
  return true;
}

class LockFile {
 public:
  explicit LockFile(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw SampleEngineError("cache directory is not writable: cannot create " + path + ": " + errno_text());
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        ::close(fd_);
        throw SampleEngineError("cannot lock " + path + ": " + errno_text());
      }
    }
  }
  ~LockFile() { ::close(fd_); }  // closing releases the lock
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

void write_entry(const std::string& tmp, const std::string& description, const std::vector<std::string>& names,
                 const std::vector<IndexArray>& arrays) {
  if (::mkdir(tmp.c_str(), 0755) != 0) throw SampleEngineError("cannot create " + tmp + ": " + errno_text());
  try {
    // All files written first, then all fsynced: the write-back of one overlaps the copy of the next.
    for (size_t i = 0; i < names.size(); ++i) write_npy(tmp + "/" + names[i] + ".npy", arrays[i], false);
    for (const auto& name : names) fsync_file(tmp + "/" + name + ".npy");
    std::ofstream out(tmp + "/description.json", std::ios::binary);
    out << with_stamps(description, stamps_line(tmp, names));
    out.close();
    if (!out) throw std::runtime_error(tmp + "/description.json: cannot write");
    fsync_path(tmp);
  } catch (const std::exception& e) {
    remove_tree(tmp);
    throw SampleEngineError(std::string("cannot write the index cache: ") + e.what());
  }
}
// Writes the entry, moves it into place and syncs the directory.
void publish_entry(const std::string& tmp, const std::string& path, const std::string& dir,
                   const std::string& description, const std::vector<std::string>& names,
                   const std::vector<IndexArray>& arrays) {
  write_entry(tmp, description, names, arrays);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    remove_tree(tmp);
    throw SampleEngineError("cannot move the index cache entry into place at " + path + ": " + why);
  }
  fsync_path(dir);
}

// Entries of at least this many bytes are written in the background (MFCORE_INDEX_CACHE_ASYNC_BYTES
// overrides it): below, the write costs milliseconds and a caller may rely on the files at once.
size_t async_min_bytes() {
  const char* env = std::getenv("MFCORE_INDEX_CACHE_ASYNC_BYTES");
  return env && *env ? static_cast<size_t>(std::strtoull(env, nullptr, 10)) : size_t(64) << 20;
}
}  // namespace

std::string IndexCache::entry_path(const std::string& kind, const std::string& key_json) const {
  return directory_ + "/" + kind + "-" + hex64(hash64(key_json));
}

CachedIndices IndexCache::get_or_build(const std::string& kind, const std::string& key_json,
                                       const std::string& info_json, const std::vector<std::string>& names,
                                       const std::function<std::vector<IndexArray>()>& build,
                                       const IndexCheck& check) const {
  CachedIndices result;
  if (directory_.empty()) {
    result.arrays = build();
    result.built = true;
    return result;
  }
  result.path = entry_path(kind, key_json);
  const auto usable = [&](std::string* problem) {
    std::string description;
    if (!try_map(result.path, key_json, names, &result.arrays, &description)) return false;
    *problem = problem_with(result.path, description, names, result.arrays, check);
    return problem->empty();
  };
  std::string problem;
  if (usable(&problem)) return result;
  make_directories(directory_);
  auto lock = std::make_unique<LockFile>(result.path + ".lock");
  if (usable(&problem)) return result;  // another process built it
  result.arrays.clear();
  if (!problem.empty()) {
    std::fprintf(stderr, "mfcore: warning: the index cache entry %s is damaged (%s); rebuilding it\n",
                 result.path.c_str(), problem.c_str());
  }
  const std::string name = result.path.substr(directory_.size() + 1);
  remove_partial_builds(directory_, name);
  struct stat st;
  if (::stat(result.path.c_str(), &st) == 0) {  // present but invalid: stale or damaged
    const std::string aside = result.path + ".tmp-stale-" + std::to_string(::getpid());
    if (::rename(result.path.c_str(), aside.c_str()) != 0) {
      throw SampleEngineError("cannot replace the invalid cache entry " + result.path + ": " + errno_text());
    }
    remove_tree(aside);
  }
  std::vector<IndexArray> arrays = build();
  const std::string description = describe(kind, key_json, info_json, names, arrays);
  const std::string tmp = result.path + ".tmp-" + std::to_string(::getpid());
  size_t bytes = 0;
  for (const auto& a : arrays) bytes += a.nbytes();
  if (bytes < async_min_bytes()) {
    publish_entry(tmp, result.path, directory_, description, names, arrays);
    arrays.clear();  // drop the heap copies; serve the mapped files
    if (!try_map(result.path, key_json, names, &result.arrays)) {
      throw SampleEngineError("the index cache entry " + result.path + " does not verify right after writing it");
    }
  } else {
    // Written in the background, holding the lock until the entry is in place (cache_publisher.h);
    // this process serves the arrays from memory meanwhile. A failure there leaves no entry, and
    // the next open builds it again.
    std::shared_ptr<LockFile> held(lock.release());
    auto job = [held, tmp, path = result.path, dir = directory_, description, names, arrays] {
      try {
        publish_entry(tmp, path, dir, description, names, arrays);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "mfcore: warning: the index cache entry %s was not written: %s\n", path.c_str(), e.what());
      }
    };
    publish_in_background(job, held->fd());
    result.arrays = std::move(arrays);
  }
  result.built = true;
  return result;
}

}  // namespace mfcore
