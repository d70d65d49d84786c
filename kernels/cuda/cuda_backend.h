// The CUDA implementation of kernels::Backend: every op as CUDA kernels on one stream of one
// device (kernels/cuda/*.cu), with the host-side bookkeeping here.
//
// Memory contract (the parts kernels/backend.h leaves to the backend):
// * Float activations, the KV cache, norm weights and Weight::data are DEVICE memory: activations
//   and the KV cache come from Allocate (cudaMalloc, zeroed); weights from UploadWeight and norm
//   vectors from UploadFloats, which the model reaches through PlaceWeight / PlaceFloats once
//   at load and keeps alive for its lifetime (see "Wiring the model" below).
// * Small integer arrays are HOST memory, as the model builds them per step: Embed's ids,
//   Rope's positions, StoreKv's slots and AttentionSeq::block_table. Each call copies them to a
//   device mirror on the stream; a mirror remembers the bytes it last sent and skips the copy
//   when they are unchanged, so the per-layer Rope/StoreKv/Attention calls of one step copy once
//   per step, not once per layer.
// * Calls are asynchronous on the backend's stream, in call order. Host reads of device results
//   go through CopyToHost (which waits) or Synchronize.
// * Errors: the Backend methods return void, so a failed launch or copy is remembered (the first
//   one) and returned by Synchronize / CopyToHost; precondition violations (an unsupported weight
//   type, a head_dim this backend does not handle) abort through SAOLA_CHECK as on the CPU.
//
// Wiring the model: the model places its weights through the Backend's placement hooks
// (PlaceWeight / PlaceFloats, here UploadWeight / UploadFloats: only the rank's slice is copied),
// gathers the rows that need logits on the device (an Embed over an F32 view of its activations)
// and reads the logits back with CopyToHost (worker/model/weight_placement.h, llama_model.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/cuda/gemm_options.h"

// cudaStream_t without including the CUDA headers in every user of this one.
struct CUstream_st;

namespace saola::kernels::cuda {

namespace internal {
class CublasGemm;
}

/// A weight in device memory. `weight.data` points into `memory`, rows packed
/// (row_stride_bytes == RowBytes(type, cols)); keep `memory` alive while `weight` is used.
using DeviceWeight = PlacedWeight;

/// True if the CUDA matmul/embedding kernels handle `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_1;
/// the quantized types need cols % 32 == 0).
bool CudaMatMulSupports(DType type);

/// Number of CUDA devices the runtime sees; 0 when there is no device or no driver.
int CudaDeviceCount();

class CudaBackend final : public Backend {
 public:
  /// The largest head_dim Attention handles (it must also be even).
  static constexpr int32_t kMaxHeadDim = 256;

  /// A backend on device `device` with its own stream. FAILED_PRECONDITION when the device does
  /// not exist or the driver is missing; INVALID_ARGUMENT when SAOLA_CUDA_GEMM is set to
  /// something other than auto, tiled or cublas (gemm_options.h).
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(int device = 0);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  // ---- kernels::Backend (contracts in kernels/backend.h; pointers as in the file comment) ----
  Buffer Allocate(size_t bytes) override;
  void MatMul(const Weight& w, const float* x, int64_t n, float* y) override;
  void MatMulShared(std::span<const Weight> ws, const float* x, int64_t n,
                    std::span<float* const> ys) override;
  void Embed(const Weight& table, const int32_t* ids, int64_t n, float* out) override;
  void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
               float* out) override;
  void AddRmsNorm(float* residual, const float* delta, const float* weight, int64_t n, int64_t dim,
                  float eps, float* out) override;
  void Add(float* x, const float* delta, int64_t n, int64_t dim) override;
  void Rope(float* x, const int32_t* positions, int64_t n, int32_t num_heads, int32_t head_dim,
            const RopeParams& params) override;
  void SiluMul(const float* gate, const float* up, int64_t n, int64_t dim, float* out) override;
  void StoreKv(const float* k, const float* v, const int32_t* slots, int64_t n,
               const KvLayer& kv) override;
  /// Precondition: kv.head_dim even and <= kMaxHeadDim.
  void Attention(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                 int32_t num_heads, float scale, float* out) override;

  // ---- Placement (kernels/backend.h): weights and norms are uploaded, results copied back ----
  bool HostAddressable() const override { return false; }
  absl::StatusOr<PlacedWeight> PlaceWeight(const Weight& host) override {
    return UploadWeight(host);
  }
  absl::StatusOr<Buffer> PlaceFloats(const float* host, size_t count) override {
    return UploadFloats(host, count);
  }

