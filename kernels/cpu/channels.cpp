// CPU pad_channels / slice_channels and space-to-depth (f32, as the whole CPU backend).
#include "kernels/channels.h"

#include <algorithm>

#include "kernels/args.h"

namespace lockstep::cpu {

void pad_channels(Context& ctx, const Tensor& src, Tensor& dst) {
  expect_on(ctx, src, "pad_channels", "src");
  expect_on(ctx, dst, "pad_channels", "dst");
  expect_cpu_f32({&src, &dst}, "pad_channels");
  const ChannelRows r = channel_rows(src, dst, "pad_channels");
  const float* s = src.data<float>();
  float* d = dst.data<float>();
  for (int64_t i = 0; i < r.rows; ++i) {
    std::copy(s + i * r.narrow, s + (i + 1) * r.narrow, d + i * r.wide);
    std::fill(d + i * r.wide + r.narrow, d + (i + 1) * r.wide, 0.f);
  }
}

void slice_channels(Context& ctx, const Tensor& src, Tensor& dst) {
  expect_on(ctx, src, "slice_channels", "src");
  expect_on(ctx, dst, "slice_channels", "dst");
  expect_cpu_f32({&src, &dst}, "slice_channels");
  const ChannelRows r = channel_rows(dst, src, "slice_channels");
  const float* s = src.data<float>();
  float* d = dst.data<float>();
  for (int64_t i = 0; i < r.rows; ++i) std::copy(s + i * r.wide, s + i * r.wide + r.narrow, d + i * r.narrow);
}

void space_to_depth2(Context& ctx, const Tensor& src, int pad, Tensor& dst) {
  expect_on(ctx, src, "space_to_depth2", "src");
  expect_on(ctx, dst, "space_to_depth2", "dst");
  expect_cpu_f32({&src, &dst}, "space_to_depth2");
  const SpaceToDepthShape g = space_to_depth_shape(src, dst, pad, false, "space_to_depth2");
  const float* s = src.data<float>();
  float* d = dst.data<float>();
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t b = 0; b < g.hb; ++b)
      for (int64_t e = 0; e < g.wb; ++e) {
        float* out = d + ((n * g.hb + b) * g.wb + e) * g.cd;
        std::fill(out, out + g.cd, 0.f);
        for (int p = 0; p < 2; ++p) {
          const int64_t h = 2 * b + p - pad;
          if (h < 0 || h >= g.h) continue;
          for (int q = 0; q < 2; ++q) {
            const int64_t w = 2 * e + q - pad;
            if (w < 0 || w >= g.w) continue;
            const float* in = s + ((n * g.h + h) * g.w + w) * g.c;
            std::copy(in, in + g.c, out + (p * 2 + q) * g.c);
          }
        }
      }
}

void depth_to_space2(Context& ctx, const Tensor& src, int pad, Tensor& dst) {
  expect_on(ctx, src, "depth_to_space2", "src");
  expect_on(ctx, dst, "depth_to_space2", "dst");
  expect_cpu_f32({&src, &dst}, "depth_to_space2");
  const SpaceToDepthShape g = space_to_depth_shape(dst, src, pad, true, "depth_to_space2");
  const float* s = src.data<float>();
  float* d = dst.data<float>();
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t h = 0; h < g.h; ++h)
      for (int64_t w = 0; w < g.w; ++w) {
        const int64_t b = (h + pad) / 2, e = (w + pad) / 2, phase = ((h + pad) % 2) * 2 + (w + pad) % 2;
        const float* in = s + ((n * g.hb + b) * g.wb + e) * g.cd + phase * g.c;
        std::copy(in, in + g.c, d + ((n * g.h + h) * g.w + w) * g.c);
      }
}

}  // namespace lockstep::cpu
