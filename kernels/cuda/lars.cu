// CUDA LARS gradient preparation: one block per segment computes both norms (block reduction in
// fp32 over per-thread partials), then scales that segment's gradients. Deterministic.
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/lars.h"

namespace lockstep::cuda {

namespace {
__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = threadIdx.x < warps ? shared[threadIdx.x] : 0.f;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x == 0) shared[0] = v;
  __syncthreads();
  float total = shared[0];
  __syncthreads();  // shared is reused by the next call
  return total;
}

__global__ void lars_kernel(const float* __restrict__ w, float* __restrict__ g, const uint32_t* __restrict__ seg,
                            const uint8_t* __restrict__ flags, float weight_decay, float eta, float grad_scale,
                            float* __restrict__ norms) {
  __shared__ float shared[32];
  const int s = blockIdx.x;
  const uint32_t b = seg[2 * s], e = seg[2 * s + 1];
  float ww = 0.f, gg = 0.f;
  for (uint32_t i = b + threadIdx.x; i < e; i += blockDim.x) {
    float wi = w[i], gi = grad_scale * g[i];
    ww += wi * wi;
    gg += gi * gi;
  }
  ww = block_sum(ww, shared);
  gg = block_sum(gg, shared);
  const float wn = sqrtf(ww), gn = sqrtf(gg);
  if (threadIdx.x == 0) {
    norms[2 * s] = wn;
    norms[2 * s + 1] = gn;
  }
  const bool adapt = flags[s] & 1, decay = flags[s] & 2;
  const float trust = adapt ? lars_trust(wn, gn, weight_decay, eta) : 1.f;
  const float wd = decay ? weight_decay : 0.f;
  for (uint32_t i = b + threadIdx.x; i < e; i += blockDim.x) g[i] = trust * (grad_scale * g[i] + wd * w[i]);
}
}  // namespace

void lars_scale_gradients(Context& ctx, const Tensor& params, Tensor& grads, const Tensor& segments,
                          const Tensor& flags, float weight_decay, float eta, float grad_scale, Tensor& norms) {
  const int64_t s = segments.dim(0);
  if (s == 0) return;
  LS_CHECK(s <= 2147483647, "lars_scale_gradients: too many segments");
  lars_kernel<<<static_cast<unsigned>(s), 512, 0, stream(ctx)>>>(
      params.data<float>(), grads.data<float>(), segments.data<uint32_t>(), flags.data<uint8_t>(), weight_decay,
      eta, grad_scale, norms.data<float>());
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
