// Tests of 2-D convolution: the CPU paths (im2col+sgemm and the direct AVX-512 kernels) against a
// naive loop nest (exactly, on small integers), finite differences and each other, the cuDNN path against the CPU for f32 / bf16 / f16
// and both algorithm searches, and the plan and argument errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "kernels/conv.h"
#include "kernels/copy.h"
#include "kernels/cpu/conv_direct.h"
#include "tests/kernels/test_util.h"
#if LOCKSTEP_HAVE_CUDA
#include "kernels/cuda/conv_graph.h"
#endif

namespace lockstep {
namespace {

ConvShape conv_shape(int n, int h, int w, int c, int k, int r, int s, int stride_h, int stride_w,
                     int pad_h, int pad_w) {
  ConvShape cs;
  cs.n = n, cs.h = h, cs.w = w, cs.c = c, cs.k = k, cs.r = r, cs.s = s;
  cs.stride_h = stride_h, cs.stride_w = stride_w, cs.pad_h = pad_h, cs.pad_w = pad_w;
  return cs;
}

struct Case {
  const char* name;
  ConvShape s;
};

// Small shapes covering every kind of conv a ResNet has, plus odd and asymmetric ones.
std::vector<Case> cpu_cases() {
  return {
      {"1x1 s1", conv_shape(2, 5, 6, 4, 3, 1, 1, 1, 1, 0, 0)},
      {"1x1 s2 downsample", conv_shape(2, 7, 6, 4, 5, 1, 1, 2, 2, 0, 0)},
      {"3x3 s1 p1", conv_shape(2, 6, 5, 3, 4, 3, 3, 1, 1, 1, 1)},
      {"3x3 s2 p1", conv_shape(2, 7, 8, 3, 4, 3, 3, 2, 2, 1, 1)},
      {"7x7 s2 p3", conv_shape(1, 11, 9, 3, 4, 7, 7, 2, 2, 3, 3)},
      {"odd 3x3 batch 1", conv_shape(1, 7, 5, 3, 5, 3, 3, 1, 1, 1, 1)},
      {"asymmetric 3x1 s(2,1) p(1,0)", conv_shape(3, 7, 5, 3, 5, 3, 1, 2, 1, 1, 0)},
      {"1x1 p1 (padding only)", conv_shape(1, 3, 4, 2, 3, 1, 1, 1, 1, 1, 1)},
      // Shapes the direct AVX-512 kernels take where the CPU has them (cpu/conv_direct.h; the 3x3
      // stride-1 ones with channels in 16s on Winograd, and each also on the direct tiles): every
      // register tile width (24, 12 or 6 pixels) with a shorter last tile, stride 2, no padding,
      // a 5x5 filter, 3 input channels (forward and filter direct, data on the GEMM), and rows
      // below 8 pixels (the GEMM again, for the passes whose rows they are).
      {"direct 3x3 s1 p1, 16 -> 16, rows of 26", conv_shape(2, 5, 26, 16, 16, 3, 3, 1, 1, 1, 1)},
      {"direct 3x3 s1 p1, 32 -> 32, rows of 13", conv_shape(2, 6, 13, 32, 32, 3, 3, 1, 1, 1, 1)},
      {"direct 3x3 s1 p1, 16 -> 64, rows of 9", conv_shape(2, 4, 9, 16, 64, 3, 3, 1, 1, 1, 1)},
      {"direct 3x3 s1 p1, 48 -> 48", conv_shape(1, 3, 8, 48, 48, 3, 3, 1, 1, 1, 1)},
      {"direct 3x3 s2 p1, 16 -> 32", conv_shape(2, 9, 17, 16, 32, 3, 3, 2, 2, 1, 1)},
      {"direct 3x3 s1 unpadded", conv_shape(1, 6, 11, 16, 16, 3, 3, 1, 1, 0, 0)},
      {"direct 5x3 s1 p(2,1)", conv_shape(1, 7, 10, 16, 16, 5, 3, 1, 1, 2, 1)},
      {"direct 7x7 s2 p3 stem, 3 -> 16", conv_shape(1, 13, 17, 3, 16, 7, 7, 2, 2, 3, 3)},
      {"direct 3x3 s1 p1, 5 -> 16", conv_shape(2, 4, 9, 5, 16, 3, 3, 1, 1, 1, 1)},
      {"rows of 4, few images (GEMM)", conv_shape(3, 4, 4, 16, 32, 3, 3, 1, 1, 1, 1)},
      {"rows of 4, 128 tiles (batched Winograd, filter on the GEMM)", conv_shape(32, 4, 4, 16, 32, 3, 3, 1, 1, 1, 1)},
      {"rows of 3 and 1, 128 tiles (batched Winograd)", conv_shape(64, 3, 1, 32, 16, 3, 3, 1, 1, 1, 1)},
      {"rows of 7, 128 F(4x4) tiles (batched F(4x4))", conv_shape(32, 7, 7, 16, 16, 3, 3, 1, 1, 1, 1)},
      {"rows of 4, 16 -> 24 (GEMM)", conv_shape(2, 4, 4, 16, 24, 3, 3, 1, 1, 1, 1)},
      {"direct data only: unpadded, rows of 9 to 7", conv_shape(2, 6, 9, 16, 16, 3, 3, 1, 1, 0, 0)},
      // Winograd's: odd output sizes (tiles past the edge), a last block of one tile, padding 2.
      {"winograd odd 7x11, 16 -> 32", conv_shape(2, 7, 11, 16, 32, 3, 3, 1, 1, 1, 1)},
      {"winograd 25 tiles of 6, 32 -> 64", conv_shape(1, 9, 10, 32, 64, 3, 3, 1, 1, 1, 1)},
      {"winograd pad 2", conv_shape(1, 6, 9, 16, 16, 3, 3, 1, 1, 2, 2)},
      // The in-bounds-tap GEMMs' (conv_taps.h; every case above runs them too): 2x2 images (5/9
      // of the taps in the padding) in blocks of 16, 16 and 1 images; stride 2 into 2x2; blocks of
      // 64 and 16 input channels (one GEMM per tap) and of 64 and 16 output channels in the filter
      // gradient, 32, 32 and 16 in the forward.
      {"taps 2x2, 33 images", conv_shape(33, 2, 2, 4, 5, 3, 3, 1, 1, 1, 1)},
      {"taps 4x4 s2 -> 2x2", conv_shape(3, 4, 4, 16, 32, 3, 3, 2, 2, 1, 1)},
      {"taps 2x2, 80 -> 80 channels", conv_shape(2, 2, 2, 80, 80, 3, 3, 1, 1, 1, 1)},
  };
}

int64_t x_index(const ConvShape& s, int n, int h, int w, int c) {
  return ((int64_t(n) * s.h + h) * s.w + w) * s.c + c;
}
int64_t w_index(const ConvShape& s, int k, int r, int t, int c) {
  return ((int64_t(k) * s.r + r) * s.s + t) * s.c + c;
}
int64_t y_index(const ConvShape& s, int n, int p, int q, int k) {
  return ((int64_t(n) * s.out_h() + p) * s.out_w() + q) * s.k + k;
}

// Calls f(n, p, q, k, r, t, c, x index, w index, y index) for every term of the convolution sum
// that reads a real (not padding) input element: the 7-loop definition of cross-correlation.
template <typename F>
void for_each_term(const ConvShape& s, F f) {
  for (int n = 0; n < s.n; ++n)
    for (int p = 0; p < s.out_h(); ++p)
      for (int q = 0; q < s.out_w(); ++q)
        for (int k = 0; k < s.k; ++k)
          for (int r = 0; r < s.r; ++r)
            for (int t = 0; t < s.s; ++t)
              for (int c = 0; c < s.c; ++c) {
                const int ih = p * s.stride_h - s.pad_h + r, iw = q * s.stride_w - s.pad_w + t;
                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                f(x_index(s, n, ih, iw, c), w_index(s, k, r, t, c), y_index(s, n, p, q, k));
              }
}

std::vector<double> naive_forward(const ConvShape& s, const float* x, const float* w) {
  std::vector<double> y(s.y_shape().numel(), 0.0);
  for_each_term(s, [&](int64_t xi, int64_t wi, int64_t yi) { y[yi] += double(x[xi]) * w[wi]; });
  return y;
}

// The loss weighted_sum(conv(x, w), r) in double, for finite differences.
double naive_loss(const ConvShape& s, const float* x, const float* w, const std::vector<float>& r) {
  double l = 0;
  for_each_term(s, [&](int64_t xi, int64_t wi, int64_t yi) { l += double(x[xi]) * w[wi] * r[yi]; });
  return l;
}

std::vector<float> to_floats(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

uint32_t seed_of(const ConvShape& s, uint32_t salt) {
  return uint32_t(s.n * 1000003 + s.h * 10007 + s.w * 1009 + s.c * 101 + s.k * 17 + s.r * 7 + s.stride_h) ^ salt;
}

TEST(ConvShape, StrNamesEveryDimension) {
  ConvShape s = conv_shape(2, 7, 5, 3, 8, 3, 3, 2, 2, 1, 1);
  EXPECT_EQ(s.out_h(), 4);
  EXPECT_EQ(s.out_w(), 3);
  EXPECT_EQ(s.str(), "x(N,H,W,C)=(2,7,5,3) w(K,R,S,C)=(8,3,3,3) stride 2x2 pad 1x1 -> y(2,4,3,8)");
  EXPECT_NO_THROW(validate(s));
}

void expect_invalid(const ConvShape& s, const std::string& words) {
  try {
    validate(s);
    ADD_FAILURE() << "validate accepted " << s.str();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
  Context ctx(Device::cpu());
  EXPECT_THROW(plan_conv2d(ctx, s, DType::f32), Error);
}

TEST(ConvPlan, BadShapesThrowNamingTheField) {
  ConvShape good = conv_shape(2, 7, 5, 3, 8, 3, 3, 1, 1, 1, 1);
  ConvShape s = good;
  s.c = 0;
  expect_invalid(s, "c (input channels)");
  s = good, s.n = -1;
  expect_invalid(s, "n (batch)");
  s = good, s.k = 0;
  expect_invalid(s, "k (output channels)");
  s = good, s.stride_w = 0;
  expect_invalid(s, "stride_w");
  s = good, s.pad_h = -1;
  expect_invalid(s, "pad_h");
  // 7x7 filter on a 3x3 image without padding: (3 - 7) / 1 + 1 would be -3, an empty output.
  s = conv_shape(1, 3, 3, 1, 1, 7, 7, 1, 1, 0, 0);
  expect_invalid(s, "empty output");
  // Truncating division would call this output 1 row high: (4 + 0 - 5) / 2 + 1 == 1.
  s = conv_shape(1, 4, 8, 1, 1, 5, 1, 2, 1, 0, 0);
  expect_invalid(s, "filter height");
}

TEST(ConvPlan, CpuScratchIsAGroupsColumnMatricesPerThreadAndTheFilterPartials) {
  Context ctx(Device::cpu());
  const size_t threads = size_t(omp_get_max_threads());
  // 1x1: no column matrix; 4 images of 64 output rows -> 4 chunks of partial dW (K x C each).
  ConvPlan p1 = plan_conv2d(ctx, conv_shape(4, 8, 8, 16, 32, 1, 1, 1, 1, 0, 0), DType::f32);
  EXPECT_EQ(p1.workspace_bytes, size_t(4) * 32 * 16 * 4);
  EXPECT_FALSE(p1.algorithms.empty());
  // 4x4 outputs of a 1x1 stride-2 conv (forward and backward-filter on im2col): a GEMM may stack
  // all 8 images (128 rows), so each thread's slot holds 8 column matrices (16 x 16); 128 rows in
  // all make 2 backward-filter chunks of at least 64 rows.
  ConvShape s = conv_shape(8, 8, 8, 16, 32, 1, 1, 2, 2, 0, 0);
  ConvPlan p3 = plan_conv2d(ctx, s, DType::f32);
  EXPECT_EQ(p3.workspace_bytes, (size_t(8) * 16 * 16 * threads + size_t(2) * 32 * 16) * 4);
  EXPECT_GE(ctx.workspace_bytes(), p3.workspace_bytes);
  // One image: one chunk writes dW itself, no partials.
  ConvPlan one = plan_conv2d(ctx, conv_shape(1, 8, 8, 16, 32, 1, 1, 1, 1, 0, 0), DType::f32);
  EXPECT_EQ(one.workspace_bytes, 0u);
  EXPECT_THROW(plan_conv2d(ctx, s, DType::bf16), Error);  // the CPU backend is f32 only
}

std::vector<ConvPlan> cpu_plans(Context& ctx, const ConvShape& s);

// Every kernel choice of s (cpu_plans) gives the same bits with 1, 2 and 3 threads.
void expect_same_bits_for_any_thread_count(const ConvShape& s) {
  SCOPED_TRACE(s.x_shape().str());
  const std::vector<float> xv = test::random_floats(s.x_shape().numel(), 3), wv = test::random_floats(s.w_shape().numel(), 4),
                           dyv = test::random_floats(s.y_shape().numel(), 5);
  std::vector<std::vector<std::vector<float>>> first;  // per kernel choice: y, dx, dw
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    Context ctx(Device::cpu());
    const std::vector<ConvPlan> plans = cpu_plans(ctx, s);
    OwnedTensor x = test::host_tensor(s.x_shape(), xv), w = test::host_tensor(s.w_shape(), wv),
                dy = test::host_tensor(s.y_shape(), dyv);
    std::vector<std::vector<std::vector<float>>> got;
    for (const ConvPlan& plan : plans) {
      OwnedTensor y(Device::cpu(), s.y_shape(), DType::f32), dx(Device::cpu(), s.x_shape(), DType::f32),
          dw(Device::cpu(), s.w_shape(), DType::f32);
      conv2d_forward(ctx, plan, x, w, y);
      conv2d_backward_data(ctx, plan, dy, w, dx);
      conv2d_backward_filter(ctx, plan, x, dy, dw);
      got.push_back({test::host_values(y), test::host_values(dx), test::host_values(dw)});
    }
    if (first.empty()) first = got;
    ASSERT_EQ(got.size(), first.size());
    for (size_t v = 0; v < got.size(); ++v)
      EXPECT_EQ(got[v], first[v]) << plans[v].algorithms << ", " << threads << " threads";
  }
  omp_set_num_threads(saved);
}

// The images are split over the OpenMP team; backward-filter's sum is cut into chunks and groups
// fixed by the shape, so every result of every kernel choice is the same bits with 1, 2 or 3
// threads. The second shape and third have 2x2 outputs: on the im2col GEMM, forward and
// backward-data stack 11, 6 or 4 (7, 4 or 3) images per GEMM as the thread count changes, and each
// row must still come out the same (the third with a reduction of 864, long enough for OpenBLAS's
// blocking to show). The fourth runs on Winograd and the direct kernels where the CPU has AVX-512.
// The fifth changed bits on the GEMM with 3 threads while the GEMMs' heights followed the team.
// The sixth is batched Winograd (132 tiles). The last runs the tap GEMMs on blocks of 16, 16 and
// 1 images and 32 and 16 output channels.
TEST(ConvCpu, ResultsDoNotDependOnTheThreadCount) {
  for (const ConvShape& s : {conv_shape(11, 9, 7, 5, 6, 3, 3, 1, 1, 1, 1), conv_shape(11, 4, 4, 5, 6, 3, 3, 2, 2, 1, 1),
                             conv_shape(7, 4, 4, 96, 40, 3, 3, 2, 2, 1, 1), conv_shape(11, 9, 9, 16, 32, 3, 3, 1, 1, 1, 1),
                             conv_shape(11, 4, 4, 32, 16, 3, 3, 1, 1, 1, 1),
                             conv_shape(33, 4, 4, 32, 16, 3, 3, 1, 1, 1, 1),
                             conv_shape(33, 2, 2, 32, 48, 3, 3, 1, 1, 1, 1)})
    expect_same_bits_for_any_thread_count(s);
}

// The default CPU plan for s, then each other kernel choice a plan may hold for it (Winograd
// F(2x2, 3x3) where the default has F(4x4, 3x3), the direct tiles where it has Winograd, the
// in-bounds-tap GEMMs, then the im2col GEMM alone), so that the exact checks below run every
// kernel. Each is a plan the ops accept; the context's
// workspace is made to cover them all.
std::vector<ConvPlan> cpu_plans(Context& ctx, const ConvShape& s) {
  using namespace cpu::direct;
  std::vector<ConvPlan> plans{plan_conv2d(ctx, s, DType::f32)};
  const unsigned direct_tiles = possible(s) & (forward_pass | data_pass | filter_pass);
  const unsigned tap_gemms = possible(s) & (taps_forward | taps_data | taps_filter);
  // F(2x2, 3x3) on the register tile where the default has F(4x4, 3x3).
  const unsigned f4 = plans.front().cpu_direct & (winograd4_forward | winograd4_data | winograd4_filter);
  const unsigned winograd2 = f4 == 0 ? 0u
                                     : (plans.front().cpu_direct & ~f4) | (f4 & winograd4_forward ? winograd_forward : 0u) |
                                           (f4 & winograd4_data ? winograd_data : 0u) |
                                           (f4 & winograd4_filter ? winograd_filter : 0u);
  // The GEMM alone last (where the default is not it already); no variant twice.
  for (const auto& [bits, name] : {std::pair{winograd2, "winograd 2x2"}, std::pair{direct_tiles, "direct tiles"},
                                   std::pair{tap_gemms, "in-bounds-tap sgemm"}, std::pair{0u, "im2col+sgemm"}}) {
    bool seen = bits == 0 && name != std::string("im2col+sgemm");
    for (const ConvPlan& p : plans) seen = seen || p.cpu_direct == bits;
    if (seen) continue;
    ConvPlan p = plans.front();
    p.cpu_direct = bits;
    p.algorithms = name;
    plans.push_back(p);
  }
  ctx.reserve_workspace(size_t(128) << 20);  // im2col alone for 129 2x2 images of 512 channels: 80 MB
  return plans;
}

bool cpu_conv_mode_is_default() {
  const char* v = std::getenv("LOCKSTEP_CPU_CONV");
  return v == nullptr || *v == '\0' || std::string(v) == "auto";
}

// Which kernel each pass of a shape gets, and the plan's name for it.
TEST(ConvCpu, EachPassGetsTheKernelItsShapeFits) {
  if (!cpu::direct::available() || !cpu_conv_mode_is_default())
    GTEST_SKIP() << "no AVX-512 on this CPU, or LOCKSTEP_CPU_CONV set";
  using namespace cpu::direct;
  Context ctx(Device::cpu());
  const struct {
    ConvShape s;
    unsigned passes;
    const char* name;
  } cases[] = {
      {conv_shape(2, 8, 8, 16, 16, 3, 3, 1, 1, 1, 1), winograd4_forward | winograd4_data | winograd4_filter,
       "cpu winograd 4x4: forward, backward-data, backward-filter"},
      {conv_shape(2, 8, 8, 16, 32, 3, 3, 1, 1, 1, 1), winograd4_forward | winograd4_data | winograd4_filter,
       "cpu winograd 4x4: forward, backward-data, backward-filter"},
      {conv_shape(2, 8, 8, 16, 16, 5, 5, 1, 1, 2, 2), forward_pass | data_pass | filter_pass,
       "cpu direct avx512: forward, backward-data, backward-filter"},
      {conv_shape(2, 8, 8, 3, 16, 3, 3, 1, 1, 1, 1), forward_pass | taps_data | filter_pass,
       "cpu direct avx512: forward, backward-filter; in-bounds-tap sgemm: backward-data"},
      {conv_shape(2, 9, 9, 3, 16, 3, 3, 1, 1, 1, 1), forward_pass | filter_pass,
       "cpu direct avx512: forward, backward-filter; im2col+sgemm: backward-data"},
      {conv_shape(2, 16, 16, 16, 32, 3, 3, 2, 2, 1, 1), forward_pass | taps_data | filter_pass,
       "cpu direct avx512: forward, backward-filter; in-bounds-tap sgemm: backward-data"},
      // Rows of 4: Winograd batched over 32 images (128 tiles), not over 2 (8 tiles: the GEMM).
      // Their filter gradient, and every pass of the rest of 4x4 images with a 3x3 filter (31% of
      // whose taps read padding), on the in-bounds-tap GEMMs.
      {conv_shape(32, 4, 4, 16, 16, 3, 3, 1, 1, 1, 1), winograd_forward | winograd_data | taps_filter,
       "cpu winograd: forward, backward-data; in-bounds-tap sgemm: backward-filter"},
      {conv_shape(2, 4, 4, 16, 16, 3, 3, 1, 1, 1, 1), taps_forward | taps_data | taps_filter,
       "cpu in-bounds-tap sgemm: forward, backward-data, backward-filter"},
      // Rows of 7: batched F(4x4) with 128 of its tiles (32 images x 4), F(2x2) with 16 images.
      {conv_shape(32, 7, 7, 64, 64, 3, 3, 1, 1, 1, 1), winograd4_forward | winograd4_data | taps_filter,
       "cpu winograd 4x4: forward, backward-data; in-bounds-tap sgemm: backward-filter"},
      {conv_shape(16, 7, 7, 64, 64, 3, 3, 1, 1, 1, 1), winograd_forward | winograd_data | taps_filter,
       "cpu winograd: forward, backward-data; in-bounds-tap sgemm: backward-filter"},
      {conv_shape(32, 4, 4, 16, 24, 3, 3, 1, 1, 1, 1), taps_forward | taps_data | taps_filter,
       "cpu in-bounds-tap sgemm: forward, backward-data, backward-filter"},
      {conv_shape(32, 2, 2, 512, 512, 3, 3, 1, 1, 1, 1), taps_forward | taps_data | taps_filter,
       "cpu in-bounds-tap sgemm: forward, backward-data, backward-filter"},
      // Up to 8x8 outputs, the tap GEMMs wherever the filter is larger than 1x1; a 1x1 stride-2
      // conv's backward-data only (no col2im), and up to 32x32 outputs with at most 64 channels.
      {conv_shape(32, 8, 8, 128, 256, 3, 3, 2, 2, 1, 1), taps_forward | taps_data | taps_filter,
       "cpu in-bounds-tap sgemm: forward, backward-data, backward-filter"},
      {conv_shape(32, 8, 8, 128, 256, 1, 1, 2, 2, 0, 0), taps_data,
       "cpu in-bounds-tap sgemm: backward-data; im2col+sgemm: forward, backward-filter"},
      {conv_shape(32, 32, 32, 16, 32, 1, 1, 2, 2, 0, 0), forward_pass | taps_data | filter_pass,
       "cpu direct avx512: forward, backward-filter; in-bounds-tap sgemm: backward-data"},
      {conv_shape(32, 32, 32, 128, 32, 1, 1, 2, 2, 0, 0), forward_pass | filter_pass,
       "cpu direct avx512: forward, backward-filter; im2col+sgemm: backward-data"},
      {conv_shape(2, 9, 9, 15, 17, 3, 3, 1, 1, 1, 1), 0, "cpu im2col+sgemm"},
      {conv_shape(2, 6, 9, 16, 16, 3, 3, 1, 1, 0, 0), taps_forward | winograd4_data | taps_filter,
       "cpu winograd 4x4: backward-data; in-bounds-tap sgemm: forward, backward-filter"},
      {conv_shape(2, 8, 8, 16, 24, 3, 3, 1, 1, 1, 1), taps_forward | data_pass | taps_filter,
       "cpu direct avx512: backward-data; in-bounds-tap sgemm: forward, backward-filter"},
      {conv_shape(2, 8, 8, 16, 16, 1, 1, 1, 1, 0, 0), 0, "cpu sgemm (1x1, no im2col)"},
      {conv_shape(2, 8, 8, 15, 17, 3, 3, 1, 1, 1, 1), taps_forward | taps_data | taps_filter,
       "cpu in-bounds-tap sgemm: forward, backward-data, backward-filter"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.s.str());
    const ConvPlan plan = plan_conv2d(ctx, c.s, DType::f32);
    EXPECT_EQ(plan.cpu_direct, c.passes);
    EXPECT_EQ(plan.algorithms, c.name);
  }
  // A plan claiming a kernel its shape cannot take is refused before any kernel runs.
  for (unsigned bit : {unsigned(data_pass), unsigned(winograd_data), unsigned(winograd_filter)}) {
    ConvPlan plan = plan_conv2d(ctx, conv_shape(2, 8, 8, 3, 16, 3, 3, 1, 1, 1, 1), DType::f32);
    plan.cpu_direct |= bit;
    OwnedTensor dy(Device::cpu(), plan.shape.y_shape(), DType::f32), w(Device::cpu(), plan.shape.w_shape(), DType::f32),
        dx(Device::cpu(), plan.shape.x_shape(), DType::f32);
    try {
      if (bit == winograd_filter)
        conv2d_backward_filter(ctx, plan, dx, dy, w);  // x-, y- and w-shaped: only the plan is wrong
      else
        conv2d_backward_data(ctx, plan, dy, w, dx);
      ADD_FAILURE() << "a plan asking for kernel bit " << bit << " its shape cannot take was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("direct kernels"), std::string::npos) << e.what();
    }
  }
}

// F(4x4, 3x3)'s transforms multiply values by up to 8 and 24 before its products, so it rounds
// 10-20x more than the other kernels: measured up to 1.3e-5 of the largest output (y and dx at 256
// channels, dw over 32 images of 32x32), against at most 1e-6 for F(2x2, 3x3).
double bound(const ConvPlan& p) {
  using namespace cpu::direct;
  return p.cpu_direct & (winograd4_forward | winograd4_data | winograd4_filter) ? 2e-5 : 1e-5;
}

// Every kernel choice against the im2col+sgemm path, on random floats at ResNet-like sizes (the
// exact checks below use small integers and small shapes): the sums run in other orders (and
// Winograd's through its transforms), so they agree to rounding.
TEST(ConvCpu, EveryKernelMatchesTheGemmPath) {
  if (!cpu::direct::available()) GTEST_SKIP() << "no AVX-512 on this CPU (or LOCKSTEP_CPU_CONV=gemm)";
  for (const ConvShape& s : {conv_shape(4, 32, 32, 16, 16, 3, 3, 1, 1, 1, 1), conv_shape(4, 16, 16, 32, 32, 3, 3, 1, 1, 1, 1),
                             conv_shape(4, 8, 8, 64, 64, 3, 3, 1, 1, 1, 1), conv_shape(4, 15, 9, 64, 48, 3, 3, 1, 1, 1, 1),
                             conv_shape(4, 32, 32, 16, 32, 3, 3, 2, 2, 1, 1), conv_shape(2, 64, 64, 3, 64, 7, 7, 2, 2, 3, 3),
                             conv_shape(32, 4, 4, 256, 256, 3, 3, 1, 1, 1, 1),
                             // F(4x4)'s widest errors: 256 channels, and a filter gradient over 32 images
                             conv_shape(4, 8, 8, 256, 256, 3, 3, 1, 1, 1, 1), conv_shape(32, 32, 32, 16, 16, 3, 3, 1, 1, 1, 1),
                             // the tap GEMMs' at 224 px (7x7, stride 2 into 7x7) and a 1x1 stride 2
                             conv_shape(4, 7, 7, 64, 80, 3, 3, 1, 1, 1, 1), conv_shape(4, 14, 14, 96, 64, 3, 3, 2, 2, 1, 1),
                             conv_shape(4, 8, 8, 128, 64, 1, 1, 2, 2, 0, 0),
                             // 2x2 images of 512 channels: 64 per batched block, so three blocks
                             conv_shape(129, 2, 2, 512, 512, 3, 3, 1, 1, 1, 1)}) {
    SCOPED_TRACE(s.str());
    Context ctx(Device::cpu());
    const std::vector<ConvPlan> plans = cpu_plans(ctx, s);
    ASSERT_NE(plans.front().cpu_direct, 0u);
    ASSERT_EQ(plans.back().cpu_direct, 0u);
    OwnedTensor x = test::host_tensor(s.x_shape(), test::random_floats(s.x_shape().numel(), seed_of(s, 31)));
    OwnedTensor w = test::host_tensor(s.w_shape(), test::random_floats(s.w_shape().numel(), seed_of(s, 32)));
    OwnedTensor dy = test::host_tensor(s.y_shape(), test::random_floats(s.y_shape().numel(), seed_of(s, 33)));
    std::vector<std::vector<std::vector<float>>> got;
    for (const ConvPlan& plan : plans) {
      OwnedTensor y(Device::cpu(), s.y_shape(), DType::f32), dx(Device::cpu(), s.x_shape(), DType::f32),
          dw(Device::cpu(), s.w_shape(), DType::f32);
      conv2d_forward(ctx, plan, x, w, y);
      conv2d_backward_data(ctx, plan, dy, w, dx);
      conv2d_backward_filter(ctx, plan, x, dy, dw);
      got.push_back({test::host_values(y), test::host_values(dx), test::host_values(dw)});
    }
    const char* names[] = {"y", "dx", "dw"};
    for (size_t v = 0; v + 1 < plans.size(); ++v)
      for (int t = 0; t < 3; ++t) {
        const std::vector<float>&a = got[v][t], &b = got.back()[t];
        double worst = 0, scale = 0;
        for (size_t i = 0; i < a.size(); ++i) {
          worst = std::max(worst, double(std::fabs(a[i] - b[i])));
          scale = std::max(scale, double(std::fabs(b[i])));
        }
        EXPECT_LE(worst, bound(plans[v]) * std::max(1.0, scale))
            << plans[v].algorithms << ", " << names[t] << ": largest difference " << worst << " of " << scale;
      }
  }
}

TEST(ConvCpu, ForwardMatchesNaiveLoopsExactly) {
  Context ctx(Device::cpu());
  for (const Case& c : cpu_cases()) {
    SCOPED_TRACE(c.name);
    const ConvShape& s = c.s;
    OwnedTensor x = test::host_tensor(s.x_shape(), test::random_small_ints(s.x_shape().numel(), seed_of(s, 1)));
    OwnedTensor w = test::host_tensor(s.w_shape(), test::random_small_ints(s.w_shape().numel(), seed_of(s, 2)));
    const std::vector<float> want = to_floats(naive_forward(s, x.data<float>(), w.data<float>()));
    for (const ConvPlan& plan : cpu_plans(ctx, s)) {
      SCOPED_TRACE(plan.algorithms);
      OwnedTensor y(Device::cpu(), s.y_shape(), DType::f32);
      test::poison(ctx, y);
      conv2d_forward(ctx, plan, x, w, y);
      EXPECT_EQ(test::host_values(y), want);
    }
  }
}

// Both backward passes against the naive scatter of every term, exactly on small integers (for
// every kernel choice), with NaN-poisoned outputs so that "overwritten, not accumulated" is
// checked too.
TEST(ConvCpu, BackwardMatchesNaiveLoopsExactly) {
  Context ctx(Device::cpu());
  for (const Case& c : cpu_cases()) {
    SCOPED_TRACE(c.name);
    const ConvShape& s = c.s;
    OwnedTensor x = test::host_tensor(s.x_shape(), test::random_small_ints(s.x_shape().numel(), seed_of(s, 3)));
    OwnedTensor w = test::host_tensor(s.w_shape(), test::random_small_ints(s.w_shape().numel(), seed_of(s, 4)));
    OwnedTensor dy = test::host_tensor(s.y_shape(), test::random_small_ints(s.y_shape().numel(), seed_of(s, 5)));
    std::vector<double> dx_ref(s.x_shape().numel(), 0.0), dw_ref(s.w_shape().numel(), 0.0);
    for_each_term(s, [&](int64_t xi, int64_t wi, int64_t yi) {
      dx_ref[xi] += double(dy.data<float>()[yi]) * w.data<float>()[wi];
      dw_ref[wi] += double(dy.data<float>()[yi]) * x.data<float>()[xi];
    });
    for (const ConvPlan& plan : cpu_plans(ctx, s)) {
      SCOPED_TRACE(plan.algorithms);
      OwnedTensor dx(Device::cpu(), s.x_shape(), DType::f32), dw(Device::cpu(), s.w_shape(), DType::f32);
      test::poison(ctx, dx);
      test::poison(ctx, dw);
      conv2d_backward_data(ctx, plan, dy, w, dx);
      conv2d_backward_filter(ctx, plan, x, dy, dw);
      EXPECT_EQ(test::host_values(dx), to_floats(dx_ref));
      EXPECT_EQ(test::host_values(dw), to_floats(dw_ref));
    }
  }
}

// accumulate: dx += the input gradient (1x1 convs through the GEMM's beta, others through col2im,
// the direct tiles or Winograd's output transform into the existing values), exactly on small
// integers, for every kernel choice.
TEST(ConvCpu, BackwardDataAccumulatesExactly) {
  Context ctx(Device::cpu());
  for (const Case& c : cpu_cases()) {
    SCOPED_TRACE(c.name);
    const ConvShape& s = c.s;
    OwnedTensor w = test::host_tensor(s.w_shape(), test::random_small_ints(s.w_shape().numel(), seed_of(s, 21)));
    OwnedTensor dy = test::host_tensor(s.y_shape(), test::random_small_ints(s.y_shape().numel(), seed_of(s, 22)));
    const std::vector<float> prior = test::random_small_ints(s.x_shape().numel(), seed_of(s, 23));
    for (const ConvPlan& plan : cpu_plans(ctx, s)) {
      SCOPED_TRACE(plan.algorithms);
      OwnedTensor plain(Device::cpu(), s.x_shape(), DType::f32);
      test::poison(ctx, plain);
      conv2d_backward_data(ctx, plan, dy, w, plain);
      OwnedTensor dx = test::host_tensor(s.x_shape(), prior);
      conv2d_backward_data(ctx, plan, dy, w, dx, /*accumulate=*/true);
      std::vector<float> want = test::host_values(plain);
      for (size_t i = 0; i < want.size(); ++i) want[i] += prior[i];
      EXPECT_EQ(test::host_values(dx), want);
    }
  }
}

// loss = weighted_sum(conv(x, w), r), so dL/dy = r: backward-data and backward-filter with dy = r
// must match central differences of the loss with respect to x and w.
TEST(ConvCpu, BackwardMatchesFiniteDifferences) {
  Context ctx(Device::cpu());
  for (const Case& c : cpu_cases()) {
    SCOPED_TRACE(c.name);
    const ConvShape& s = c.s;
    ConvPlan plan = plan_conv2d(ctx, s, DType::f32);
    OwnedTensor x = test::host_tensor(s.x_shape(), test::random_floats(s.x_shape().numel(), seed_of(s, 6)));
    OwnedTensor w = test::host_tensor(s.w_shape(), test::random_floats(s.w_shape().numel(), seed_of(s, 7)));
    std::vector<float> r = test::random_floats(s.y_shape().numel(), seed_of(s, 8));
    OwnedTensor dy = test::host_tensor(s.y_shape(), r);
    OwnedTensor dx(Device::cpu(), s.x_shape(), DType::f32), dw(Device::cpu(), s.w_shape(), DType::f32);
    test::poison(ctx, dx);
    test::poison(ctx, dw);
    conv2d_backward_data(ctx, plan, dy, w, dx);
    conv2d_backward_filter(ctx, plan, x, dy, dw);
    auto loss = [&] { return naive_loss(s, x.data<float>(), w.data<float>(), r); };
    test::expect_gradient(loss, x.data<float>(), x.numel(), test::host_values(dx), "dx");
    test::expect_gradient(loss, w.data<float>(), w.numel(), test::host_values(dw), "dw");
    // The loss is linear in x: the same check through the CPU op itself, not only the naive loop.
    OwnedTensor y(Device::cpu(), s.y_shape(), DType::f32);
    conv2d_forward(ctx, plan, x, w, y);
    EXPECT_NEAR(test::weighted_sum(test::host_values(y), r), loss(), 1e-4 * std::max(1.0, std::fabs(loss())));
  }
}

TEST(ConvCpu, WrongTensorsThrow) {
  Context ctx(Device::cpu());
  ConvShape s = conv_shape(2, 6, 5, 3, 4, 3, 3, 1, 1, 1, 1);
  ConvPlan plan = plan_conv2d(ctx, s, DType::f32);
  OwnedTensor x(Device::cpu(), s.x_shape(), DType::f32), w(Device::cpu(), s.w_shape(), DType::f32);
  OwnedTensor y(Device::cpu(), s.y_shape(), DType::f32);
  OwnedTensor y_bad(Device::cpu(), {2, 6, 5, 5}, DType::f32);
  OwnedTensor x_nchw(Device::cpu(), {2, 3, 6, 5}, DType::f32);
  OwnedTensor w_bf16(Device::cpu(), s.w_shape(), DType::bf16);
  EXPECT_THROW(conv2d_forward(ctx, plan, x, w, y_bad), Error);
  EXPECT_THROW(conv2d_forward(ctx, plan, x_nchw, w, y), Error);
  EXPECT_THROW(conv2d_forward(ctx, plan, x, w_bf16, y), Error);
  EXPECT_THROW(conv2d_backward_data(ctx, plan, y, w, x_nchw), Error);
  EXPECT_THROW(conv2d_backward_filter(ctx, plan, x, y_bad, w), Error);
  try {
    conv2d_forward(ctx, plan, x, w, y_bad);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("y must have shape (2, 6, 5, 4)"), std::string::npos) << e.what();
  }
  // A plan used on a context whose workspace is too small for it (12x11 outputs: im2col's).
  const ConvShape big = conv_shape(2, 12, 11, 3, 4, 3, 3, 1, 1, 1, 1);
  const ConvPlan im2col = plan_conv2d(ctx, big, DType::f32);
  ASSERT_GT(im2col.workspace_bytes, 0u) << im2col.algorithms;
  OwnedTensor bx(Device::cpu(), big.x_shape(), DType::f32), bw(Device::cpu(), big.w_shape(), DType::f32),
      by(Device::cpu(), big.y_shape(), DType::f32);
  Context other(Device::cpu());
  EXPECT_THROW(conv2d_forward(other, im2col, bx, bw, by), Error);
}

// ---- CUDA against the CPU oracle ----

struct GpuCase {
  const char* name;
  ConvShape s;
};

std::vector<GpuCase> gpu_cases() {
  return {
      {"resnet 3x3 s1 p1", conv_shape(4, 14, 14, 32, 64, 3, 3, 1, 1, 1, 1)},
      {"resnet 3x3 s2 p1", conv_shape(4, 15, 15, 32, 64, 3, 3, 2, 2, 1, 1)},
      {"resnet 1x1 s1", conv_shape(4, 9, 9, 64, 32, 1, 1, 1, 1, 0, 0)},
      {"resnet 1x1 s2 downsample", conv_shape(4, 14, 14, 32, 64, 1, 1, 2, 2, 0, 0)},
      {"stem 7x7 s2 p3", conv_shape(2, 32, 32, 3, 16, 7, 7, 2, 2, 3, 3)},
      {"odd 3x3 batch 1", conv_shape(1, 7, 5, 3, 5, 3, 3, 1, 1, 1, 1)},
  };
}

void check_gpu_against_cpu(DType dt, ConvAlgoSearch search) {
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  for (const GpuCase& c : gpu_cases()) {
    const ConvShape& s = c.s;
    ConvPlan gplan = plan_conv2d(gpu, s, dt, search);
    SCOPED_TRACE(std::string(c.name) + " " + std::string(dtype_name(dt)) + " " + gplan.algorithms);
    EXPECT_NE(gplan.algorithms.find("fwd="), std::string::npos);
    ConvPlan cplan = plan_conv2d(cpu, s, DType::f32);
    // Inputs rounded to dt so the CPU sees exactly what the GPU sees.
    auto xv = test::rounded(test::random_floats(s.x_shape().numel(), seed_of(s, 11)), dt);
    auto wv = test::rounded(test::random_floats(s.w_shape().numel(), seed_of(s, 12)), dt);
    auto dyv = test::rounded(test::random_floats(s.y_shape().numel(), seed_of(s, 13)), dt);
    OwnedTensor x = test::host_tensor(s.x_shape(), xv), w = test::host_tensor(s.w_shape(), wv);
    OwnedTensor dy = test::host_tensor(s.y_shape(), dyv);
    OwnedTensor y(Device::cpu(), s.y_shape(), DType::f32), dx(Device::cpu(), s.x_shape(), DType::f32);
    OwnedTensor dw(Device::cpu(), s.w_shape(), DType::f32);
    conv2d_forward(cpu, cplan, x, w, y);
    conv2d_backward_data(cpu, cplan, dy, w, dx);
    conv2d_backward_filter(cpu, cplan, x, dy, dw);

    OwnedTensor gx = test::device_tensor(gpu, s.x_shape(), xv, dt);
    OwnedTensor gw = test::device_tensor(gpu, s.w_shape(), wv, dt);
    OwnedTensor gdy = test::device_tensor(gpu, s.y_shape(), dyv, dt);
    OwnedTensor gy(gpu.device(), s.y_shape(), dt), gdx(gpu.device(), s.x_shape(), dt);
    OwnedTensor gdw(gpu.device(), s.w_shape(), dt);
    test::poison(gpu, gy);
    test::poison(gpu, gdx);
    test::poison(gpu, gdw);
    conv2d_forward(gpu, gplan, gx, gw, gy);
    conv2d_backward_data(gpu, gplan, gdy, gw, gdx);
    conv2d_backward_filter(gpu, gplan, gx, gdy, gdw);
    EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gy), test::host_values(y)), test::tolerance(dt)) << "y";
    EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gdx), test::host_values(dx)), test::tolerance(dt)) << "dx";
    EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gdw), test::host_values(dw)), test::tolerance(dt)) << "dw";

    // accumulate: dx += the input gradient, into a dx holding other values (cuDNN's beta = 1).
    auto pv = test::rounded(test::random_floats(s.x_shape().numel(), seed_of(s, 14)), dt);
    OwnedTensor acc = test::host_tensor(s.x_shape(), pv), gacc = test::device_tensor(gpu, s.x_shape(), pv, dt);
    conv2d_backward_data(cpu, cplan, dy, w, acc, true);
    conv2d_backward_data(gpu, gplan, gdy, gw, gacc, true);
    EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gacc), test::host_values(acc)), test::tolerance(dt)) << "dx += ";
  }
}

