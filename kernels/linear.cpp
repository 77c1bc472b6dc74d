// Dispatch for the fully connected layer. The argument checks both backends share run here,
// before the backend is chosen; the CPU backend adds only its f32-only check.
#include "kernels/linear.h"

#include <climits>

#include "kernels/args.h"
#include "kernels/dispatch.h"

namespace lockstep {

namespace {

// x (N, In) and w (Out, In) of one float dtype, every size in [1, 2^31-1] (the GEMMs take int).
void check_x_w(const Context& ctx, const Tensor& x, const Tensor& w, const char* op) {
  expect_on(ctx, x, op, "x");
  expect_on(ctx, w, op, "w");
  expect_float(x, op, "x");
  expect_dtype(w, x.dtype(), op, "w");
  LS_CHECK(x.rank() == 2, op << ": x must be (N, In), got " << x.shape().str());
  LS_CHECK(w.rank() == 2, op << ": w must be (Out, In), got " << w.shape().str());
  LS_CHECK(x.dim(1) == w.dim(1), op << ": x " << x.shape().str() << " and w " << w.shape().str()
                                    << " disagree on In");
  for (int64_t d : {x.dim(0), x.dim(1), w.dim(0)})
    LS_CHECK(d > 0 && d <= INT_MAX, op << ": sizes must be in [1, 2^31-1], got x " << x.shape().str()
                                       << " w " << w.shape().str());
}

// An f32 bias or bias gradient of shape (Out).
void check_bias(const Context& ctx, const Tensor& b, const Tensor& w, const char* op, const char* name) {
  expect_on(ctx, b, op, name);
  expect_dtype(b, DType::f32, op, name);
  expect_shape(b, {w.dim(0)}, op, name);
}

}  // namespace

void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const char* op = "linear_forward";
  check_x_w(ctx, x, w, op);
  expect_on(ctx, y, op, "y");
  expect_dtype(y, x.dtype(), op, "y");
  expect_shape(y, {x.dim(0), w.dim(0)}, op, "y");
  if (bias) check_bias(ctx, *bias, w, op, "bias");
  LS_DISPATCH(ctx, linear_forward, ctx, x, w, bias, y);
}

void linear_backward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx,
                     Tensor& dw, Tensor* dbias) {
  const char* op = "linear_backward";
  check_x_w(ctx, x, w, op);
  expect_on(ctx, dy, op, "dy");
  expect_dtype(dy, x.dtype(), op, "dy");
  expect_shape(dy, {x.dim(0), w.dim(0)}, op, "dy");
  expect_on(ctx, dw, op, "dw");
  expect_dtype(dw, x.dtype(), op, "dw");
  expect_shape(dw, w.shape(), op, "dw");
  if (dx) {
    expect_on(ctx, *dx, op, "dx");
    expect_dtype(*dx, x.dtype(), op, "dx");
    expect_shape(*dx, x.shape(), op, "dx");
  }
  if (dbias) check_bias(ctx, *dbias, w, op, "dbias");
  LS_DISPATCH(ctx, linear_backward, ctx, x, w, dy, dx, dw, dbias);
}

}  // namespace lockstep
