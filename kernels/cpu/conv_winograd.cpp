// Winograd F(2x2, 3x3) and F(4x4, 3x3) (Lavin and Gray, 2015) on AVX-512: see conv_winograd.h.
//
// A 2x2 block of outputs is Y = A^T [U (.) V] A, with U = G g G^T the 4x4 transform of a 3x3
// filter and V = B^T d B that of the 4x4 input patch under the block. Per image, the output's
// 2x2 tiles are taken in blocks of T (raster order), and for each block:
//   1. V[xi][t][c] for the block's tiles, 16 input channels per vector (the parts of a patch in
//      the padding read as zeros);
//   2. for each of the 16 positions xi, M[xi][t][k] = sum over c of V[xi][t][c] U[xi][c][k]:
//      the direct kernels' register tile (conv_tile.h) with one tap and the tiles as its pixels;
//   3. Y = A^T M A for each tile, 16 output channels per vector, stored (or added) where the
//      tile lies inside the output.
// V and M of a block stay in cache (16 x T x channels floats each). U is made once per call.
// F(4x4, 3x3) takes the place of F(2x2, 3x3) where conv_direct.h's passes() says (Lavin and
// Gray's B, G and A for the points 0, +-1, +-2): 6x6 patches, 36 positions, 36 multiplies per 16 outputs instead
// of 64. Its G has fractions (1/4, 1/6, 1/12, 1/24), so U is taken with 24 G, in integers, and
// the output divided by 576; with B and A's small integers, small-integer convolutions stay exact
// (the tests' cases do) as long as the products' sums stay below 2^24.
// Neighbouring tiles of a row share two patch columns (both sizes), whose B^T d carries over.
// Short rows run batched instead: per block of whole images, V of all their tiles, one sgemm per
// position (tiles x cin by cin x kout, U kept as [xi][c][k]), then the output transform; F(4x4,
// 3x3) where the batch has 128 such tiles (conv_winograd.h's pays), else F(2x2, 3x3).
// Backward-filter is F(3x3, 2x2) (or F(3x3, 4x4) with F(4x4, 3x3)'s matrices: 4x4 tiles of dy,
// 6x6 patches), the same identity read for the filter: dw = G^T [sum over tiles of (A e A^T) (.)
// (B^T d B)] G, with e the 2x2 tile of dy and d the 4x4 patch of x under it. Per
// block of whole images (about 1 MB of V and E), E of dy and V of x (as forward's) are reduced
// into M[xi][k][c] by a register tile of input channels x output channel vectors; each chunk of
// images has its own M, the chunks are added in order and G^T M G is taken once at the end.
// F(2x2)'s transforms only add, subtract and halve, F(4x4)'s multiply by small integers and
// divide by 576 once, so on small integers the result is exact.
#include "kernels/cpu/conv_winograd.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "kernels/cpu/conv_tile.h"

