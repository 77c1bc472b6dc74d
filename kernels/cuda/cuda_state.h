// The CUDA half of a Context: three streams (compute, comm, copy) and the library handles bound
// to the compute stream. Only kernels/cuda and engine/comm include this header.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "kernels/context.h"
#include "kernels/error.h"
#include "kernels/event.h"

namespace lockstep {

struct CudaState {
  int device = 0;
  cudaStream_t compute = nullptr;
  cudaStream_t comm = nullptr;
  cudaStream_t copy = nullptr;
  cudnnHandle_t cudnn = nullptr;    // null in a ContextLibraries::streams context
  cublasHandle_t cublas = nullptr;  // the same
  void* cublas_workspace = nullptr;  // ours, so cuBLAS never allocates inside a captured graph
  // Per-block partial sums of small reductions that must not depend on the order in which blocks
  // finish (the loss): kReduceScratchFloats floats, used on the compute stream only.
  float* reduce_scratch = nullptr;
  static constexpr int kReduceScratchFloats = 4096;
  int sm_count = 0;

  // The handles for an op; a streams-only context (parameter-server shards) has none.
  cudnnHandle_t cudnn_handle() const {
    LS_CHECK(cudnn, "cuDNN is not set up on this cuda:" << device << " context (made for streams only)");
    return cudnn;
  }
  cublasHandle_t cublas_handle() const {
    LS_CHECK(cublas, "cuBLAS is not set up on this cuda:" << device << " context (made for streams only)");
    return cublas;
  }
};

namespace cuda {
inline cudaStream_t stream(const Context& ctx) { return ctx.cuda().compute; }
inline cudaStream_t stream_of(const Context& ctx, Stream s) {
  const CudaState& c = ctx.cuda();
  return s == Stream::compute ? c.compute : s == Stream::comm ? c.comm : c.copy;
}

// cuDNN's data type for a float dtype; `op` names the caller in the error for any other.
inline cudnnDataType_t cudnn_data_type(DType dt, const char* op) {
  switch (dt) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    case DType::f16: return CUDNN_DATA_HALF;
    default: break;
  }
  LS_CHECK(false, op << ": cuDNN takes f32, bf16 or f16 data, got " << dtype_name(dt));
}
}  // namespace cuda

}  // namespace lockstep
