// Direct NHWC convolution on AVX-512 (see conv_direct.h).
//
// Forward: y(p, q, k) = sum over (r, s, c) of x(p*sh - ph + r, q*sw - pw + s, c) * w(k, r, s, c).
// The filter is packed once per call as wp[k / 16][r][s][c][k % 16], so that one vector load gives
// 16 output channels of one tap. A tile holds T output pixels of one row times KB vectors of 16
// channels in T*KB registers (24 at most, of AVX-512's 32); each step of the reduction loads KB
// filter vectors and broadcasts T input values straight from memory into the FMAs. Rows of the
// image that the filter reaches in the padding are skipped; columns are handled by copying each
// image into a per-thread buffer with zero margins, so every tile reads in bounds.
// Backward-data (stride 1) is the same loop: dx is the convolution of dy with the filter rotated
// by 180 degrees and its K and C swapped, wp[c / 16][R-1-r][S-1-s][k][c % 16], padding R-1-ph.
// Backward-filter: dw(k, r, s, c) = sum over (n, p, q) of dy(n, p, q, k) * x(n, p*sh - ph + r,
// q*sw - pw + s, c). A tile holds TC input channels times KB vectors of 16 output channels for one
// tap (r, s) and runs over every pixel of a chunk of images, loading KB vectors of dy and
// broadcasting TC values of x per pixel; the pixels whose tap falls in the padding are skipped by
// the row test and the column range. Each chunk writes its own packed partial; the partials are
// added in chunk order and unpacked into dw's (k, r, s, c) order.
#include "kernels/cpu/conv_direct.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "kernels/error.h"

#define LS_AVX512 __attribute__((target("avx512f")))

