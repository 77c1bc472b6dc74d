// CUDA ReLU and add on f32 / bf16 / f16 storage, fp32 math, grid-stride loops over the flattened
// tensors. Outputs may alias inputs (each thread reads an element before writing it, at the same
// index), so no pointer is __restrict__. Same NaN rule as the CPU: ReLU keeps NaN.
#include "kernels/args.h"
#include "kernels/elementwise.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

template <typename T>
__global__ void relu_forward_kernel(const T* x, T* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = to_f32(x[i]);
    y[i] = from_f32<T>(v < 0.f ? 0.f : v);
  }
}

template <typename T>
__global__ void relu_backward_kernel(const T* y, const T* dy, T* dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = from_f32<T>(to_f32(y[i]) > 0.f ? to_f32(dy[i]) : 0.f);
}

template <typename T>
__global__ void add_kernel(const T* a, const T* b, T* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}

void relu_forward(Context& ctx, const Tensor& x, Tensor& y) {
  expect_on(ctx, x, "relu_forward", "x");
  expect_on(ctx, y, "relu_forward", "y");
  expect_float(x, "relu_forward", "x");
  expect_dtype(y, x.dtype(), "relu_forward", "y");
  expect_shape(y, x.shape(), "relu_forward", "y");
  const int64_t n = x.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(x.dtype(), T, {
    relu_forward_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(
        static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), n);
  });
  CUDA_CHECK_LAUNCH();
}

void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx) {
  expect_on(ctx, y, "relu_backward", "y");
  expect_on(ctx, dy, "relu_backward", "dy");
  expect_on(ctx, dx, "relu_backward", "dx");
  expect_float(y, "relu_backward", "y");
  expect_dtype(dy, y.dtype(), "relu_backward", "dy");
  expect_dtype(dx, y.dtype(), "relu_backward", "dx");
  expect_shape(dy, y.shape(), "relu_backward", "dy");
  expect_shape(dx, y.shape(), "relu_backward", "dx");
  const int64_t n = y.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(y.dtype(), T, {
    relu_backward_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(
        static_cast<const T*>(y.raw()), static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), n);
  });
  CUDA_CHECK_LAUNCH();
}

void add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  expect_on(ctx, a, "add", "a");
  expect_on(ctx, b, "add", "b");
  expect_on(ctx, y, "add", "y");
  expect_float(a, "add", "a");
  expect_dtype(b, a.dtype(), "add", "b");
  expect_dtype(y, a.dtype(), "add", "y");
  expect_shape(b, a.shape(), "add", "b");
  expect_shape(y, a.shape(), "add", "y");
  const int64_t n = a.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(a.dtype(), T, {
    add_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(
        static_cast<const T*>(a.raw()), static_cast<const T*>(b.raw()), static_cast<T*>(y.raw()), n);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
