// Augmentation: random-resized-crop boxes (bounds, distribution, determinism), the val centre
// crop's geometry, and the antialiased resampler (identity, constants, averaging, flips).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>
#include <vector>

#include "data/augment.h"

namespace lockstep::data {
namespace {

TEST(Augment, RandomResizedCropBoxesStayInsideTheImage) {
  const AugmentSpec spec;
  for (auto [w, h] : {std::pair{500, 375}, std::pair{375, 500}, std::pair{1, 1}, std::pair{500, 33},
                      std::pair{33, 500}, std::pair{2, 3}, std::pair{4000, 10}}) {
    for (uint64_t i = 0; i < 2000; ++i) {
      CropBox b = random_resized_crop(w, h, spec, 42, 3, i);
      ASSERT_GE(b.x, 0) << w << "x" << h << " #" << i;
      ASSERT_GE(b.y, 0);
      ASSERT_GE(b.w, 1);
      ASSERT_GE(b.h, 1);
      ASSERT_LE(b.x + b.w, w);
      ASSERT_LE(b.y + b.h, h);
      // Whole pixels, as torchvision's get_params returns.
      ASSERT_EQ(b.x, std::floor(b.x));
      ASSERT_EQ(b.w, std::floor(b.w));
    }
  }
}

TEST(Augment, RandomResizedCropAreaAndRatioWithinBounds) {
  const AugmentSpec spec;
  const int w = 500, h = 375;
  int in_bounds = 0;
  double min_frac = 1, max_frac = 0, mean_log_ratio = 0;
  const int n = 5000;
  for (uint64_t i = 0; i < n; ++i) {
    CropBox b = random_resized_crop(w, h, spec, 7, 0, i);
    const double frac = b.w * b.h / (double(w) * h), ratio = b.w / b.h;
    min_frac = std::min(min_frac, frac);
    max_frac = std::max(max_frac, frac);
    mean_log_ratio += std::log(ratio) / n;
    // Rounding w and h to whole pixels moves area and ratio a little.
    if (frac >= spec.scale_min * 0.97 && frac <= spec.scale_max && ratio >= spec.ratio_min * 0.97 &&
        ratio <= spec.ratio_max * 1.03)
      ++in_bounds;
  }
  // Draws that miss in 10 tries fall back to a centre crop of the whole image, which is in
  // bounds too here (500/375 = 4/3).
  EXPECT_GE(in_bounds, n * 99 / 100);
  EXPECT_LT(min_frac, 0.10);  // the whole range is used
  EXPECT_GT(max_frac, 0.90);
  // On a wide image, tall crops of large area are rejected more often: the mean leans wide.
  EXPECT_GT(mean_log_ratio, 0.0);
  // On a square image rejection is symmetric, and the log-uniform ratio averages to log 1.
  double square_mean = 0;
  for (uint64_t i = 0; i < n; ++i) {
    CropBox b = random_resized_crop(400, 400, spec, 7, 0, i);
    square_mean += std::log(b.w / b.h) / n;
  }
  EXPECT_NEAR(square_mean, 0.0, 0.01);  // the sd of one draw is ~0.17: 0.01 is ~4 sigma
}

TEST(Augment, RandomResizedCropFallbackIsTheClampedCentreCrop) {
  // A 4000 x 10 strip: no try can fit (the ratio would have to be ~400), so torchvision's fallback
  // applies: h = 10, w = round(10 * 4/3) = 13, centred.
  CropBox b = random_resized_crop(4000, 10, AugmentSpec{}, 1, 0, 0);
  EXPECT_EQ(b.h, 10);
  EXPECT_EQ(b.w, 13);
  EXPECT_EQ(b.x, (4000 - 13) / 2);
  EXPECT_EQ(b.y, 0);
  // Scale fixed above 1: every try is too big, so the whole image (ratio in range) is taken.
  AugmentSpec big;
  big.scale_min = big.scale_max = 1.5;
  b = random_resized_crop(400, 300, big, 1, 0, 0);
  EXPECT_EQ(std::make_tuple(b.x, b.y, b.w, b.h), std::make_tuple(0.0, 0.0, 400.0, 300.0));
}

TEST(Augment, RandomResizedCropIsAPureFunctionOfSeedEpochIndex) {
  const AugmentSpec spec;
  auto key = [](const CropBox& b) { return std::make_tuple(b.x, b.y, b.w, b.h, b.flip); };
  std::set<std::tuple<double, double, double, double, bool>> distinct;
  for (uint64_t i = 0; i < 200; ++i) {
    CropBox a = random_resized_crop(640, 480, spec, 5, 2, i);
    CropBox b = random_resized_crop(640, 480, spec, 5, 2, i);
    EXPECT_EQ(key(a), key(b));
    distinct.insert(key(a));
  }
  EXPECT_GT(distinct.size(), 195u);  // different across indices
  int same_epoch = 0, same_seed = 0;
  for (uint64_t i = 0; i < 200; ++i) {
    same_epoch += key(random_resized_crop(640, 480, spec, 5, 2, i)) == key(random_resized_crop(640, 480, spec, 5, 3, i));
    same_seed += key(random_resized_crop(640, 480, spec, 5, 2, i)) == key(random_resized_crop(640, 480, spec, 6, 2, i));
  }
  EXPECT_LT(same_epoch, 5);
  EXPECT_LT(same_seed, 5);
}

TEST(Augment, FlipFrequencyIsAboutHalf) {
  int flips = 0;
  const int n = 20000;
  for (uint64_t i = 0; i < n; ++i) flips += random_resized_crop(500, 375, AugmentSpec{}, 9, 1, i).flip;
  EXPECT_NEAR(flips / double(n), 0.5, 0.02);  // 5.6 sigma
  EXPECT_FALSE(center_crop(500, 375, 224, AugmentSpec{}).flip);
}

TEST(Augment, CenterCropGeometry) {
  const AugmentSpec spec;
  // 500 x 375 -> Resize(256) makes 341 x 256; CenterCrop(224) keeps 224/256 = 0.875 of the short
  // side, centred: in original pixels a square of 328.125 at ((500 - 328.125) / 2, 0 + 23.4375).
  CropBox b = center_crop(500, 375, 224, spec);
  EXPECT_DOUBLE_EQ(b.w, 328.125);
  EXPECT_DOUBLE_EQ(b.h, 328.125);
  EXPECT_DOUBLE_EQ(b.x, (500 - 328.125) / 2);
  EXPECT_DOUBLE_EQ(b.y, (375 - 328.125) / 2);
  // torchvision's crop offset in the resized image, mapped back, is within one resized pixel.
  const double s = 375.0 / 256, resized_w = std::floor(256.0 * 500 / 375);
  EXPECT_NEAR(b.x, std::round((resized_w - 224) / 2) * s, s);
  EXPECT_NEAR(b.y, std::round((256 - 224) / 2.0) * s, s);
  // Portrait and square images, and a custom fraction.
  b = center_crop(300, 600, 224, spec);
  EXPECT_DOUBLE_EQ(b.w, 262.5);
  EXPECT_DOUBLE_EQ(b.x, 18.75);
  EXPECT_DOUBLE_EQ(b.y, 168.75);
  AugmentSpec full;
  full.val_crop_fraction = 1.0;
  b = center_crop(64, 64, 32, full);
  EXPECT_EQ(std::make_tuple(b.x, b.y, b.w, b.h), std::make_tuple(0.0, 0.0, 64.0, 64.0));
}

std::vector<uint8_t> random_image(int w, int h, uint32_t seed) {
  std::vector<uint8_t> px(size_t(w) * h * 3);
  uint32_t s = seed;
  for (auto& p : px) p = static_cast<uint8_t>((s = s * 1664525u + 1013904223u) >> 24);
  return px;
}

TEST(Resize, IdentityWhenBoxIsTheImageAndSizesAgree) {
  const int w = 37, h = 23;
  auto src = random_image(w, h, 1);
  std::vector<uint8_t> out(src.size());
  resize_crop(src.data(), w, h, CropBox{0, 0, double(w), double(h), false}, out.data(), w, h);
  EXPECT_EQ(out, src);
  // An integer-offset box of the output's size copies that window exactly.
  std::vector<uint8_t> win(size_t(10) * 8 * 3);
  resize_crop(src.data(), w, h, CropBox{5, 7, 10, 8, false}, win.data(), 10, 8);
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 10; ++x)
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(win[(size_t(y) * 10 + x) * 3 + c], src[(size_t(y + 7) * w + x + 5) * 3 + c]);
}

TEST(Resize, ConstantImageStaysConstant) {
  const int w = 50, h = 31;
  std::vector<uint8_t> src(size_t(w) * h * 3);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i % 3 == 0 ? 200 : i % 3 == 1 ? 17 : 99);
  for (CropBox b : {CropBox{0, 0, 50, 31, false}, CropBox{3.3, 2.7, 20.1, 11.9, true}, CropBox{0, 0, 1, 1, false},
                    CropBox{40, 20, 10, 11, false}}) {
    for (auto [dw, dh] : {std::pair{7, 5}, std::pair{224, 224}, std::pair{1, 1}}) {
      std::vector<uint8_t> out(size_t(dw) * dh * 3);
      resize_crop(src.data(), w, h, b, out.data(), dw, dh);
      for (size_t i = 0; i < out.size(); i += 3) {
        ASSERT_EQ(out[i], 200);
        ASSERT_EQ(out[i + 1], 17);
        ASSERT_EQ(out[i + 2], 99);
      }
    }
  }
}

