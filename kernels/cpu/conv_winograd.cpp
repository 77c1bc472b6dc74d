// Winograd F(2x2, 3x3) (Lavin and Gray, 2015) on AVX-512: see conv_winograd.h.
//
// A 2x2 block of outputs is Y = A^T [U (.) V] A, with U = G g G^T the 4x4 transform of a 3x3
// filter and V = B^T d B that of the 4x4 input patch under the block. Per image, the output's
// 2x2 tiles are taken in blocks of T (raster order), and for each block:
//   1. V[xi][t][c] for the block's tiles, 16 input channels per vector (the image was copied
//      with zero margins, so every patch is in bounds);
//   2. for each of the 16 positions xi, M[xi][t][k] = sum over c of V[xi][t][c] U[xi][c][k]:
//      the direct kernels' register tile (conv_tile.h) with one tap and the tiles as its pixels;
//   3. Y = A^T M A for each tile, 16 output channels per vector, stored (or added) where the
//      tile lies inside the output.
// V and M of a block stay in cache (16 x T x channels floats each). U is made once per call.
// The transforms only add, subtract and halve, so on small integers the result is exact.
#include "kernels/cpu/conv_winograd.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/conv_tile.h"

namespace lockstep::cpu::winograd {

namespace {

using namespace tile;

constexpr int kXi = 16;  // positions of a transformed tile

// The per-image layout of a forward-shaped pass.
struct Plan {
  Geometry g;
  int tiles_h, tiles_w;  // 2x2 output tiles per column and row
  int kb, block;         // vectors per register tile, tiles per block
  int64_t padded_h() const { return 2 * int64_t(tiles_h) + 2; }
  int64_t padded_w() const { return 2 * int64_t(tiles_w) + 2; }
  int64_t padded_floats() const { return padded_h() * padded_w() * g.cin; }
  int64_t v_floats() const { return int64_t(kXi) * block * g.cin; }
  int64_t m_floats() const { return int64_t(kXi) * block * g.kout; }
  int64_t thread_floats() const { return padded_floats() + v_floats() + m_floats(); }
  int64_t u_floats() const { return int64_t(kXi) * g.cin * g.kout; }
};

Plan plan_for(const Geometry& g) {
  Plan p{g, (g.p + 1) / 2, (g.q + 1) / 2, vectors_per_tile(g.kout), 0};
  p.block = kTileRegisters / p.kb;
  return p;
}

// U[xi][k / 16][c][k % 16] = (G g G^T)[xi] for g(r, s) = filter(k, r, s, c).
template <typename Filter>
void transform_filter(const Plan& p, Filter filter, float* u, int threads) {
  const int cin = p.g.cin, kout = p.g.kout;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int k = 0; k < kout; ++k)
    for (int c = 0; c < cin; ++c) {
      float g[3][3], t[4][3];
      for (int r = 0; r < 3; ++r)
        for (int s = 0; s < 3; ++s) g[r][s] = filter(k, r, s, c);
      for (int j = 0; j < 3; ++j) {  // t = G g
        t[0][j] = g[0][j];
        t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      for (int i = 0; i < 4; ++i) {  // u = t G^T
        const float row[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                              t[i][2]};
        for (int j = 0; j < 4; ++j)
          u[((int64_t(4 * i + j) * (kout / kLanes) + k / kLanes) * cin + c) * kLanes + k % kLanes] = row[j];
      }
    }
}

// The image (h, w, cin) into (padded_h, padded_w, cin) at row ph, column pw, zeros around it.
void pad_image(const Plan& p, const float* in, float* out) {
  const Geometry& g = p.g;
  std::fill(out, out + p.padded_floats(), 0.0f);
  const int64_t row = int64_t(g.w) * g.cin;
  for (int i = 0; i < g.h; ++i)
    std::memcpy(out + ((i + g.ph) * p.padded_w() + g.pw) * g.cin, in + i * row, sizeof(float) * size_t(row));
}

// V for `count` tiles from tile index t0 (raster order): V[xi][t][c] = (B^T d B)[xi].
LS_AVX512 void transform_input(const Plan& p, const float* padded, int t0, int count, float* v) {
  const int cin = p.g.cin;
  const int64_t row = p.padded_w() * cin;
  for (int t = 0; t < count; ++t) {
    const int ti = (t0 + t) / p.tiles_w, tj = (t0 + t) % p.tiles_w;
    const float* d0 = padded + (2 * ti) * row + (2 * tj) * int64_t(cin);
    for (int c = 0; c < cin; c += kLanes) {
      __m512 d[4][4], b[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) d[i][j] = _mm512_loadu_ps(d0 + i * row + j * cin + c);
      for (int j = 0; j < 4; ++j) {  // b = B^T d
        b[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
        b[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
        b[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
        b[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
      }
      for (int i = 0; i < 4; ++i) {  // V = b B
        const __m512 out[4] = {_mm512_sub_ps(b[i][0], b[i][2]), _mm512_add_ps(b[i][1], b[i][2]),
                               _mm512_sub_ps(b[i][2], b[i][1]), _mm512_sub_ps(b[i][1], b[i][3])};
        for (int j = 0; j < 4; ++j)
          _mm512_storeu_ps(v + (int64_t(4 * i + j) * p.block + t) * cin + c, out[j]);
      }
    }
  }
}

// y (p, q, kout) at the `count` tiles from t0 = A^T M A (added to y with accumulate).
LS_AVX512 void transform_output(const Plan& p, const float* m, int t0, int count, float* y, bool accumulate) {
  const int kout = p.g.kout;
  for (int t = 0; t < count; ++t) {
    const int ti = (t0 + t) / p.tiles_w, tj = (t0 + t) % p.tiles_w;
    const int rows = std::min(2, p.g.p - 2 * ti), cols = std::min(2, p.g.q - 2 * tj);
    for (int k = 0; k < kout; k += kLanes) {
      __m512 a[4][4], b[2][4];
      for (int xi = 0; xi < kXi; ++xi) a[xi / 4][xi % 4] = _mm512_loadu_ps(m + (int64_t(xi) * p.block + t) * kout + k);
      for (int j = 0; j < 4; ++j) {  // b = A^T a
        b[0][j] = _mm512_add_ps(_mm512_add_ps(a[0][j], a[1][j]), a[2][j]);
        b[1][j] = _mm512_sub_ps(_mm512_sub_ps(a[1][j], a[2][j]), a[3][j]);
      }
      for (int i = 0; i < rows; ++i) {  // Y = b A
        const __m512 out[2] = {_mm512_add_ps(_mm512_add_ps(b[i][0], b[i][1]), b[i][2]),
                               _mm512_sub_ps(_mm512_sub_ps(b[i][1], b[i][2]), b[i][3])};
        for (int j = 0; j < cols; ++j) {
          float* o = y + ((int64_t(2 * ti + i) * p.g.q) + 2 * tj + j) * kout + k;
          _mm512_storeu_ps(o, accumulate ? _mm512_add_ps(_mm512_loadu_ps(o), out[j]) : out[j]);
        }
      }
    }
  }
}

// out = the pass over every image; scratch holds U, then each thread's padded image, V and M.
void run(const Plan& p, const float* in, float* out, bool accumulate, float* scratch, int threads) {
  const Geometry& g = p.g;
  const float* u = scratch;
  float* per_thread = scratch + p.u_floats();
  const int64_t in_image = int64_t(g.h) * g.w * g.cin, out_image = int64_t(g.p) * g.q * g.kout;
  const int tiles = p.tiles_h * p.tiles_w;
  const int kblocks = g.kout / kLanes;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int n = 0; n < g.n; ++n) {
    float* padded = per_thread + omp_get_thread_num() * p.thread_floats();
    float* v = padded + p.padded_floats();
    float* m = v + p.v_floats();
    pad_image(p, in + n * in_image, padded);
    TileArgs a{};
    a.x_row = 0, a.x_step = g.cin, a.ih0 = 0, a.h = 1, a.r = 1, a.s = 1, a.cin = g.cin;
    a.wp_block = int64_t(g.cin) * kLanes, a.y_step = g.kout, a.accumulate = false;
    for (int t0 = 0; t0 < tiles; t0 += p.block) {
      const int count = std::min(p.block, tiles - t0);
      transform_input(p, padded, t0, count, v);
      const TileFn multiply = forward_tile_fn(count, p.kb);
      for (int xi = 0; xi < kXi; ++xi)
        for (int k0 = 0; k0 < g.kout; k0 += p.kb * kLanes) {
          a.x = v + int64_t(xi) * p.block * g.cin;
          a.wp = u + (int64_t(xi) * kblocks + k0 / kLanes) * g.cin * kLanes;
          a.y = m + int64_t(xi) * p.block * g.kout + k0;
          multiply(a);
        }
      transform_output(p, m, t0, count, out + n * out_image, accumulate);
    }
  }
}

}  // namespace

bool fits(int r, int s, int stride_h, int stride_w, int cin, int kout) {
  return r == 3 && s == 3 && stride_h == 1 && stride_w == 1 && cin % kLanes == 0 && kout % kLanes == 0;
}

int64_t scratch_floats(const ConvShape& s, bool data, int threads) {
  const Plan p = plan_for(data ? data_geometry(s) : forward_geometry(s));
  return p.u_floats() + threads * p.thread_floats();
}

void forward(const ConvShape& s, const float* x, const float* w, float* y, float* scratch, int threads) {
  const Plan p = plan_for(forward_geometry(s));
  const int64_t rsc = 9 * int64_t(s.c);
  transform_filter(p, [&](int k, int r, int t, int c) { return w[k * rsc + (r * 3 + t) * s.c + c]; }, scratch,
                   threads);
  run(p, x, y, false, scratch, threads);
}

void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx, bool accumulate,
                   float* scratch, int threads) {
  const Plan p = plan_for(data_geometry(s));
  const int64_t rsc = 9 * int64_t(s.c);
  // Output channel c, input channel k of the rotated filter: w(k, 2 - r, 2 - t, c).
  transform_filter(p, [&](int c, int r, int t, int k) { return w[k * rsc + ((2 - r) * 3 + (2 - t)) * s.c + c]; },
                   scratch, threads);
  run(p, dy, dx, accumulate, scratch, threads);
}

}  // namespace lockstep::cpu::winograd
