// Dispatch for softmax cross-entropy. The argument checks both backends share run here, before
// the backend is chosen; each backend adds only its own (kernels/cpu/loss.cpp, kernels/cuda/loss.cu).
#include "kernels/loss.h"

#include "kernels/args.h"
#include "kernels/dispatch.h"

namespace lockstep {

void softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                           float label_smoothing, float grad_scale, Tensor* dlogits, Tensor& stats) {
  const char* op = "softmax_cross_entropy";
  expect_on(ctx, logits, op, "logits");
  expect_on(ctx, labels, op, "labels");
  expect_on(ctx, stats, op, "stats");
  expect_float(logits, op, "logits");
  LS_CHECK(logits.rank() == 2 && logits.dim(1) > 0, op << ": logits must be (N, K) with K > 0, got "
                                                        << logits.shape().str());
  expect_dtype(labels, DType::i32, op, "labels");
  expect_shape(labels, Shape{logits.dim(0)}, op, "labels");
  expect_dtype(stats, DType::f32, op, "stats");
  expect_shape(stats, Shape{3}, op, "stats");
  if (dlogits) {
    expect_on(ctx, *dlogits, op, "dlogits");
    expect_dtype(*dlogits, logits.dtype(), op, "dlogits");
    expect_shape(*dlogits, logits.shape(), op, "dlogits");
  }
  LS_CHECK(label_smoothing >= 0.f && label_smoothing <= 1.f,
           op << ": label smoothing must be in [0, 1], got " << label_smoothing);
  LS_DISPATCH(ctx, softmax_cross_entropy, ctx, logits, labels, label_smoothing, grad_scale, dlogits, stats);
}

}  // namespace lockstep