namespace lockstep::cpu::winograd {

namespace {

using namespace tile;

constexpr int kXi = 16;           // positions of a transformed tile, F(2x2, 3x3)
constexpr int kXi4 = 36;          // F(4x4, 3x3)
constexpr float kScale4 = 576.0f; // F(4x4, 3x3)'s filter transform is taken times 24 x 24
// Backward-filter: floats of V and E a thread may hold, so that a block spans whole images and M is
// loaded and stored once per block, not per image's tiles (resnet20's 8x8 stage has 16 tiles).
constexpr int64_t kFilterBlockFloats = int64_t(1) << 18;
// Batched passes: tiles in the batch below which transforming the filter costs more than it saves.
constexpr int64_t kMinBatchedTiles = 128;
// Batched passes: floats of V and M for a block of whole images (shared by the threads).
constexpr int64_t kBatchedBlockFloats = int64_t(1) << 20;

// The per-image layout of a forward-shaped pass.
struct Plan {
  Geometry g;
  int tiles_h, tiles_w;  // output tiles (2x2, or 4x4 with f4) per column and row
  int kb, block;         // vectors per register tile, tiles per block
  int images = 1;        // backward-filter, batched: whole images per block (block = images x tiles)
  // Batched (short rows, forward and backward-data): per position xi, one sgemm of the block's
  // tiles x cin by cin x kout, U in [xi][c][k] order; V and M are shared, not per thread.
  bool batched = false;
  // F(4x4, 3x3) (F(3x3, 4x4) for the filter) instead of F(2x2, 3x3): tiles of 4x4 outputs, 36
  // positions.
  bool f4 = false;
  int positions() const { return f4 ? kXi4 : kXi; }
  // Per thread: V of a block, and M (forward) or E (backward-filter) of a block.
  int64_t v_floats() const { return int64_t(positions()) * block * g.cin; }
  int64_t m_floats() const { return int64_t(positions()) * block * g.kout; }
  int64_t thread_floats() const { return v_floats() + m_floats(); }
  int64_t u_floats() const { return int64_t(positions()) * g.cin * g.kout; }
  int64_t zero_floats() const { return std::max(g.cin, g.kout); }  // a row of zeros for the padding
};

// f4: F(4x4, 3x3) (F(3x3, 4x4) for the filter) instead of F(2x2, 3x3).
Plan plan_for(const Geometry& g, bool filter = false, bool f4 = false) {
  Plan p{g, (g.p + 1) / 2, (g.q + 1) / 2, vectors_per_tile(g.kout), 0};
  p.block = kTileRegisters / p.kb;
  p.batched = !filter && g.q < kMinTileRow;
  if (f4) p.f4 = true, p.tiles_h = (g.p + 3) / 4, p.tiles_w = (g.q + 3) / 4;
  if (filter || p.batched) {
    const int64_t image = int64_t(p.positions()) * p.tiles_h * p.tiles_w * (g.cin + g.kout);
    p.images = static_cast<int>(
        std::clamp<int64_t>((filter ? kFilterBlockFloats : kBatchedBlockFloats) / image, 1, g.n));
    p.block = p.images * p.tiles_h * p.tiles_w;
  }
  return p;
}

// Fills the row of zeros that patches in the padding read, at `zeros`; returns what follows it.
float* fill_zeros(const Plan& p, float* zeros) {
  std::fill(zeros, zeros + p.zero_floats(), 0.0f);
  return zeros + p.zero_floats();
}

// U's rows for one block of 16 input channels: g[c][tap][k] holds the block's 3x3 filters with
// the 16 output channels in lanes; U[xi] of input channel c goes to dst(xi, c), 16 floats.
template <typename Dst>
LS_AVX512 inline void transform_filter_block(const float (&g)[kLanes][9][kLanes], Dst dst) {
  const __m512 half = _mm512_set1_ps(0.5f);
  for (int cc = 0; cc < kLanes; ++cc) {
    __m512 f[9], t[4][3];
    for (int tap = 0; tap < 9; ++tap) f[tap] = _mm512_loadu_ps(g[cc][tap]);
    for (int j = 0; j < 3; ++j) {  // t = G f
      const __m512 ends = _mm512_add_ps(f[j], f[6 + j]);
      t[0][j] = f[j];
      t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(ends, f[3 + j]));
      t[2][j] = _mm512_mul_ps(half, _mm512_sub_ps(ends, f[3 + j]));
      t[3][j] = f[6 + j];
    }
    for (int i = 0; i < 4; ++i) {  // U = t G^T
      const __m512 ends = _mm512_add_ps(t[i][0], t[i][2]);
      _mm512_storeu_ps(dst(4 * i, cc), t[i][0]);
      _mm512_storeu_ps(dst(4 * i + 1, cc), _mm512_mul_ps(half, _mm512_add_ps(ends, t[i][1])));
      _mm512_storeu_ps(dst(4 * i + 2, cc), _mm512_mul_ps(half, _mm512_sub_ps(ends, t[i][1])));
      _mm512_storeu_ps(dst(4 * i + 3, cc), t[i][2]);
    }
  }
}

// out = G' f for one column f of three values, G' as below.
LS_AVX512 inline void filter_rows4(const __m512 (&f)[3], __m512 (&out)[6]) {
  const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f);
  const __m512 ends = _mm512_add_ps(f[0], f[2]);
  out[0] = _mm512_mul_ps(_mm512_set1_ps(6.0f), f[0]);
  out[1] = _mm512_mul_ps(four, _mm512_sub_ps(_mm512_setzero_ps(), _mm512_add_ps(ends, f[1])));
  out[2] = _mm512_mul_ps(four, _mm512_sub_ps(f[1], ends));
  const __m512 a = _mm512_fmadd_ps(four, f[2], f[0]), b = _mm512_mul_ps(two, f[1]);
  out[3] = _mm512_add_ps(a, b);
  out[4] = _mm512_sub_ps(a, b);
  out[5] = _mm512_mul_ps(_mm512_set1_ps(24.0f), f[2]);
}

