// Dispatch for max pooling and global average pooling. The argument checks both backends share
// run here, before the backend is chosen; the CPU backend adds only its f32-only check.
#include "kernels/pool.h"

#include "kernels/args.h"
#include "kernels/dispatch.h"

namespace lockstep {

namespace {

void check_pool_shape(const PoolShape& s, const Tensor& x, const char* op) {
  LS_CHECK(x.rank() == 4, op << ": x must be (N, H, W, C), got " << x.shape().str());
  LS_CHECK(s.window >= 1 && s.stride >= 1 && s.pad >= 0 && s.pad < s.window,
           op << ": bad pool shape window " << s.window << " stride " << s.stride << " pad " << s.pad
              << " (need window >= 1, stride >= 1, 0 <= pad < window)");
  LS_CHECK(x.dim(1) + 2 * s.pad >= s.window && x.dim(2) + 2 * s.pad >= s.window,
           op << ": window " << s.window << " does not fit the padded input " << x.shape().str());
}

// A window's positions must fit a byte of `where` (kNoWinner excluded).
void check_where_window(const PoolShape& s, const char* op) {
  LS_CHECK(s.window <= kMaxWhereWindow,
           op << ": window " << s.window << " is larger than a byte of `where` can index (" << kMaxWhereWindow << ")");
}

Shape pooled_shape(const PoolShape& s, const Tensor& x) {
  return Shape{x.dim(0), s.out(static_cast<int>(x.dim(1))), s.out(static_cast<int>(x.dim(2))), x.dim(3)};
}

}  // namespace

void maxpool_forward(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y) {
  const char* op = "maxpool_forward";
  expect_on(ctx, x, op, "x");
  expect_on(ctx, y, op, "y");
  expect_float(x, op, "x");
  expect_dtype(y, x.dtype(), op, "y");
  check_pool_shape(shape, x, op);
  expect_shape(y, pooled_shape(shape, x), op, "y");
  LS_DISPATCH(ctx, maxpool_forward, ctx, shape, x, y);
}

void maxpool_backward(Context& ctx, const PoolShape& shape, const Tensor& x, const Tensor& y,
                      const Tensor& dy, Tensor& dx) {
  const char* op = "maxpool_backward";
  expect_on(ctx, x, op, "x");
  expect_on(ctx, y, op, "y");
  expect_on(ctx, dy, op, "dy");
  expect_on(ctx, dx, op, "dx");
  expect_float(x, op, "x");
  expect_dtype(y, x.dtype(), op, "y");
  expect_dtype(dy, x.dtype(), op, "dy");
  expect_dtype(dx, x.dtype(), op, "dx");
  check_pool_shape(shape, x, op);
  expect_shape(y, pooled_shape(shape, x), op, "y");
  expect_shape(dy, y.shape(), op, "dy");
  expect_shape(dx, x.shape(), op, "dx");
  LS_DISPATCH(ctx, maxpool_backward, ctx, shape, x, y, dy, dx);
}

void maxpool_forward_where(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y, Tensor& where) {
  const char* op = "maxpool_forward_where";
  expect_on(ctx, x, op, "x");
  expect_on(ctx, y, op, "y");
  expect_on(ctx, where, op, "where");
  expect_float(x, op, "x");
  expect_dtype(y, x.dtype(), op, "y");
  expect_dtype(where, DType::u8, op, "where");
  check_pool_shape(shape, x, op);
  check_where_window(shape, op);
  expect_shape(y, pooled_shape(shape, x), op, "y");
  expect_shape(where, y.shape(), op, "where");
  LS_DISPATCH(ctx, maxpool_forward_where, ctx, shape, x, y, where);
}

void maxpool_backward_where(Context& ctx, const PoolShape& shape, const Tensor& where, const Tensor& dy,
                            Tensor& dx) {
  const char* op = "maxpool_backward_where";
  expect_on(ctx, where, op, "where");
  expect_on(ctx, dy, op, "dy");
  expect_on(ctx, dx, op, "dx");
  expect_dtype(where, DType::u8, op, "where");
  expect_float(dy, op, "dy");
  expect_dtype(dx, dy.dtype(), op, "dx");
  check_pool_shape(shape, dx, op);
  check_where_window(shape, op);
  expect_shape(dy, pooled_shape(shape, dx), op, "dy");
  expect_shape(where, dy.shape(), op, "where");
  LS_DISPATCH(ctx, maxpool_backward_where, ctx, shape, where, dy, dx);
}

void global_avgpool_forward(Context& ctx, const Tensor& x, Tensor& y) {
  const char* op = "global_avgpool_forward";
  expect_on(ctx, x, op, "x");
  expect_on(ctx, y, op, "y");
  expect_float(x, op, "x");
  expect_dtype(y, x.dtype(), op, "y");
  LS_CHECK(x.rank() == 4 && x.dim(1) * x.dim(2) > 0,
           op << ": x must be (N, H, W, C) with H W > 0, got " << x.shape().str());
  expect_shape(y, Shape{x.dim(0), x.dim(3)}, op, "y");
  LS_DISPATCH(ctx, global_avgpool_forward, ctx, x, y);
}

void global_avgpool_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  const char* op = "global_avgpool_backward";
  expect_on(ctx, dy, op, "dy");
  expect_on(ctx, dx, op, "dx");
  expect_float(dy, op, "dy");
  expect_dtype(dx, dy.dtype(), op, "dx");
  LS_CHECK(dx.rank() == 4 && dx.dim(1) * dx.dim(2) > 0,
           op << ": dx must be (N, H, W, C) with H W > 0, got " << dx.shape().str());
  expect_shape(dy, Shape{dx.dim(0), dx.dim(3)}, op, "dy");
  LS_DISPATCH(ctx, global_avgpool_backward, ctx, dy, dx);
}

}  // namespace lockstep
