// Tensor-parallel sharding: which slice of each weight a rank holds, and the collective that sums
// the partial results of row-split layers.
//
// Rank r of N holds query heads [r*H/N, (r+1)*H/N) and the matching columns of the attention
// output projection, FFN columns [r*F/N, (r+1)*F/N) of gate/up and the matching columns of down.
// KV heads are split the same way when N divides them; when N is a multiple of the KV head count
// each KV head is replicated on N / num_kv_heads consecutive ranks. Embedding, norms and the output
// projection are replicated. World size 1 is the whole model and needs no communication.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace saola::model {

struct ShardSpec {
  int32_t rank = 0;
  int32_t world_size = 1;
};

/// Sums float buffers across the ranks of a shard group. The shard-group issue adds host and NCCL
/// implementations; one rank needs none.
class Communicator {
 public:
  virtual ~Communicator() = default;
  /// data[0, count) becomes the element-wise sum over all ranks. Errors when a peer is lost.
  virtual absl::Status AllReduceSum(float* data, size_t count) = 0;
};

/// The head/column ranges rank `spec.rank` owns, derived once from the config.
struct ShardLayout {
  int32_t q_head_begin = 0;
  int32_t num_q_heads = 0;
  int32_t kv_head_begin = 0;
  int32_t num_kv_heads = 0;
  int32_t ffn_begin = 0;
  int32_t ffn_dim = 0;
};

}  // namespace saola::model