TEST(Resize, DownscaledCheckerboardAveragesToGrey) {
  // A 1-pixel checkerboard shrunk 4x: with antialiasing every output pixel is ~127.5; a filter
  // that did not widen (point or plain 2-tap bilinear sampling) would alias to 0/255 patterns.
  const int w = 256, h = 256;
  std::vector<uint8_t> src(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) src[(size_t(y) * w + x) * 3 + c] = ((x + y) & 1) ? 255 : 0;
  for (int d : {64, 37, 100}) {
    std::vector<uint8_t> out(size_t(d) * d * 3);
    resize_crop(src.data(), w, h, CropBox{0, 0, double(w), double(h), false}, out.data(), d, d);
    int worst = 0;
    for (uint8_t v : out) worst = std::max(worst, std::abs(int(v) - 128));
    EXPECT_LE(worst, d == 100 ? 12 : 6) << d;
  }
}

TEST(Resize, FlipMirrorsTheOutput) {
  const int w = 41, h = 29;
  auto src = random_image(w, h, 2);
  for (CropBox b : {CropBox{0, 0, 41, 29, false}, CropBox{2.5, 3.25, 30.5, 20, false}}) {
    for (auto [dw, dh] : {std::pair{41, 29}, std::pair{16, 12}, std::pair{90, 70}}) {
      std::vector<uint8_t> a(size_t(dw) * dh * 3), m(a.size());
      resize_crop(src.data(), w, h, b, a.data(), dw, dh);
      CropBox f = b;
      f.flip = true;
      resize_crop(src.data(), w, h, f, m.data(), dw, dh);
      for (int y = 0; y < dh; ++y)
        for (int x = 0; x < dw; ++x)
          for (int c = 0; c < 3; ++c)
            ASSERT_EQ(m[(size_t(y) * dw + x) * 3 + c], a[(size_t(y) * dw + (dw - 1 - x)) * 3 + c]) << x << "," << y;
    }
  }
}

