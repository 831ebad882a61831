#pragma once
// The training fields of one sample, computed from its L + X tokens of text as Megatron's
// GPTDataset and MindSpore Transformers do (docs/specs/gpt-sampling.md section 8): inputs,
// shifted labels, loss mask, position ids, and the optional attention masks.
#include <cstdint>

namespace mfcore {

struct FieldOptions {
  int64_t seq_length = 0;        // L
  int add_extra_token = 1;       // X
  int64_t pad_id = -1;           // pad positions: loss 0, then written as token 0
  bool has_eod = false;
  int64_t eod_id = 0;
  bool eod_mask_loss = false;        // loss 0 where the input token is EOD
  bool reset_position_ids = false;   // positions restart after each EOD
  bool reset_attention_mask = false; // no attention across an EOD (block diagonal)
  bool create_attention_mask = false;
  bool compressed_eod_mask = false;  // actual_seq_len: document end positions
  int64_t eod_pad_length = 128;      // fixed length of actual_seq_len

  // Throws std::invalid_argument when an option needs eod_id and it is unset, or a length is bad.
  void validate() const;
};

// Where one sample's fields go; a null pointer skips that field. Arrays are L long except
// attention_mask (L * L bytes, 1 = masked) and actual_seq_len (eod_pad_length).
struct SampleOutputs {
  int32_t* tokens = nullptr;
  int32_t* labels = nullptr;
  float* loss_mask = nullptr;
  int32_t* position_ids = nullptr;
  uint8_t* attention_mask = nullptr;
  int32_t* actual_seq_len = nullptr;
};

// `text` holds L + X tokens (already padded with pad_id); `scratch` at least 2 * (L + 1) ints.
// Throws std::length_error when the sample holds more documents than eod_pad_length allows.
void assemble_fields(const int32_t* text, const FieldOptions& options, const SampleOutputs& out, int32_t* scratch);

}  // namespace mfcore
