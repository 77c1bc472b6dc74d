// Softmax cross-entropy with label smoothing, fused with its gradient and with the accuracy
// counts, all on the device so nothing is read back per step.
// With K classes and smoothing e, the target is q = (1 - e) one_hot(label) + e / K, the loss of a
// sample is -sum_k q_k log softmax(z)_k and dlogits = grad_scale * (softmax(z) - q).
// A sample is top-k correct when fewer than k classes have a logit strictly greater than its
// label's (ties favour the label); k = min(5, K) for top-5.
#pragma once

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// logits (N, K) and dlogits (N, K) of one float dtype (f32 on CPU); labels (N) i32 in [0, K).
// stats: f32 (3), accumulated (+=): [sum of sample losses, top-1 correct, top-5 correct].
// dlogits may be null (evaluation), and may alias logits (each row is read before it is written).
// Logits are shifted by their row maximum before exp (a stable log-softmax); math is fp32.
// A label outside [0, K): the CPU backend throws an Error naming the sample, before writing
// anything. The CUDA backend cannot throw from a kernel and never indexes with such a label: the
// row's dlogits are written as 0, it counts as wrong for top-1 and top-5, and it adds NaN to the
// loss sum so the bad batch is visible.
// On CUDA the per-sample terms are summed in a fixed order (per block, then the blocks' partials
// by one warp): the same bits every run, though not the CPU's order of summation.
void softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                           float label_smoothing, float grad_scale, Tensor* dlogits, Tensor& stats);

namespace cpu {
void softmax_cross_entropy(Context&, const Tensor& logits, const Tensor& labels,
                           float label_smoothing, float grad_scale, Tensor* dlogits, Tensor& stats);
}
namespace cuda {
void softmax_cross_entropy(Context&, const Tensor& logits, const Tensor& labels,
                           float label_smoothing, float grad_scale, Tensor* dlogits, Tensor& stats);
}

}  // namespace lockstep
