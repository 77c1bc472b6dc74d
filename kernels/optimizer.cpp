// Dispatch for the optimizer updates.
#include "kernels/optimizer.h"

#include "kernels/args.h"
#include "kernels/dispatch.h"

namespace lockstep {

void sgd_update(Context& ctx, const SgdArgs& args, Tensor& params, const Tensor& grads,
                Tensor& momentum_buf, const Tensor& wd_segments) {
  LS_DISPATCH(ctx, sgd_update, ctx, args, params, grads, momentum_buf, wd_segments);
}

void ema_update(Context& ctx, Tensor& ema, const Tensor& params, float alpha) {
  expect_on(ctx, ema, "ema_update", "ema");
  expect_on(ctx, params, "ema_update", "params");
  expect_dtype(ema, DType::f32, "ema_update", "ema");
  expect_dtype(params, DType::f32, "ema_update", "params");
  expect_numel(params, ema.numel(), "ema_update", "params");
  LS_DISPATCH(ctx, ema_update, ctx, ema, params, alpha);
}

}  // namespace lockstep
