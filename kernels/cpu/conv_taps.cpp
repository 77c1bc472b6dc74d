// In-bounds-tap GEMMs for small images (see conv_taps.h).
//
// For output pixel (p, q) and filter row r with input row ih = p*sh - ph + r inside the image,
// the taps t0 <= t < t1 whose column iw0 + t (iw0 = q*sw - pw) is inside read x(ih, iw0 + t0 ..
// iw0 + t1 - 1, :): (t1 - t0) * C contiguous floats, one "span". Over a block of images:
//   forward          y(:, p, q, :)        += x span (images, span) * w(:, r, t0..t1, :)^T
//   backward-data    dx span              += dy(:, p, q, :) (images, K) * w(:, r, t0..t1, :)
//   backward-filter  dw(:, r, t0..t1, :)  += dy(:, p, q, :)^T (K, images) * x span
// with leading dimensions of an image's size for x / y and R*S*C for w. Spans go in (p, q, r)
// order, so each output's sum has one order for the shape.
// Blocks: the work is cut into independent parts by the shape alone, each part's outputs its own
// (so no partial sums and no scratch): forward by images and output channels, backward-data by
// images and input channels, backward-filter by output (16-64 a block, 4+ blocks where K has
// them) and input channels over the whole batch.
// The GEMMs stay small (16 images x 32 channels x the span, say): measured single-threaded on
// the 2-core VM, 2x2 images of 512 channels ran 1.3x (forward) and 1.5x (backward-data) faster
// in such blocks than in whole-span GEMMs of 16-32 images, where OpenBLAS packs every operand.
#include "kernels/cpu/conv_taps.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <array>

