#include "mfcore/npy_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "mfcore/mapped_file.h"

namespace mfcore {

namespace {
constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kPreamble = 10;  // magic, version (2 bytes), header length (uint16)

std::string make_header(const IndexArray& a) {
  std::string shape = a.cols() == 1 ? "(" + std::to_string(a.rows()) + ",)"
                                    : "(" + std::to_string(a.rows()) + ", " + std::to_string(a.cols()) + ")";
  std::string dict = std::string("{'descr': '") + index_type_descr(a.type()) +
                     "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t total = (kPreamble + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - kPreamble - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::string out(kMagic, kMagicLen);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(dict.size() & 0xFF));
  out.push_back(static_cast<char>(dict.size() >> 8));
  return out + dict;
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw std::runtime_error(path + ": cannot write: " + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// The value after `'key': ` in a numpy header dict, up to the next ',' at depth 0 or '}'.
std::string header_value(const std::string& header, const std::string& key) {
  const size_t at = header.find("'" + key + "':");
  if (at == std::string::npos) return "";
  size_t i = at + key.size() + 3;
  while (i < header.size() && header[i] == ' ') ++i;
  size_t j = i;
  int depth = 0;
  while (j < header.size() && !(depth == 0 && (header[j] == ',' || header[j] == '}'))) {
    depth += header[j] == '(';
    depth -= header[j] == ')';
    ++j;
  }
  return header.substr(i, j - i);
}

bool parse_shape(const std::string& s, size_t* rows, size_t* cols) {
  unsigned long long a = 0, b = 1;
  char tail = 0;
  if (std::sscanf(s.c_str(), "(%llu, %llu%c", &a, &b, &tail) == 3 && tail == ')') {
  } else if (b = 1, std::sscanf(s.c_str(), "(%llu,%c", &a, &tail) == 2 && tail == ')') {
  } else {
    return false;
  }
  *rows = a;
  *cols = b;
  return true;
}
}  // namespace

void write_npy(const std::string& path, const IndexArray& array, bool sync) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(path + ": cannot create: " + std::strerror(errno));
  try {
    const std::string header = make_header(array);
    write_all(fd, header.data(), header.size(), path);
    write_all(fd, array.data(), array.nbytes(), path);
    if (sync && ::fsync(fd) != 0) throw std::runtime_error(path + ": fsync failed: " + std::strerror(errno));
    if (!sync) (void)::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);  // start write-back; advisory
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) throw std::runtime_error(path + ": close failed: " + std::strerror(errno));
}

void fsync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error(path + ": fsync failed: " + std::strerror(err));
}

IndexArray map_npy(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path, MappedFile::Access::Random);
  const uint8_t* p = file->data();
  const size_t size = file->size();
  if (size < kPreamble || std::memcmp(p, kMagic, kMagicLen) != 0 || p[6] != 1) {
    throw IndexedDatasetError(path, "header", "not an .npy file of format 1.0");
  }
  const size_t header_len = p[8] | (static_cast<size_t>(p[9]) << 8);
  if (kPreamble + header_len > size) throw IndexedDatasetError(path, "header", "truncated");
  const std::string header(reinterpret_cast<const char*>(p) + kPreamble, header_len);
  IndexType type;
  std::string descr = header_value(header, "descr");
  if (descr.size() < 2 || !index_type_from_descr(descr.substr(1, descr.size() - 2), &type)) {
    throw IndexedDatasetError(path, "descr", "expected '<i2', '<i4', '<u4' or '<i8', found " + descr);
  }
  if (header_value(header, "fortran_order") != "False") throw IndexedDatasetError(path, "fortran_order", "expected False");
  size_t rows = 0, cols = 1;
  if (!parse_shape(header_value(header, "shape"), &rows, &cols)) {
    throw IndexedDatasetError(path, "shape", "expected one or two dimensions, found " + header_value(header, "shape"));
  }
  const size_t data_offset = kPreamble + header_len;
  const size_t expected = data_offset + rows * cols * index_type_size(type);
  if (size != expected || data_offset % 8 != 0) {
    throw IndexedDatasetError(path, "size", "expected " + std::to_string(expected) + " bytes for the shape, found " +
                                                std::to_string(size) + " (partial or corrupt file)");
  }
  return IndexArray(type, rows, cols, p + data_offset, std::shared_ptr<const void>(file, file.get()));
}

}  // namespace mfcore
