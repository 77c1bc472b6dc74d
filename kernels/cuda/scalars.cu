// CUDA write_scalars: one thread per value, the values passed by value in the launch.
#include "kernels/scalars.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

__global__ void write_scalars_kernel(ScalarPack p, float* __restrict__ dst) {
  const int i = threadIdx.x;
  if (i < p.n) dst[i] = p.v[i];
}

void write_scalars(Context& ctx, Tensor& dst, const ScalarPack& p) {
  write_scalars_kernel<<<1, kMaxScalars, 0, stream(ctx)>>>(p, dst.data<float>());
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