namespace lockstep::cpu::taps {

namespace {

constexpr int kImages = 16;          // forward / backward-data: images per block
constexpr int kOutputChannels = 32;  // forward: output channels per block
constexpr int kFilterRows = 64;      // backward-filter: output channels per block at most
constexpr int kChannels = 64;        // backward-data / -filter: input channels per block
constexpr int kMaxTaps = 256;        // R*S at most: backward-filter tracks which taps it has written
constexpr int kSmallOutput = 64;     // output pixels (8x8) where the tap GEMMs pay whatever the padding
constexpr int kMaxOutput = 1024;     // output pixels (32x32) beyond which they were not measured

struct Span {
  int p, q, r, ih, iw, t0, taps;  // output pixel, filter row, first in-bounds input pixel, taps
  bool first;                     // the output pixel's first span
};

// Calls f(span) for every filter row of every output pixel that reaches into the image, in order,
// and empty(p, q) for each output pixel whose filter reaches only padding.
template <typename F, typename E>
void for_each_span(const ConvShape& s, F f, E empty) {
  for (int p = 0; p < s.out_h(); ++p)
    for (int q = 0; q < s.out_w(); ++q) {
      const int iw0 = q * s.stride_w - s.pad_w;
      const int t0 = std::max(0, -iw0), t1 = std::min(s.s, s.w - iw0);
      bool first = true;
      for (int r = 0; r < s.r && t0 < t1; ++r) {
        const int ih = p * s.stride_h - s.pad_h + r;
        if (ih < 0 || ih >= s.h) continue;
        f(Span{p, q, r, ih, iw0 + t0, t0, t1 - t0, first});
        first = false;
      }
      if (first) empty(p, q);
    }
}

// Blocks of `n` things of `width` each (the last one shorter).
struct Blocks {
  int width, count;
  int begin(int b) const { return b * width; }
  int size(int b, int n) const { return std::min(width, n - b * width); }
};
Blocks blocks(int n, int width) { return {std::min(n, width), (n + width - 1) / width}; }

// Input-channel blocks: all of C where it fits one (a span's taps then go in one GEMM).
Blocks channel_blocks(const ConvShape& s) { return blocks(s.c, kChannels); }

// Calls f(first tap, taps, column offset in the span, columns) for the span's columns in input
// channel block b: every tap at once where C is one block, else one GEMM per tap.
template <typename F>
void for_span_columns(const ConvShape& s, const Blocks& cb, int b, const Span& a, F f) {
  if (cb.count == 1) {
    f(a.t0, a.taps, 0, a.taps * s.c);
    return;
  }
  for (int t = 0; t < a.taps; ++t) f(a.t0 + t, 1, t * s.c + cb.begin(b), cb.size(b, s.c));
}

// In-bounds taps of one dimension summed over its outputs.
int64_t in_bounds_taps(int in, int out, int filter, int stride, int pad) {
  int64_t n = 0;
  for (int o = 0; o < out; ++o) {
    const int i0 = o * stride - pad;
    n += std::max(0, std::min(filter, in - i0) - std::max(0, -i0));
  }
  return n;
}

struct Strides {
  int64_t x_image, y_image, rsc;
};
Strides strides(const ConvShape& s) {
  return {int64_t(s.h) * s.w * s.c, int64_t(s.out_h()) * s.out_w() * s.k, int64_t(s.r) * s.s * s.c};
}

int team(int threads, int parts) { return std::max(1, std::min(threads, parts)); }

}  // namespace

bool fits(const ConvShape& s) { return !s.pointwise() && s.r * s.s <= kMaxTaps; }

double in_bounds_share(const ConvShape& s) {
  const double rows = double(in_bounds_taps(s.h, s.out_h(), s.r, s.stride_h, s.pad_h)) / (double(s.out_h()) * s.r);
  const double cols = double(in_bounds_taps(s.w, s.out_w(), s.s, s.stride_w, s.pad_w)) / (double(s.out_w()) * s.s);
  return rows * cols;
}

bool pays_forward(const ConvShape& s) {
  const int pixels = s.out_h() * s.out_w();
  return fits(s) && s.r * s.s > 1 && (pixels <= kSmallOutput || (in_bounds_share(s) <= 0.75 && pixels <= kMaxOutput));
}

bool pays_data(const ConvShape& s) {
  const int pixels = s.out_h() * s.out_w();
  const bool strided = s.stride_h > 1 || s.stride_w > 1;
  return fits(s) && (pays_forward(s) || (strided && (pixels <= kSmallOutput || (s.c <= 64 && pixels <= kMaxOutput))));
}

bool pays_filter(const ConvShape& s) { return pays_forward(s); }

void forward(const ConvShape& s, const float* x, const float* w, float* y, int threads) {
  const Strides st = strides(s);
  const Blocks ib = blocks(s.n, kImages), kb = blocks(s.k, kOutputChannels);
#pragma omp parallel for schedule(static) num_threads(team(threads, ib.count * kb.count))
  for (int part = 0; part < ib.count * kb.count; ++part) {
    const int g = part / kb.count, b = part % kb.count;
    const int n0 = ib.begin(g), images = ib.size(g, s.n), k0 = kb.begin(b), kn = kb.size(b, s.k);
    const float* xg = x + n0 * st.x_image;
    float* yg = y + n0 * st.y_image + k0;
    for_each_span(
        s,
        [&](const Span& a) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, images, kn, a.taps * s.c, 1.0f,
                      xg + (int64_t(a.ih) * s.w + a.iw) * s.c, st.x_image,
                      w + k0 * st.rsc + (int64_t(a.r) * s.s + a.t0) * s.c, st.rsc, a.first ? 0.0f : 1.0f,
                      yg + (int64_t(a.p) * s.out_w() + a.q) * s.k, st.y_image);
        },
        [&](int p, int q) {  // only padding under the filter: zeros
          for (int i = 0; i < images; ++i) {
            float* o = yg + i * st.y_image + (int64_t(p) * s.out_w() + q) * s.k;
            std::fill(o, o + kn, 0.0f);
          }
        });
  }
}

