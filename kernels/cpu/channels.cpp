// CPU pad_channels / slice_channels (f32, as the whole CPU backend).
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

}  // namespace lockstep::cpu
