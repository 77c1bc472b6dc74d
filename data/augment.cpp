// Crop geometry and antialiased resampling.
//
// Randomness: every draw of a sample comes from Philox4x32-10 with
//   key     = kCropKey ^ (seed * 0x9E3779B97F4A7C15)        (the seed, spread over 64 bits)
//   counter = epoch << 40 | index << 4 | block              (epoch < 2^24, index < 2^36, block < 16)
// Block t = 0..9 serves attempt t of the random-resized crop (words: area fraction, log aspect
// ratio, y offset, x offset); block 10 word 0 bit 0 is the flip. The words of a block are only
// read when that attempt runs, so the draws of attempt t never depend on earlier attempts.
//
// random_resized_crop follows torchvision's RandomResizedCrop.get_params step by step, with
// Python's round() (half to even) as std::nearbyint and torch.randint(0, n + 1) as a
// multiply-shift of a 32-bit word onto [0, n]. Offsets and sizes are whole pixels of the
// original image, as in torchvision.
//
// center_crop: torchvision's val transform is Resize(S) then CenterCrop(size) with S = size / f
// (f = val_crop_fraction, 0.875: S = 256 for 224). Mapped back to the original image, that crop is
// a centred square of side f * min(W, H) (size * min(W, H) / S), which is what is returned:
// x = (W - side) / 2, y = (H - side) / 2, in fractional pixels. torchvision differs from this only
// by its integer rounding of the resized long side and of the crop offset (under one resized
// pixel); resampling this box straight to size x size also avoids its second interpolation.
//
// resize_crop is PIL's bilinear resize with a box (ImagingResample): output pixel i of n covering
// box [x0, x0 + w) has centre c = x0 + (i + 0.5) * w / n; the filter is the triangle
// max(0, 1 - |t|), stretched by s = max(1, w / n) when shrinking (antialiasing), i.e. source pixel
// j (centre j + 0.5) gets weight tri((j + 0.5 - c) / s) for j in [c - s, c + s), the window is cut
// at the image border and the weights renormalised. Horizontal pass first (into float rows),
// then vertical; the result is rounded to the nearest integer and clamped to 0..255.
#include "data/augment.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/error.h"
#include "kernels/philox.h"

namespace lockstep::data {

namespace {

constexpr uint64_t kCropKey = 0x3c6ef372fe94f82bull;
constexpr int kAttempts = 10;
constexpr uint64_t kFlipBlock = 10;

// Uniform in (0, 1) from one word.
double unit(uint32_t bits) { return (static_cast<double>(bits) + 0.5) * (1.0 / 4294967296.0); }
// Uniform integer in [0, n] (torch.randint(0, n + 1)).
int64_t upto(uint32_t bits, int64_t n) { return static_cast<int64_t>((static_cast<uint64_t>(bits) * uint64_t(n + 1)) >> 32); }

struct Taps {
  std::vector<int> first, count;  // per output pixel: first source index and number of taps
  std::vector<float> weight;      // per output pixel: `stride` weights from `first`
  int stride = 0;
};

// Filter taps of one axis: `n` outputs from box [x0, x0 + w) of a source of `size` pixels.
Taps make_taps(int size, double x0, double w, int n, bool mirror) {
  const double scale = w / n;
  const double s = std::max(1.0, scale);
  const double support = s;  // the triangle's radius (1) times the stretch
  Taps t;
  t.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(n));
  t.count.resize(static_cast<size_t>(n));
  t.weight.assign(static_cast<size_t>(n) * t.stride, 0.f);
  for (int i = 0; i < n; ++i) {
    const int o = mirror ? n - 1 - i : i;  // mirrored output: pixel i shows what o would
    const double c = x0 + (o + 0.5) * scale;
    int lo = std::max(0, static_cast<int>(std::floor(c - support + 0.5)));
    int hi = std::min(size, static_cast<int>(std::floor(c + support + 0.5)));
    hi = std::min(hi, lo + t.stride);
    float* wt = &t.weight[static_cast<size_t>(i) * t.stride];
    double total = 0;
    for (int j = lo; j < hi; ++j) {
      const double v = std::max(0.0, 1.0 - std::fabs((j + 0.5 - c) / s));
      wt[j - lo] = static_cast<float>(v);
      total += v;
    }
    if (total <= 0) {
      // The window fell outside the image (a box beyond the border): take the nearest pixel.
      lo = std::clamp(static_cast<int>(std::floor(c)), 0, size - 1);
      hi = lo + 1;
      std::fill(wt, wt + t.stride, 0.f);
      wt[0] = 1.f;
      total = 1;
    }
    for (int j = 0; j < hi - lo; ++j) wt[j] = static_cast<float>(wt[j] / total);
    t.first[static_cast<size_t>(i)] = lo;
    t.count[static_cast<size_t>(i)] = hi - lo;
  }
  return t;
}

}  // namespace