TEST(ConvCuda, F32HeuristicMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::f32, ConvAlgoSearch::heuristic);
}
TEST(ConvCuda, F32MeasureMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::f32, ConvAlgoSearch::measure);
}
TEST(ConvCuda, Bf16HeuristicMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::bf16, ConvAlgoSearch::heuristic);
}
TEST(ConvCuda, Bf16MeasureMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::bf16, ConvAlgoSearch::measure);
}
TEST(ConvCuda, F16HeuristicMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::f16, ConvAlgoSearch::heuristic);
}
TEST(ConvCuda, F16MeasureMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::f16, ConvAlgoSearch::measure);
}

// A measured choice is kept per shape for the process: planning the same shape again (another
// layer, another worker) takes the same algorithms without timing anything, and a second
// context on the same device shares it.
TEST(ConvCuda, MeasuredChoiceIsKeptPerShape) {
  LS_REQUIRE_GPU();
  Context a(Device::cuda(0)), b(Device::cuda(0));
  const ConvShape s = conv_shape(8, 14, 14, 64, 64, 3, 3, 1, 1, 1, 1);
  const ConvPlan first = plan_conv2d(a, s, DType::bf16, ConvAlgoSearch::measure);
  const ConvPlan again = plan_conv2d(a, s, DType::bf16, ConvAlgoSearch::measure);
  const ConvPlan other = plan_conv2d(b, s, DType::bf16, ConvAlgoSearch::measure);
  EXPECT_EQ(again.algorithms, first.algorithms);
  EXPECT_EQ(other.algorithms, first.algorithms);
  EXPECT_NE(first.algorithms.find("search=measure"), std::string::npos) << first.algorithms;
  EXPECT_EQ(first.algorithms.find("nondet"), std::string::npos) << first.algorithms;
}