// F(4x4, 3x3)'s U times 576 for one block of 16 input channels, as transform_filter_block:
// U' = G' g G'^T with G' = 24 G = [6 0 0; -4 -4 -4; -4 4 -4; 1 2 4; 1 -2 4; 0 0 24], integers, so
// that small-integer filters transform exactly (the output transform divides by 576).
template <typename Dst>
LS_AVX512 inline void transform_filter_block4(const float (&g)[kLanes][9][kLanes], Dst dst) {
  for (int cc = 0; cc < kLanes; ++cc) {
    __m512 t[6][3];
    for (int j = 0; j < 3; ++j) {  // t = G' f, column by column
      const __m512 col[3] = {_mm512_loadu_ps(g[cc][j]), _mm512_loadu_ps(g[cc][3 + j]), _mm512_loadu_ps(g[cc][6 + j])};
      __m512 out[6];
      filter_rows4(col, out);
      for (int i = 0; i < 6; ++i) t[i][j] = out[i];
    }
    for (int i = 0; i < 6; ++i) {  // U' = t G'^T, row by row
      __m512 out[6];
      filter_rows4(t[i], out);
      for (int j = 0; j < 6; ++j) _mm512_storeu_ps(dst(6 * i + j, cc), out[j]);
    }
  }
}

// U[xi][k / 16][c][k % 16] = (G g G^T)[xi] for g(r, s) = filter(k, r, s, c); batched plans
// keep it as U[xi][c][k], each position a row-major cin x kout matrix for sgemm. Blocks of 16
// output x 16 input channels go through a local buffer, so that both the filter (read along its
// fastest channel: c, or k where k_fastest) and U (written 16 output channels at a time) are
// walked in order: element by element, a 512x512 filter's reads lie 18 KB apart (a third of
// resnet18's pass went there).
template <typename Filter>
void transform_filter(const Plan& p, Filter filter, bool k_fastest, float* u, int threads) {
  const int cin = p.g.cin, kout = p.g.kout, kblocks = kout / kLanes, cblocks = cin / kLanes;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int block = 0; block < kblocks * cblocks; ++block) {
    const int k0 = block / cblocks * kLanes, c0 = block % cblocks * kLanes;
    float g[kLanes][9][kLanes];  // [c][tap][k]
    for (int a = 0; a < kLanes; ++a)
      for (int tap = 0; tap < 9; ++tap)
        for (int b = 0; b < kLanes; ++b) {
          const int kk = k_fastest ? b : a, cc = k_fastest ? a : b;
          g[cc][tap][kk] = filter(k0 + kk, tap / 3, tap % 3, c0 + cc);
        }
    const auto dst = [&](int xi, int cc) {
      return p.batched ? u + (int64_t(xi) * cin + c0 + cc) * kout + k0
                       : u + ((int64_t(xi) * kblocks + k0 / kLanes) * cin + c0 + cc) * kLanes;
    };
    if (p.f4)
      transform_filter_block4(g, dst);
    else
      transform_filter_block(g, dst);
  }
}

// out = B^T v for the N values v of a patch's column (or row, read as one), N = 4 for F(2x2, 3x3)
// (B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]) and 6 for F(4x4, 3x3) (B^T = [4 0 -5 0 1 0;
// 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]).
LS_AVX512 inline void input_rows(const __m512 (&v)[4], __m512 (&out)[4]) {
  out[0] = _mm512_sub_ps(v[0], v[2]);
  out[1] = _mm512_add_ps(v[1], v[2]);
  out[2] = _mm512_sub_ps(v[2], v[1]);
  out[3] = _mm512_sub_ps(v[1], v[3]);
}
LS_AVX512 inline void input_rows(const __m512 (&v)[6], __m512 (&out)[6]) {
  const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f);
  out[0] = _mm512_fnmadd_ps(five, v[2], _mm512_fmadd_ps(four, v[0], v[4]));
  const __m512 p = _mm512_fnmadd_ps(four, v[2], v[4]), q = _mm512_fnmadd_ps(four, v[1], v[3]);
  out[1] = _mm512_add_ps(p, q);
  out[2] = _mm512_sub_ps(p, q);
  const __m512 r = _mm512_sub_ps(v[4], v[2]), t = _mm512_mul_ps(two, _mm512_sub_ps(v[3], v[1]));
  out[3] = _mm512_add_ps(r, t);
  out[4] = _mm512_sub_ps(r, t);
  out[5] = _mm512_fnmadd_ps(five, v[3], _mm512_fmadd_ps(four, v[1], v[5]));
}

// b[.][J] = B^T d for column J of an N x N patch, 16 input channels at c: pixel(i) is the patch's
// pixel (i, J) (a zero row where it lies in the padding). J is a constant so that b stays in
// registers.
template <int N, int J, typename Pixel>
LS_AVX512 inline void transform_column(Pixel pixel, int c, __m512 (&b)[N][N]) {
  __m512 d[N], out[N];
  for (int i = 0; i < N; ++i) d[i] = _mm512_loadu_ps(pixel(i) + c);
  input_rows(d, out);
  for (int i = 0; i < N; ++i) b[i][J] = out[i];
}

