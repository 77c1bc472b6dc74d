// ReLU and elementwise add on tensors of any shape and float dtype (f32 on CPU).
#pragma once

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// y = max(x, 0). y may alias x.
void relu_forward(Context& ctx, const Tensor& x, Tensor& y);
// dx = dy where y > 0, else 0 (y is the forward output). dx may alias dy.
void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx);
// y = a + b, same shape and dtype. y may alias a or b.
void add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);

#define LS_ELEMENTWISE_BACKEND_DECLS                                      \
  void relu_forward(Context&, const Tensor& x, Tensor& y);                \
  void relu_backward(Context&, const Tensor& y, const Tensor& dy, Tensor& dx); \
  void add(Context&, const Tensor& a, const Tensor& b, Tensor& y);
namespace cpu { LS_ELEMENTWISE_BACKEND_DECLS }
namespace cuda { LS_ELEMENTWISE_BACKEND_DECLS }
#undef LS_ELEMENTWISE_BACKEND_DECLS

}  // namespace lockstep
