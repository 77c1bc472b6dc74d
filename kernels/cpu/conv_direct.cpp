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
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cpu/conv_taps.h"
#include "kernels/cpu/conv_tile.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/error.h"

namespace lockstep::cpu::direct {

namespace {

using namespace tile;

// Scratch of a forward-shaped pass: the columns' zero margins (none without column padding).
int64_t padded_floats(const Geometry& g) { return g.pw > 0 ? int64_t(g.h) * g.padded_w() * g.cin : 0; }

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
      float* pad = pads + omp_get_thread_num() * padded_floats(g);
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
          kernel_for<ForwardTile>(t, kb)(a);
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

struct FilterTile {
  using Args = FilterArgs;
  template <int TC, int KB>
  LS_AVX512 static void run(const FilterArgs& a) {
    __m512 acc[TC][KB];
    zero(acc);
    // Output columns whose tap lands inside the image: 0 <= q*sw - pw + s < w. Both bounds are
    // divisions of possibly negative numbers, rounded toward the valid range.
    const int lo = a.pw - a.s > 0 ? (a.pw - a.s + a.sw - 1) / a.sw : 0;
    const int last = a.w - 1 + a.pw - a.s;
    const int hi = last < 0 ? 0 : std::min(a.q, last / a.sw + 1);
    for (int n = a.n0; n < a.n1; ++n)
      for (int p = 0; p < a.p; ++p) {
        const int ih = p * a.sh - a.ph + a.r;
        if (ih < 0 || ih >= a.h) continue;
        const float* xr = a.x + (int64_t(n) * a.h + ih) * a.w * a.c;
        const float* dr = a.dy + (int64_t(n) * a.p + p) * a.q * a.k;
        for (int q = lo; q < hi; ++q)
          outer_product_step(acc, dr + int64_t(q) * a.k, kLanes, xr + int64_t(q * a.sw - a.pw + a.s) * a.c, 1);
      }
    store(acc, a.out, kLanes, a.out_block);
  }
};

bool cpu_has_avx512() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return yes;
}

// LOCKSTEP_CPU_CONV: auto (every kernel where it fits), winograd2 (no F(4x4, 3x3)), direct (no
// Winograd) or gemm (none).
enum class Mode { gemm, direct, winograd2, all };
Mode mode_from_environment() {
  const char* v = std::getenv("LOCKSTEP_CPU_CONV");
  const std::string text = v == nullptr ? "" : v;
  if (text.empty() || text == "auto") return Mode::all;
  if (text == "direct") return Mode::direct;
  if (text == "winograd2") return Mode::winograd2;
  LS_CHECK(text == "gemm", "LOCKSTEP_CPU_CONV must be auto, winograd2 (Winograd F(2x2,3x3) only), direct (no "
                           "Winograd) or gemm (the im2col+sgemm path alone), got '" << text << "'");
  return Mode::gemm;
}

Mode mode() {
  static const Mode m = mode_from_environment();
  return m;
}

}  // namespace

bool available() { return cpu_has_avx512() && mode() != Mode::gemm; }

unsigned possible(const ConvShape& s) {
  unsigned out = taps::fits(s) ? taps_forward | taps_data | taps_filter : 0u;
  if (!cpu_has_avx512() || s.pointwise()) return out;
  // Forward and backward-filter tile y's rows, 16 of its channels per vector.
  const bool y_tiles = s.k % kLanes == 0 && s.out_w() >= kMinTileRow;
  const bool winograd = winograd::fits(s.r, s.s, s.stride_h, s.stride_w, s.c, s.k);
  // Winograd takes short rows too (batched over images, conv_winograd.h); the direct tiles do not.
  if (winograd && winograd::pays(s, false)) out |= winograd_forward;
  if (winograd && winograd::pays(s, false, true)) out |= winograd4_forward;
  if (y_tiles) out |= forward_pass | filter_pass | (winograd ? winograd_filter | winograd4_filter : 0u);
  const bool data = s.stride_h == 1 && s.stride_w == 1 && s.pad_h < s.r && s.pad_w < s.s;
  const bool data_winograd = data && winograd::fits(s.r, s.s, 1, 1, s.k, s.c);
  if (data_winograd && winograd::pays(s, true)) out |= winograd_data;
  if (data_winograd && winograd::pays(s, true, true)) out |= winograd4_data;
  if (data && s.c % kLanes == 0 && s.w >= kMinTileRow) out |= data_pass;
  return out;
}