// V for `count` tiles from tile index t0 (raster order): V[xi][t][c] = (B^T d B)[xi] of the N x N
// patch under each tile (N = 4: F(2x2, 3x3), 6: F(4x4, 3x3)), 16 input channels per vector;
// `zeros` holds at least cin zeros for the parts of a patch in the padding. Neighbouring tiles
// of a row share two columns of their patches, so the right two columns of B^T d carry over as
// the next tile's left two: fewer loads and column sums (the same values, so the same bits).
template <int N>
LS_AVX512 void transform_input(const Plan& p, const float* image, const float* zeros, int t0, int count, float* v) {
  const Geometry& g = p.g;
  const int64_t xi_stride = int64_t(p.block) * g.cin;
  const auto pixel = [&](int ih, int iw) {
    return ih >= 0 && ih < g.h && iw >= 0 && iw < g.w ? image + (int64_t(ih) * g.w + iw) * g.cin : zeros;
  };
  for (int c = 0; c < g.cin; c += kLanes) {
    __m512 b[N][N];
    for (int t = 0; t < count; ++t) {
      const int ti = (t0 + t) / p.tiles_w, tj = (t0 + t) % p.tiles_w;
      const int ih = (N - 2) * ti - g.ph, iw = (N - 2) * tj - g.pw;  // the patch's first row and column
      const auto column = [&](int j) { return [&, j](int i) { return pixel(ih + i, iw + j); }; };
      if (t > 0 && tj > 0) {  // the previous tile is this one's left neighbour
        for (int i = 0; i < N; ++i) b[i][0] = b[i][N - 2], b[i][1] = b[i][N - 1];
      } else {
        transform_column<N, 0>(column(0), c, b);
        transform_column<N, 1>(column(1), c, b);
      }
      [&]<int... J>(std::integer_sequence<int, J...>) {
        (transform_column<N, J + 2>(column(J + 2), c, b), ...);
      }(std::make_integer_sequence<int, N - 2>{});
      float* out = v + int64_t(t) * g.cin + c;
      for (int i = 0; i < N; ++i) {  // V = b B: row i of b through B^T's rows
        __m512 row[N];
        input_rows(b[i], row);
        for (int j = 0; j < N; ++j) _mm512_storeu_ps(out + (N * i + j) * xi_stride, row[j]);
      }
    }
  }
}

// The plan's input transform: F(4x4, 3x3)'s 6x6 patches or F(2x2, 3x3)'s 4x4.
void transform_patches(const Plan& p, const float* image, const float* zeros, int t0, int count, float* v) {
  if (p.f4)
    transform_input<6>(p, image, zeros, t0, count, v);
  else
    transform_input<4>(p, image, zeros, t0, count, v);
}

// out = A^T a for the M + 2 values a of a column (or row, read as one) of M: M = 2 for F(2x2,
// 3x3) (A^T = [1 1 1 0; 0 1 -1 -1]) and 4 for F(4x4, 3x3) (A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0;
// 0 1 1 4 4 0; 0 1 -1 8 -8 1]).
LS_AVX512 inline void output_rows(const __m512 (&a)[4], __m512 (&out)[2]) {
  out[0] = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), a[2]);
  out[1] = _mm512_sub_ps(_mm512_sub_ps(a[1], a[2]), a[3]);
}
LS_AVX512 inline void output_rows(const __m512 (&a)[6], __m512 (&out)[4]) {
  const __m512 s12 = _mm512_add_ps(a[1], a[2]), d12 = _mm512_sub_ps(a[1], a[2]);
  const __m512 s34 = _mm512_add_ps(a[3], a[4]), d34 = _mm512_sub_ps(a[3], a[4]);
  out[0] = _mm512_add_ps(_mm512_add_ps(a[0], s12), s34);
  out[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12);
  out[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s34, s12);
  out[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d34, d12), a[5]);
}

