// CUDA dst (f32) += src (f32 / bf16 / f16), grid-stride.
#include "kernels/accumulate.h"
#include "kernels/args.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

template <typename S>
__global__ void accumulate_kernel(const S* __restrict__ src, float* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] += to_f32(src[i]);
}

void accumulate_into(Context& ctx, const Tensor& src, Tensor& dst) {
  expect_on(ctx, src, "accumulate_into", "src");
  expect_on(ctx, dst, "accumulate_into", "dst");
  expect_float(src, "accumulate_into", "src");
  expect_dtype(dst, DType::f32, "accumulate_into", "dst");
  expect_numel(dst, src.numel(), "accumulate_into", "dst");
  const int64_t n = src.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(src.dtype(), S, {
    accumulate_kernel<S><<<grid_for(n), kThreads, 0, stream(ctx)>>>(static_cast<const S*>(src.raw()),
                                                                     dst.data<float>(), n);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
