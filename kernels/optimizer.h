// Optimizer updates on flat f32 buffers, one launch for the whole buffer.
// SGD follows PyTorch's convention: g = grad_scale * grad + wd * p (wd only inside the listed
// segments), buf = momentum * buf + g, then p -= lr * (nesterov ? g + momentum * buf : buf).
// With momentum 0 the buffer is not touched (it may be empty). lr and grad_scale come from the
// arguments or, with SgdArgs::device_scalars, from device memory.
#pragma once

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

struct SgdArgs {
  float lr = 0.1f;
  float momentum = 0.9f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  float grad_scale = 1.0f;  // applied to the raw gradient first: 1 / (loss scale x micro-batches)
  // When set: f32 (2) on the ctx's device holding (lr, grad_scale), read by the update when it
  // runs instead of the two fields above, so a captured and replayed step (a CUDA graph) gets
  // each step's learning rate (engine/optimizer.h writes them with write_scalars).
  const Tensor* device_scalars = nullptr;
};

// params, grads, momentum_buf: f32 (P) on ctx's device. wd_segments: u32 (S, 2) on ctx's device,
// sorted non-overlapping [begin, end) element ranges that get weight decay (S may be 0).
void sgd_update(Context& ctx, const SgdArgs& args, Tensor& params, const Tensor& grads,
                Tensor& momentum_buf, const Tensor& wd_segments);

// The moving average of parameters: ema <- alpha * ema + (1 - alpha) * params, elementwise, both f32
// of one length on ctx's device (the same arithmetic on every backend).
void ema_update(Context& ctx, Tensor& ema, const Tensor& params, float alpha);

namespace cpu {
void ema_update(Context&, Tensor& ema, const Tensor& params, float alpha);
void sgd_update(Context&, const SgdArgs&, Tensor& params, const Tensor& grads, Tensor& momentum_buf,
                const Tensor& wd_segments);
}
namespace cuda {
void ema_update(Context&, Tensor& ema, const Tensor& params, float alpha);
void sgd_update(Context&, const SgdArgs&, Tensor& params, const Tensor& grads, Tensor& momentum_buf,
                const Tensor& wd_segments);
}

}  // namespace lockstep