// y (p, q, kout) at the `count` M x M tiles from t0 = A^T M A (added to y with accumulate);
// F(4x4, 3x3)'s divided by 576 (a division, not a multiply by 1/576, keeps small-integer results
// exact).
template <int M>
LS_AVX512 void transform_output(const Plan& p, const float* m, int t0, int count, float* y, bool accumulate) {
  constexpr int N = M + 2;
  const int kout = p.g.kout;
  const __m512 scale = _mm512_set1_ps(kScale4);
  for (int t = 0; t < count; ++t) {
    const int ti = (t0 + t) / p.tiles_w, tj = (t0 + t) % p.tiles_w;
    const int rows = std::min(M, p.g.p - M * ti), cols = std::min(M, p.g.q - M * tj);
    for (int k = 0; k < kout; k += kLanes) {
      __m512 b[M][N];
      for (int j = 0; j < N; ++j) {  // b = A^T a, column by column
        __m512 a[N], out[M];
        for (int i = 0; i < N; ++i) a[i] = _mm512_loadu_ps(m + (int64_t(N * i + j) * p.block + t) * kout + k);
        output_rows(a, out);
        for (int i = 0; i < M; ++i) b[i][j] = out[i];
      }
      for (int i = 0; i < rows; ++i) {  // Y = b A
        __m512 out[M];
        output_rows(b[i], out);
        for (int j = 0; j < cols; ++j) {
          float* o = y + ((int64_t(M * ti + i) * p.g.q) + M * tj + j) * kout + k;
          const __m512 v = M == 4 ? _mm512_div_ps(out[j], scale) : out[j];
          _mm512_storeu_ps(o, accumulate ? _mm512_add_ps(_mm512_loadu_ps(o), v) : v);
        }
      }
    }
  }
}

// The plan's output transform.
void transform_outputs(const Plan& p, const float* m, int t0, int count, float* y, bool accumulate) {
  if (p.f4)
    transform_output<4>(p, m, t0, count, y, accumulate);
  else
    transform_output<2>(p, m, t0, count, y, accumulate);
}

// M[kb][c][16] += sum over the block's tiles t of E[t][k] V[t][c] for one position xi, TC input
// channels x KB vectors of output channels in registers.
struct ReduceArgs {
  const float* e;   // E[xi] at (t = 0, the tile's first output channel); tiles kout floats apart
  const float* v;   // V[xi] at (t = 0, the tile's first input channel); tiles cin floats apart
  int count, cin, kout;
  float* m;         // M[xi] at (first channel block, first input channel)
  int64_t m_block;  // floats between channel blocks of M (cin * 16)
  bool first;       // M holds nothing yet: start from zero instead of loading it
};

struct ReduceTile {
  using Args = ReduceArgs;
  template <int TC, int KB>
  LS_AVX512 static void run(const ReduceArgs& a) {
    __m512 acc[TC][KB];
    if (a.first)
      zero(acc);
    else
      load(acc, a.m, kLanes, a.m_block);
    for (int i = 0; i < a.count; ++i)
      outer_product_step(acc, a.e + int64_t(i) * a.kout, kLanes, a.v + int64_t(i) * a.cin, 1);
    store(acc, a.m, kLanes, a.m_block);
  }
};

// mm = the chunks' M, added in order, at every position of output channel block kb and input
// channel c (N x N positions).
template <int N>
LS_AVX512 inline void chunk_sums(const Plan& p, const float* m, int64_t m_floats, int chunks, int kb, int c,
                                 __m512 (&mm)[N][N]) {
  const int64_t kblocks = p.g.kout / kLanes;
  for (int xi = 0; xi < N * N; ++xi) {
    const float* at = m + ((xi * kblocks + kb) * p.g.cin + c) * kLanes;
    __m512 sum = _mm512_loadu_ps(at);
    for (int chunk = 1; chunk < chunks; ++chunk) sum = _mm512_add_ps(sum, _mm512_loadu_ps(at + chunk * m_floats));
    mm[xi / N][xi % N] = sum;
  }
}

// out = A v for the M values v of a dy tile's column (or row, read as one), A being the output
// transform's transpose: M = 2 for F(3x3, 2x2) (A = [1 0; 1 1; 1 -1; 0 -1]) and 4 for F(3x3, 4x4)
// (A = [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1]).
LS_AVX512 inline void dy_rows(const __m512 (&v)[2], __m512 (&out)[4]) {
  out[0] = v[0];
  out[1] = _mm512_add_ps(v[0], v[1]);
  out[2] = _mm512_sub_ps(v[0], v[1]);
  out[3] = _mm512_sub_ps(_mm512_setzero_ps(), v[1]);
}
LS_AVX512 inline void dy_rows(const __m512 (&v)[4], __m512 (&out)[6]) {
  const __m512 s02 = _mm512_add_ps(v[0], v[2]), s13 = _mm512_add_ps(v[1], v[3]);
  const __m512 t02 = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), v[2], v[0]);
  const __m512 t13 = _mm512_mul_ps(_mm512_set1_ps(2.0f), _mm512_fmadd_ps(_mm512_set1_ps(4.0f), v[3], v[1]));
  out[0] = v[0];
  out[1] = _mm512_add_ps(s02, s13);
  out[2] = _mm512_sub_ps(s02, s13);
  out[3] = _mm512_add_ps(t02, t13);
  out[4] = _mm512_sub_ps(t02, t13);
  out[5] = v[3];
}