unsigned passes(const ConvShape& s) {
  if (mode() == Mode::gemm) return 0;
  unsigned out = possible(s);
  if (!taps::pays_forward(s)) out &= ~unsigned(taps_forward);
  if (!taps::pays_data(s)) out &= ~unsigned(taps_data);
  if (!taps::pays_filter(s)) out &= ~unsigned(taps_filter);
  if (mode() != Mode::all) out &= ~unsigned(winograd4_forward | winograd4_data | winograd4_filter);
  if (mode() != Mode::all && mode() != Mode::winograd2)
    out &= ~unsigned(winograd_forward | winograd_data | winograd_filter);
  // One kernel per pass: the first of Winograd F(4x4), F(2x2), direct tiles, tap GEMMs left.
  for (const PassKernels& p : kPassKernels) {
    if (out & p.winograd4) out &= ~(p.winograd | p.direct | p.taps);
    if (out & p.winograd) out &= ~(p.direct | p.taps);
    if (out & p.direct) out &= ~p.taps;
  }
  return out;
}

int64_t scratch_floats(const ConvShape& s, unsigned which, int threads, int chunks) {
  int64_t need = 0;
  const int64_t filter = int64_t(s.k) * s.r * s.s * s.c;
  if (which & forward_pass) need = std::max(need, filter + threads * padded_floats(forward_geometry(s)));
  if (which & data_pass) need = std::max(need, filter + threads * padded_floats(data_geometry(s)));
  if (which & filter_pass) need = std::max(need, chunks * filter);
  if (which & winograd_forward) need = std::max(need, winograd::scratch_floats(s, false, threads));
  if (which & winograd_data) need = std::max(need, winograd::scratch_floats(s, true, threads));
  if (which & winograd4_forward) need = std::max(need, winograd::scratch_floats(s, false, threads, true));
  if (which & winograd4_data) need = std::max(need, winograd::scratch_floats(s, true, threads, true));
  if (which & winograd_filter) need = std::max(need, winograd::filter_scratch_floats(s, threads, chunks));
  if (which & winograd4_filter) need = std::max(need, winograd::filter_scratch_floats(s, threads, chunks, true));
  return need;
}

void forward(const ConvShape& s, const float* x, const float* w, float* y, float* scratch, int threads) {
  const Geometry g = forward_geometry(s);
  // wp[k/16][r][s][c][k%16] = w[k][r][s][c]
  float* wp = scratch;
  const int64_t rsc = int64_t(s.r) * s.s * s.c;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int k = 0; k < s.k; ++k)
    for (int64_t i = 0; i < rsc; ++i) wp[((k / kLanes) * rsc + i) * kLanes + k % kLanes] = w[k * rsc + i];
  run_forward(g, x, wp, y, false, scratch + g.filter_floats(), threads);
}

void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx, bool accumulate,
                   float* scratch, int threads) {
  const Geometry g = data_geometry(s);
  // wp[c/16][r'][s'][k][c%16] = w[k][R-1-r'][S-1-s'][c]
  float* wp = scratch;
#pragma omp parallel for schedule(static) num_threads(threads)
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
            kernel_for<FilterTile>(std::min(tmax, s.c - c0), kb)(a);
          }
  }
  // dw[k][r][s][c] = sum over chunks, in order, of packed[k/16][r][s][c][k%16].
  const int64_t rsc = int64_t(s.r) * s.s * s.c;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int k = 0; k < s.k; ++k)
    for (int64_t i = 0; i < rsc; ++i) {
      const int64_t at = ((k / kLanes) * rsc + i) * kLanes + k % kLanes;
      float sum = scratch[at];
      for (int chunk = 1; chunk < chunks; ++chunk) sum += scratch[chunk * filter + at];
      dw[k * rsc + i] = sum;
    }
}

}  // namespace lockstep::cpu::direct