  // ---- Device memory and transfers ----

  /// Copies a host weight (honouring row_stride_bytes, so a tensor-parallel column slice uploads
  /// only its own blocks) into packed device memory. INVALID_ARGUMENT for an unsupported type.
  absl::StatusOr<DeviceWeight> UploadWeight(const Weight& host);
  /// A device copy of `count` host floats (norm weights).
  absl::StatusOr<Buffer> UploadFloats(const float* host, size_t count);
  /// Host -> device, ordered on the stream (the host bytes may be reused when this returns).
  absl::Status CopyToDevice(void* device_dst, const void* host_src, size_t bytes);
  /// Device -> host after all queued work; returns the first error seen so far.
  absl::Status CopyToHost(void* host_dst, const void* device_src, size_t bytes) override;
  /// Device -> device, ordered on the stream.
  absl::Status CopyOnDevice(void* device_dst, const void* device_src, size_t bytes);

  /// Greedy sampling on the device: out[i] = argmax of logits row i (rows x vocab floats in
  /// device memory), the lowest id on ties, as the engine's sampler. `out` is host memory.
  absl::Status Argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out);

  // ---- Sampling next to the logits (kernels/backend.h, kernels/cuda/sampling.h) ----
  bool SamplesRows() const override { return samples_rows_; }
  /// Rows all greedy: the argmax kernel; otherwise the sampling kernel with each row's settings.
  /// Only the ids are copied back.
  absl::Status SampleRows(const float* logits, int64_t vocab, std::span<const RowSampling> params,
                          int32_t* out) override;
  /// Off: SamplesRows() is false, so the engine copies every logits row back and samples on the
  /// host (to compare the two, or to rule the device sampler out).
  void set_samples_rows(bool on) { samples_rows_ = on; }

  /// Waits for all queued work; the first CUDA error since the backend was made.
  absl::Status Synchronize();

  /// Which GEMM MatMul / MatMulShared run for prefill (gemm_options.h); Create starts from
  /// CudaGemmOptionsFromEnv(). Takes effect for the next call.
  void set_gemm_options(const CudaGemmOptions& options) { gemm_options_ = options; }
  const CudaGemmOptions& gemm_options() const { return gemm_options_; }

  int device() const { return device_; }
  /// The stream every call is queued on (cudaStream_t), e.g. to time kernels with events.
  CUstream_st* stream() const { return stream_; }

 private:
  // A device copy of a small host array, re-sent only when its bytes change.
  class Mirror {
   public:
    Mirror() = default;
    ~Mirror();
    Mirror(const Mirror&) = delete;
    Mirror& operator=(const Mirror&) = delete;
    // Device pointer holding `bytes` from `host`; null (and the backend's error set) on failure.
    const void* Send(CudaBackend& backend, const void* host, size_t bytes);

   private:
    void* device_ = nullptr;
    size_t capacity_ = 0;
    std::vector<uint8_t> last_;
    bool valid_ = false;
  };

  CudaBackend(int device, CUstream_st* stream, const CudaGemmOptions& gemm_options);
  // Records the first failure; returns true when `status` (a cudaError_t) is success.
  bool Check(int status, const char* what);
  // Makes this backend's device current on the calling thread. CUDA's current device is per
  // thread, and the engine calls the model from its own thread, which starts on device 0; every
  // entry point binds first. Cheap: cudaGetDevice reads thread state, and the set happens only
  // when another device is current.
  void Bind();
  // Device memory for `rows` token ids (grow-only); null (and the error set) on failure.
  int32_t* TokenBuffer(int64_t rows);
  // MatMul through cuBLAS on dequantized tiles; the handle is made on first use (a backend that
  // only decodes holds no handle, workspace or scratch) and its errors are recorded as the CUDA
  // ones.
  void CublasMatMul(const Weight& w, const float* x, int64_t n, float* y);
  // Ensures the split-attention workspace holds `floats` floats.
  float* Workspace(size_t floats);

  int device_;
  CUstream_st* stream_;
  absl::Status error_;
  Mirror ids_, positions_, slots_, attention_items_, attention_merges_, block_tables_,
      row_sampling_;
  void* workspace_ = nullptr;
  size_t workspace_floats_ = 0;
  int32_t* tokens_ = nullptr;  // the sampled ids, before their copy to the host
  size_t tokens_capacity_ = 0;
  bool samples_rows_ = true;
  CudaGemmOptions gemm_options_;
  std::unique_ptr<internal::CublasGemm> cublas_;  // null until the first cuBLAS matmul
};

}  // namespace saola::kernels::cuda
