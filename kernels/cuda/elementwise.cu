// CUDA ReLU and add on f32 / bf16 / f16 storage, fp32 math, grid-stride loops over the flattened
// tensors, 16 bytes per thread per operand where every operand is 16-byte aligned (the tail past
// the last whole vector one element at a time). Outputs may alias inputs (each thread reads an element before writing it, at the same
// index), so no pointer is __restrict__. Same NaN rule as the CPU: ReLU keeps NaN.
#include "kernels/args.h"
#include "kernels/elementwise.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/vec.cuh"

namespace lockstep::cuda {

// One kernel for the three ops: y = f(a, b) element by element (b may be null: f sees 0), over
// 16-byte vectors of every operand when all are 16-byte aligned (kVector), then over the elements
// past the last whole vector one at a time.
#define LS_EACH(i, begin, end)                                                          \
  for (int64_t i = (begin) + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (end); \
       i += int64_t(gridDim.x) * blockDim.x)

template <typename T, bool kVector, typename F>
__global__ void map2_kernel(const T* a, const T* b, T* y, int64_t n, F f) {
  constexpr int V = kVec<T>;
  const int64_t done = kVector ? n / V * V : 0;
  if (kVector) {
    LS_EACH(v, 0, done / V) {
      float p[V], q[V] = {};
      load_vec(a + v * V, p);
      if (b) load_vec(b + v * V, q);
#pragma unroll
      for (int k = 0; k < V; ++k) p[k] = f(p[k], q[k]);
      store_vec(y + v * V, p);
    }
  }
  LS_EACH(i, done, n) y[i] = from_f32<T>(f(to_f32(a[i]), b ? to_f32(b[i]) : 0.f));
}

#undef LS_EACH

struct Relu {  // NaN is kept: NaN < 0 is false
  __device__ float operator()(float x, float) const { return x < 0.f ? 0.f : x; }
};
struct ReluGrad {  // (y, dy)
  __device__ float operator()(float y, float dy) const { return y > 0.f ? dy : 0.f; }
};
struct Plus {
  __device__ float operator()(float a, float b) const { return a + b; }
};

template <typename F>
void map2(Context& ctx, DType dt, const void* a, const void* b, void* y, int64_t n, F f) {
  const bool vector = aligned16({a, b, y});
  LS_FLOAT_DISPATCH(dt, T, {
    const auto* pa = static_cast<const T*>(a);
    const auto* pb = static_cast<const T*>(b);
    auto* py = static_cast<T*>(y);
    if (vector)
      map2_kernel<T, true><<<grid_for((n + kVec<T> - 1) / kVec<T>), kThreads, 0, stream(ctx)>>>(pa, pb, py, n, f);
    else
      map2_kernel<T, false><<<grid_for(n), kThreads, 0, stream(ctx)>>>(pa, pb, py, n, f);
  });
  CUDA_CHECK_LAUNCH();
}

void relu_forward(Context& ctx, const Tensor& x, Tensor& y) {
  expect_on(ctx, x, "relu_forward", "x");
  expect_on(ctx, y, "relu_forward", "y");
  expect_float(x, "relu_forward", "x");
  expect_dtype(y, x.dtype(), "relu_forward", "y");
  expect_shape(y, x.shape(), "relu_forward", "y");
  const int64_t n = x.numel();
  if (n == 0) return;
  map2(ctx, x.dtype(), x.raw(), nullptr, y.raw(), n, Relu{});
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
  map2(ctx, y.dtype(), y.raw(), dy.raw(), dx.raw(), n, ReluGrad{});
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
  map2(ctx, a.dtype(), a.raw(), b.raw(), y.raw(), n, Plus{});
}

}  // namespace lockstep::cuda
