// Dispatch for accumulate_into.
#include "kernels/accumulate.h"

#include "kernels/dispatch.h"

namespace lockstep {

void accumulate_into(Context& ctx, const Tensor& src, Tensor& dst) {
  LS_DISPATCH(ctx, accumulate_into, ctx, src, dst);
}

}  // namespace lockstep
