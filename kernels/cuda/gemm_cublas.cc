// CublasGemm: the cuBLAS prefill GEMM on dequantized weight tiles (algorithm in gemm_cublas.h).
#include "kernels/cuda/gemm_cublas.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <limits>
#include <string>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cuda/launch.h"

namespace saola::kernels::cuda::internal {
namespace {

constexpr int64_t kTileAlignRows = 16;

// cuBLAS is loaded with dlopen on the first cuBLAS matmul, not linked. Why: a library linked at
// start-up puts its thread-local storage in every thread's static TLS block, and libcublasLt's is
// about 94 KB. Threads made with small fixed stacks then fail to start: civetweb's (the
// Prometheus exposer's) could not, so every CUDA build of saola-worker lost its metrics port.
// A library loaded later gets its TLS allocated on demand instead. It also keeps the 600 MB of
// cuBLAS libraries out of processes that only decode.
struct CublasApi {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  // Spelled out: C++ builds of cublas_api.h overload cublasGemmEx.
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*,
                            cudaDataType, int, const void*, void*, cudaDataType, int,
                            cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
  std::string error;  // why loading failed; empty when it worked
};

const CublasApi& Cublas() {
  static const CublasApi api = [] {
    CublasApi a;
    const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) lib = dlopen("libcublas.so", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = dlerror();
      a.error = absl::StrCat("cannot load ", soname, ": ", why != nullptr ? why : "unknown");
      return a;
    }
    const auto load = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (fn == nullptr && a.error.empty()) a.error = absl::StrCat(soname, " lacks ", name);
    };
    load(a.create, "cublasCreate_v2");
    load(a.destroy, "cublasDestroy_v2");
    load(a.set_stream, "cublasSetStream_v2");
    load(a.gemm_ex, "cublasGemmEx");
    load(a.status_string, "cublasGetStatusString");
    return a;  // the library stays loaded for the process's life
  }();
  return api;
}

absl::Status CublasError(cublasStatus_t s, const char* what) {
  return absl::InternalError(
      absl::StrCat("cublas: ", what, ": ", Cublas().status_string(s)));
}

absl::Status CudaError(cudaError_t e, const char* what) {
  return absl::InternalError(absl::StrCat("cuda: ", what, ": ", cudaGetErrorString(e)));
}

bool FitsInt(int64_t v) { return v >= 0 && v <= std::numeric_limits<int>::max(); }

}  // namespace

absl::StatusOr<std::unique_ptr<CublasGemm>> CublasGemm::Create(CUstream_st* stream) {
  const CublasApi& api = Cublas();
  if (!api.error.empty()) return absl::FailedPreconditionError(absl::StrCat("cublas: ", api.error));
  cublasHandle_t handle = nullptr;
  if (cublasStatus_t s = api.create(&handle); s != CUBLAS_STATUS_SUCCESS) {
    return CublasError(s, "cublasCreate");
  }
  if (cublasStatus_t s = api.set_stream(handle, stream); s != CUBLAS_STATUS_SUCCESS) {
    api.destroy(handle);
    return CublasError(s, "cublasSetStream");
  }
  return std::unique_ptr<CublasGemm>(new CublasGemm(handle, stream));
}

CublasGemm::~CublasGemm() {
  // The scratch may still be read by queued GEMMs; cudaFree waits for the device first.
  cudaStreamSynchronize(stream_);
  cudaFree(scratch_);
  Cublas().destroy(handle_);
}

int64_t CublasGemm::TileRows(int64_t rows, int64_t cols, size_t limit_bytes) {
  const size_t row_bytes = static_cast<size_t>(std::max<int64_t>(cols, 1)) * sizeof(float);
  int64_t tile = static_cast<int64_t>(
      std::min<size_t>(limit_bytes / row_bytes, static_cast<size_t>(std::max<int64_t>(rows, 1))));
  if (tile >= rows) return std::max<int64_t>(rows, 1);
  if (tile >= kTileAlignRows) tile -= tile % kTileAlignRows;
  return std::max<int64_t>(tile, 1);
}

absl::Status CublasGemm::EnsureScratch(size_t bytes) {
  if (bytes <= scratch_bytes_) return absl::OkStatus();
  // cudaFree waits for the device, so GEMMs still reading the old scratch finish first.
  cudaFree(scratch_);
  scratch_ = nullptr;
  scratch_bytes_ = 0;
  if (cudaError_t e = cudaMalloc(&scratch_, bytes); e != cudaSuccess) {
    (void)cudaGetLastError();  // an allocation failure is not sticky; do not blame a later launch
    return CudaError(e, "cudaMalloc (gemm scratch)");
  }
  scratch_bytes_ = bytes;
  return absl::OkStatus();
}

absl::Status CublasGemm::Gemm(const float* a, int64_t lda, int64_t m, int64_t n, int64_t k,
                              const float* x, float* y, int64_t ldc) {
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t s = Cublas().gemm_ex(
      handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n),
      static_cast<int>(k), &alpha, a, CUDA_R_32F, static_cast<int>(lda), x, CUDA_R_32F,
      static_cast<int>(k), &beta, y, CUDA_R_32F, static_cast<int>(ldc),
      CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
  return s == CUBLAS_STATUS_SUCCESS ? absl::OkStatus() : CublasError(s, "cublasGemmEx");
}

absl::Status CublasGemm::Run(const Weight& w, const float* x, int64_t n, float* y,
                             size_t scratch_limit_bytes) {
  if (n <= 0 || w.rows <= 0) return absl::OkStatus();
  if (!FitsInt(n) || !FitsInt(w.rows) || !FitsInt(w.cols) ||
      !FitsInt(static_cast<int64_t>(w.row_stride_bytes / sizeof(float)))) {
    return absl::InvalidArgumentError("cublas: matmul dimensions exceed int");
  }
  if (w.type == DType::kF32 && w.row_stride_bytes % sizeof(float) == 0) {
    return Gemm(static_cast<const float*>(w.data),
                static_cast<int64_t>(w.row_stride_bytes / sizeof(float)), w.rows, n, w.cols, x, y,
                w.rows);
  }
  const int64_t tile = TileRows(w.rows, w.cols, scratch_limit_bytes);
  RETURN_IF_ERROR(EnsureScratch(static_cast<size_t>(tile * w.cols) * sizeof(float)));
  auto* scratch = static_cast<float*>(scratch_);
  for (int64_t r0 = 0; r0 < w.rows; r0 += tile) {
    const int64_t m = std::min(tile, w.rows - r0);
    LaunchDequantizeRows(w, r0, m, scratch, stream_);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) {
      return CudaError(e, "DequantizeRows");
    }
    RETURN_IF_ERROR(Gemm(scratch, w.cols, m, n, w.cols, x, y + r0, w.rows));
  }
  return absl::OkStatus();
}

}  // namespace saola::kernels::cuda::internal
