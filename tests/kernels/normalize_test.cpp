// Tests of image normalization: CPU against a naive NHWC loop with and without flips (C = 3 and
// C = 1, odd widths), argument errors, and CUDA against CPU for f32 / bf16 / f16 outputs.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/copy.h"
#include "kernels/normalize.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

std::vector<uint8_t> random_bytes(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> d(0, 255);
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<uint8_t>(d(gen));
  return v;
}

OwnedTensor u8_tensor(Context& ctx, Shape s, const std::vector<uint8_t>& v) {
  OwnedTensor h(Device::cpu(), s, DType::u8);
  std::memcpy(h.view().raw(), v.data(), v.size());
  OwnedTensor d(ctx.device(), s, DType::u8);
  copy(ctx, h, d);
  return d;
}

std::vector<float> naive_normalize(const Normalization& norm, const std::vector<uint8_t>& src,
                                   const std::vector<uint8_t>* flip, int64_t N, int64_t H, int64_t W,
                                   int64_t C) {
  std::vector<float> out(src.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w)
        for (int64_t c = 0; c < C; ++c) {
          const int64_t sw = (flip && (*flip)[n]) ? W - 1 - w : w;
          const float v = src[((n * H + h) * W + sw) * C + c];
          out[((n * H + h) * W + w) * C + c] = (v - norm.mean[c]) / norm.std[c];
        }
  return out;
}

struct Geometry {
  int64_t N, H, W, C;
};
const Geometry kGeometries[] = {{3, 5, 7, 3}, {2, 4, 9, 1}, {1, 1, 1, 3}, {4, 3, 1, 4}, {2, 6, 5, 2}};

Normalization test_norm(int64_t C) {
  Normalization n = Normalization::imagenet();
  if (C == 1) n = {{127.5f, 0, 0, 0}, {63.75f, 1, 1, 1}};
  if (C == 4) n.std[3] = 2.0f;
  return n;
}

TEST(NormalizeCpu, MatchesNaiveWithAndWithoutFlip) {
  Context ctx(Device::cpu());
  uint32_t seed = 1;
  for (const Geometry& g : kGeometries) {
    SCOPED_TRACE(Shape({g.N, g.H, g.W, g.C}).str());
    const Shape s{g.N, g.H, g.W, g.C};
    std::vector<uint8_t> src = random_bytes(s.numel(), seed++);
    std::vector<uint8_t> flip(static_cast<size_t>(g.N));
    for (int64_t n = 0; n < g.N; ++n) flip[n] = (n % 2 == 0) ? 1 : 0;
    if (g.N > 2) flip[2] = 255;  // any nonzero value mirrors
    const Normalization norm = test_norm(g.C);
    OwnedTensor src_t = u8_tensor(ctx, s, src), flip_t = u8_tensor(ctx, {g.N}, flip);
    OwnedTensor dst(Device::cpu(), s, DType::f32);
    for (bool with_flip : {false, true}) {
      test::poison(ctx, dst);
      normalize_images(ctx, norm, src_t, with_flip ? &flip_t.view() : nullptr, dst);
      EXPECT_EQ(test::host_values(dst),
                naive_normalize(norm, src, with_flip ? &flip : nullptr, g.N, g.H, g.W, g.C))
          << (with_flip ? "flipped" : "unflipped");
    }
  }
}

TEST(NormalizeCpu, KnownValuesAndMirror) {
  // One 1x1x3 row of C = 1: [0, 128, 255], mean 128, std 2 -> [-64, 0, 63.5]; mirrored reversed.
  Context ctx(Device::cpu());
  OwnedTensor src = u8_tensor(ctx, {1, 1, 3, 1}, {0, 128, 255});
  OwnedTensor flip = u8_tensor(ctx, {1}, {1});
  OwnedTensor dst(Device::cpu(), {1, 1, 3, 1}, DType::f32);
  Normalization norm{{128.f, 0, 0, 0}, {2.f, 1, 1, 1}};
  normalize_images(ctx, norm, src, nullptr, dst);
  EXPECT_EQ(test::host_values(dst), (std::vector<float>{-64.f, 0.f, 63.5f}));
  normalize_images(ctx, norm, src, &flip.view(), dst);
  EXPECT_EQ(test::host_values(dst), (std::vector<float>{63.5f, 0.f, -64.f}));
}

