// Per-sample arithmetic of softmax cross-entropy with label smoothing, shared by the CPU
// reference (kernels/cpu/loss.cpp) and the CUDA kernel (kernels/cuda/loss.cu), so CPU tests cover
// the GPU's formulas. Everything is in terms of the row maximum m, the shifted log-sum-exp
// log_s = log sum_k exp(z_k - m), and the shifted sum sum_k (z_k - m); with the target
// q_k = (1 - e) [k = label] + e / K (which sums to 1):
//   loss    = -sum_k q_k (z_k - m - log_s) = log_s - (1 - e)(z_label - m) - (e / K) sum_k (z_k - m)
//   dlogit  = grad_scale (exp(z_k - m - log_s) - q_k)
// Shifting by m keeps exp() in (0, 1] and the sums free of overflow (a stable log-softmax).
#pragma once

#include <cmath>

#include "kernels/half.h"

namespace lockstep {

// q_k of the smoothed target.
LS_HD float ls_ce_target(bool is_label, float smoothing, int num_classes) {
  return (is_label ? 1.0f - smoothing : 0.0f) + smoothing / static_cast<float>(num_classes);
}

// Loss of one sample from the row's shifted statistics (see above).
LS_HD float ls_ce_sample_loss(float log_s, float z_label_shifted, float sum_shifted, float smoothing,
                              int num_classes) {
  return log_s - (1.0f - smoothing) * z_label_shifted -
         (smoothing / static_cast<float>(num_classes)) * sum_shifted;
}

// d loss / d z_k, scaled by grad_scale.
LS_HD float ls_ce_dlogit(float z, float m, float log_s, bool is_label, float smoothing, int num_classes,
                         float grad_scale) {
  return grad_scale * (expf(z - m - log_s) - ls_ce_target(is_label, smoothing, num_classes));
}

// Top-k rule: correct when fewer than k classes have a logit strictly greater than the label's.
LS_HD bool ls_ce_topk_correct(int num_greater, int k) { return num_greater < k; }

// k of the "top-5" count: min(5, K).
LS_HD int ls_ce_top5_k(int num_classes) { return num_classes < 5 ? num_classes : 5; }

}  // namespace lockstep