namespace lockstep::cpu::direct {

namespace {

constexpr int kLanes = 16;
constexpr int kTileRegisters = 24;  // accumulators of a tile; the rest hold filter or dy vectors
constexpr int kMinRow = 8;          // output pixels per row (see passes())

// The geometry of a forward-shaped pass: in (h, w, cin) -> out (p, q, kout) per image.
struct Geometry {
  int n, h, w, cin, p, q, kout, r, s, sh, sw, ph, pw;
  int padded_w() const { return w + 2 * pw; }
  int64_t padded_floats() const { return pw > 0 ? int64_t(h) * padded_w() * cin : 0; }
  int64_t filter_floats() const { return int64_t(kout) * r * s * cin; }
};

Geometry forward_geometry(const ConvShape& s) {
  return {s.n, s.h, s.w, s.c, s.out_h(), s.out_w(), s.k, s.r, s.s, s.stride_h, s.stride_w, s.pad_h, s.pad_w};
}

// dx = conv(dy, rotated filter) at stride 1 with padding R-1-ph, S-1-pw: its output is (h, w).
Geometry data_geometry(const ConvShape& s) {
  return {s.n, s.out_h(), s.out_w(), s.k, s.h, s.w, s.c, s.r, s.s, 1, 1, s.r - 1 - s.pad_h, s.s - 1 - s.pad_w};
}

// Registers per tile row: 4 vectors of channels where kout allows (fewest filter loads per FMA).
int vectors_per_tile(int kout) {
  const int blocks = kout / kLanes;
  return blocks % 4 == 0 ? 4 : blocks % 2 == 0 ? 2 : 1;
}

// One forward tile: out rows are `pixels` apart by out_stride floats.
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
LS_AVX512 void forward_tile(const TileArgs& a) {
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
TileFn forward_tile_fn(int t, int kb) {
  static constexpr auto t1 = forward_table<1>(std::make_integer_sequence<int, kTileRegisters>());
  static constexpr auto t2 = forward_table<2>(std::make_integer_sequence<int, kTileRegisters / 2>());
  static constexpr auto t4 = forward_table<4>(std::make_integer_sequence<int, kTileRegisters / 4>());
  return kb == 4 ? t4[t - 1] : kb == 2 ? t2[t - 1] : t1[t - 1];
}

// Copies image (h, w, cin) into (h, w + 2 pw, cin) with zero margins.
void pad_columns(const Geometry& g, const float* in, float* out) {
  const int64_t margin = int64_t(g.pw) * g.cin, row = int64_t(g.w) * g.cin;
  for (int i = 0; i < g.h; ++i, in += row) {
    std::fill(out, out + margin, 0.0f);
    std::memcpy(out + margin, in, sizeof(float) * size_t(row));
    std::fill(out + margin + row, out + 2 * margin + row, 0.0f);
    out += 2 * margin + row;
  }
}

// out = the forward-shaped pass of g over every image, wp packed as [kout/16][r][s][cin][16].
void run_forward(const Geometry& g, const float* in, const float* wp, float* out, bool accumulate,
                 float* pads, int threads) {
  const int kb = vectors_per_tile(g.kout);
  const int tmax = kTileRegisters / kb;
  const int64_t in_image = int64_t(g.h) * g.w * g.cin, out_image = int64_t(g.p) * g.q * g.kout;
  const int64_t x_row = int64_t(g.padded_w()) * g.cin;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int n = 0; n < g.n; ++n) {
    const float* x = in + n * in_image;
    if (g.pw > 0) {
      float* pad = pads + omp_get_thread_num() * g.padded_floats();
      pad_columns(g, x, pad);
      x = pad;
    }
    TileArgs a{};
    a.x_row = x_row, a.x_step = g.sw * g.cin, a.h = g.h, a.r = g.r, a.s = g.s, a.cin = g.cin;
    a.wp_block = int64_t(g.r) * g.s * g.cin * kLanes, a.y_step = g.kout, a.accumulate = accumulate;
    for (int p = 0; p < g.p; ++p) {
      a.ih0 = p * g.sh - g.ph;
      for (int k0 = 0; k0 < g.kout; k0 += kb * kLanes) {
        a.wp = wp + (k0 / kLanes) * a.wp_block;
        for (int q0 = 0; q0 < g.q; q0 += tmax) {
          const int t = std::min(tmax, g.q - q0);
          a.x = x + int64_t(q0) * a.x_step;
          a.y = out + n * out_image + (int64_t(p) * g.q + q0) * g.kout + k0;
          forward_tile_fn(t, kb)(a);
        }
      }
    }
  }
}

// One backward-filter tile: TC input channels x KB vectors of output channels for one tap.
struct FilterArgs {
  const float* x;   // images (n, h, w, c) at channel c0
  const float* dy;  // (n, p, q, k) at channel k0
  int n0, n1, h, w, c, p, q, k;
  int sh, sw, ph, pw;
  int r, s;         // the tap
  float* out;       // packed [k/16][r][s][c][16] at (k0 block, r, s, c0)
  int64_t out_block;  // floats between channel blocks of the packed output
};

template <int TC, int KB>
LS_AVX512 void filter_tile(const FilterArgs& a) {
  __m512 acc[TC][KB];
#pragma GCC unroll 32
  for (int t = 0; t < TC; ++t)
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) acc[t][b] = _mm512_setzero_ps();
  // Output columns whose tap lands inside the image: 0 <= q*sw - pw + s < w.
  // Both bounds are divisions of possibly negative numbers, rounded toward the valid range.
  const int lo = a.pw - a.s > 0 ? (a.pw - a.s + a.sw - 1) / a.sw : 0;
  const int last = a.w - 1 + a.pw - a.s;
  const int hi = last < 0 ? 0 : std::min(a.q, last / a.sw + 1);
  for (int n = a.n0; n < a.n1; ++n)
    for (int p = 0; p < a.p; ++p) {
      const int ih = p * a.sh - a.ph + a.r;
      if (ih < 0 || ih >= a.h) continue;
      const float* xr = a.x + (int64_t(n) * a.h + ih) * a.w * a.c;
      const float* dr = a.dy + (int64_t(n) * a.p + p) * a.q * a.k;
      for (int q = lo; q < hi; ++q) {
        const float* xq = xr + int64_t(q * a.sw - a.pw + a.s) * a.c;
        const float* dq = dr + int64_t(q) * a.k;
        __m512 dv[KB];
#pragma GCC unroll 4
        for (int b = 0; b < KB; ++b) dv[b] = _mm512_loadu_ps(dq + b * kLanes);
#pragma GCC unroll 32
        for (int t = 0; t < TC; ++t) {
          const __m512 xv = _mm512_set1_ps(xq[t]);
#pragma GCC unroll 4
          for (int b = 0; b < KB; ++b) acc[t][b] = _mm512_fmadd_ps(dv[b], xv, acc[t][b]);
        }
      }
    }
#pragma GCC unroll 32
  for (int t = 0; t < TC; ++t)
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) _mm512_storeu_ps(a.out + b * a.out_block + t * kLanes, acc[t][b]);
}

using FilterFn = void (*)(const FilterArgs&);

template <int KB, int... I>
constexpr std::array<FilterFn, sizeof...(I)> filter_table(std::integer_sequence<int, I...>) {
  return {&filter_tile<I + 1, KB>...};
}

FilterFn filter_tile_fn(int tc, int kb) {
  static constexpr auto t1 = filter_table<1>(std::make_integer_sequence<int, kTileRegisters>());
  static constexpr auto t2 = filter_table<2>(std::make_integer_sequence<int, kTileRegisters / 2>());
  static constexpr auto t4 = filter_table<4>(std::make_integer_sequence<int, kTileRegisters / 4>());
  return kb == 4 ? t4[tc - 1] : kb == 2 ? t2[tc - 1] : t1[tc - 1];
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

bool enabled_by_environment() {
  const char* v = std::getenv("LOCKSTEP_CPU_CONV");
  if (v == nullptr || *v == '\0' || std::string(v) == "auto") return true;
  LS_CHECK(std::string(v) == "gemm",
           "LOCKSTEP_CPU_CONV must be auto or gemm (the im2col+sgemm path alone), got '" << v << "'");
  return false;
}

}  // namespace

