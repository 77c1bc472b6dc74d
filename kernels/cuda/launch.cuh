// Shared pieces of lockstep's custom CUDA kernels: launch geometry, float-type dispatch and
// fp32 load/store for f32 / bf16 / f16 storage. Kernels compute in fp32 whatever they store.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/dtype.h"
#include "kernels/error.h"

namespace lockstep::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never more than needed.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 65535LL * 8));
}

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }

}  // namespace lockstep::cuda

// LS_FLOAT_DISPATCH(dtype, T, body): runs body with T = float, __nv_bfloat16 or __half.
#define LS_FLOAT_DISPATCH(dtype, T, ...)                                                   \
  do {                                                                                     \
    switch (dtype) {                                                                       \
      case ::lockstep::DType::f32: { using T = float; __VA_ARGS__; break; }                \
      case ::lockstep::DType::bf16: { using T = __nv_bfloat16; __VA_ARGS__; break; }       \
      case ::lockstep::DType::f16: { using T = __half; __VA_ARGS__; break; }               \
      default:                                                                             \
        LS_CHECK(false, "expected a float dtype, got " << ::lockstep::dtype_name(dtype));  \
    }                                                                                      \
  } while (0)
