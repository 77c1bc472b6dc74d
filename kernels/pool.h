// Pooling on NHWC tensors: max pooling (ResNet's 3x3 stride 2 pad 1 stem pool, any window) and
// global average pooling (N, H, W, C) -> (N, C). Padding never wins a max. Max-pool backward
// routes each output's gradient to the first maximum of its window in row-major order
// (PyTorch's rule): either found again from x and y (no index tensor), or recorded by the
// forward in a u8 tensor (`where`, one byte per output value, an eighth of PyTorch's int64
// indices) so that the backward reads neither x nor y.
#pragma once

#include <cstdint>

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
// The forward that also records each output's winner in `where` (u8, y's shape): its row-major
// index in the window counted from the window's padded origin, (h - h0) * window + (w - w0) with
// h0 = p * stride - pad, or kNoWinner where y is NaN (no element equals a NaN, so the search
// sends that gradient nowhere, and so does this). Windows up to kMaxWhereWindow.
constexpr uint8_t kNoWinner = 255;
constexpr int kMaxWhereWindow = 15;
void maxpool_forward_where(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y, Tensor& where);
// The backward from the recorded winners: dx (N, H, W, C), overwritten, bit for bit what
// maxpool_backward gives from x and y (the same sums in the same order). A byte that names no
// position inside the image (only a corrupted `where` could) sends nothing.
void maxpool_backward_where(Context& ctx, const PoolShape& shape, const Tensor& where, const Tensor& dy,
                            Tensor& dx);
// x (N, H, W, C) -> y (N, C), the mean over H and W.
void global_avgpool_forward(Context& ctx, const Tensor& x, Tensor& y);
// dy (N, C) -> dx (N, H, W, C) = dy / (H W), overwritten.
void global_avgpool_backward(Context& ctx, const Tensor& dy, Tensor& dx);

#define LS_POOL_BACKEND_DECLS                                                                \
  void maxpool_forward(Context&, const PoolShape&, const Tensor& x, Tensor& y);              \
  void maxpool_backward(Context&, const PoolShape&, const Tensor& x, const Tensor& y,        \
                        const Tensor& dy, Tensor& dx);                                       \
  void maxpool_forward_where(Context&, const PoolShape&, const Tensor& x, Tensor& y, Tensor& where); \
  void maxpool_backward_where(Context&, const PoolShape&, const Tensor& where, const Tensor& dy,     \
                              Tensor& dx);                                                          \
  void global_avgpool_forward(Context&, const Tensor& x, Tensor& y);                         \
  void global_avgpool_backward(Context&, const Tensor& dy, Tensor& dx);
namespace cpu { LS_POOL_BACKEND_DECLS }
namespace cuda { LS_POOL_BACKEND_DECLS }
#undef LS_POOL_BACKEND_DECLS

}  // namespace lockstep
