// CudaBackend: host-side argument checks, copies of the per-step host arrays to device mirrors,
// attention planning, and the launches (kernels/cuda/launch.h) on the backend's stream.
#include "kernels/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/gemm_cublas.h"
#include "kernels/cuda/launch.h"
#include "kernels/cuda/sampling.h"

namespace saola::kernels::cuda {
namespace {

absl::Status CudaError(cudaError_t e, const char* what) {
  return absl::InternalError(absl::StrCat("cuda: ", what, ": ", cudaGetErrorString(e)));
}

}  // namespace

bool CudaMatMulSupports(DType type) {
  return type == DType::kF32 || type == DType::kF16 || type == DType::kBF16 ||
         type == DType::kQ8_0 || type == DType::kQ4_0 || type == DType::kQ4_1;
}

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(int device) {
  const int count = CudaDeviceCount();
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("cuda: device ", device, " requested, ", count, " available"));
  }
  ASSIGN_OR_RETURN(const CudaGemmOptions gemm_options, CudaGemmOptionsFromEnv());
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    return CudaError(e, "cudaSetDevice");
  }
  cudaStream_t stream = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking); e != cudaSuccess) {
    return CudaError(e, "cudaStreamCreate");
  }
  return std::unique_ptr<CudaBackend>(new CudaBackend(device, stream, gemm_options));
}

CudaBackend::CudaBackend(int device, CUstream_st* stream, const CudaGemmOptions& gemm_options)
    : device_(device), stream_(stream), gemm_options_(gemm_options) {}

CudaBackend::~CudaBackend() {
  Bind();
  cudaStreamSynchronize(stream_);
  cublas_.reset();  // before its stream goes
  cudaFree(workspace_);
  cudaFree(tokens_);
  cudaStreamDestroy(stream_);
}

CudaBackend::Mirror::~Mirror() { cudaFree(device_); }

const void* CudaBackend::Mirror::Send(CudaBackend& backend, const void* host, size_t bytes) {
  if (bytes == 0) return device_;
  if (valid_ && last_.size() == bytes && std::memcmp(last_.data(), host, bytes) == 0) {
    return device_;  // the device already holds these bytes (copies are ordered on the stream)
  }
  if (bytes > capacity_) {
    // cudaFree waits for the device, so kernels still reading the old mirror finish first. The
    // remembered bytes go with it: if the allocation fails they must not be "already sent".
    const size_t want = std::max(bytes, 2 * capacity_);
    valid_ = false;
    cudaFree(device_);
    device_ = nullptr;
    capacity_ = 0;
    if (!backend.Check(cudaMalloc(&device_, want), "cudaMalloc (mirror)")) return nullptr;
    capacity_ = want;
  }
  valid_ = false;
  // From pageable host memory the copy has consumed `host` when it returns.
  if (!backend.Check(cudaMemcpyAsync(device_, host, bytes, cudaMemcpyHostToDevice, backend.stream_),
                     "cudaMemcpyAsync (mirror)")) {
    return nullptr;
  }
  last_.assign(static_cast<const uint8_t*>(host), static_cast<const uint8_t*>(host) + bytes);
  valid_ = true;
  return device_;
}

void CudaBackend::Bind() {
  int current = -1;  // cudaGetDevice reads the runtime's thread state: no driver call
  if (cudaGetDevice(&current) == cudaSuccess && current == device_) return;
  Check(cudaSetDevice(device_), "cudaSetDevice");
}

bool CudaBackend::Check(int status, const char* what) {
  const auto e = static_cast<cudaError_t>(status);
  if (e == cudaSuccess) return true;
  if (error_.ok()) error_ = CudaError(e, what);
  return false;
}

float* CudaBackend::Workspace(size_t floats) {
  if (floats <= workspace_floats_) return static_cast<float*>(workspace_);
  cudaFree(workspace_);
  workspace_ = nullptr;
  workspace_floats_ = 0;
  if (!Check(cudaMalloc(&workspace_, floats * sizeof(float)), "cudaMalloc (workspace)")) {
    return nullptr;
  }
  workspace_floats_ = floats;
  return static_cast<float*>(workspace_);
}