TEST(NormalizeCpu, ArgumentErrors) {
  Context ctx(Device::cpu());
  const Normalization norm = Normalization::imagenet();
  OwnedTensor src(Device::cpu(), {2, 3, 3, 3}, DType::u8);
  OwnedTensor dst(Device::cpu(), {2, 3, 3, 3}, DType::f32);
  OwnedTensor dst_bf16(Device::cpu(), {2, 3, 3, 3}, DType::bf16);
  OwnedTensor dst_wrong(Device::cpu(), {2, 3, 3, 4}, DType::f32);
  OwnedTensor src_f32(Device::cpu(), {2, 3, 3, 3}, DType::f32);
  OwnedTensor src_c5(Device::cpu(), {1, 2, 2, 5}, DType::u8), dst_c5(Device::cpu(), {1, 2, 2, 5}, DType::f32);
  OwnedTensor src_3d(Device::cpu(), {3, 3, 3}, DType::u8), dst_3d(Device::cpu(), {3, 3, 3}, DType::f32);
  OwnedTensor flip_short(Device::cpu(), {1}, DType::u8), flip_f32(Device::cpu(), {2}, DType::f32);
  EXPECT_THROW(normalize_images(ctx, norm, src, nullptr, dst_bf16), Error);  // CPU is f32 only
  EXPECT_THROW(normalize_images(ctx, norm, src, nullptr, dst_wrong), Error);
  EXPECT_THROW(normalize_images(ctx, norm, src_f32, nullptr, dst), Error);
  EXPECT_THROW(normalize_images(ctx, norm, src_c5, nullptr, dst_c5), Error);
  EXPECT_THROW(normalize_images(ctx, norm, src_3d, nullptr, dst_3d), Error);
  EXPECT_THROW(normalize_images(ctx, norm, src, &flip_short.view(), dst), Error);
  EXPECT_THROW(normalize_images(ctx, norm, src, &flip_f32.view(), dst), Error);
  Normalization zero_std = norm;
  zero_std.std[1] = 0.f;
  EXPECT_THROW(normalize_images(ctx, zero_std, src, nullptr, dst), Error);
}

TEST(NormalizeCuda, MatchesCpuForEveryOutputType) {
  LS_REQUIRE_GPU();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  uint32_t seed = 50;
  std::vector<Geometry> geometries(std::begin(kGeometries), std::end(kGeometries));
  geometries.push_back({5, 37, 61, 3});  // bigger than one block, odd sizes
  for (const Geometry& g : geometries) {
    const Shape s{g.N, g.H, g.W, g.C};
    std::vector<uint8_t> src = random_bytes(s.numel(), seed++);
    std::vector<uint8_t> flip(static_cast<size_t>(g.N));
    for (int64_t n = 0; n < g.N; ++n) flip[n] = static_cast<uint8_t>((n * 7 + 1) % 3);
    const Normalization norm = test_norm(g.C);
    OwnedTensor src_c = u8_tensor(cpu, s, src), flip_c = u8_tensor(cpu, {g.N}, flip);
    OwnedTensor src_g = u8_tensor(gpu, s, src), flip_g = u8_tensor(gpu, {g.N}, flip);
    OwnedTensor ref(Device::cpu(), s, DType::f32);
    for (bool with_flip : {false, true}) {
      normalize_images(cpu, norm, src_c, with_flip ? &flip_c.view() : nullptr, ref);
      for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
        SCOPED_TRACE(s.str() + " " + std::string(dtype_name(dt)) + (with_flip ? " flipped" : ""));
        OwnedTensor out(gpu.device(), s, dt);
        test::poison(gpu, out);
        normalize_images(gpu, norm, src_g, with_flip ? &flip_g.view() : nullptr, out);
        const std::vector<float> got = test::to_host_f32(gpu, out);
        const std::vector<float> want = test::rounded(test::host_values(ref), dt);
        EXPECT_LT(test::rel_error(got, want), test::tolerance(dt));
        int bad = 0;
        for (size_t i = 0; i < got.size() && bad < 5; ++i)
          if (!(std::fabs(got[i] - want[i]) <= test::tolerance(dt) * std::max(1.f, std::fabs(want[i]))))
            ADD_FAILURE() << "element " << i << ": " << got[i] << " vs " << want[i] << " (" << ++bad << ")";
      }
    }
  }
}

TEST(NormalizeCuda, ArgumentErrors) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  const Normalization norm = Normalization::imagenet();
  OwnedTensor src(gpu.device(), {2, 3, 3, 3}, DType::u8);
  OwnedTensor dst_host(Device::cpu(), {2, 3, 3, 3}, DType::f32);
  OwnedTensor dst_u8(gpu.device(), {2, 3, 3, 3}, DType::u8);
  OwnedTensor flip_host(Device::cpu(), {2}, DType::u8);
  OwnedTensor dst(gpu.device(), {2, 3, 3, 3}, DType::bf16);
  EXPECT_THROW(normalize_images(gpu, norm, src, nullptr, dst_host), Error);
  EXPECT_THROW(normalize_images(gpu, norm, src, nullptr, dst_u8), Error);
  EXPECT_THROW(normalize_images(gpu, norm, src, &flip_host.view(), dst), Error);
}

}  // namespace
}  // namespace lockstep
