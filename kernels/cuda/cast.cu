// CUDA cast between f32 / bf16 / f16 and scale-and-check-finite, grid-stride loops.
#include "kernels/cast.h"
#include "kernels/half.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

template <typename S, typename D>
__global__ void cast_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f32<D>(to_f32(src[i]));
}

__global__ void scale_check_kernel(float* __restrict__ x, float scale, int64_t n, int32_t* found) {
  bool bad = false;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = x[i];
    bad |= is_nonfinite(v);
    x[i] = v * scale;
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) *found = 1;
}

void cast(Context& ctx, const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  if (n == 0) return;
  cudaStream_t st = stream(ctx);
  if (src.dtype() == dst.dtype()) {
    CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), src.bytes(), cudaMemcpyDeviceToDevice, st));
    return;
  }
  LS_FLOAT_DISPATCH(src.dtype(), S, LS_FLOAT_DISPATCH(dst.dtype(), D, {
    cast_kernel<S, D><<<grid_for(n), kThreads, 0, st>>>(static_cast<const S*>(src.raw()),
                                                         static_cast<D*>(dst.raw()), n);
  }));
  CUDA_CHECK_LAUNCH();
}

void scale_and_check_finite(Context& ctx, Tensor& x, float scale, Tensor& found_nonfinite) {
  const int64_t n = x.numel();
  if (n == 0) return;
  scale_check_kernel<<<grid_for(n), kThreads, 0, stream(ctx)>>>(x.data<float>(), scale, n,
                                                                 found_nonfinite.data<int32_t>());
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
