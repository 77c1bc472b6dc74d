// Dispatch for softmax cross-entropy.
#include "kernels/loss.h"

#include "kernels/dispatch.h"

namespace lockstep {

void softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                           float label_smoothing, float grad_scale, Tensor* dlogits, Tensor& stats) {
  LS_DISPATCH(ctx, softmax_cross_entropy, ctx, logits, labels, label_smoothing, grad_scale, dlogits, stats);
}

}  // namespace lockstep
