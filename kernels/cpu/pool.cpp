// CPU max pooling and global average pooling on NHWC f32 tensors, loops with the channel innermost
// (contiguous in NHWC, so the compiler vectorizes them).
// Max pooling: a window covers rows p*stride - pad .. + window - 1 (columns alike); positions in
// the padding are skipped, so padding never wins. The window's maximum is its first element in
// row-major order that is greater than every earlier one (a NaN wins and propagates, as in
// PyTorch). Backward recomputes nothing but a search: each output's gradient goes to the first
// element of its window, in row-major order, that equals y (PyTorch's rule for ties).
// The dispatcher (kernels/pool.cpp) has checked devices, dtypes and shapes; only f32 is checked here.
#include "kernels/pool.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/args.h"
#include "kernels/error.h"

namespace lockstep::cpu {

namespace {

// Below this many input elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 16;

// The valid (unpadded) rows [h_begin, h_end) and columns [w_begin, w_end) of output (p, q)'s window.
struct Window {
  int64_t h_begin, h_end, w_begin, w_end;
  Window(const PoolShape& s, int64_t p, int64_t q, int64_t H, int64_t W) {
    const int64_t h0 = p * s.stride - s.pad, w0 = q * s.stride - s.pad;
    h_begin = std::max<int64_t>(h0, 0);
    h_end = std::min<int64_t>(h0 + s.window, H);
    w_begin = std::max<int64_t>(w0, 0);
    w_end = std::min<int64_t>(w0 + s.window, W);
  }
};

// Channels handled together by max pooling (its per-channel indices live on the stack).
constexpr int64_t kChannelBlock = 256;

// Max pooling by channel blocks; pw (may be null) gets each output's winner (kernels/pool.h).
// The plain forward (no net calls it since the stem records winners) shares the loop: same y.
void maxpool_forward_into(const PoolShape& shape, const Tensor& x, Tensor& y, uint8_t* pw) {
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3), P = y.dim(1), Q = y.dim(2);
  const float* px = x.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for if (x.numel() > kParallelMin)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q) {
        const Window win(shape, p, q, H, W);
        const int64_t o = ((n * P + p) * Q + q) * C, h0 = p * shape.stride - shape.pad, w0 = q * shape.stride - shape.pad;
        for (int64_t c0 = 0; c0 < C; c0 += kChannelBlock) {
          const int64_t cn = std::min(kChannelBlock, C - c0);
          float* best = py + o + c0;
          // The winner's index as int32 while searching (the same width as the floats, so the
          // select vectorizes), narrowed to a byte at the end.
          int32_t at[kChannelBlock];
          bool first = true;
          for (int64_t h = win.h_begin; h < win.h_end; ++h)
            for (int64_t w = win.w_begin; w < win.w_end; ++w) {
              const float* v = px + ((n * H + h) * W + w) * C + c0;
              const int32_t k = static_cast<int32_t>((h - h0) * shape.window + (w - w0));
              if (first) {
                std::memcpy(best, v, static_cast<size_t>(cn) * sizeof(float));
                std::fill(at, at + cn, k);
                first = false;
                continue;
              }
              for (int64_t c = 0; c < cn; ++c) {  // the forward's rule: a NaN wins and stays
                const bool wins = v[c] > best[c] || v[c] != v[c];
                best[c] = wins ? v[c] : best[c];
                at[c] = wins ? k : at[c];
              }
            }
          if (pw)
            for (int64_t c = 0; c < cn; ++c)
              pw[o + c0 + c] = best[c] != best[c] ? kNoWinner : static_cast<uint8_t>(at[c]);
        }
      }
}

}  // namespace

void maxpool_forward(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y) {
  expect_cpu_f32({&x, &y}, "maxpool_forward");
  maxpool_forward_into(shape, x, y, nullptr);
}

void maxpool_backward(Context& ctx, const PoolShape& shape, const Tensor& x, const Tensor& y,
                      const Tensor& dy, Tensor& dx) {
  expect_cpu_f32({&x, &y, &dy, &dx}, "maxpool_backward");
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3), P = y.dim(1), Q = y.dim(2);
  const float* px = x.data<float>();
  const float* py = y.data<float>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  LS_CHECK(H * W * C < (int64_t(1) << 31), "maxpool_backward: an image of " << H * W * C
                                              << " values is more than its 32-bit offsets hold");
  std::memset(pdx, 0, dx.bytes());
