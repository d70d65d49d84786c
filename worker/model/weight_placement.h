// Placing a model's weights where its backend's ops read them, once, after loading.
//
// LoadLlamaWeights returns views into the mmap'd GGUF, already cut to this rank's tensor-parallel
// slice. PlaceLlamaWeights hands every matrix and norm to Backend::PlaceWeight / PlaceFloats: the
// CPU backend returns the same views (nothing is copied, so CPU results are unchanged); the CUDA
// backend copies each one to device memory, only the slice (a strided column slice is packed on
// the way). The placed memory is owned by the result and must outlive every use of its views.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/model/llama_weights.h"

namespace saola::model {

struct PlacedLlamaWeights {
  LlamaWeights weights;                // views the backend's ops can read
  std::vector<kernels::Buffer> memory;  // what holds them (empty on the CPU)
};

/// Places every weight and norm of `host` for `backend`. A matrix that appears twice (tied
/// input and output embeddings) is placed once. Errors from the backend (out of memory, a type it
/// cannot multiply) are returned with the tensor's role in the message.
absl::StatusOr<PlacedLlamaWeights> PlaceLlamaWeights(const LlamaWeights& host,
                                                     kernels::Backend& backend);

}  // namespace saola::model