Buffer CudaBackend::Allocate(size_t bytes) {
  Bind();
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(bytes, 1)) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  // On the backend's stream: it does not wait for the legacy default stream (it is created
  // non-blocking), so a plain cudaMemset could land after later copies into this buffer.
  if (cudaMemsetAsync(p, 0, bytes, stream_) != cudaSuccess) {
    cudaFree(p);
    return nullptr;
  }
  return Buffer(p, [](void* q) { cudaFree(q); });
}

void CudaBackend::MatMul(const Weight& w, const float* x, int64_t n, float* y) {
  Bind();
  SAOLA_CHECK(CudaMatMulSupports(w.type));
  SAOLA_CHECK(GetDTypeInfo(w.type).block_elems == 1 || w.cols % 32 == 0);
  if (n > internal::kMaxGemvTokens &&
      ChooseCudaGemmPath(gemm_options_, n) == CudaGemmPath::kCublas) {
    CublasMatMul(w, x, n, y);
    return;
  }
  internal::LaunchMatMul(w, x, n, y, stream_);
  Check(cudaGetLastError(), "MatMul");
}

void CudaBackend::CublasMatMul(const Weight& w, const float* x, int64_t n, float* y) {
  absl::Status status;
  if (cublas_ == nullptr) {
    absl::StatusOr<std::unique_ptr<internal::CublasGemm>> made =
        internal::CublasGemm::Create(stream_);
    if (made.ok()) {
      cublas_ = *std::move(made);
    } else {
      status = made.status();
    }
  }
  if (cublas_ != nullptr) status = cublas_->Run(w, x, n, y, gemm_options_.cublas_scratch_bytes);
  if (!status.ok() && error_.ok()) error_ = status;
}

void CudaBackend::MatMulShared(std::span<const Weight> ws, const float* x, int64_t n,
                               std::span<float* const> ys) {
  Bind();
  SAOLA_CHECK(ws.size() == ys.size());
  // One matmul per weight on the same stream, each choosing its path as MatMul does; x is not
  // transformed, so nothing is shared.
  for (size_t i = 0; i < ws.size(); ++i) MatMul(ws[i], x, n, ys[i]);
}

void CudaBackend::Embed(const Weight& table, const int32_t* ids, int64_t n, float* out) {
  Bind();
  SAOLA_CHECK(CudaMatMulSupports(table.type));
  if (n <= 0) return;
  const void* d_ids = ids_.Send(*this, ids, static_cast<size_t>(n) * sizeof(int32_t));
  if (d_ids == nullptr) return;
  internal::LaunchEmbed(table, static_cast<const int32_t*>(d_ids), n, out, stream_);
  Check(cudaGetLastError(), "Embed");
}

void CudaBackend::RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps,
                          float* out) {
  Bind();
  internal::LaunchRmsNorm(x, weight, n, dim, eps, out, stream_);
  Check(cudaGetLastError(), "RmsNorm");
}

void CudaBackend::AddRmsNorm(float* residual, const float* delta, const float* weight, int64_t n,
                             int64_t dim, float eps, float* out) {
  Bind();
  internal::LaunchAddRmsNorm(residual, delta, weight, n, dim, eps, out, stream_);
  Check(cudaGetLastError(), "AddRmsNorm");
}

void CudaBackend::Add(float* x, const float* delta, int64_t n, int64_t dim) {
  Bind();
  internal::LaunchAdd(x, delta, n, dim, stream_);
  Check(cudaGetLastError(), "Add");
}

void CudaBackend::Rope(float* x, const int32_t* positions, int64_t n, int32_t num_heads,
                       int32_t head_dim, const RopeParams& params) {
  Bind();
  if (params.rope_dim / 2 == 0 || n <= 0) return;
  SAOLA_CHECK(params.rope_dim <= head_dim);
  const void* d_pos = positions_.Send(*this, positions, static_cast<size_t>(n) * sizeof(int32_t));
  if (d_pos == nullptr) return;
  // The same float expression as the CPU (kernels/cpu/rope.cc), so both start from equal scales.
  const float theta_scale =
      std::pow(params.freq_base, -2.0f / static_cast<float>(params.rope_dim));
  internal::LaunchRope(x, static_cast<const int32_t*>(d_pos), n, num_heads, head_dim, params.mode,
                       params.rope_dim, theta_scale, params.freq_scale, stream_);
  Check(cudaGetLastError(), "Rope");
}

