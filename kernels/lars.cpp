// Dispatch and argument checks for lars_scale_gradients.
#include "kernels/lars.h"

#include "kernels/args.h"
#include "kernels/dispatch.h"

namespace lockstep {

void lars_scale_gradients(Context& ctx, const Tensor& params, Tensor& grads, const Tensor& segments,
                          const Tensor& flags, float weight_decay, float eta, float grad_scale, Tensor& norms) {
  const char* op = "lars_scale_gradients";
  for (const Tensor* t : {&params, static_cast<const Tensor*>(&grads), &segments, &flags, static_cast<const Tensor*>(&norms)})
    expect_on(ctx, *t, op, "argument");
  expect_dtype(params, DType::f32, op, "params");
  expect_dtype(grads, DType::f32, op, "grads");
  expect_numel(grads, params.numel(), op, "grads");
  expect_dtype(segments, DType::u32, op, "segments");
  LS_CHECK(segments.rank() == 2 && segments.dim(1) == 2, op << ": segments must be (S, 2), got " << segments.shape().str());
  const int64_t s = segments.dim(0);
  expect_dtype(flags, DType::u8, op, "flags");
  expect_numel(flags, s, op, "flags");
  expect_dtype(norms, DType::f32, op, "norms");
  expect_numel(norms, 2 * s, op, "norms");
  LS_DISPATCH(ctx, lars_scale_gradients, ctx, params, grads, segments, flags, weight_decay, eta, grad_scale, norms);
}

}  // namespace lockstep
