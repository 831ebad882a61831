#include "dataset_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "mfcore/indexed_dataset.h"
#include "mfcore/mapped_file.h"

namespace mfcore::detail {

namespace {
std::string errno_text() { return std::strerror(errno); }

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string unique_tmp_name(const std::string& target) {
  static std::atomic<uint64_t> counter{0};
  return target + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Plain read/write loop for when copy_file_range cannot be used (other filesystem, old kernel).
void copy_by_reading(int in, int out, uint64_t size, const std::string& src, const std::string& dst) {
  std::vector<char> buf(1 << 20);
  while (size > 0) {
    ssize_t got = ::read(in, buf.data(), size < buf.size() ? size : buf.size());
    if (got <= 0) throw IndexedDatasetError(src, "file", got == 0 ? "shorter than its index says" : "read failed: " + errno_text());
    for (ssize_t done = 0; done < got;) {
      ssize_t put = ::write(out, buf.data() + done, static_cast<size_t>(got - done));
      if (put < 0) throw IndexedDatasetError(dst, "write", errno_text());
      done += put;
    }
    size -= static_cast<uint64_t>(got);
  }
}
}  // namespace

TempFile::TempFile(const std::string& target) : target_(target), tmp_(unique_tmp_name(target)) {
  f_ = std::fopen(tmp_.c_str(), "wbx");
  if (!f_) throw IndexedDatasetError(target_, "file", "cannot create temporary " + tmp_ + ": " + errno_text());
  std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
}

TempFile::~TempFile() {
  if (!committed_) discard();
}

void TempFile::fail(const std::string& what) const { throw IndexedDatasetError(target_, "write", what + ": " + errno_text()); }

void TempFile::write(const void* bytes, size_t size) {
  if (size && std::fwrite(bytes, 1, size, f_) != size) fail("cannot write " + tmp_);
}

void TempFile::append_file(const std::string& src_path, uint64_t size) {
  if (std::fflush(f_) != 0) fail("cannot write " + tmp_);
  int in = ::open(src_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) throw IndexedDatasetError(src_path, "file", "cannot open: " + errno_text());
  int out = ::fileno(f_);
  uint64_t left = size;
  while (left > 0) {
    ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, left, 0);
    if (n > 0) { left -= static_cast<uint64_t>(n); continue; }
    if (n == 0) { ::close(in); throw IndexedDatasetError(src_path, "file", "shorter than its index says"); }
    if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP) {
      try { copy_by_reading(in, out, left, src_path, target_); } catch (...) { ::close(in); throw; }
      break;
    }
    ::close(in);
    fail("cannot copy " + src_path + " into " + tmp_);
  }
  ::close(in);
}

void TempFile::sync_and_close() {
  if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0) fail("cannot flush " + tmp_);
  std::FILE* f = f_;
  f_ = nullptr;
  if (std::fclose(f) != 0) fail("cannot close " + tmp_);
}

void TempFile::discard() noexcept {
  if (f_) std::fclose(f_);
  f_ = nullptr;
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void commit_dataset(TempFile& bin, TempFile& idx) {
  if (::unlink(idx.target().c_str()) != 0 && errno != ENOENT)
    throw IndexedDatasetError(idx.target(), "file", "cannot replace the existing index: " + errno_text());
  if (::rename(bin.tmp_path().c_str(), bin.target().c_str()) != 0)
    throw IndexedDatasetError(bin.target(), "file", "cannot rename " + bin.tmp_path() + ": " + errno_text());
  bin.mark_committed();
  if (::rename(idx.tmp_path().c_str(), idx.target().c_str()) != 0)
    throw IndexedDatasetError(idx.target(), "file", "cannot rename " + idx.tmp_path() + ": " + errno_text());
  idx.mark_committed();
  // The renames are durable only once the directory entry is on disk.
  int dir = ::open(directory_of(idx.target()).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
}

void write_index_header(TempFile& out, DType dtype, uint64_t num_sequences, uint64_t num_document_indices) {
  uint8_t header[kIndexHeaderSize];
  std::memcpy(header, kIndexMagic, 9);
  std::memcpy(header + 9, &kIndexVersion, 8);
  header[17] = static_cast<uint8_t>(dtype);
  std::memcpy(header + 18, &num_sequences, 8);
  std::memcpy(header + 26, &num_document_indices, 8);
  out.write(header, sizeof header);
}

}  // namespace mfcore::detail