TEST(ConvCuda, Bf16HeuristicAnyMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::bf16, ConvAlgoSearch::heuristic_any);
}

// The graph API's plans (kernels/cuda/conv_graph.h), every direction against the CPU; whatever
// the graph API could not plan runs the legacy choice, which the next test rules out.
TEST(ConvCuda, F32GraphMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::f32, ConvAlgoSearch::graph);
}
TEST(ConvCuda, Bf16GraphMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::bf16, ConvAlgoSearch::graph);
}
TEST(ConvCuda, Bf16GraphMeasureMatchesCpu) {
  LS_REQUIRE_GPU();
  check_gpu_against_cpu(DType::bf16, ConvAlgoSearch::graph_measure);
}

#if LOCKSTEP_HAVE_CUDA
// cuDNN checks a graph operation's shapes when it is finalized, which needs no GPU: every
// direction of every test shape, in each dtype and with either beta, passes that check here.
TEST(ConvGraph, EveryDirectionsOperationFinalizesWithoutAGpu) {
  for (const GpuCase& c : gpu_cases())
    for (DType dt : {DType::f32, DType::bf16, DType::f16})
      for (cuda::ConvDirection dir : {cuda::ConvDirection::forward, cuda::ConvDirection::backward_data,
                                      cuda::ConvDirection::backward_filter})
        for (float beta : {0.f, 1.f}) {
          std::string why;
          const cuda::ConvOperation op = cuda::make_conv_operation(c.s, dt, dir, beta, &why);
          EXPECT_TRUE(op.op) << c.name << " " << dtype_name(dt) << " " << cuda::direction_name(dir) << ": " << why;
          EXPECT_EQ(op.keep.size(), 4u);  // x, w, y and the convolution descriptor
        }
}
#endif

