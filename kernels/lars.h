// LARS gradient preparation (You et al. 2017, "Large Batch Training of Convolutional Networks"):
// per segment s = [begin, end) of the flat buffers (one per parameter tensor),
//   g_s <- trust_s * (grad_scale * g_s + (decay_s ? wd * w_s : 0))
//   trust_s = eta * ||w_s|| / (||grad_scale * g_s|| + wd * ||w_s||) when adapt_s, else 1;
//   trust_s = 1 when either norm is 0 (a fresh zero-initialised layer still moves).
// A plain momentum-SGD update with weight decay 0 then completes the LARS step.
#pragma once

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// params, grads: f32 (P). segments: u32 (S, 2) covering any ranges. flags: u8 (S), bit 0 = adapt,
// bit 1 = decay. norms: f32 (S, 2) scratch, left holding (||w||, ||grad_scale * g||) per segment.
void lars_scale_gradients(Context& ctx, const Tensor& params, Tensor& grads, const Tensor& segments,
                          const Tensor& flags, float weight_decay, float eta, float grad_scale, Tensor& norms);

namespace cpu {
void lars_scale_gradients(Context&, const Tensor& params, Tensor& grads, const Tensor& segments,
                          const Tensor& flags, float weight_decay, float eta, float grad_scale, Tensor& norms);
}
namespace cuda {
void lars_scale_gradients(Context&, const Tensor& params, Tensor& grads, const Tensor& segments,
                          const Tensor& flags, float weight_decay, float eta, float grad_scale, Tensor& norms);
}

// The trust ratio, shared by both backends: 1 when ||w|| or ||g|| is 0 — a zero weight (a
// freshly zero-initialised layer) or a zero gradient (a layer that got none this step) has no
// scale to trust, so the global rate applies rather than freezing the layer or dividing by zero,
// as TF's LARSOptimizer and NVIDIA's ResNet recipes do.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline float lars_trust(float w_norm, float g_norm, float weight_decay, float eta) {
  if (w_norm <= 0.f || g_norm <= 0.f) return 1.f;
  return eta * w_norm / (g_norm + weight_decay * w_norm);
}

}  // namespace lockstep
