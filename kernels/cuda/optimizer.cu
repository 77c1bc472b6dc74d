// CUDA SGD: one grid-stride launch over the whole flat buffer. Each element finds whether it
// gets weight decay by a binary search over the (S, 2) segments, which stay small (one per
// parameter tensor at most) and cached; the per-element math is kernels/optimizer_math.h.
#include "kernels/optimizer.h"
#include "kernels/optimizer_math.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

__global__ void sgd_kernel(SgdStepParams args, const float* __restrict__ scalars, float* __restrict__ p,
                           const float* __restrict__ g, float* __restrict__ buf,
                           const uint32_t* __restrict__ segments, int64_t S, int64_t n) {
  const SgdStepParams a = with_device_scalars(args, scalars);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = sgd_element(a, p[i], g[i], buf ? buf + i : nullptr, in_wd_segment(segments, S, i));
}

__global__ void ema_kernel(float* __restrict__ e, const float* __restrict__ p, float alpha, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    e[i] = ema_element(e[i], p[i], alpha);
}

void ema_update(Context& ctx, Tensor& ema, const Tensor& params, float alpha) {
  const int64_t n = ema.numel();
  if (n == 0) return;
  ema_kernel<<<grid_for(n), kThreads, 0, stream(ctx)>>>(ema.data<float>(), params.data<float>(), alpha, n);
  CUDA_CHECK_LAUNCH();
}

void sgd_update(Context& ctx, const SgdArgs& args, Tensor& params, const Tensor& grads,
                Tensor& momentum_buf, const Tensor& wd_segments) {
  const int64_t S = check_sgd_args(ctx, args, params, grads, momentum_buf, wd_segments);
  const int64_t n = params.numel();
  if (n == 0) return;
  float* buf = args.momentum != 0.0f ? momentum_buf.data<float>() : nullptr;
  sgd_kernel<<<grid_for(n), kThreads, 0, stream(ctx)>>>(
      sgd_step_params(args), args.device_scalars ? args.device_scalars->data<float>() : nullptr, params.data<float>(), grads.data<float>(), buf,
      S > 0 ? wd_segments.data<uint32_t>() : nullptr, S, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
