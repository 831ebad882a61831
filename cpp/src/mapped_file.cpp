#include "mfcore/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace mfcore {

IndexedDatasetError::IndexedDatasetError(const std::string& file, const std::string& field,
                                         const std::string& problem)
    : std::runtime_error(file + ": " + field + ": " + problem), file_(file), field_(field), problem_(problem) {}

namespace {
int madvise_flag(MappedFile::Access access) {
  switch (access) {
    case MappedFile::Access::Random: return MADV_RANDOM;
    case MappedFile::Access::Sequential: return MADV_SEQUENTIAL;
    default: return MADV_NORMAL;
  }
}

// Closes the descriptor on every exit path of the constructor.
struct Fd {
  int fd;
  ~Fd() { if (fd >= 0) ::close(fd); }
};
}  // namespace

MappedFile::MappedFile(const std::string& path, Access access) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    int err = errno;
    throw IndexedDatasetError(path, "file", err == ENOENT ? "missing (no such file)" : std::string("cannot open: ") + std::strerror(err));
  }
  struct stat st;
  if (::fstat(f.fd, &st) != 0) throw IndexedDatasetError(path, "file", std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw IndexedDatasetError(path, "file", "not a regular file");
  size_t size = static_cast<size_t>(st.st_size);
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, f.fd, 0);
    if (p == MAP_FAILED) throw IndexedDatasetError(path, "file", std::string("cannot mmap: ") + std::strerror(errno));
    data_ = static_cast<const uint8_t*>(p);
  }
  size_ = size;
  path_ = path;
  advise(access);
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)), path_(std::move(other.path_)) {
  other.path_.clear();
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

void MappedFile::advise(Access access) const {
  // Only a hint: a failure changes nothing about correctness.
  if (data_) (void)::madvise(const_cast<uint8_t*>(data_), size_, madvise_flag(access));
}

void MappedFile::release() noexcept {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace mfcore
