#pragma once
// Unicode facts the tokenizer's regex matcher needs: general categories (a generated range table,
// cpp/src/unicode_data.cpp, from tools/gen_unicode_tables.py), White_Space, and UTF-8 decoding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mfcore {

// Values are the table's; kCn (unassigned) is 0 so that "unsure" is the zero category.
enum GeneralCategory : uint8_t {
  kCn, kLu, kLl, kLt, kLm, kLo, kMn, kMc, kMe, kNd, kNl, kNo,
  kPc, kPd, kPs, kPe, kPi, kPf, kPo, kSm, kSc, kSk, kSo,
  kZs, kZl, kZp, kCc, kCf, kCs, kCo, kCategoryCount
};

// A set of general categories as a bit mask (bit c = category c).
using CategoryMask = uint32_t;
constexpr CategoryMask category_bit(GeneralCategory c) { return CategoryMask(1) << c; }

// The mask of a one- or two-letter category name ("L", "Lu", "N", ...); 0 if unknown.
CategoryMask category_mask(const std::string& name);

// General category of a code point (kCn for anything beyond U+10FFFF).
GeneralCategory general_category(uint32_t cp);

// Unicode White_Space (what Oniguruma's \s matches in a Unicode encoding).
bool is_white_space(uint32_t cp);

// The Unicode version of the category table.
const char* unicode_table_version();

// Text decoded to code points, with the byte offset of each (offsets.size() == cps.size() + 1).
struct DecodedText {
  std::vector<uint32_t> cps;
  std::vector<uint32_t> offsets;
};

// Decodes UTF-8 into `out`; false if the bytes are not valid UTF-8 (no surrogates, no overlongs).
bool decode_utf8(const char* data, size_t size, DecodedText& out);

namespace unicode_data {
struct CategoryRange {
  uint32_t first;
  uint8_t category;
};
extern const char* const kUnicodeVersion;
extern const size_t kCategoryRangeCount;
extern const CategoryRange kCategoryRanges[];
}  // namespace unicode_data

}  // namespace mfcore
