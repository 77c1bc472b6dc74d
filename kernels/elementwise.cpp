// Dispatch for ReLU forward/backward and elementwise add.
#include "kernels/elementwise.h"

#include "kernels/dispatch.h"

namespace lockstep {

void relu_forward(Context& ctx, const Tensor& x, Tensor& y) { LS_DISPATCH(ctx, relu_forward, ctx, x, y); }

void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx) {
  LS_DISPATCH(ctx, relu_backward, ctx, y, dy, dx);
}

void add(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) { LS_DISPATCH(ctx, add, ctx, a, b, y); }

}  // namespace lockstep