void CudaBackend::SiluMul(const float* gate, const float* up, int64_t n, int64_t dim, float* out) {
  Bind();
  internal::LaunchSiluMul(gate, up, n, dim, out, stream_);
  Check(cudaGetLastError(), "SiluMul");
}

void CudaBackend::StoreKv(const float* k, const float* v, const int32_t* slots, int64_t n,
                          const KvLayer& kv) {
  Bind();
  if (n <= 0) return;
  const void* d_slots = slots_.Send(*this, slots, static_cast<size_t>(n) * sizeof(int32_t));
  if (d_slots == nullptr) return;
  internal::LaunchStoreKv(k, v, static_cast<const int32_t*>(d_slots), n, kv, stream_);
  Check(cudaGetLastError(), "StoreKv");
}

void CudaBackend::Attention(const float* q, const KvLayer& kv, std::span<const AttentionSeq> seqs,
                            int32_t num_heads, float scale, float* out) {
  Bind();
  SAOLA_CHECK(kv.num_kv_heads > 0 && num_heads % kv.num_kv_heads == 0);
  SAOLA_CHECK(kv.head_dim > 0 && kv.head_dim % 2 == 0 && kv.head_dim <= kMaxHeadDim);
  AttentionPlan plan;
  PlanAttention(seqs, kv.block_size, num_heads / kv.num_kv_heads, plan);
  if (plan.items.empty()) return;

  internal::AttentionArgs args;
  args.q = q;
  args.out = out;
  args.kv = kv;
  args.num_heads = num_heads;
  args.scale = scale;
  args.num_items = static_cast<int32_t>(plan.items.size());
  args.num_merges = static_cast<int32_t>(plan.merges.size());
  args.num_partials = plan.num_partials;
  args.heads_per_block = plan.heads_per_block;
  args.head_chunks = plan.head_chunks;
  args.items = static_cast<const AttentionItem*>(attention_items_.Send(
      *this, plan.items.data(), plan.items.size() * sizeof(AttentionItem)));
  args.tables = static_cast<const int32_t*>(
      block_tables_.Send(*this, plan.tables.data(), plan.tables.size() * sizeof(int32_t)));
  if (args.items == nullptr || args.tables == nullptr) return;
  if (!plan.merges.empty()) {
    args.merges = static_cast<const AttentionMerge*>(attention_merges_.Send(
        *this, plan.merges.data(), plan.merges.size() * sizeof(AttentionMerge)));
    args.workspace = Workspace(static_cast<size_t>(plan.num_partials) * num_heads *
                               (static_cast<size_t>(kv.head_dim) + 2));
    if (args.merges == nullptr || args.workspace == nullptr) return;
  }
  internal::LaunchAttention(args, stream_);
  Check(cudaGetLastError(), "Attention");
}

absl::StatusOr<DeviceWeight> CudaBackend::UploadWeight(const Weight& host) {
  Bind();
  if (!CudaMatMulSupports(host.type)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cuda: weights of type ", std::string(GetDTypeInfo(host.type).name), " are not supported"));
  }
  if (GetDTypeInfo(host.type).block_elems != 1 && host.cols % 32 != 0) {
    return absl::InvalidArgumentError("cuda: quantized weight columns must be a multiple of 32");
  }
  const size_t row_bytes = RowBytes(host.type, host.cols);
  DeviceWeight out;
  out.memory = Allocate(row_bytes * static_cast<size_t>(std::max<int64_t>(host.rows, 1)));
  if (out.memory == nullptr) return absl::ResourceExhaustedError("cuda: out of memory for weight");
  if (host.rows > 0 && row_bytes > 0) {
    // Ordered on the stream, after the zeroing; pageable host memory is consumed on return.
    const cudaError_t e =
        cudaMemcpy2DAsync(out.memory.get(), row_bytes, host.data, host.row_stride_bytes,
                          row_bytes, static_cast<size_t>(host.rows), cudaMemcpyHostToDevice,
                          stream_);
    if (e != cudaSuccess) return CudaError(e, "cudaMemcpy2DAsync (weight)");
  }
  out.weight = host;
  out.weight.data = out.memory.get();
  out.weight.row_stride_bytes = row_bytes;
  return out;
}

