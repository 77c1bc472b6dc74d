// Fully connected layer in torchvision's layout: y = x W^T + b with x (N, In), W (Out, In),
// b (Out), y (N, Out). x, W, y, dx, dW share one dtype (f32, bf16, f16 on CUDA; f32 on CPU);
// b and db are f32. GEMMs accumulate in fp32 (cuBLAS without TF32; OpenBLAS sgemm on CPU).
#pragma once

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// bias may be null.
void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
// dx = dy W (may be null to skip), dW = dy^T x, db = sum_n dy (may be null). Overwritten.
void linear_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx,
                     Tensor& dw, Tensor* dbias);

#define LS_LINEAR_BACKEND_DECLS                                                                 \
  void linear_forward(Context&, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y); \
  void linear_backward(Context&, const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, \
                       Tensor& dw, Tensor* dbias);
namespace cpu { LS_LINEAR_BACKEND_DECLS }
namespace cuda { LS_LINEAR_BACKEND_DECLS }
#undef LS_LINEAR_BACKEND_DECLS

}  // namespace lockstep
