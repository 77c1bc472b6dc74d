// Image normalization: a u8 NHWC batch becomes a float NHWC batch with per-channel mean and std
// (in the 0..255 scale of the input) and an optional per-sample horizontal flip, in one pass:
// dst[n, h, w, c] = (src[n, h, flip[n] ? W-1-w : w, c] - mean[c]) / std[c].
#pragma once

#include <array>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

struct Normalization {
  static constexpr int kMaxChannels = 4;
  std::array<float, kMaxChannels> mean{};
  std::array<float, kMaxChannels> std{1.f, 1.f, 1.f, 1.f};
  // ImageNet's mean and std in the 0..255 scale (torchvision's values x 255).
  static Normalization imagenet() {
    return {{123.675f, 116.28f, 103.53f, 0.f}, {58.395f, 57.12f, 57.375f, 1.f}};
  }
};

// src u8 (N, H, W, C) with C <= 4; dst (N, H, W, C) f32 / bf16 / f16 (f32 on CPU);
// flip: u8 (N) (nonzero = mirror that sample) or null.
void normalize_images(Context& ctx, const Normalization& norm, const Tensor& src,
                      const Tensor* flip, Tensor& dst);

namespace cpu {
void normalize_images(Context&, const Normalization&, const Tensor& src, const Tensor* flip, Tensor& dst);
}
namespace cuda {
void normalize_images(Context&, const Normalization&, const Tensor& src, const Tensor* flip, Tensor& dst);
}

}  // namespace lockstep