absl::StatusOr<Buffer> CudaBackend::UploadFloats(const float* host, size_t count) {
  Bind();
  Buffer b = Allocate(count * sizeof(float));
  if (b == nullptr) return absl::ResourceExhaustedError("cuda: out of memory for floats");
  if (count > 0) {
    const cudaError_t e = cudaMemcpyAsync(b.get(), host, count * sizeof(float),
                                          cudaMemcpyHostToDevice, stream_);
    if (e != cudaSuccess) return CudaError(e, "cudaMemcpyAsync (floats)");
  }
  return b;
}

absl::Status CudaBackend::CopyToDevice(void* device_dst, const void* host_src, size_t bytes) {
  Bind();
  if (bytes == 0) return absl::OkStatus();
  const cudaError_t e =
      cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream_);
  return e == cudaSuccess ? absl::OkStatus() : CudaError(e, "cudaMemcpyAsync (to device)");
}

absl::Status CudaBackend::CopyToHost(void* host_dst, const void* device_src, size_t bytes) {
  Bind();
  if (bytes > 0) {
    Check(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream_),
          "cudaMemcpyAsync (to host)");
  }
  return Synchronize();
}

absl::Status CudaBackend::CopyOnDevice(void* device_dst, const void* device_src, size_t bytes) {
  Bind();
  if (bytes == 0) return absl::OkStatus();
  const cudaError_t e =
      cudaMemcpyAsync(device_dst, device_src, bytes, cudaMemcpyDeviceToDevice, stream_);
  return e == cudaSuccess ? absl::OkStatus() : CudaError(e, "cudaMemcpyAsync (on device)");
}

int32_t* CudaBackend::TokenBuffer(int64_t rows) {
  const size_t need = static_cast<size_t>(rows);
  if (need <= tokens_capacity_) return tokens_;
  cudaFree(tokens_);
  tokens_ = nullptr;
  tokens_capacity_ = 0;
  void* p = nullptr;
  if (!Check(cudaMalloc(&p, need * sizeof(int32_t)), "cudaMalloc (sampled tokens)")) {
    return nullptr;
  }
  tokens_ = static_cast<int32_t*>(p);
  tokens_capacity_ = need;
  return tokens_;
}

absl::Status CudaBackend::Argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out) {
  Bind();
  if (rows <= 0) return absl::OkStatus();
  int32_t* tokens = TokenBuffer(rows);
  if (tokens == nullptr) return error_;
  internal::LaunchArgmax(logits, rows, vocab, tokens, stream_);
  Check(cudaGetLastError(), "Argmax");
  return CopyToHost(out, tokens, static_cast<size_t>(rows) * sizeof(int32_t));
}

absl::Status CudaBackend::SampleRows(const float* logits, int64_t vocab,
                                     std::span<const RowSampling> params, int32_t* out) {
  Bind();
  const int64_t rows = static_cast<int64_t>(params.size());
  if (rows == 0) return absl::OkStatus();
  if (std::all_of(params.begin(), params.end(), [](const RowSampling& r) { return IsGreedy(r); })) {
    return Argmax(logits, rows, vocab, out);  // one lighter kernel, no settings to send
  }
  int32_t* tokens = TokenBuffer(rows);
  const void* settings = row_sampling_.Send(*this, params.data(), params.size_bytes());
  if (tokens == nullptr || settings == nullptr) return error_;
  Check(LaunchSample(logits, rows, vocab, static_cast<const RowSampling*>(settings), tokens,
                     stream_),
        "SampleRows");
  return CopyToHost(out, tokens, static_cast<size_t>(rows) * sizeof(int32_t));
}

absl::Status CudaBackend::Synchronize() {
  Bind();
  Check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  return error_;
}

}  // namespace saola::kernels::cuda
