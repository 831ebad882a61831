#include "mfcore/unicode.h"

#include <cstring>

namespace mfcore {

namespace {
constexpr uint32_t kCodePoints = 0x110000;

// One byte per code point (1.1 MB), expanded once from the range table: lookups are on the
// tokenizer's hot path, a binary search per character would dominate the regex matcher.
const uint8_t* category_table() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(kCodePoints);
    const auto* rows = unicode_data::kCategoryRanges;
    for (size_t k = 0; k < unicode_data::kCategoryRangeCount; ++k) {
      uint32_t end = k + 1 < unicode_data::kCategoryRangeCount ? rows[k + 1].first : kCodePoints;
      std::memset(t.data() + rows[k].first, rows[k].category, end - rows[k].first);
    }
    return t;
  }();
  return table.data();
}

const char* const kNames[kCategoryCount] = {
    "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
    "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
}  // namespace

CategoryMask category_mask(const std::string& name) {
  CategoryMask mask = 0;
  for (int c = 0; c < kCategoryCount; ++c) {
    const char* n = kNames[c];
    if ((name.size() == 1 && name[0] == n[0]) || name == n) mask |= CategoryMask(1) << c;
  }
  return mask;
}

GeneralCategory general_category(uint32_t cp) {
  return cp < kCodePoints ? GeneralCategory(category_table()[cp]) : kCn;
}

bool is_white_space(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

const char* unicode_table_version() { return unicode_data::kUnicodeVersion; }

namespace {
// Length of the UTF-8 sequence led by `b` (0: not a lead byte) and the minimum value it may encode.
int sequence_length(uint8_t b, uint32_t& value, uint32_t& minimum) {
  if (b < 0xC2) return 0;
  if (b < 0xE0) { value = b & 0x1F; minimum = 0x80; return 2; }
  if (b < 0xF0) { value = b & 0x0F; minimum = 0x800; return 3; }
  if (b < 0xF5) { value = b & 0x07; minimum = 0x10000; return 4; }
  return 0;
}
}  // namespace

bool decode_utf8(const char* data, size_t size, DecodedText& out) {
  out.cps.clear();
  out.offsets.clear();
  out.cps.reserve(size);
  out.offsets.reserve(size + 1);
  const auto* p = reinterpret_cast<const uint8_t*>(data);
  size_t i = 0;
  while (i < size) {
    out.offsets.push_back(uint32_t(i));
    uint8_t b = p[i];
    if (b < 0x80) {
      out.cps.push_back(b);
      ++i;
      continue;
    }
    uint32_t value = 0, minimum = 0;
    int len = sequence_length(b, value, minimum);
    if (len == 0 || i + len > size) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      value = (value << 6) | (p[i + k] & 0x3F);
    }
    if (value < minimum || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return false;
    out.cps.push_back(value);
    i += len;
  }
  out.offsets.push_back(uint32_t(size));
  return true;
}

}  // namespace mfcore
