// Per-element image normalization shared by the CPU and CUDA backends: the source index of an
// NHWC output element (with the per-sample horizontal flip) and (v - mean[c]) / std[c].
// A true division (not a multiply by 1/std) so both backends round identically.
#pragma once

#include <cstdint>

#include "kernels/args.h"
#include "kernels/half.h"
#include "kernels/normalize.h"

namespace lockstep {

// A plain copy of Normalization that a kernel can take by value.
struct NormalizeParams {
  float mean[Normalization::kMaxChannels];
  float std[Normalization::kMaxChannels];
};

inline NormalizeParams normalize_params(const Normalization& n) {
  NormalizeParams p{};
  for (int c = 0; c < Normalization::kMaxChannels; ++c) {
    p.mean[c] = n.mean[c];
    p.std[c] = n.std[c];
  }
  return p;
}

// Output element i of an (N, H, W, C) tensor reads source element normalize_src_index(...).
// `flip` is the u8 (N) flag array or null.
LS_HD int64_t normalize_src_index(int64_t i, int64_t H, int64_t W, int64_t C, const uint8_t* flip) {
  const int64_t c = i % C;
  const int64_t w = (i / C) % W;
  const int64_t nh = i / (C * W);  // n * H + h
  const bool mirror = flip != nullptr && flip[nh / H] != 0;
  return (nh * W + (mirror ? W - 1 - w : w)) * C + c;
}

LS_HD float normalize_value(const NormalizeParams& p, uint8_t v, int64_t c) {
  return (static_cast<float>(v) - p.mean[c]) / p.std[c];
}

// Host-side argument checks shared by both backends.
inline void check_normalize_args(const Context& ctx, const Normalization& norm, const Tensor& src,
                                 const Tensor* flip, const Tensor& dst) {
  const char* op = "normalize_images";
  expect_on(ctx, src, op, "src");
  expect_on(ctx, dst, op, "dst");
  expect_dtype(src, DType::u8, op, "src");
  expect_float(dst, op, "dst");
  LS_CHECK(src.rank() == 4, op << ": src must be (N, H, W, C), got " << src.shape().str());
  LS_CHECK(src.dim(3) >= 1 && src.dim(3) <= Normalization::kMaxChannels,
           op << ": C must be 1.." << Normalization::kMaxChannels << ", got " << src.dim(3));
  expect_shape(dst, src.shape(), op, "dst");
  for (int64_t c = 0; c < src.dim(3); ++c)
    LS_CHECK(norm.std[c] != 0.0f, op << ": std[" << c << "] is 0");
  if (flip) {
    expect_on(ctx, *flip, op, "flip");
    expect_dtype(*flip, DType::u8, op, "flip");
    expect_numel(*flip, src.dim(0), op, "flip");
  }
}

}  // namespace lockstep