// E[xi][t][k] = (A e A^T)[xi] for the M x M dy tile e of each of `count` tiles from t0 (zero past
// the output's edge), 16 output channels per vector: the weight gradient's transform of dy.
template <int M>
LS_AVX512 void transform_dy(const Plan& p, const float* dy, const float* zeros, int t0, int count, float* e) {
  constexpr int N = M + 2;
  const int kout = p.g.kout;
  for (int t = 0; t < count; ++t) {
    const int ti = (t0 + t) / p.tiles_w, tj = (t0 + t) % p.tiles_w;
    const float* src[M][M];
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < M; ++j)
        src[i][j] = M * ti + i < p.g.p && M * tj + j < p.g.q
                        ? dy + ((int64_t(M * ti + i) * p.g.q) + M * tj + j) * kout
                        : zeros;
    for (int k = 0; k < kout; k += kLanes) {
      __m512 a[N][M];
      for (int j = 0; j < M; ++j) {  // a = A d, column by column
        __m512 d[M], out[N];
        for (int i = 0; i < M; ++i) d[i] = _mm512_loadu_ps(src[i][j] + k);
        dy_rows(d, out);
        for (int i = 0; i < N; ++i) a[i][j] = out[i];
      }
      for (int i = 0; i < N; ++i) {  // E = a A^T, row by row
        __m512 out[N];
        dy_rows(a[i], out);
        for (int j = 0; j < N; ++j) _mm512_storeu_ps(e + (int64_t(N * i + j) * p.block + t) * kout + k, out[j]);
      }
    }
  }
}

// out = G^T v for the N values v of a column (or row, read as one) of M: N = 4 for F(3x3, 2x2)
// (G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1]) and 6 for F(3x3, 4x4), there with G' = 24 G as in
// transform_filter_block4 (G'^T = [6 -4 -4 1 1 0; 0 -4 4 2 -2 0; 0 -4 -4 4 4 24]).
LS_AVX512 inline void filter_cols(const __m512 (&v)[4], __m512 (&out)[3]) {
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512 mid = _mm512_mul_ps(half, _mm512_add_ps(v[1], v[2]));
  out[0] = _mm512_add_ps(v[0], mid);
  out[1] = _mm512_mul_ps(half, _mm512_sub_ps(v[1], v[2]));
  out[2] = _mm512_add_ps(mid, v[3]);
}
LS_AVX512 inline void filter_cols(const __m512 (&v)[6], __m512 (&out)[3]) {
  const __m512 four = _mm512_set1_ps(4.0f);
  const __m512 s12 = _mm512_add_ps(v[1], v[2]), s34 = _mm512_add_ps(v[3], v[4]);
  out[0] = _mm512_add_ps(_mm512_fnmadd_ps(four, s12, _mm512_mul_ps(_mm512_set1_ps(6.0f), v[0])), s34);
  out[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), _mm512_sub_ps(v[3], v[4]),
                           _mm512_mul_ps(four, _mm512_sub_ps(v[2], v[1])));
  out[2] = _mm512_fmadd_ps(_mm512_set1_ps(24.0f), v[5], _mm512_mul_ps(four, _mm512_sub_ps(s34, s12)));
}

// dw(k, r, s, c) for the 16 output channels of block kb and input channel c: the chunks' M (N x N
// positions) added in order, then G^T M G (F(3x3, 4x4)'s divided by 576), one lane per output
// channel.
template <int N>
LS_AVX512 void filter_output(const Plan& p, const float* m, int64_t m_floats, int chunks, int kb, int c, float* dw) {
  const int cin = p.g.cin;
  __m512 mm[N][N], t[3][N];
  chunk_sums(p, m, m_floats, chunks, kb, c, mm);
  for (int j = 0; j < N; ++j) {  // t = G^T mm, column by column
    __m512 col[N], out[3];
    for (int i = 0; i < N; ++i) col[i] = mm[i][j];
    filter_cols(col, out);
    for (int i = 0; i < 3; ++i) t[i][j] = out[i];
  }
  // Lane l is output channel 16 kb + l, whose (r, s) element lies 9 * cin floats after lane l-1's.
  const __m512i lanes = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(9 * cin));
  const __m512 scale = _mm512_set1_ps(kScale4);
  float* base = dw + (int64_t(kb) * kLanes * 9) * cin + c;
  for (int r = 0; r < 3; ++r) {  // dw = t G
    __m512 out[3];
    filter_cols(t[r], out);
    for (int s = 0; s < 3; ++s)
      _mm512_i32scatter_ps(base + (r * 3 + s) * cin, lanes, N == 6 ? _mm512_div_ps(out[s], scale) : out[s], 4);
  }
}

