// Dispatch for cast and scale_and_check_finite. Both backends take the same arguments, so every
// argument check runs here, before the backend is chosen.
#include "kernels/cast.h"

#include "kernels/args.h"
#include "kernels/dispatch.h"

namespace lockstep {

void cast(Context& ctx, const Tensor& src, Tensor& dst) {
  expect_on(ctx, src, "cast", "src");
  expect_on(ctx, dst, "cast", "dst");
  expect_float(src, "cast", "src");
  expect_float(dst, "cast", "dst");
  expect_numel(dst, src.numel(), "cast", "dst");
  LS_DISPATCH(ctx, cast, ctx, src, dst);
}

void scale_and_check_finite(Context& ctx, Tensor& x, float scale, Tensor& found_nonfinite) {
  expect_on(ctx, x, "scale_and_check_finite", "x");
  expect_on(ctx, found_nonfinite, "scale_and_check_finite", "found_nonfinite");
  expect_dtype(x, DType::f32, "scale_and_check_finite", "x");
  expect_dtype(found_nonfinite, DType::i32, "scale_and_check_finite", "found_nonfinite");
  expect_numel(found_nonfinite, 1, "scale_and_check_finite", "found_nonfinite");
  LS_DISPATCH(ctx, scale_and_check_finite, ctx, x, scale, found_nonfinite);
}

}  // namespace lockstep
