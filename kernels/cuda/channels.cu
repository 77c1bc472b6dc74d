// CUDA pad_channels / slice_channels: one thread per element of the output, grid-stride. The
// tensors are small or read once (an input batch of 3 channels, a stem weight), so plain
// element copies are enough. space_to_depth2: one thread per output pixel (all its channels, so
// the index arithmetic is per pixel, not per element); depth_to_space2 (a weight gradient, a few
// thousand elements): one thread per output element.
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

template <typename T>
__global__ void space_to_depth2_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t pixels, int64_t h,
                                       int64_t w, int64_t c, int64_t hb, int64_t wb, int64_t cd, int pad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pixels; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = i % wb, nb = i / wb, b = nb % hb, n = nb / hb;
    T* out = dst + i * cd;
    for (int p = 0; p < 2; ++p)
      for (int q = 0; q < 2; ++q) {
        const int64_t y = 2 * b + p - pad, x = 2 * e + q - pad;
        T* o = out + (p * 2 + q) * c;
        if (y >= 0 && y < h && x >= 0 && x < w) {
          const T* in = src + ((n * h + y) * w + x) * c;
          for (int64_t k = 0; k < c; ++k) o[k] = in[k];
        } else {
          for (int64_t k = 0; k < c; ++k) o[k] = T(0.f);
        }
      }
    for (int64_t k = 4 * c; k < cd; ++k) out[k] = T(0.f);
  }
}

template <typename T>
__global__ void depth_to_space2_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t n_out, int64_t h,
                                       int64_t w, int64_t c, int64_t hb, int64_t wb, int64_t cd, int pad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_out; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = i % c, pix = i / c, x = pix % w, ny = pix / w, y = ny % h, n = ny / h;
    const int64_t b = (y + pad) / 2, e = (x + pad) / 2, phase = ((y + pad) % 2) * 2 + (x + pad) % 2;
    dst[i] = src[((n * hb + b) * wb + e) * cd + phase * c + k];
  }
}

}  // namespace

void space_to_depth2(Context& ctx, const Tensor& src, int pad, Tensor& dst) {
  expect_on(ctx, src, "space_to_depth2", "src");
  expect_on(ctx, dst, "space_to_depth2", "dst");
  expect_float(src, "space_to_depth2", "src");
  const SpaceToDepthShape g = space_to_depth_shape(src, dst, pad, false, "space_to_depth2");
  const int64_t pixels = g.n * g.hb * g.wb;
  if (pixels == 0 || g.cd == 0) return;
  LS_FLOAT_DISPATCH(src.dtype(), T, {
    space_to_depth2_kernel<T><<<grid_for(pixels), kThreads, 0, stream(ctx)>>>(
        static_cast<const T*>(src.raw()), static_cast<T*>(dst.raw()), pixels, g.h, g.w, g.c, g.hb, g.wb, g.cd, pad);
  });
  CUDA_CHECK_LAUNCH();
}

void depth_to_space2(Context& ctx, const Tensor& src, int pad, Tensor& dst) {
  expect_on(ctx, src, "depth_to_space2", "src");
  expect_on(ctx, dst, "depth_to_space2", "dst");
  expect_float(src, "depth_to_space2", "src");
  const SpaceToDepthShape g = space_to_depth_shape(dst, src, pad, true, "depth_to_space2");
  const int64_t n = dst.numel();
  if (n == 0) return;
  LS_FLOAT_DISPATCH(src.dtype(), T, {
    depth_to_space2_kernel<T><<<grid_for(n), kThreads, 0, stream(ctx)>>>(
        static_cast<const T*>(src.raw()), static_cast<T*>(dst.raw()), n, g.h, g.w, g.c, g.hb, g.wb, g.cd, pad);
  });
  CUDA_CHECK_LAUNCH();
}

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