// A batched pass: per block of whole images, V of every tile (threads over images), 16 sgemms
// M[xi] = V[xi] U[xi] (threads over positions; each sgemm single-threaded, so its sums keep one
// order), then the output transform (threads over images). scratch holds U, a row of zeros, V, M.
void run_batched(const Plan& p, const float* in, float* out, bool accumulate, float* scratch, int threads) {
  const Geometry& g = p.g;
  const float* u = scratch;
  const float* zeros = scratch + p.u_floats();
  float* v = fill_zeros(p, scratch + p.u_floats());
  float* m = v + p.v_floats();
  const int64_t in_image = int64_t(g.h) * g.w * g.cin, out_image = int64_t(g.p) * g.q * g.kout;
  const int tiles = p.tiles_h * p.tiles_w;
  for (int n0 = 0; n0 < g.n; n0 += p.images) {
    const int images = std::min(p.images, g.n - n0);
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
      for (int j = 0; j < images; ++j)
        transform_patches(p, in + (n0 + j) * in_image, zeros, 0, tiles, v + int64_t(j) * tiles * g.cin);
#pragma omp for schedule(static)
      for (int xi = 0; xi < p.positions(); ++xi)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, images * tiles, g.kout, g.cin, 1.0f,
                    v + int64_t(xi) * p.block * g.cin, g.cin, u + int64_t(xi) * g.cin * g.kout, g.kout, 0.0f,
                    m + int64_t(xi) * p.block * g.kout, g.kout);
#pragma omp for schedule(static)
      for (int j = 0; j < images; ++j)
        transform_outputs(p, m + int64_t(j) * tiles * g.kout, 0, tiles, out + (n0 + j) * out_image, accumulate);
    }
  }
}

// out = the pass over every image; scratch holds U, a row of zeros, then each thread's V and M.
void run(const Plan& p, const float* in, float* out, bool accumulate, float* scratch, int threads) {
  if (p.batched) {
    run_batched(p, in, out, accumulate, scratch, threads);
    return;
  }
  const Geometry& g = p.g;
  const float* u = scratch;
  const float* zeros = scratch + p.u_floats();
  float* per_thread = fill_zeros(p, scratch + p.u_floats());
  const int64_t in_image = int64_t(g.h) * g.w * g.cin, out_image = int64_t(g.p) * g.q * g.kout;
  const int tiles = p.tiles_h * p.tiles_w;
  const int kblocks = g.kout / kLanes;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int n = 0; n < g.n; ++n) {
    float* v = per_thread + omp_get_thread_num() * p.thread_floats();
    float* m = v + p.v_floats();
    TileArgs a{};
    a.x_row = 0, a.x_step = g.cin, a.ih0 = 0, a.h = 1, a.r = 1, a.s = 1, a.cin = g.cin;
    a.wp_block = int64_t(g.cin) * kLanes, a.y_step = g.kout, a.accumulate = false;
    for (int t0 = 0; t0 < tiles; t0 += p.block) {
      const int count = std::min(p.block, tiles - t0);
      transform_patches(p, in + n * in_image, zeros, t0, count, v);
      const auto multiply = kernel_for<ForwardTile>(count, p.kb);
      for (int xi = 0; xi < p.positions(); ++xi)
        for (int k0 = 0; k0 < g.kout; k0 += p.kb * kLanes) {
          a.x = v + int64_t(xi) * p.block * g.cin;
          a.wp = u + (int64_t(xi) * kblocks + k0 / kLanes) * g.cin * kLanes;
          a.y = m + int64_t(xi) * p.block * g.kout + k0;
          multiply(a);
        }
      transform_outputs(p, m, t0, count, out + n * out_image, accumulate);
    }
  }
}

}  // namespace

bool fits(int r, int s, int stride_h, int stride_w, int cin, int kout) {
  return r == 3 && s == 3 && stride_h == 1 && stride_w == 1 && cin % kLanes == 0 && kout % kLanes == 0;
}

bool pays(const ConvShape& s, bool data, bool f4) {
  const Plan p = plan_for(data ? data_geometry(s) : forward_geometry(s), false, f4);
  return !p.batched || int64_t(p.g.n) * p.tiles_h * p.tiles_w >= kMinBatchedTiles;
}