TEST(Resize, UpscalingInterpolatesLinearly) {
  // A horizontal ramp 0, 100, 200 upscaled 2x: interior outputs lie between their neighbours,
  // the ends clamp to the border pixels.
  const uint8_t src[9] = {0, 0, 0, 100, 100, 100, 200, 200, 200};
  uint8_t out[6 * 3];
  resize_crop(src, 3, 1, CropBox{0, 0, 3, 1, false}, out, 6, 1);
  const int want[6] = {0, 25, 75, 125, 175, 200};
  for (int x = 0; x < 6; ++x) EXPECT_EQ(out[3 * x], want[x]) << x;
}

TEST(Resize, MatchesADirectBoxAverageWhenShrinkingByAnInteger) {
  // A smooth image shrunk 2x with the triangle filter is close to 2x2 box averaging.
  const int w = 64, h = 48;
  std::vector<uint8_t> src(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) src[(size_t(y) * w + x) * 3 + c] = static_cast<uint8_t>(x + 2 * y + 10 * c);
  std::vector<uint8_t> out(size_t(32) * 24 * 3);
  resize_crop(src.data(), w, h, CropBox{0, 0, 64, 48, false}, out.data(), 32, 24);
  for (int y = 1; y < 23; ++y)
    for (int x = 1; x < 31; ++x) {
      const double want = (2 * x + 0.5) + 2 * (2 * y + 0.5);
      ASSERT_NEAR(out[(size_t(y) * 32 + x) * 3], want, 0.51) << x << "," << y;
    }
}