// On a ResNet shape in bf16 the graph API plans all four directions itself (forward, backward-
// data overwriting and accumulating, backward-filter): a fallback names its reason here.
TEST(ConvCuda, GraphSearchPlansEveryDirection) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  for (ConvAlgoSearch search : {ConvAlgoSearch::graph, ConvAlgoSearch::graph_measure}) {
    const ConvPlan plan = plan_conv2d(gpu, conv_shape(8, 14, 14, 64, 64, 3, 3, 1, 1, 1, 1), DType::bf16, search);
    for (const char* dir : {"graph.fwd=eng", "graph.bwd_data=eng", "graph.bwd_data_acc=eng", "graph.bwd_filter=eng"})
      EXPECT_NE(plan.algorithms.find(dir), std::string::npos) << dir << " in " << plan.algorithms;
  }
}

TEST(ConvAlgoSearchName, ParsesAndNames) {
  for (ConvAlgoSearch s : {ConvAlgoSearch::heuristic, ConvAlgoSearch::measure, ConvAlgoSearch::fastest,
                           ConvAlgoSearch::heuristic_any, ConvAlgoSearch::graph, ConvAlgoSearch::graph_measure})
    EXPECT_EQ(parse_conv_algo(conv_algo_name(s)), s);
  EXPECT_STREQ(conv_algo_name(ConvAlgoSearch::heuristic_any), "heuristic-any");
  EXPECT_STREQ(conv_algo_name(ConvAlgoSearch::graph_measure), "graph-measure");
  EXPECT_THROW(parse_conv_algo("heuristic_any"), Error);
}

