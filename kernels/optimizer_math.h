// Per-element SGD math shared by the CPU and CUDA backends, so CPU tests cover the GPU's
// arithmetic. PyTorch's torch.optim.SGD with dampening 0:
//   g   = grad_scale * grad + (decayed ? wd * p : 0)
//   buf = momentum * buf + g                        (only when momentum != 0)
//   p  -= lr * (nesterov ? g + momentum * buf : buf)   (g itself when momentum == 0)
// A zero-initialized buffer makes the first step equal PyTorch's "buf = g" initialization.
#pragma once

#include <cstdint>

#include "kernels/args.h"
#include "kernels/half.h"
#include "kernels/optimizer.h"

namespace lockstep {

// True when element i lies inside one of the S sorted, non-overlapping [begin, end) segments
// (segments: S rows of (begin, end), row-major). Binary search for the last begin <= i.
LS_HD bool in_wd_segment(const uint32_t* segments, int64_t S, int64_t i) {
  int64_t lo = 0, hi = S;  // invariant: rows [0, lo) have begin <= i, rows [hi, S) begin > i
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<int64_t>(segments[2 * mid]) <= i) lo = mid + 1;
    else hi = mid;
  }
  return lo > 0 && i < static_cast<int64_t>(segments[2 * (lo - 1) + 1]);
}

LS_HD float ema_element(float ema, float p, float alpha) { return alpha * ema + (1.f - alpha) * p; }

struct SgdStepParams {
  float lr;
  float momentum;
  float weight_decay;
  float grad_scale;
  bool nesterov;
};

// One SGD step of one element. `buf` is read and written only when momentum != 0 (it may be
// null otherwise). Returns the new parameter.
LS_HD float sgd_element(const SgdStepParams& a, float p, float grad, float* buf, bool decayed) {
  float g = a.grad_scale * grad;
  if (decayed) g = g + a.weight_decay * p;
  float step = g;
  if (a.momentum != 0.0f) {
    float b = a.momentum * (*buf) + g;
    *buf = b;
    step = a.nesterov ? g + a.momentum * b : b;
  }
  return p - a.lr * step;
}

// Host-side argument checks both backends run before touching memory. Returns S, the number
// of weight-decay segments. The buffer is checked only when momentum != 0 (it may be empty).
inline int64_t check_sgd_args(const Context& ctx, const SgdArgs& args, const Tensor& params,
                              const Tensor& grads, const Tensor& momentum_buf,
                              const Tensor& wd_segments) {
  const char* op = "sgd_update";
  expect_on(ctx, params, op, "params");
  expect_on(ctx, grads, op, "grads");
  expect_on(ctx, wd_segments, op, "wd_segments");
  expect_dtype(params, DType::f32, op, "params");
  expect_dtype(grads, DType::f32, op, "grads");
  expect_dtype(wd_segments, DType::u32, op, "wd_segments");
  expect_numel(grads, params.numel(), op, "grads");
  LS_CHECK(wd_segments.rank() == 2 && wd_segments.dim(1) == 2,
           op << ": wd_segments must have shape (S, 2), got " << wd_segments.shape().str());
  if (args.momentum != 0.0f) {
    expect_on(ctx, momentum_buf, op, "momentum_buf");
    expect_dtype(momentum_buf, DType::f32, op, "momentum_buf");
    expect_numel(momentum_buf, params.numel(), op, "momentum_buf");
  }
  const int64_t S = wd_segments.dim(0);
  if (args.device_scalars) {
    expect_on(ctx, *args.device_scalars, op, "device_scalars");
    expect_dtype(*args.device_scalars, DType::f32, op, "device_scalars");
    expect_numel(*args.device_scalars, 2, op, "device_scalars");
  }
  LS_CHECK(S == 0 || params.numel() <= (int64_t{1} << 32),
           op << ": u32 segments cannot address " << params.numel() << " parameters");
  return S;
}

inline SgdStepParams sgd_step_params(const SgdArgs& a) {
  return {a.lr, a.momentum, a.weight_decay, a.grad_scale, a.nesterov};
}

// The step's (lr, grad_scale) taken from SgdArgs::device_scalars where given (read where the
// update runs: on the device for CUDA).
LS_HD SgdStepParams with_device_scalars(SgdStepParams a, const float* scalars) {
  if (scalars) {
    a.lr = scalars[0];
    a.grad_scale = scalars[1];
  }
  return a;
}

}  // namespace lockstep
