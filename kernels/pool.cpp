// Dispatch for max pooling and global average pooling.
#include "kernels/pool.h"

#include "kernels/dispatch.h"

namespace lockstep {

void maxpool_forward(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y) {
  LS_DISPATCH(ctx, maxpool_forward, ctx, shape, x, y);
}

void maxpool_backward(Context& ctx, const PoolShape& shape, const Tensor& x, const Tensor& y,
                      const Tensor& dy, Tensor& dx) {
  LS_DISPATCH(ctx, maxpool_backward, ctx, shape, x, y, dy, dx);
}

void global_avgpool_forward(Context& ctx, const Tensor& x, Tensor& y) {
  LS_DISPATCH(ctx, global_avgpool_forward, ctx, x, y);
}

void global_avgpool_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  LS_DISPATCH(ctx, global_avgpool_backward, ctx, dy, dx);
}

}  // namespace lockstep