TEST(ConvCuda, PlanAndArgumentErrorsThrow) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  EXPECT_THROW(plan_conv2d(gpu, conv_shape(1, 3, 3, 1, 1, 7, 7, 1, 1, 0, 0), DType::bf16), Error);
  EXPECT_THROW(plan_conv2d(gpu, conv_shape(1, 8, 8, 4, 4, 3, 3, 1, 1, 1, 1), DType::i32), Error);
  ConvShape s = conv_shape(2, 8, 8, 8, 16, 3, 3, 1, 1, 1, 1);
  ConvPlan plan = plan_conv2d(gpu, s, DType::bf16);
  EXPECT_GE(gpu.workspace_bytes(), plan.workspace_bytes);
  OwnedTensor x(gpu.device(), s.x_shape(), DType::bf16), w(gpu.device(), s.w_shape(), DType::bf16);
  OwnedTensor y(gpu.device(), s.y_shape(), DType::bf16);
  OwnedTensor y_f32(gpu.device(), s.y_shape(), DType::f32);
  OwnedTensor y_bad(gpu.device(), {2, 8, 8, 8}, DType::bf16);
  OwnedTensor x_host(Device::cpu(), s.x_shape(), DType::bf16);
  EXPECT_THROW(conv2d_forward(gpu, plan, x, w, y_f32), Error);     // dtype differs from the plan's
  EXPECT_THROW(conv2d_forward(gpu, plan, x, w, y_bad), Error);     // wrong shape
  EXPECT_THROW(conv2d_forward(gpu, plan, x_host, w, y), Error);    // wrong device
  EXPECT_THROW(conv2d_backward_filter(gpu, plan, x, y_bad, w), Error);
  Context cpu(Device::cpu());
  ConvPlan cplan = plan_conv2d(cpu, s, DType::f32);
  OwnedTensor yf(gpu.device(), s.y_shape(), DType::f32);
  OwnedTensor xf(gpu.device(), s.x_shape(), DType::f32), wf(gpu.device(), s.w_shape(), DType::f32);
  EXPECT_THROW(conv2d_forward(gpu, cplan, xf, wf, yf), Error);     // a CPU plan has no cuDNN state
  ConvPlan gplan_f32 = plan_conv2d(gpu, s, DType::f32);
  OwnedTensor xc(Device::cpu(), s.x_shape(), DType::f32), wc(Device::cpu(), s.w_shape(), DType::f32);
  OwnedTensor yc(Device::cpu(), s.y_shape(), DType::f32);
  EXPECT_THROW(conv2d_forward(cpu, gplan_f32, xc, wc, yc), Error);  // a CUDA plan on the CPU
  EXPECT_NO_THROW(conv2d_forward(gpu, plan, x, w, y));
  gpu.synchronize();
}

}  // namespace
}  // namespace lockstep
