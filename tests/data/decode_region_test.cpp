// Decoding a window (Decoder::decode_region, data/jpeg_window.cpp) against the whole decode, on
// fresh random images and regions: the window's pixels are the whole decode's, it covers what
// the resize reads, a crop through it equals the crop of the whole image, and bad data still
// throws DecodeError.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "data/augment.h"
#include "data/decode.h"
#include "data_test_util.h"

namespace lockstep::data {
namespace {

// Smooth gradients plus noise, so every block and every chroma sample differs.
std::vector<uint8_t> noisy_rgb(int w, int h, uint32_t seed) {
  std::vector<uint8_t> px = test::smooth_rgb(w, h);
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> d(-40, 40);
  for (auto& v : px) v = static_cast<uint8_t>(std::clamp(int(v) + d(g), 0, 255));
  return px;
}

struct Case {
  const char* name;
  std::vector<uint8_t> bytes;
  int w, h;
};

std::vector<Case> cases(uint32_t seed) {
  std::vector<Case> out;
  const int w = 333, h = 251;
  auto rgb = noisy_rgb(w, h, seed);
  out.push_back({"rgb", encode_jpeg(rgb.data(), w, h, 3, 90), w, h});
  std::vector<uint8_t> gray(size_t(w) * h);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = rgb[3 * i + 1];
  out.push_back({"gray", encode_jpeg(gray.data(), w, h, 1, 90), w, h});
  std::vector<uint8_t> cmyk(size_t(w) * h * 4);
  for (size_t i = 0; i < size_t(w) * h; ++i)
    for (int c = 0; c < 4; ++c) cmyk[4 * i + c] = rgb[3 * i + c % 3] ^ uint8_t(c * 37);
  out.push_back({"cmyk", encode_jpeg_cmyk(cmyk.data(), w, h, 90), w, h});
  const int bw = 1024, bh = 700;  // large enough for every DCT scale to be picked
  auto big = noisy_rgb(bw, bh, seed + 1);
  out.push_back({"rgb-large", encode_jpeg(big.data(), bw, bh, 3, 85), bw, bh});
  return out;
}

TEST(DecodeRegion, WindowPixelsAreTheWholeDecodesAndCoverTheRegion) {
  std::mt19937 g(20261126);
  Decoder dec;
  Image whole, win;
  for (const Case& c : cases(g())) {
    std::uniform_real_distribution<double> u(0, 1);
    for (int t = 0; t < 40; ++t) {
      Region r;
      r.w = 1 + u(g) * (c.w - 1);
      r.h = 1 + u(g) * (c.h - 1);
      r.x = u(g) * (c.w - r.w);
      r.y = u(g) * (c.h - r.h);
      const int out = std::uniform_int_distribution<int>(8, 224)(g);
      const int min_w = static_cast<int>(std::ceil(c.w * out / r.w)), min_h = static_cast<int>(std::ceil(c.h * out / r.h));
      const double s = dec.decode(c.bytes.data(), c.bytes.size(), whole, min_w, min_h);
      const Placement p = dec.decode_region(c.bytes.data(), c.bytes.size(), win, r, min_w, min_h, out, out);
      SCOPED_TRACE(std::string(c.name) + " region " + std::to_string(r.x) + "," + std::to_string(r.y) + " " +
                   std::to_string(r.w) + "x" + std::to_string(r.h) + " out " + std::to_string(out));
      ASSERT_DOUBLE_EQ(p.scale_x, s);
      ASSERT_DOUBLE_EQ(p.scale_y, double(whole.height) / c.h);
      ASSERT_GE(p.x0, 0);
      ASSERT_GE(p.y0, 0);
      ASSERT_LE(p.x0 + win.width, whole.width);
      ASSERT_LE(p.y0 + win.height, whole.height);
      // Covers the region's scaled pixels, plus the filter's reach where the image has them.
      EXPECT_LE(p.x0, std::max(0, int(std::floor(r.x * p.scale_x)) - 1));
      EXPECT_LE(p.y0, std::max(0, int(std::floor(r.y * p.scale_y)) - 1));
      EXPECT_GE(p.x0 + win.width, std::min(whole.width, int(std::ceil((r.x + r.w) * p.scale_x)) + 1));
      EXPECT_GE(p.y0 + win.height, std::min(whole.height, int(std::ceil((r.y + r.h) * p.scale_y)) + 1));
      size_t differ = 0;
      for (int y = 0; y < win.height; ++y)
        for (int x = 0; x < win.width * 3; ++x)
          differ += win.pixels[size_t(y) * win.width * 3 + x] !=
                    whole.pixels[(size_t(p.y0 + y) * whole.width + p.x0) * 3 + x];
      if (differ) {
        std::string where;
        for (int y = 0; y < win.height; ++y)
          for (int x = 0; x < win.width; ++x)
            for (int ch = 0; ch < 3; ++ch)
              if (win.pixels[(size_t(y) * win.width + x) * 3 + ch] != whole.pixels[(size_t(p.y0 + y) * whole.width + p.x0 + x) * 3 + ch] && where.size() < 400)
                where += " (" + std::to_string(x) + "," + std::to_string(y) + ")";
        ADD_FAILURE() << "win " << p.x0 << "," << p.y0 << " " << win.width << "x" << win.height << " of " << whole.width << "x" << whole.height << ":" << where;
      }
      ASSERT_EQ(differ, 0u);
    }
  }
}

TEST(DecodeRegion, CropThroughTheWindowEqualsTheCropOfTheWhole) {
  std::mt19937 g(7);
  Decoder dec;
  Image whole, win;
  const int size = 64;
  for (const Case& c : cases(g())) {
    for (uint64_t i = 0; i < 30; ++i) {
      const CropBox b = i % 5 == 4 ? center_crop(c.w, c.h, size, AugmentSpec{})
                                   : random_resized_crop(c.w, c.h, AugmentSpec{}, g(), 0, i);
      auto need = [&](int full, double extent) {
        return static_cast<int>(std::min<double>(full, std::ceil(full * double(size) / extent)));
      };
      dec.decode(c.bytes.data(), c.bytes.size(), whole, need(c.w, b.w), need(c.h, b.h));
      CropBox bw = b;
      const double sx = double(whole.width) / c.w, sy = double(whole.height) / c.h;
      bw.x *= sx, bw.w *= sx, bw.y *= sy, bw.h *= sy;
      std::vector<uint8_t> a(size * size * 3), m(size * size * 3);
      resize_crop(whole.pixels.data(), whole.width, whole.height, bw, a.data(), size, size);

      const Placement p = dec.decode_region(c.bytes.data(), c.bytes.size(), win, Region{b.x, b.y, b.w, b.h},
                                            need(c.w, b.w), need(c.h, b.h), size, size);
      CropBox br = b;
      br.x = b.x * p.scale_x - p.x0, br.w = b.w * p.scale_x, br.y = b.y * p.scale_y - p.y0, br.h = b.h * p.scale_y;
      resize_crop(win.pixels.data(), win.width, win.height, br, m.data(), size, size);
      // The same pixels through the same taps; the box's origin moves by whole pixels, which can
      // round a weight differently in the last bit, so a byte may move by one.
      int worst = 0;
      for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::abs(int(a[k]) - int(m[k])));
      EXPECT_LE(worst, 1) << c.name << " box " << i;
    }
  }
}

TEST(DecodeRegion, PngDecodesWhole) {
  const int w = 40, h = 30;
  auto src = test::smooth_rgb(w, h);
  auto png = encode_png(src.data(), w, h);
  Decoder dec;
  Image img;
  const Placement p = dec.decode_region(png.data(), png.size(), img, Region{5, 5, 10, 10}, 0, 0, 8, 8);
  EXPECT_EQ(p.x0, 0);
  EXPECT_EQ(p.y0, 0);
  EXPECT_EQ(p.scale_x, 1.0);
  EXPECT_EQ(img.width, w);
  EXPECT_EQ(img.pixels, src);
}

TEST(DecodeRegion, CorruptAndTruncatedDataThrowOrDecodeNeverCrash) {
  const Case c = cases(3).front();
  Decoder dec;
  Image img;
  const Region r{50, 40, 200, 150};
  // Cut in half: refused (no end-of-image marker after the scan).
  std::vector<uint8_t> half(c.bytes.begin(), c.bytes.begin() + c.bytes.size() / 2);
  EXPECT_THROW(dec.decode_region(half.data(), half.size(), img, r, 0, 0, 64, 64), DecodeError);
  // Random bytes over the scan data: libjpeg recovers or refuses; the decoder stays usable.
  std::mt19937 g(5);
  for (int t = 0; t < 200; ++t) {
    std::vector<uint8_t> bad = c.bytes;
    for (int k = 0; k < 8; ++k) bad[600 + g() % (bad.size() - 700)] = static_cast<uint8_t>(g());
    try {
      dec.decode_region(bad.data(), bad.size(), img, r, 0, 0, 64, 64);
    } catch (const DecodeError&) {
    }
  }
  const Placement p = dec.decode_region(c.bytes.data(), c.bytes.size(), img, r, 0, 0, 64, 64);
  EXPECT_GT(img.width, 0);
  EXPECT_GE(p.x0, 0);
}

}  // namespace
}  // namespace lockstep::data
