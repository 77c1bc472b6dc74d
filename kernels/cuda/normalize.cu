// CUDA image normalization: u8 NHWC -> f32 / bf16 / f16 NHWC, one grid-stride thread per output
// element. Writes are coalesced; reads are coalesced too except within a mirrored row, where
// they run backwards over the same cache lines. The math is kernels/normalize_math.h.
#include "kernels/normalize.h"
#include "kernels/normalize_math.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

template <typename T>
__global__ void normalize_kernel(NormalizeParams p, const uint8_t* __restrict__ src,
                                 const uint8_t* __restrict__ flip, T* __restrict__ dst, int64_t H,
                                 int64_t W, int64_t C, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = from_f32<T>(normalize_value(p, src[normalize_src_index(i, H, W, C, flip)], i % C));
}

void normalize_images(Context& ctx, const Normalization& norm, const Tensor& src, const Tensor* flip,
                      Tensor& dst) {
  check_normalize_args(ctx, norm, src, flip, dst);
  const int64_t n = dst.numel();
  if (n == 0) return;
  const int64_t H = src.dim(1), W = src.dim(2), C = src.dim(3);
  const uint8_t* f = flip ? flip->data<uint8_t>() : nullptr;
  LS_FLOAT_DISPATCH(dst.dtype(), T, {
    normalize_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(
        normalize_params(norm), src.data<uint8_t>(), f, static_cast<T*>(dst.raw()), H, W, C, n);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