int64_t scratch_floats(const ConvShape& s, bool data, int threads, bool f4) {
  const Plan p = plan_for(data ? data_geometry(s) : forward_geometry(s), false, f4);
  return p.u_floats() + p.zero_floats() + (p.batched ? 1 : threads) * p.thread_floats();
}

void forward(const ConvShape& s, const float* x, const float* w, float* y, float* scratch, int threads, bool f4) {
  const Plan p = plan_for(forward_geometry(s), false, f4);
  const int64_t rsc = 9 * int64_t(s.c);
  transform_filter(p, [&](int k, int r, int t, int c) { return w[k * rsc + (r * 3 + t) * s.c + c]; }, false,
                   scratch, threads);
  run(p, x, y, false, scratch, threads);
}

void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx, bool accumulate,
                   float* scratch, int threads, bool f4) {
  const Plan p = plan_for(data_geometry(s), false, f4);
  const int64_t rsc = 9 * int64_t(s.c);
  // Output channel c, input channel k of the rotated filter: w(k, 2 - r, 2 - t, c).
  transform_filter(p, [&](int c, int r, int t, int k) { return w[k * rsc + ((2 - r) * 3 + (2 - t)) * s.c + c]; },
                   true, scratch, threads);
  run(p, dy, dx, accumulate, scratch, threads);
}

int64_t filter_scratch_floats(const ConvShape& s, int threads, int chunks, bool f4) {
  const Plan p = plan_for(forward_geometry(s), true, f4);
  return chunks * p.u_floats() + p.zero_floats() + threads * p.thread_floats();
}

void backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* scratch, int chunks,
                     int threads, bool f4) {
  const Plan p = plan_for(forward_geometry(s), true, f4);
  const Geometry& g = p.g;
  const int tiles = p.tiles_h * p.tiles_w, kblocks = g.kout / kLanes, tcmax = kTileRegisters / p.kb;
  const int64_t x_image = int64_t(g.h) * g.w * g.cin, dy_image = int64_t(g.p) * g.q * g.kout;
  const int64_t m_floats = p.u_floats();  // one chunk's M[xi][k / 16][c][k % 16]
  const float* zeros = scratch + chunks * m_floats;
  float* per_thread = fill_zeros(p, scratch + chunks * m_floats);
  const int per_chunk = (g.n + chunks - 1) / chunks;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int chunk = 0; chunk < chunks; ++chunk) {
    float* m = scratch + chunk * m_floats;
    float* v = per_thread + omp_get_thread_num() * p.thread_floats();
    float* e = v + p.v_floats();
    const int n0 = std::min(g.n, chunk * per_chunk), n1 = std::min(g.n, n0 + per_chunk);
    if (n0 >= n1) std::fill(m, m + m_floats, 0.0f);  // an empty chunk adds zero
    for (int n = n0; n < n1; n += p.images) {
      // V and E of the block's images, image j's tiles at j * tiles.
      const int images = std::min(p.images, n1 - n);
      for (int j = 0; j < images; ++j) {
        float* vj = v + int64_t(j) * tiles * g.cin;
        float* ej = e + int64_t(j) * tiles * g.kout;
        transform_patches(p, x + (n + j) * x_image, zeros, 0, tiles, vj);
        if (p.f4)
          transform_dy<4>(p, dy + (n + j) * dy_image, zeros, 0, tiles, ej);
        else
          transform_dy<2>(p, dy + (n + j) * dy_image, zeros, 0, tiles, ej);
      }
      ReduceArgs a{};
      a.count = images * tiles, a.cin = g.cin, a.kout = g.kout, a.m_block = int64_t(g.cin) * kLanes;
      a.first = n == n0;
      for (int xi = 0; xi < p.positions(); ++xi)
        for (int k0 = 0; k0 < g.kout; k0 += p.kb * kLanes)
          for (int c0 = 0; c0 < g.cin; c0 += tcmax) {
            a.e = e + int64_t(xi) * p.block * g.kout + k0;
            a.v = v + int64_t(xi) * p.block * g.cin + c0;
            a.m = m + ((int64_t(xi) * kblocks + k0 / kLanes) * g.cin + c0) * kLanes;
            kernel_for<ReduceTile>(std::min(tcmax, g.cin - c0), p.kb)(a);
          }
    }
  }
  // dw(k, r, s, c) = (G^T M G)(r, s), M summed over the chunks in order.
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int kb = 0; kb < kblocks; ++kb)
    for (int c = 0; c < g.cin; ++c) {
      if (p.f4)
        filter_output<6>(p, scratch, m_floats, chunks, kb, c, dw);
      else
        filter_output<4>(p, scratch, m_floats, chunks, kb, c, dw);
    }
}

}  // namespace lockstep::cpu::winograd
