// CPU ReLU and add: plain loops over the flattened tensors (f32). Outputs may alias inputs: each
// element is read before it is written, at the same index.
// ReLU keeps NaN (a NaN is not < 0), so a diverged activation stays visible downstream.
#include "kernels/elementwise.h"

#include "kernels/args.h"

namespace lockstep::cpu {

void relu_forward(Context& ctx, const Tensor& x, Tensor& y) {
  expect_on(ctx, x, "relu_forward", "x");
  expect_on(ctx, y, "relu_forward", "y");
  expect_cpu_f32({&x, &y}, "relu_forward");
  expect_shape(y, x.shape(), "relu_forward", "y");
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) py[i] = px[i] < 0.f ? 0.f : px[i];
}

void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx) {
  expect_on(ctx, y, "relu_backward", "y");
  expect_on(ctx, dy, "relu_backward", "dy");
  expect_on(ctx, dx, "relu_backward", "dx");
  expect_cpu_f32({&y, &dy, &dx}, "relu_backward");
  expect_shape(dy, y.shape(), "relu_backward", "dy");
  expect_shape(dx, y.shape(), "relu_backward", "dx");
  const float* py = y.data<float>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  const int64_t n = y.numel();
  for (int64_t i = 0; i < n; ++i) pdx[i] = py[i] > 0.f ? pdy[i] : 0.f;
}

void add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  expect_on(ctx, a, "add", "a");
  expect_on(ctx, b, "add", "b");
  expect_on(ctx, y, "add", "y");
  expect_cpu_f32({&a, &b, &y}, "add");
  expect_shape(b, a.shape(), "add", "b");
  expect_shape(y, a.shape(), "add", "y");
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* py = y.data<float>();
  const int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) py[i] = pa[i] + pb[i];
}

}  // namespace lockstep::cpu