void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx, bool accumulate, int threads) {
  const Strides st = strides(s);
  const Blocks ib = blocks(s.n, kImages), cb = channel_blocks(s);
#pragma omp parallel for schedule(static) num_threads(team(threads, ib.count * cb.count))
  for (int part = 0; part < ib.count * cb.count; ++part) {
    const int g = part / cb.count, b = part % cb.count;
    const int n0 = ib.begin(g), images = ib.size(g, s.n), c0 = cb.begin(b), cn = cb.size(b, s.c);
    const float* dyg = dy + n0 * st.y_image;
    float* dxg = dx + n0 * st.x_image;
    // Spans overlap in dx (a pixel is under the filter of several outputs), so all of them add.
    if (!accumulate)
      for (int64_t px = 0; px < int64_t(images) * s.h * s.w; ++px) std::fill_n(dxg + px * s.c + c0, cn, 0.0f);
    for_each_span(
        s,
        [&](const Span& a) {
          for_span_columns(s, cb, b, a, [&](int, int, int offset, int columns) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, images, columns, s.k, 1.0f,
                        dyg + (int64_t(a.p) * s.out_w() + a.q) * s.k, st.y_image,
                        w + (int64_t(a.r) * s.s + a.t0) * s.c + offset, st.rsc, 1.0f,
                        dxg + (int64_t(a.ih) * s.w + a.iw) * s.c + offset, st.x_image);
          });
        },
        [](int, int) {});
  }
}

void backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, int threads) {
  const Strides st = strides(s);
  // Blocks of at most 64 output channels, at least 16 and at least 4 blocks where K allows: with
  // one block of 64 (resnet20's last stage), one thread of two did the pass alone.
  const int rows = std::clamp(s.k / 4 / 16 * 16, 16, kFilterRows);
  const Blocks kb = blocks(s.k, rows), cb = channel_blocks(s);
#pragma omp parallel for schedule(static) num_threads(team(threads, kb.count * cb.count))
  for (int part = 0; part < kb.count * cb.count; ++part) {
    const int bk = part / cb.count, b = part % cb.count;
    const int k0 = kb.begin(bk), kn = kb.size(bk, s.k), c0 = cb.begin(b), cn = cb.size(b, s.c);
    float* out = dw + k0 * st.rsc;
    // A GEMM over taps nothing has written yet overwrites them (beta 0), so no pass zeroes the
    // filter first; taps partly written are zeroed where not, then added to.
    std::array<char, kMaxTaps> written{};
    const auto zero_tap = [&](int r, int t) {
      for (int k = 0; k < kn; ++k) std::fill_n(out + k * st.rsc + (int64_t(r) * s.s + t) * s.c + c0, cn, 0.0f);
    };
    for_each_span(
        s,
        [&](const Span& a) {
          for_span_columns(s, cb, b, a, [&](int t0, int taps, int offset, int columns) {
            char* tap = written.data() + a.r * s.s + t0;
            const bool fresh = std::none_of(tap, tap + taps, [](char v) { return v != 0; });
            if (!fresh)
              for (int t = 0; t < taps; ++t)
                if (!tap[t]) zero_tap(a.r, t0 + t);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kn, columns, s.n, 1.0f,
                        dy + (int64_t(a.p) * s.out_w() + a.q) * s.k + k0, st.y_image,
                        x + (int64_t(a.ih) * s.w + a.iw) * s.c + offset, st.x_image, fresh ? 0.0f : 1.0f,
                        out + (int64_t(a.r) * s.s + a.t0) * s.c + offset, st.rsc);
            std::fill(tap, tap + taps, char(1));
          });
        },
        [](int, int) {});
    for (int r = 0; r < s.r; ++r)  // taps no output pixel reaches: zero gradient
      for (int t = 0; t < s.s; ++t)
        if (!written[r * s.s + t]) zero_tap(r, t);
  }
}

}  // namespace lockstep::cpu::taps
