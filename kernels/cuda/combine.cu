// CUDA gradient combinations (kernels/combine.h): grid-stride loops, the input pointers and
// coefficients passed by value in the launch.
#include "kernels/combine.h"
#include "kernels/combine_math.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

__global__ void combine_kernel(CombineArgs a, float* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = combine_element(a, i);
}

__global__ void axpy_kernel(float alpha, const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = axpy_element(alpha, x[i], y[i]);
}

void combine_gradients(Context& ctx, const CombineArgs& a, Tensor& out) {
  const int64_t n = out.numel();
  combine_kernel<<<grid_for(n), kThreads, 0, stream(ctx)>>>(a, out.data<float>(), n);
  CUDA_CHECK_LAUNCH();
}

void axpy(Context& ctx, float alpha, const Tensor& x, Tensor& y) {
  const int64_t n = y.numel();
  axpy_kernel<<<grid_for(n), kThreads, 0, stream(ctx)>>>(alpha, x.data<float>(), y.data<float>(), n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
