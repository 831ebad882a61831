#pragma once
// Helpers shared by the indexed dataset tests: a scratch directory and raw .idx byte surgery.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mfcore/indexed_builder.h"

namespace idxtest {

// A fresh directory under $TMPDIR, removed (recursively) at exit of the scope.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/mfcore-idx-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    path = ::mkdtemp(buf.data());
  }
  ~ScratchDir() { (void)std::system(("rm -rf '" + path + "'").c_str()); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

template <class T>
void poke(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

// Writes documents of int32 tokens: doc d has sequences of the given lengths, token = 1000*d + k.
inline void write_docs(const std::string& prefix, const std::vector<std::vector<size_t>>& docs,
                       mfcore::DType dtype = mfcore::DType::Int32) {
  mfcore::IndexedDatasetBuilder b(prefix, dtype);
  for (size_t d = 0; d < docs.size(); ++d) {
    for (size_t len : docs[d]) {
      std::vector<uint8_t> tokens(len * mfcore::dtype_size(dtype));
      for (size_t k = 0; k < len; ++k) {
        int64_t v = static_cast<int64_t>(10 * d + k % 10);
        std::memcpy(tokens.data() + k * mfcore::dtype_size(dtype), &v, mfcore::dtype_size(dtype));
      }
      b.add_sequence(tokens.data(), len);
    }
    b.end_document();
  }
  b.finalize();
}

}  // namespace idxtest
