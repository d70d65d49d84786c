#include "worker/parallel/step_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace saola::parallel {
namespace {

constexpr uint32_t kMagic = 0x53545031;  // "STP1"

// Reads int32 words from a payload, failing instead of reading past its end.
class WordReader {
 public:
  explicit WordReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  size_t words_left() const { return (bytes_.size() - pos_) / 4; }
  bool Read(int32_t* v) {
    if (bytes_.size() - pos_ < 4) return false;
    std::memcpy(v, bytes_.data() + pos_, 4);
    pos_ += 4;
    return true;
  }
  bool ReadMany(int32_t* out, size_t n) {
    if (words_left() < n) return false;
    if (n > 0) std::memcpy(out, bytes_.data() + pos_, n * 4);
    pos_ += n * 4;
    return true;
  }
  bool at_end() const { return pos_ == bytes_.size(); }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

void Put(std::vector<uint8_t>* out, int32_t v) {
  const size_t at = out->size();
  out->resize(at + 4);
  std::memcpy(out->data() + at, &v, 4);
}

void PutMany(std::vector<uint8_t>* out, std::span<const int32_t> v) {
  const size_t at = out->size();
  out->resize(at + v.size() * 4);
  if (!v.empty()) std::memcpy(out->data() + at, v.data(), v.size() * 4);
}

}  // namespace

std::array<uint8_t, kStepHeaderBytes> EncodeStepHeader(const StepHeader& header) {
  std::array<uint8_t, kStepHeaderBytes> bytes{};
  const uint32_t kind = static_cast<uint32_t>(header.kind);
  std::memcpy(bytes.data(), &kMagic, 4);
  std::memcpy(bytes.data() + 4, &kind, 4);
  std::memcpy(bytes.data() + 8, &header.payload_bytes, 8);
  return bytes;
}

absl::StatusOr<StepHeader> DecodeStepHeader(std::span<const uint8_t> bytes) {
  if (bytes.size() != kStepHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("step header: %d bytes, expected %d", bytes.size(), kStepHeaderBytes));
  }
  uint32_t magic, kind;
  StepHeader header;
  std::memcpy(&magic, bytes.data(), 4);
  std::memcpy(&kind, bytes.data() + 4, 4);
  std::memcpy(&header.payload_bytes, bytes.data() + 8, 8);
  if (magic != kMagic) {
    return absl::InvalidArgumentError(absl::StrFormat("step header: bad magic 0x%08x", magic));
  }
  if (kind < static_cast<uint32_t>(StepMessageKind::kStep) ||
      kind > static_cast<uint32_t>(StepMessageKind::kKeepAlive)) {
    return absl::InvalidArgumentError(absl::StrFormat("step header: unknown kind %d", kind));
  }
  header.kind = static_cast<StepMessageKind>(kind);
  if (header.payload_bytes > kMaxStepPayloadBytes || header.payload_bytes % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("step header: payload of %d bytes", header.payload_bytes));
  }
  return header;
}

void EncodeStep(const model::StepBatch& batch, int32_t num_kv_blocks, int32_t block_size,
                std::vector<uint8_t>* payload) {
  payload->clear();
  Put(payload, num_kv_blocks);
  Put(payload, block_size);
  Put(payload, static_cast<int32_t>(batch.token_ids.size()));
  Put(payload, static_cast<int32_t>(batch.seqs.size()));
  PutMany(payload, batch.token_ids);
  for (const model::SequenceStep& seq : batch.seqs) {
    Put(payload, seq.num_tokens);
    Put(payload, seq.context_len);
    Put(payload, seq.num_logits);
    Put(payload, static_cast<int32_t>(seq.block_table.size()));
  }
  for (const model::SequenceStep& seq : batch.seqs) PutMany(payload, seq.block_table);
}

absl::Status DecodeStep(std::span<const uint8_t> payload, DecodedStep* out) {
  const auto corrupt = [](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("step payload: ", what));
  };
  WordReader r(payload);
  int32_t num_tokens, num_seqs;
  if (!r.Read(&out->num_kv_blocks) || !r.Read(&out->block_size) || !r.Read(&num_tokens) ||
      !r.Read(&num_seqs)) {
    return corrupt("truncated sizes");
  }
  if (out->num_kv_blocks < 1 || out->block_size < 1) return corrupt("bad KV shape");
  // Each size is checked against the words left before anything is allocated for it.
  if (num_tokens < 0 || static_cast<size_t>(num_tokens) > r.words_left()) {
    return corrupt("bad token count");
  }
  out->batch.token_ids.resize(num_tokens);
  if (!r.ReadMany(out->batch.token_ids.data(), num_tokens)) return corrupt("truncated tokens");
  if (num_seqs < 0 || static_cast<size_t>(num_seqs) > r.words_left() / 4) {
    return corrupt("bad sequence count");
  }
  out->batch.seqs.resize(num_seqs);
  std::vector<int32_t> table_sizes(num_seqs);
  int64_t total_seq_tokens = 0, total_table = 0;
  for (int32_t i = 0; i < num_seqs; ++i) {
    model::SequenceStep& seq = out->batch.seqs[i];
    int32_t fields[4];
    if (!r.ReadMany(fields, 4)) return corrupt("truncated sequence");
    seq.num_tokens = fields[0];
    seq.context_len = fields[1];
    seq.num_logits = fields[2];
    table_sizes[i] = fields[3];
    if (seq.num_tokens < 0 || fields[3] < 0) return corrupt("negative sequence size");
    total_seq_tokens += seq.num_tokens;
    total_table += fields[3];
  }
  if (total_seq_tokens != num_tokens) return corrupt("sequence token counts disagree");
  if (static_cast<uint64_t>(total_table) != r.words_left()) {
    return corrupt("block tables do not fill the rest of the payload");
  }
  out->block_tables.resize(total_table);
  if (!r.ReadMany(out->block_tables.data(), total_table)) return corrupt("truncated tables");
  // Spans are set only now: block_tables no longer moves.
  int64_t at = 0;
  for (int32_t i = 0; i < num_seqs; ++i) {
    out->batch.seqs[i].block_table =
        std::span<const int32_t>(out->block_tables).subspan(at, table_sizes[i]);
    at += table_sizes[i];
  }
  return absl::OkStatus();
}

}  // namespace saola::parallel
