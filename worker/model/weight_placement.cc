#include "worker/model/weight_placement.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace saola::model {
namespace {

class Placer {
 public:
  Placer(kernels::Backend& backend, std::vector<kernels::Buffer>& memory)
      : backend_(backend), memory_(memory) {}

  absl::Status Weight(kernels::Weight& w, const std::string& what) {
    absl::StatusOr<kernels::PlacedWeight> placed = backend_.PlaceWeight(w);
    if (!placed.ok()) return Annotate(placed.status(), what);
    w = placed->weight;
    Keep(std::move(placed->memory));
    return absl::OkStatus();
  }

  absl::Status Norm(const float*& norm, size_t count, const std::string& what) {
    absl::StatusOr<kernels::Buffer> placed = backend_.PlaceFloats(norm, count);
    if (!placed.ok()) return Annotate(placed.status(), what);
    norm = static_cast<const float*>(placed->get());
    Keep(std::move(*placed));
    return absl::OkStatus();
  }

 private:
  static absl::Status Annotate(const absl::Status& s, const std::string& what) {
    return absl::Status(s.code(), absl::StrCat("placing ", what, ": ", s.message()));
  }
  void Keep(kernels::Buffer b) {
    if (b != nullptr && b.use_count() > 0) memory_.push_back(std::move(b));
  }

  kernels::Backend& backend_;
  std::vector<kernels::Buffer>& memory_;
};

}  // namespace

absl::StatusOr<PlacedLlamaWeights> PlaceLlamaWeights(const LlamaWeights& host,
                                                     kernels::Backend& backend) {
  PlacedLlamaWeights out;
  out.weights = host;
  LlamaWeights& w = out.weights;
  Placer place(backend, out.memory);
  const bool tied = host.output.data == host.token_embedding.data;
  const size_t dim = static_cast<size_t>(host.token_embedding.cols);
  RETURN_IF_ERROR(place.Weight(w.token_embedding, "token_embd"));
  if (tied) {
    w.output = w.token_embedding;
  } else {
    RETURN_IF_ERROR(place.Weight(w.output, "output"));
  }
  RETURN_IF_ERROR(place.Norm(w.output_norm, dim, "output_norm"));
  for (size_t i = 0; i < w.layers.size(); ++i) {
    LayerWeights& l = w.layers[i];
    const std::string p = absl::StrCat("blk.", i, ".");
    RETURN_IF_ERROR(place.Norm(l.attn_norm, dim, p + "attn_norm"));
    RETURN_IF_ERROR(place.Norm(l.ffn_norm, dim, p + "ffn_norm"));
    RETURN_IF_ERROR(place.Weight(l.q, p + "attn_q"));
    RETURN_IF_ERROR(place.Weight(l.k, p + "attn_k"));
    RETURN_IF_ERROR(place.Weight(l.v, p + "attn_v"));
    RETURN_IF_ERROR(place.Weight(l.o, p + "attn_output"));
    RETURN_IF_ERROR(place.Weight(l.gate, p + "ffn_gate"));
    RETURN_IF_ERROR(place.Weight(l.up, p + "ffn_up"));
    RETURN_IF_ERROR(place.Weight(l.down, p + "ffn_down"));
  }
  return out;
}

}  // namespace saola::model