TEST(Resize, ArbitraryBoxesStayInsideTheSource) {
  // Boxes the loader may produce after mapping onto a DCT-scaled image: fractional, touching or
  // slightly crossing the border, tiny or larger than the image. Every output is a weighted mean
  // of source pixels, so it lies within the source's range (and valgrind sees no stray read).
  const int w = 23, h = 17;
  std::vector<uint8_t> src(size_t(w) * h * 3);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(60 + (i * 7919) % 100);
  uint32_t s = 5;
  auto u = [&] { return ((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0; };
  for (int t = 0; t < 500; ++t) {
    CropBox b{u() * w - 1, u() * h - 1, 0.01 + u() * w * 1.2, 0.01 + u() * h * 1.2, u() < 0.5};
    const int dw = 1 + int(u() * 40), dh = 1 + int(u() * 40);
    std::vector<uint8_t> out(size_t(dw) * dh * 3);
    resize_crop(src.data(), w, h, b, out.data(), dw, dh);
    for (uint8_t v : out) ASSERT_TRUE(v >= 60 && v < 160) << int(v);
  }
}

// The separable triangle filter of augment.cpp's header, in double: taps of one axis for output o.
std::vector<std::pair<int, double>> reference_taps(int size, double x0, double w, int n, int o) {
  const double scale = w / n, s = std::max(1.0, scale), c = x0 + (o + 0.5) * scale;
  const int lo = std::max(0, static_cast<int>(std::floor(c - s + 0.5)));
  const int hi = std::min({size, static_cast<int>(std::floor(c + s + 0.5)), lo + static_cast<int>(std::ceil(s)) * 2 + 1});
  std::vector<std::pair<int, double>> taps;
  double total = 0;
  for (int j = lo; j < hi; ++j) {
    const double v = std::max(0.0, 1.0 - std::fabs((j + 0.5 - c) / s));
    taps.emplace_back(j, v);
    total += v;
  }
  if (total <= 0) return {{std::clamp(static_cast<int>(std::floor(c)), 0, size - 1), 1.0}};
  for (auto& t : taps) t.second /= total;
  return taps;
}

TEST(Resize, MatchesTheFilterInDoubleOnRandomImages) {
  // Random pixels, boxes and output sizes (odd widths, and widths below and above the vectorised
  // horizontal pass's groups of four pixels), mirrored or not: every byte is the double-precision
  // filter's value rounded, give or take one where float sums land the other side of a half.
  uint32_t s = 17;
  auto u = [&] { return ((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0; };
  int off_by_one = 0, total = 0;
  for (int t = 0; t < 200; ++t) {
    const int w = 1 + int(u() * 90), h = 1 + int(u() * 60);
    std::vector<uint8_t> src(size_t(w) * h * 3);
    for (auto& v : src) v = static_cast<uint8_t>(u() * 256);
    const CropBox b{u() * w * 0.5, u() * h * 0.5, 0.5 + u() * w * 0.5, 0.5 + u() * h * 0.5, u() < 0.5};
    const int dw = 1 + int(u() * 70), dh = 1 + int(u() * 20);
    std::vector<uint8_t> out(size_t(dw) * dh * 3);
    resize_crop(src.data(), w, h, b, out.data(), dw, dh);
    for (int y = 0; y < dh; ++y) {
      const auto ty = reference_taps(h, b.y, b.h, dh, y);
      for (int x = 0; x < dw; ++x) {
        const auto tx = reference_taps(w, b.x, b.w, dw, b.flip ? dw - 1 - x : x);
        for (int c = 0; c < 3; ++c) {
          double v = 0;
          for (const auto& [sy, wy] : ty)
            for (const auto& [sx, wx] : tx) v += wy * wx * src[(size_t(sy) * w + sx) * 3 + c];
          const int want = static_cast<int>(std::clamp(v, 0.0, 255.0) + 0.5);
          const int got = out[(size_t(y) * dw + x) * 3 + c];
          ASSERT_LE(std::abs(got - want), 1) << "case " << t << " " << w << "x" << h << " -> " << dw << "x" << dh
                                             << " pixel " << x << "," << y << " channel " << c << ": " << v;
          off_by_one += got != want;
          ++total;
        }
      }
    }
  }
  EXPECT_LT(off_by_one, total / 100) << "rounding differs from the double filter too often";
}

}  // namespace
}  // namespace lockstep::data
