// CUDA random fills: one thread per Philox counter, writing its four elements (the last group
// may be partial). The math is kernels/random_math.h, identical to the CPU's.
#include "kernels/random.h"
#include "kernels/random_math.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

template <typename T, bool kNormal>
__global__ void fill_kernel(T* __restrict__ out, int64_t n, float a, float b, uint64_t seed,
                            uint64_t offset) {
  const int64_t counters = (n + 3) / 4;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < counters;
       j += int64_t(gridDim.x) * blockDim.x) {
    float v[4];
    if (kNormal) normal4(seed, offset + static_cast<uint64_t>(j), a, b, v);
    else uniform4(seed, offset + static_cast<uint64_t>(j), a, b, v);
#pragma unroll
    for (int k = 0; k < 4; ++k)
      if (4 * j + k < n) out[4 * j + k] = from_f32<T>(v[k]);
  }
}

template <bool kNormal>
void fill(Context& ctx, Tensor& t, float a, float b, uint64_t seed, uint64_t offset) {
  const int64_t n = t.numel();
  if (n == 0) return;
  const int64_t counters = static_cast<int64_t>(random_counters(n));
  LS_FLOAT_DISPATCH(t.dtype(), T, {
    fill_kernel<T, kNormal><<<grid_for(counters), kThreads, 0, stream(ctx)>>>(
        static_cast<T*>(t.raw()), n, a, b, seed, offset);
  });
  CUDA_CHECK_LAUNCH();
}

void fill_uniform(Context& ctx, Tensor& t, float lo, float hi, uint64_t seed, uint64_t offset) {
  check_random_args(ctx, t, "fill_uniform");
  fill<false>(ctx, t, lo, hi, seed, offset);
}

void fill_normal(Context& ctx, Tensor& t, float mean, float stddev, uint64_t seed, uint64_t offset) {
  check_random_args(ctx, t, "fill_normal");
  fill<true>(ctx, t, mean, stddev, seed, offset);
}

}  // namespace lockstep::cuda
