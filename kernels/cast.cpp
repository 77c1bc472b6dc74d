// Dispatch for cast and scale_and_check_finite.
#include "kernels/cast.h"

#include "kernels/dispatch.h"

namespace lockstep {

void cast(Context& ctx, const Tensor& src, Tensor& dst) { LS_DISPATCH(ctx, cast, ctx, src, dst); }

void scale_and_check_finite(Context& ctx, Tensor& x, float scale, Tensor& found_nonfinite) {
  LS_DISPATCH(ctx, scale_and_check_finite, ctx, x, scale, found_nonfinite);
}

}  // namespace lockstep
