#include "mfcore/sample_fields.h"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace mfcore {

void FieldOptions::validate() const {
  if (seq_length < 1) throw std::invalid_argument("seq_length must be >= 1");
  if (add_extra_token != 0 && add_extra_token != 1) throw std::invalid_argument("add_extra_token must be 0 or 1");
  const int64_t lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max();
  if (pad_id < lo || pad_id > hi) throw std::invalid_argument("pad_id must fit int32");
  if (has_eod && (eod_id < lo || eod_id > hi)) throw std::invalid_argument("eod_id must fit int32");
  const bool needs_eod = eod_mask_loss || reset_position_ids || (create_attention_mask && reset_attention_mask) ||
                         compressed_eod_mask;
  if (needs_eod && !has_eod) {
    throw std::invalid_argument(
        "eod_id is required by eod_mask_loss, reset_position_ids, reset_attention_mask and compressed_eod_mask");
  }
  if (compressed_eod_mask && eod_pad_length < 1) throw std::invalid_argument("eod_pad_length must be >= 1");
}

namespace {
// Positions of EOD among the L input tokens, written to `where`; returns their count. EOD is rare:
// blocks of 16 are tested with a vectorised OR first, and only blocks holding one are scanned.
size_t find_eods(const int32_t* text, int64_t L, int32_t eod, int32_t* where) {
  size_t k = 0;
  int64_t i = 0;
  for (; i + 16 <= L; i += 16) {
    int any = 0;
    for (int j = 0; j < 16; ++j) any |= text[i + j] == eod;
    if (!any) continue;
    for (int j = 0; j < 16; ++j) {
      if (text[i + j] == eod) where[k++] = static_cast<int32_t>(i + j);
    }
  }
  for (; i < L; ++i) {
    if (text[i] == eod) where[k++] = static_cast<int32_t>(i);
  }
  return k;
}

void write_position_ids(int32_t* pos, int64_t L, const int32_t* eods, size_t num_eods, bool reset) {
  int64_t start = 0;
  if (reset) {
    for (size_t j = 0; j < num_eods; ++j) {
      const int64_t e = eods[j];
      for (int64_t i = start; i <= e; ++i) pos[i] = static_cast<int32_t>(i - start);
      start = e + 1;
    }
  }
  for (int64_t i = start; i < L; ++i) pos[i] = static_cast<int32_t>(i - start);
}

void write_attention_mask(uint8_t* mask, int64_t L, const int32_t* eods, size_t num_eods, bool reset) {
  int64_t start = 0;  // first position the current query may attend to
  size_t j = 0;
  for (int64_t q = 0; q < L; ++q) {
    uint8_t* row = mask + q * L;
    std::memset(row, 1, static_cast<size_t>(start));
    std::memset(row + start, 0, static_cast<size_t>(q + 1 - start));
    std::memset(row + q + 1, 1, static_cast<size_t>(L - q - 1));
    if (reset && j < num_eods && eods[j] == q) {
      start = q + 1;
      ++j;
    }
  }
}

void write_actual_seq_len(int32_t* out, int64_t L, int64_t length, const int32_t* eods, size_t num_eods) {
  int64_t k = 0;
  for (size_t j = 0; j < num_eods; ++j) {
    if (k == length) break;
    out[k++] = eods[j] + 1;
  }
  const bool ends_at_eod = num_eods > 0 && eods[num_eods - 1] == L - 1;
  const int64_t needed = static_cast<int64_t>(num_eods) + (ends_at_eod ? 0 : 1);
  if (needed > length) {
    throw std::length_error("a sample holds " + std::to_string(needed) + " documents, more than eod_pad_length=" +
                            std::to_string(length) + "; raise eod_pad_length");
  }
  while (k < length) out[k++] = static_cast<int32_t>(L);
}

// Each field is its own branch-free loop over contiguous arrays, so the compiler vectorises it.
void write_tokens(const int32_t* text, int64_t L, int32_t pad, int32_t* out) {
  for (int64_t i = 0; i < L; ++i) out[i] = text[i] == pad ? 0 : text[i];
}

void write_loss_mask(const int32_t* next, int64_t L, int32_t pad, float* out) {
  for (int64_t i = 0; i < L; ++i) out[i] = next[i] == pad ? 0.0f : 1.0f;
}

void write_tokens_labels_loss(const int32_t* text, const FieldOptions& o, const SampleOutputs& out,
                              int32_t* scratch_next, const int32_t* eods, size_t num_eods) {
  const int32_t* next;
  const int64_t L = o.seq_length;
  const int32_t pad = static_cast<int32_t>(o.pad_id);
  // The label of position i is text[i + 1]; with X = 0 the last one has no next token and is pad
  // (then the labels are copied to `next` to append it; with X = 1 they are read in place).
  if (o.add_extra_token) {
    next = text + 1;
  } else {
    std::memcpy(scratch_next, text + 1, static_cast<size_t>(L - 1) * sizeof(int32_t));
    scratch_next[L - 1] = pad;
    next = scratch_next;
  }
  if (out.tokens) write_tokens(text, L, pad, out.tokens);
  if (out.labels) write_tokens(next, L, pad, out.labels);
  if (out.loss_mask) {
    write_loss_mask(next, L, pad, out.loss_mask);
    if (o.eod_mask_loss) {
      for (size_t j = 0; j < num_eods; ++j) out.loss_mask[eods[j]] = 0.0f;
    }
  }
}
}  // namespace

void assemble_fields(const int32_t* text, const FieldOptions& o, const SampleOutputs& out, int32_t* scratch) {
  const int64_t L = o.seq_length;
  int32_t* eods = scratch;           // L + 1 ints
  int32_t* next = scratch + L + 1;   // L + 1 ints
  size_t num_eods = 0;
  const bool need_eods = o.has_eod && ((out.loss_mask && o.eod_mask_loss) || (out.position_ids && o.reset_position_ids) ||
                                       (out.attention_mask && o.reset_attention_mask) || out.actual_seq_len);
  if (need_eods) num_eods = find_eods(text, L, static_cast<int32_t>(o.eod_id), eods);
  write_tokens_labels_loss(text, o, out, next, eods, num_eods);
  if (out.position_ids) write_position_ids(out.position_ids, L, eods, num_eods, o.reset_position_ids);
  if (out.attention_mask) write_attention_mask(out.attention_mask, L, eods, num_eods, o.reset_attention_mask);
  if (out.actual_seq_len) write_actual_seq_len(out.actual_seq_len, L, o.eod_pad_length, eods, num_eods);
}

}  // namespace mfcore