CropBox random_resized_crop(int width, int height, const AugmentSpec& spec, uint64_t seed, uint64_t epoch,
                            uint64_t index) {
  LS_CHECK(width > 0 && height > 0, "random_resized_crop: empty image " << width << "x" << height);
  const uint64_t key = kCropKey ^ (seed * 0x9E3779B97F4A7C15ull);
  const uint64_t base = (epoch << 40) | ((index & ((1ull << 36) - 1)) << 4);
  CropBox box;
  box.flip = (philox4x32_10(key, base | kFlipBlock).v[0] & 1u) != 0;

  const double area = double(width) * height;
  const double log_lo = std::log(spec.ratio_min), log_hi = std::log(spec.ratio_max);
  for (int t = 0; t < kAttempts; ++t) {
    const Philox4 r = philox4x32_10(key, base | uint64_t(t));
    const double target_area = area * (spec.scale_min + (spec.scale_max - spec.scale_min) * unit(r.v[0]));
    const double aspect = std::exp(log_lo + (log_hi - log_lo) * unit(r.v[1]));
    const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area * aspect)));
    const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area / aspect)));
    if (0 < w && w <= width && 0 < h && h <= height) {
      box.y = double(upto(r.v[2], height - h));
      box.x = double(upto(r.v[3], width - w));
      box.w = double(w);
      box.h = double(h);
      return box;
    }
  }
  // Fallback: the centre crop of the whole image with its ratio clamped to the allowed range.
  const double in_ratio = double(width) / height;
  int64_t w = width, h = height;
  if (in_ratio < std::min(spec.ratio_min, spec.ratio_max)) {
    h = static_cast<int64_t>(std::nearbyint(w / std::min(spec.ratio_min, spec.ratio_max)));
  } else if (in_ratio > std::max(spec.ratio_min, spec.ratio_max)) {
    w = static_cast<int64_t>(std::nearbyint(h * std::max(spec.ratio_min, spec.ratio_max)));
  }
  w = std::clamp<int64_t>(w, 1, width);
  h = std::clamp<int64_t>(h, 1, height);
  box.y = double((height - h) / 2);
  box.x = double((width - w) / 2);
  box.w = double(w);
  box.h = double(h);
  return box;
}

CropBox center_crop(int width, int height, int size, const AugmentSpec& spec) {
  LS_CHECK(width > 0 && height > 0 && size > 0, "center_crop: empty image " << width << "x" << height
                                                    << " or size " << size);
  LS_CHECK(spec.val_crop_fraction > 0 && spec.val_crop_fraction <= 1,
           "center_crop: val_crop_fraction must be in (0, 1], got " << spec.val_crop_fraction);
  const double side = spec.val_crop_fraction * std::min(width, height);
  CropBox box;
  box.w = box.h = side;
  box.x = (width - side) / 2;
  box.y = (height - side) / 2;
  return box;
}

namespace {
// Floats -> bytes, rounded half up on [0, 255] as lround did (lround was a libm call per byte: 8%
// of a loader thread). min/max rather than std::clamp and restrict pointers (a byte pointer may
// alias the floats otherwise), so the loop vectorizes.
void store_rounded(const float* __restrict in, uint8_t* __restrict out, size_t n) {
  size_t j = 0;
#if defined(__SSE2__)
  // 16 at a time: clamp, +0.5, truncate, pack to bytes (GCC kept the plain loop scalar).
  const __m128 lo = _mm_setzero_ps(), hi = _mm_set1_ps(255.f), half = _mm_set1_ps(0.5f);
  auto ints = [&](const float* p) {
    return _mm_cvttps_epi32(_mm_add_ps(_mm_min_ps(_mm_max_ps(_mm_loadu_ps(p), lo), hi), half));
  };
  for (; j + 16 <= n; j += 16) {
    const __m128i a = _mm_packs_epi32(ints(in + j), ints(in + j + 4));
    const __m128i b = _mm_packs_epi32(ints(in + j + 8), ints(in + j + 12));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), _mm_packus_epi16(a, b));
  }
#endif
  for (; j < n; ++j) out[j] = static_cast<uint8_t>(static_cast<int>(std::min(std::max(in[j], 0.f), 255.f) + 0.5f));
}
}  // namespace