#pragma omp parallel for if (x.numel() > kParallelMin)
  for (int64_t n = 0; n < N; ++n)  // samples write disjoint parts of dx
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q) {
        const Window win(shape, p, q, H, W);
        const int64_t o = ((n * P + p) * Q + q) * C;
        for (int64_t c0 = 0; c0 < C; c0 += kChannelBlock) {
          const int64_t cn = std::min(kChannelBlock, C - c0);
          const float* yv = py + o + c0;
          const float* g = pdy + o + c0;
          // at[c]: offset (from x's image n) of the window's first element equal to y, or -1.
          int32_t at[kChannelBlock];
          std::fill(at, at + cn, -1);
          for (int64_t h = win.h_begin; h < win.h_end; ++h)
            for (int64_t w = win.w_begin; w < win.w_end; ++w) {
              const int32_t off = static_cast<int32_t>((h * W + w) * C + c0);
              const float* xv = px + n * H * W * C + off;
              for (int64_t c = 0; c < cn; ++c) {  // branch-free, so it vectorizes
                const int32_t hit = -static_cast<int32_t>(xv[c] == yv[c]) & (at[c] >> 31);
                at[c] = (off & hit) | (at[c] & ~hit);
              }
            }
          float* dn = pdx + n * H * W * C;
          for (int64_t c = 0; c < cn; ++c)
            if (at[c] >= 0) dn[at[c] + c] += g[c];
        }
      }
}

void maxpool_forward_where(Context& ctx, const PoolShape& shape, const Tensor& x, Tensor& y, Tensor& where) {
  expect_cpu_f32({&x, &y}, "maxpool_forward_where");
  maxpool_forward_into(shape, x, y, where.data<uint8_t>());
}

void maxpool_backward_where(Context& ctx, const PoolShape& shape, const Tensor& where, const Tensor& dy,
                            Tensor& dx) {
  expect_cpu_f32({&dy, &dx}, "maxpool_backward_where");
  const int64_t N = dx.dim(0), H = dx.dim(1), W = dx.dim(2), C = dx.dim(3), P = dy.dim(1), Q = dy.dim(2);
  const uint8_t* pw = where.data<uint8_t>();
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  const int window = shape.window;
  std::memset(pdx, 0, dx.bytes());
#pragma omp parallel for if (dx.numel() > kParallelMin)
  for (int64_t n = 0; n < N; ++n)  // samples write disjoint parts of dx; (p, q) in the search's order
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q) {
        const int64_t o = ((n * P + p) * Q + q) * C, h0 = p * shape.stride - shape.pad, w0 = q * shape.stride - shape.pad;
        for (int64_t c = 0; c < C; ++c) {
          const int k = pw[o + c];
          if (k >= window * window) continue;  // kNoWinner (or a corrupted byte)
          const int64_t h = h0 + k / window, w = w0 + k % window;
          if (h < 0 || h >= H || w < 0 || w >= W) continue;
          pdx[((n * H + h) * W + w) * C + c] += pdy[o + c];
        }
      }
}

void global_avgpool_forward(Context& ctx, const Tensor& x, Tensor& y) {
  expect_cpu_f32({&x, &y}, "global_avgpool_forward");
  const int64_t N = x.dim(0), HW = x.dim(1) * x.dim(2), C = x.dim(3);
  const float* px = x.data<float>();
  float* py = y.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      double s = 0;
      for (int64_t i = 0; i < HW; ++i) s += px[(n * HW + i) * C + c];
      py[n * C + c] = static_cast<float>(s / static_cast<double>(HW));
    }
}

void global_avgpool_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  expect_cpu_f32({&dy, &dx}, "global_avgpool_backward");
  const int64_t N = dx.dim(0), HW = dx.dim(1) * dx.dim(2), C = dx.dim(3);
  const float inv = 1.0f / static_cast<float>(HW);
  const float* pdy = dy.data<float>();
  float* pdx = dx.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < HW; ++i)
      for (int64_t c = 0; c < C; ++c) pdx[(n * HW + i) * C + c] = pdy[n * C + c] * inv;
}

}  // namespace lockstep::cpu
