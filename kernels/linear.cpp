// Dispatch for the fully connected layer.
#include "kernels/linear.h"

#include "kernels/dispatch.h"

namespace lockstep {

void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  LS_DISPATCH(ctx, linear_forward, ctx, x, w, bias, y);
}

void linear_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx,
                     Tensor& dw, Tensor* dbias) {
  LS_DISPATCH(ctx, linear_backward, ctx, x, w, dy, dx, dw, dbias);
}

}  // namespace lockstep
