// The CUDA half of a Context: three streams (compute, comm, copy) and the library handles bound
// to the compute stream. Only kernels/cuda and engine/comm include this header.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "kernels/context.h"

namespace lockstep {

struct CudaState {
  int device = 0;
  cudaStream_t compute = nullptr;
  cudaStream_t comm = nullptr;
  cudaStream_t copy = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  int sm_count = 0;
};

namespace cuda {
inline cudaStream_t stream(const Context& ctx) { return ctx.cuda().compute; }
}  // namespace cuda

}  // namespace lockstep