bool available() {
  static const bool yes = cpu_has_avx512() && enabled_by_environment();
  return yes;
}

unsigned passes(const ConvShape& s) {
  if (!available()) return 0;
  const bool pointwise = s.r == 1 && s.s == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0;
  if (pointwise) return 0;
  unsigned out = 0;
  if (s.k % kLanes == 0 && s.out_w() >= kMinRow) out |= forward_pass;
  if (s.stride_h == 1 && s.stride_w == 1 && s.c % kLanes == 0 && s.pad_h < s.r && s.pad_w < s.s && s.w >= kMinRow)
    out |= data_pass;
  if (s.k % kLanes == 0 && s.out_w() >= kMinRow) out |= filter_pass;
  return out;
}

int64_t scratch_floats(const ConvShape& s, unsigned which, int threads, int chunks) {
  int64_t need = 0;
  const int64_t filter = int64_t(s.k) * s.r * s.s * s.c;
  if (which & forward_pass) need = std::max(need, filter + threads * forward_geometry(s).padded_floats());
  if (which & data_pass) need = std::max(need, filter + threads * data_geometry(s).padded_floats());
  if (which & filter_pass) need = std::max(need, chunks * filter);
  return need;
}

void forward(const ConvShape& s, const float* x, const float* w, float* y, float* scratch, int threads) {
  const Geometry g = forward_geometry(s);
  // wp[k/16][r][s][c][k%16] = w[k][r][s][c]
  float* wp = scratch;
  const int64_t rsc = int64_t(s.r) * s.s * s.c;
  for (int k = 0; k < s.k; ++k)
    for (int64_t i = 0; i < rsc; ++i) wp[((k / kLanes) * rsc + i) * kLanes + k % kLanes] = w[k * rsc + i];
  run_forward(g, x, wp, y, false, scratch + g.filter_floats(), threads);
}

void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx, bool accumulate,
                   float* scratch, int threads) {
  const Geometry g = data_geometry(s);
  // wp[c/16][r'][s'][k][c%16] = w[k][R-1-r'][S-1-s'][c]
  float* wp = scratch;
  for (int c = 0; c < s.c; ++c)
    for (int r = 0; r < s.r; ++r)
      for (int t = 0; t < s.s; ++t)
        for (int k = 0; k < s.k; ++k)
          wp[((((c / kLanes) * s.r + r) * s.s + t) * int64_t(s.k) + k) * kLanes + c % kLanes] =
              w[((int64_t(k) * s.r + (s.r - 1 - r)) * s.s + (s.s - 1 - t)) * s.c + c];
  run_forward(g, dy, wp, dx, accumulate, scratch + g.filter_floats(), threads);
}

void backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* scratch,
                     int chunks, int threads) {
  const int kb = vectors_per_tile(s.k);
  const int tmax = kTileRegisters / kb;
  const int64_t filter = int64_t(s.k) * s.r * s.s * s.c;
  const int64_t block = int64_t(s.r) * s.s * s.c * kLanes;  // one channel block of the packed layout
  const int per_chunk = (s.n + chunks - 1) / chunks;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int chunk = 0; chunk < chunks; ++chunk) {
    float* out = scratch + chunk * filter;
    FilterArgs a{};
    a.n0 = std::min(s.n, chunk * per_chunk), a.n1 = std::min(s.n, a.n0 + per_chunk);
    a.h = s.h, a.w = s.w, a.c = s.c, a.p = s.out_h(), a.q = s.out_w(), a.k = s.k;
    a.sh = s.stride_h, a.sw = s.stride_w, a.ph = s.pad_h, a.pw = s.pad_w;
    a.out_block = block;
    for (int r = 0; r < s.r; ++r)
      for (int t = 0; t < s.s; ++t)
        for (int k0 = 0; k0 < s.k; k0 += kb * kLanes)
          for (int c0 = 0; c0 < s.c; c0 += tmax) {
            a.r = r, a.s = t;
            a.x = x + c0;
            a.dy = dy + k0;
            a.out = out + (k0 / kLanes) * block + ((int64_t(r) * s.s + t) * s.c + c0) * kLanes;
            filter_tile_fn(std::min(tmax, s.c - c0), kb)(a);
          }
  }
  // dw[k][r][s][c] = sum over chunks, in order, of packed[k/16][r][s][c][k%16].
  const int64_t rsc = int64_t(s.r) * s.s * s.c;
  for (int k = 0; k < s.k; ++k)
    for (int64_t i = 0; i < rsc; ++i) {
      const int64_t at = ((k / kLanes) * rsc + i) * kLanes + k % kLanes;
      float sum = scratch[at];
      for (int chunk = 1; chunk < chunks; ++chunk) sum += scratch[chunk * filter + at];
      dw[k * rsc + i] = sum;
    }
}

}  // namespace lockstep::cpu::direct
