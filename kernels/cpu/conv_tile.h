// The register tile shared by the CPU's direct and Winograd convolutions (conv_direct.cpp,
// conv_winograd.cpp): T x KB vectors of 16 output channels accumulated in AVX-512 registers, and
// the forward tile built from it (T output pixels over taps and input channels, the filter packed
// 16 output channels per vector).
// Internal to kernels/cpu; every function here is compiled for AVX-512F and must only be called
// where the CPU has it (direct::available()).
#pragma once
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <utility>

#include "kernels/conv.h"

#define LS_AVX512 __attribute__((target("avx512f")))

namespace lockstep::cpu::tile {

constexpr int kLanes = 16;
constexpr int kTileRegisters = 24;  // accumulators of a tile; the rest hold filter or dy vectors
constexpr int kMinTileRow = 8;      // output pixels a row needs for tiles along it (shorter rows
                                    // leave T mostly empty: the GEMM or batched Winograd take them)

// The geometry of a forward-shaped pass: in (h, w, cin) -> out (p, q, kout) per image.
struct Geometry {
  int n, h, w, cin, p, q, kout, r, s, sh, sw, ph, pw;
  int padded_w() const { return w + 2 * pw; }
  int64_t filter_floats() const { return int64_t(kout) * r * s * cin; }
};

inline Geometry forward_geometry(const ConvShape& s) {
  return {s.n, s.h, s.w, s.c, s.out_h(), s.out_w(), s.k, s.r, s.s, s.stride_h, s.stride_w, s.pad_h, s.pad_w};
}

// dx = conv(dy, rotated filter) at stride 1 with padding R-1-ph, S-1-pw: its output is (h, w).
inline Geometry data_geometry(const ConvShape& s) {
  return {s.n, s.out_h(), s.out_w(), s.k, s.h, s.w, s.c, s.r, s.s, 1, 1, s.r - 1 - s.pad_h, s.s - 1 - s.pad_w};
}

// Registers per tile row: 4 vectors of channels where kout allows (fewest filter loads per FMA).
inline int vectors_per_tile(int kout) {
  const int blocks = kout / kLanes;
  return blocks % 4 == 0 ? 4 : blocks % 2 == 0 ? 2 : 1;
}

// One tile: T output pixels (y_step floats apart) x KB vectors of 16 output channels.
struct TileArgs {
  const float* x;        // the padded image at row 0, column q0 * sw
  int64_t x_row;         // floats per padded row
  int x_step;            // floats between the input columns of neighbouring output pixels (sw * cin)
  int ih0, h;            // input row of tap r = 0 (may be negative); rows outside [0, h) are padding
  int r, s, cin;
  const float* wp;       // packed filter at the tile's first channel block
  int64_t wp_block;      // floats between channel blocks of the packed filter (r * s * cin * 16)
  float* y;              // output at (p, q0, first channel)
  int y_step;            // floats between neighbouring output pixels (kout)
  bool accumulate;
};

// The register tile's pieces, shared by every kernel: T x KB accumulators (T pixels, input
// channels or Winograd tiles; KB vectors of 16 output channels), each step adding the outer
// product of KB vectors and T broadcast scalars.
template <int T, int KB>
LS_AVX512 inline void zero(__m512 (&acc)[T][KB]) {
#pragma GCC unroll 32
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) acc[t][b] = _mm512_setzero_ps();
}

// acc[t][b] <- in + t * t_step + b * b_step
template <int T, int KB>
LS_AVX512 inline void load(__m512 (&acc)[T][KB], const float* in, int64_t t_step, int64_t b_step) {
#pragma GCC unroll 32
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) acc[t][b] = _mm512_loadu_ps(in + t * t_step + b * b_step);
}

// out + t * t_step + b * b_step <- acc[t][b] (added to what is there with accumulate)
template <int T, int KB>
LS_AVX512 inline void store(const __m512 (&acc)[T][KB], float* out, int64_t t_step, int64_t b_step,
                            bool accumulate = false) {
#pragma GCC unroll 32
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) {
      float* o = out + t * t_step + b * b_step;
      _mm512_storeu_ps(o, accumulate ? _mm512_add_ps(_mm512_loadu_ps(o), acc[t][b]) : acc[t][b]);
    }
}

// acc[t][b] += (vectors at vec + b * vec_step) * scalars[t * scalar_step]
template <int T, int KB>
LS_AVX512 inline void outer_product_step(__m512 (&acc)[T][KB], const float* vec, int64_t vec_step,
                                         const float* scalars, int scalar_step) {
  __m512 v[KB];
#pragma GCC unroll 4
  for (int b = 0; b < KB; ++b) v[b] = _mm512_loadu_ps(vec + b * vec_step);
#pragma GCC unroll 32
  for (int t = 0; t < T; ++t) {
    const __m512 x = _mm512_set1_ps(scalars[t * scalar_step]);
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) acc[t][b] = _mm512_fmadd_ps(v[b], x, acc[t][b]);
  }
}

// K::run<n, KB> for n = 1 .. kTileRegisters / KB, picked at run time; K::Args is its argument.
template <typename K, int KB, int... I>
constexpr auto kernel_table(std::integer_sequence<int, I...>) {
  return std::array<void (*)(const typename K::Args&), sizeof...(I)>{&K::template run<I + 1, KB>...};
}

template <typename K>
auto kernel_for(int n, int kb) {
  static constexpr auto t1 = kernel_table<K, 1>(std::make_integer_sequence<int, kTileRegisters>());
  static constexpr auto t2 = kernel_table<K, 2>(std::make_integer_sequence<int, kTileRegisters / 2>());
  static constexpr auto t4 = kernel_table<K, 4>(std::make_integer_sequence<int, kTileRegisters / 4>());
  return kb == 4 ? t4[n - 1] : kb == 2 ? t2[n - 1] : t1[n - 1];
}

// The forward tile: T output pixels x KB vectors, summed over taps and input channels.
struct ForwardTile {
  using Args = TileArgs;
  template <int T, int KB>
  LS_AVX512 static void run(const TileArgs& a) {
    __m512 acc[T][KB];
    zero(acc);
    for (int r = 0; r < a.r; ++r) {
      const int ih = a.ih0 + r;
      if (ih < 0 || ih >= a.h) continue;
      const float* xr = a.x + ih * a.x_row;
      const float* wr = a.wp + int64_t(r) * a.s * a.cin * kLanes;
      for (int s = 0; s < a.s; ++s) {
        const float* xs = xr + s * a.cin;
        const float* ws = wr + int64_t(s) * a.cin * kLanes;
        for (int c = 0; c < a.cin; ++c) outer_product_step(acc, ws + c * kLanes, a.wp_block, xs + c, a.x_step);
      }
    }
    store(acc, a.y, a.y_step, kLanes, a.accumulate);
  }
};

}  // namespace lockstep::cpu::tile
