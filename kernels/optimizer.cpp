// Dispatch for the optimizer updates.
#include "kernels/optimizer.h"

#include "kernels/dispatch.h"

namespace lockstep {

void sgd_update(Context& ctx, const SgdArgs& args, Tensor& params, const Tensor& grads,
                Tensor& momentum_buf, const Tensor& wd_segments) {
  LS_DISPATCH(ctx, sgd_update, ctx, args, params, grads, momentum_buf, wd_segments);
}

}  // namespace lockstep
