#pragma once
// The .npy files of the index cache: numpy's format 1.0 (so `numpy.load(path, mmap_mode="r")` opens
// them for inspection), data aligned to 64 bytes so a mapping can be used in place.
#include <string>

#include "mfcore/index_array.h"

namespace mfcore {

// Writes `array` to `path` (created or truncated) and fsyncs it. With sync = false it only starts
// the write-back (the caller fsyncs later, e.g. after writing the other files of a cache entry, so
// the disk writes of one file overlap the copying of the next). Throws std::runtime_error naming
// the file on any I/O failure.
void write_npy(const std::string& path, const IndexArray& array, bool sync = true);

// fsync of a written file, by path. Throws std::runtime_error naming the file on failure.
void fsync_file(const std::string& path);

// Memory-maps an .npy written by write_npy (or numpy: little-endian int16/int32/uint32/int64, C
// order, one or two dimensions). Throws IndexedDatasetError naming the file when the header does
// not parse or the file size does not match the shape (a truncated or partial file).
IndexArray map_npy(const std::string& path);

}  // namespace mfcore