void resize_crop(const uint8_t* src, int sw, int sh, const CropBox& box, uint8_t* dst, int dw, int dh) {
  LS_CHECK(src && dst && sw > 0 && sh > 0 && dw > 0 && dh > 0,
           "resize_crop: empty image (" << sw << "x" << sh << " -> " << dw << "x" << dh << ")");
  LS_CHECK(box.w > 0 && box.h > 0 && std::isfinite(box.x) && std::isfinite(box.y),
           "resize_crop: empty crop box " << box.w << "x" << box.h);
  const Taps tx = make_taps(sw, box.x, box.w, dw, box.flip);
  const Taps ty = make_taps(sh, box.y, box.h, dh, false);
  // Vertical pass first, over the source columns the horizontal taps read: it runs along whole
  // rows, so it vectorizes (bytes to floats, multiply-add), and it leaves dh rows for the
  // horizontal pass, whose per-pixel taps do not vectorize; a downscaling crop has more source
  // rows than dh. (Measured the same as horizontal-first on ImageNet-sized JPEGs, 2026-11-26:
  // the decode dominates; kept for reading only the columns the crop needs.)
  int col0 = sw, col1 = 0;
  for (int i = 0; i < dw; ++i) {
    col0 = std::min(col0, tx.first[static_cast<size_t>(i)]);
    col1 = std::max(col1, tx.first[static_cast<size_t>(i)] + tx.count[static_cast<size_t>(i)]);
  }
  const size_t span = size_t(col1 - col0) * 3;
  // One float of slack after the rows and the line: the horizontal pass loads and stores four
  // lanes (R, G, B and the next pixel's R) for a pixel's three.
  thread_local std::vector<float> tmp;
  tmp.resize(size_t(dh) * span + 1);
  tmp.back() = 0.f;
  for (int i = 0; i < dh; ++i) {
    float* __restrict acc = tmp.data() + size_t(i) * span;
    std::fill(acc, acc + span, 0.f);
    const float* wt = &ty.weight[size_t(i) * ty.stride];
    for (int k = 0; k < ty.count[size_t(i)]; ++k) {
      const uint8_t* __restrict row = src + (size_t(ty.first[size_t(i)] + k) * sw + col0) * 3;
      const float w = wt[k];
      for (size_t j = 0; j < span; ++j) acc[j] += w * static_cast<float>(row[j]);
    }
  }
  // Horizontal pass, one output row at a time, then rounding to bytes. With SSE2 a pixel's three
  // channels are summed together in one vector: the same products and sums in the same order as
  // the scalar loop (which takes the last pixels), so both give the same bits. The scalar form was
  // 26% of a loader thread (GCC did not vectorize across the interleaved channels).
  thread_local std::vector<float> line;
  line.resize(size_t(dw) * 3 + 1);
  for (int i = 0; i < dh; ++i) {
    const float* in = tmp.data() + size_t(i) * span;
    int x = 0;
#if defined(__SSE2__)
    // Four pixels at a time: four independent sums hide the add's latency (one sum per pixel was
    // bound by it); each pixel's taps still run in order.
    for (; x + 4 <= dw; x += 4) {
      const float* wt[4];
      const float* p[4];
      int taps[4];
      __m128 rgb[4];
      for (int u = 0; u < 4; ++u) {
        wt[u] = &tx.weight[size_t(x + u) * tx.stride];
        p[u] = in + size_t(tx.first[size_t(x + u)] - col0) * 3;
        taps[u] = tx.count[size_t(x + u)];
        rgb[u] = _mm_setzero_ps();
      }
      const int common = std::min(std::min(taps[0], taps[1]), std::min(taps[2], taps[3]));
      for (int k = 0; k < common; ++k)
        for (int u = 0; u < 4; ++u) rgb[u] = _mm_add_ps(rgb[u], _mm_mul_ps(_mm_set1_ps(wt[u][k]), _mm_loadu_ps(p[u] + 3 * k)));
      for (int u = 0; u < 4; ++u) {
        for (int k = common; k < taps[u]; ++k)
          rgb[u] = _mm_add_ps(rgb[u], _mm_mul_ps(_mm_set1_ps(wt[u][k]), _mm_loadu_ps(p[u] + 3 * k)));
        _mm_storeu_ps(&line[3 * size_t(x + u)], rgb[u]);  // lane 3 is overwritten next (or slack)
      }
    }
#endif
    for (; x < dw; ++x) {
      const float* wt = &tx.weight[size_t(x) * tx.stride];
      const float* p = in + size_t(tx.first[size_t(x)] - col0) * 3;
      float r = 0, g = 0, b = 0;
      for (int k = 0; k < tx.count[size_t(x)]; ++k, p += 3) {
        r += wt[k] * p[0];
        g += wt[k] * p[1];
        b += wt[k] * p[2];
      }
      line[3 * size_t(x)] = r;
      line[3 * size_t(x) + 1] = g;
      line[3 * size_t(x) + 2] = b;
    }
    store_rounded(line.data(), dst + size_t(i) * dw * 3, size_t(dw) * 3);
  }
}

}  // namespace lockstep::data
