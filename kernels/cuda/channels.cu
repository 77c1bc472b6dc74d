// CUDA pad_channels / slice_channels: one thread per element of the output, grid-stride. The
// tensors are small or read once (an input batch of 3 channels, a stem weight), so plain
// element copies are enough.
#include "kernels/args.h"
#include "kernels/channels.h"
#include "kernels/cuda/cuda_state.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::cuda {

namespace {

template <typename T>
__global__ void pad_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t n, int64_t narrow, int64_t wide) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / wide, c = i - row * wide;
    dst[i] = c < narrow ? src[row * narrow + c] : T(0.f);
  }
}

template <typename T>
__global__ void slice_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t n, int64_t narrow, int64_t wide) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / narrow, c = i - row * narrow;
    dst[i] = src[row * wide + c];
  }
}

}  // namespace

void pad_channels(Context& ctx, const Tensor& src, Tensor& dst) {
  expect_on(ctx, src, "pad_channels", "src");
  expect_on(ctx, dst, "pad_channels", "dst");
  expect_float(src, "pad_channels", "src");
  const ChannelRows r = channel_rows(src, dst, "pad_channels");
  const int64_t n = dst.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(src.dtype(), T, {
    pad_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(static_cast<const T*>(src.raw()),
                                                             static_cast<T*>(dst.raw()), n, r.narrow, r.wide);
  });
  CUDA_CHECK_LAUNCH();
}

void slice_channels(Context& ctx, const Tensor& src, Tensor& dst) {
  expect_on(ctx, src, "slice_channels", "src");
  expect_on(ctx, dst, "slice_channels", "dst");
  expect_float(src, "slice_channels", "src");
  const ChannelRows r = channel_rows(dst, src, "slice_channels");
  const int64_t n = dst.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(src.dtype(), T, {
    slice_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(static_cast<const T*>(src.raw()),
                                                               static_cast<T*>(dst.raw()), n, r.narrow, r.wide);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::cuda
