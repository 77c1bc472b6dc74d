// The register tile shared by the CPU's direct and Winograd convolutions (conv_direct.cpp,
// conv_winograd.cpp): T output pixels x KB vectors of 16 output channels accumulated in AVX-512
// registers over taps and input channels, with the filter packed 16 output channels per vector.
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

template <int T, int KB>
LS_AVX512 inline void forward_tile(const TileArgs& a) {
  __m512 acc[T][KB];
#pragma GCC unroll 32
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) acc[t][b] = _mm512_setzero_ps();
  for (int r = 0; r < a.r; ++r) {
    const int ih = a.ih0 + r;
    if (ih < 0 || ih >= a.h) continue;
    const float* xr = a.x + ih * a.x_row;
    const float* wr = a.wp + int64_t(r) * a.s * a.cin * kLanes;
    for (int s = 0; s < a.s; ++s) {
      const float* xs = xr + s * a.cin;
      const float* ws = wr + int64_t(s) * a.cin * kLanes;
      for (int c = 0; c < a.cin; ++c) {
        __m512 wv[KB];
#pragma GCC unroll 4
        for (int b = 0; b < KB; ++b) wv[b] = _mm512_loadu_ps(ws + b * a.wp_block + c * kLanes);
#pragma GCC unroll 32
        for (int t = 0; t < T; ++t) {
          const __m512 xv = _mm512_set1_ps(xs[t * a.x_step + c]);
#pragma GCC unroll 4
          for (int b = 0; b < KB; ++b) acc[t][b] = _mm512_fmadd_ps(wv[b], xv, acc[t][b]);
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) {
      float* out = a.y + t * a.y_step + b * kLanes;
      _mm512_storeu_ps(out, a.accumulate ? _mm512_add_ps(_mm512_loadu_ps(out), acc[t][b]) : acc[t][b]);
    }
}

using TileFn = void (*)(const TileArgs&);

template <int KB, int... I>
constexpr std::array<TileFn, sizeof...(I)> forward_table(std::integer_sequence<int, I...>) {
  return {&forward_tile<I + 1, KB>...};
}

// forward_tile<T, KB> for T = 1 .. kTileRegisters / KB.
inline TileFn forward_tile_fn(int t, int kb) {
  static constexpr auto t1 = forward_table<1>(std::make_integer_sequence<int, kTileRegisters>());
  static constexpr auto t2 = forward_table<2>(std::make_integer_sequence<int, kTileRegisters / 2>());
  static constexpr auto t4 = forward_table<4>(std::make_integer_sequence<int, kTileRegisters / 4>());
  return kb == 4 ? t4[t - 1] : kb == 2 ? t2[t - 1] : t1[t - 1];
}

}  // namespace lockstep::cpu::tile
