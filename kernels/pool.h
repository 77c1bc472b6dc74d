// Pooling on NHWC tensors: max pooling (ResNet's 3x3 stride 2 pad 1 stem pool, any window) and
// global average pooling (N, H, W, C) -> (N, C). Padding never wins a max. Max-pool backward
// routes each output's gradient to the first maximum of its window in row-major order
// (PyTorch's rule), found again from x and y so no index tensor is stored.
#pragma once

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

struct PoolShape {
  int window = 3, stride = 2, pad = 1;
  int out(int in) const { return (in + 2 * pad - window) / stride + 1; }
};

// x (N, H, W, C) -> y (N, P, Q, C) with P = shape.out(H), Q = shape.out(W).
void maxpool_forward(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y);
// dx (N, H, W, C), overwritten.
void maxpool_backward(Context& ctx, const PoolShape& shape, const Tensor& x, const Tensor& y,
                      const Tensor& dy, Tensor& dx);
// x (N, H, W, C) -> y (N, C), the mean over H and W.
void global_avgpool_forward(Context& ctx, const Tensor& x, Tensor& y);
// dy (N, C) -> dx (N, H, W, C) = dy / (H W), overwritten.
void global_avgpool_backward(Context& ctx, const Tensor& dy, Tensor& dx);

#define LS_POOL_BACKEND_DECLS                                                                \
  void maxpool_forward(Context&, const PoolShape&, const Tensor& x, Tensor& y);              \
  void maxpool_backward(Context&, const PoolShape&, const Tensor& x, const Tensor& y,        \
                        const Tensor& dy, Tensor& dx);                                       \
  void global_avgpool_forward(Context&, const Tensor& x, Tensor& y);                         \
  void global_avgpool_backward(Context&, const Tensor& dy, Tensor& dx);
namespace cpu { LS_POOL_BACKEND_DECLS }
namespace cuda { LS_POOL_BACKEND_DECLS }
#undef LS_POOL_BACKEND_DECLS

}  // namespace lockstep
