// Tests of max pooling and global average pooling: forward against naive references, backward
// against finite differences, the first-maximum rule on ties, padding that never wins, argument
// errors, and CUDA against CPU for f32 / bf16 / f16; the forward that records each window's
// winner and the backward from it against the search from x and y, bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/pool.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

struct PoolCase {
  Shape x;  // (N, H, W, C)
  PoolShape pool;
};

// ResNet's stem pool, non-overlapping windows, odd sizes, batch 1, C not a multiple of 32.
const PoolCase kCases[] = {
    {{2, 9, 9, 5}, {3, 2, 1}},  {{1, 8, 8, 33}, {3, 2, 1}}, {{2, 6, 7, 3}, {2, 2, 0}},
    {{1, 7, 5, 4}, {2, 2, 0}},  {{1, 5, 6, 2}, {3, 1, 1}},  {{2, 7, 7, 3}, {2, 2, 1}},
    {{1, 10, 9, 3}, {3, 3, 0}}, {{3, 4, 4, 1}, {4, 1, 0}},
};

Shape pooled(const PoolCase& pc) {
  return Shape{pc.x[0], pc.pool.out(static_cast<int>(pc.x[1])), pc.pool.out(static_cast<int>(pc.x[2])), pc.x[3]};
}

// Naive max pooling: the largest unpadded element of each window.
std::vector<float> naive_maxpool(const std::vector<float>& x, const PoolCase& pc) {
  const Shape ys = pooled(pc);
  const int64_t N = pc.x[0], H = pc.x[1], W = pc.x[2], C = pc.x[3], P = ys[1], Q = ys[2];
  std::vector<float> y(static_cast<size_t>(ys.numel()));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t c = 0; c < C; ++c) {
          float m = -std::numeric_limits<float>::infinity();
          for (int r = 0; r < pc.pool.window; ++r)
            for (int s = 0; s < pc.pool.window; ++s) {
              const int64_t h = p * pc.pool.stride - pc.pool.pad + r, w = q * pc.pool.stride - pc.pool.pad + s;
              if (h < 0 || h >= H || w < 0 || w >= W) continue;
              m = std::max(m, x[((n * H + h) * W + w) * C + c]);
            }
          y[((n * P + p) * Q + q) * C + c] = m;
        }
  return y;
}

// Distinct values with gaps of 0.1 in random order: the maximum of a window cannot change under a
// finite-difference step of 1e-2.
std::vector<float> distinct_values(int64_t n, uint32_t seed) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(perm[i] - n / 2) * 0.1f;
  return v;
}

TEST(MaxPool, ForwardMatchesNaive) {
  Context ctx(Device::cpu());
  uint32_t seed = 1;
  for (const PoolCase& pc : kCases) {
    std::vector<float> xv = test::random_floats(pc.x.numel(), seed++);
    OwnedTensor x = test::host_tensor(pc.x, xv);
    OwnedTensor y(Device::cpu(), pooled(pc), DType::f32);
    test::poison(ctx, y);
    maxpool_forward(ctx, pc.pool, x, y);
    EXPECT_EQ(test::host_values(y), naive_maxpool(xv, pc)) << pc.x.str() << " window " << pc.pool.window;
  }
}

TEST(MaxPool, PaddingNeverWins) {
  Context ctx(Device::cpu());
  OwnedTensor x = test::host_tensor({1, 3, 3, 1}, std::vector<float>(9, -5.f));
  OwnedTensor y(Device::cpu(), {1, 2, 2, 1}, DType::f32);
  maxpool_forward(ctx, PoolShape{3, 2, 1}, x, y);
  EXPECT_EQ(test::host_values(y), std::vector<float>(4, -5.f));
}

TEST(MaxPool, BackwardMatchesFiniteDifferences) {
  Context ctx(Device::cpu());
  uint32_t seed = 100;
  for (const PoolCase& pc : kCases) {
    const Shape ys = pooled(pc);
    OwnedTensor x = test::host_tensor(pc.x, distinct_values(pc.x.numel(), seed++));
    std::vector<float> w = test::random_floats(ys.numel(), seed++);
    OwnedTensor y(Device::cpu(), ys, DType::f32);
    auto loss = [&] {
      maxpool_forward(ctx, pc.pool, x, y);
      return test::weighted_sum(test::host_values(y), w);
    };
    maxpool_forward(ctx, pc.pool, x, y);
    OwnedTensor dy = test::host_tensor(ys, w);
    OwnedTensor dx(Device::cpu(), pc.x, DType::f32);
    test::poison(ctx, dx);
    maxpool_backward(ctx, pc.pool, x, y, dy, dx);
    test::expect_gradient(loss, x.data<float>(), pc.x.numel(), test::host_values(dx), "maxpool dx",
                          {.eps = 1e-2f, .tol = 1e-2, .max_checks = 100000});
  }
}

TEST(MaxPool, TiesGoToTheFirstMaximumInRowMajorOrder) {
  Context ctx(Device::cpu());
  {
    // 2x2 stride 2: windows {5,5;5,5}, {1,3;3,2}, {0,0;7,7}, {4,1;2,4}.
    OwnedTensor x = test::host_tensor({1, 4, 4, 1}, {5, 5, 1, 3,  //
                                                     5, 5, 3, 2,  //
                                                     0, 0, 4, 1,  //
                                                     7, 7, 2, 4});
    OwnedTensor y(Device::cpu(), {1, 2, 2, 1}, DType::f32);
    maxpool_forward(ctx, PoolShape{2, 2, 0}, x, y);
    EXPECT_EQ(test::host_values(y), (std::vector<float>{5, 3, 7, 4}));
    OwnedTensor dy = test::host_tensor({1, 2, 2, 1}, {10, 20, 30, 40});
    OwnedTensor dx(Device::cpu(), {1, 4, 4, 1}, DType::f32);
    test::poison(ctx, dx);
    maxpool_backward(ctx, PoolShape{2, 2, 0}, x, y, dy, dx);
    EXPECT_EQ(test::host_values(dx), (std::vector<float>{10, 0, 0, 20,  //
                                                         0, 0, 0, 0,    //
                                                         0, 0, 40, 0,   //
                                                         30, 0, 0, 0}));
  }
  {
    // All equal, 3x3 stride 1 pad 1, overlapping windows: each output's gradient goes to the
    // first unpadded element of its window; dy = 2^o makes every sum identify its terms.
    OwnedTensor x = test::host_tensor({1, 3, 3, 1}, std::vector<float>(9, 1.f));
    OwnedTensor y(Device::cpu(), {1, 3, 3, 1}, DType::f32);
    maxpool_forward(ctx, PoolShape{3, 1, 1}, x, y);
    OwnedTensor dy = test::host_tensor({1, 3, 3, 1}, {1, 2, 4, 8, 16, 32, 64, 128, 256});
    OwnedTensor dx(Device::cpu(), {1, 3, 3, 1}, DType::f32);
    test::poison(ctx, dx);
    maxpool_backward(ctx, PoolShape{3, 1, 1}, x, y, dy, dx);
    EXPECT_EQ(test::host_values(dx), (std::vector<float>{1 + 2 + 8 + 16, 4 + 32, 0,  //
                                                         64 + 128, 256, 0,           //
                                                         0, 0, 0}));
  }
}

TEST(MaxPool, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor x(Device::cpu(), {1, 8, 8, 3}, DType::f32);
  OwnedTensor y(Device::cpu(), {1, 4, 4, 3}, DType::f32);
  OwnedTensor bad(Device::cpu(), {1, 4, 5, 3}, DType::f32);
  OwnedTensor x3(Device::cpu(), {8, 8, 3}, DType::f32);
  EXPECT_NO_THROW(maxpool_forward(ctx, PoolShape{3, 2, 1}, x, y));
  EXPECT_THROW(maxpool_forward(ctx, PoolShape{3, 2, 1}, x, bad), Error);
  EXPECT_THROW(maxpool_forward(ctx, PoolShape{3, 2, 1}, x3, y), Error);
  EXPECT_THROW(maxpool_forward(ctx, PoolShape{2, 2, 2}, x, y), Error);   // pad >= window
  EXPECT_THROW(maxpool_forward(ctx, PoolShape{3, 0, 1}, x, y), Error);   // stride 0
  EXPECT_THROW(maxpool_forward(ctx, PoolShape{11, 1, 1}, x, y), Error);  // window too large
  EXPECT_THROW(maxpool_backward(ctx, PoolShape{3, 2, 1}, x, y, bad, x), Error);
  EXPECT_THROW(maxpool_backward(ctx, PoolShape{3, 2, 1}, x, y, y, y), Error);
  OwnedTensor h(Device::cpu(), {1, 8, 8, 3}, DType::bf16);
  EXPECT_THROW(maxpool_forward(ctx, PoolShape{3, 2, 1}, h, y), Error);
}

// Values from {-1, 0, 1, 2} (every window holds ties), -0.0 among the zeros, and a NaN now and
// then: the inputs where recording the winner and searching for it could disagree.
std::vector<float> tie_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) {
    const uint32_t r = rng() % 64;
    x = r == 0 ? std::numeric_limits<float>::quiet_NaN() : r == 1 ? -0.f : static_cast<float>(static_cast<int>(r % 4) - 1);
  }
  return v;
}

std::vector<uint8_t> host_bytes(Context& ctx, const Tensor& t) {
  OwnedTensor h(Device::cpu(), t.shape(), DType::u8);
  copy(ctx, t, h);
  return std::vector<uint8_t>(h.data<uint8_t>(), h.data<uint8_t>() + t.numel());
}

// Bitwise, except that any NaN equals any NaN (a bf16 NaN comes back with another payload);
// -0.0 differs from 0.0.
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::isnan(a[i]) && std::isnan(b[i])) && std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  return true;
}

TEST(MaxPoolWhere, TheRecordedWinnerGivesWhatTheSearchGives) {
  Context ctx(Device::cpu());
  uint32_t seed = 600;
  for (const PoolCase& pc : kCases)
    for (bool ties : {false, true}) {
      SCOPED_TRACE(pc.x.str() + " window " + std::to_string(pc.pool.window) + (ties ? " ties" : ""));
      const Shape ys = pooled(pc);
      const std::vector<float> xv = ties ? tie_values(pc.x.numel(), seed++) : test::random_floats(pc.x.numel(), seed++);
      OwnedTensor x = test::host_tensor(pc.x, xv), dy = test::host_tensor(ys, test::random_floats(ys.numel(), seed++));
      OwnedTensor y(Device::cpu(), ys, DType::f32), yw(Device::cpu(), ys, DType::f32), where(Device::cpu(), ys, DType::u8);
      OwnedTensor dx(Device::cpu(), pc.x, DType::f32), dxw(Device::cpu(), pc.x, DType::f32);
      for (Tensor* t : {&yw.view(), &where.view(), &dxw.view()}) test::poison(ctx, *t);
      maxpool_forward(ctx, pc.pool, x, y);
      maxpool_backward(ctx, pc.pool, x, y, dy, dx);
      maxpool_forward_where(ctx, pc.pool, x, yw, where);
      maxpool_backward_where(ctx, pc.pool, where, dy, dxw);
      const std::vector<float> yv = test::host_values(y);
      EXPECT_TRUE(same_bits(test::host_values(yw), yv));
      EXPECT_TRUE(same_bits(test::host_values(dxw), test::host_values(dx)));
      const std::vector<uint8_t> at = host_bytes(ctx, where);
      for (size_t i = 0; i < at.size(); ++i) {
        if (std::isnan(yv[i])) EXPECT_EQ(at[i], kNoWinner) << i;
        else EXPECT_LT(at[i], pc.pool.window * pc.pool.window) << i;
      }
    }
}

// A byte that names no element of the image (in the padding, past the window, or kNoWinner)
// sends nothing and writes nothing out of bounds.
TEST(MaxPoolWhere, BytesOutsideTheImageSendNothing) {
  Context ctx(Device::cpu());
  const PoolShape pool{3, 2, 1};
  const Shape xs{1, 4, 4, 2}, ys{1, 2, 2, 2};
  OwnedTensor dy = test::host_tensor(ys, std::vector<float>(ys.numel(), 1.f));
  OwnedTensor where(Device::cpu(), ys, DType::u8), dx(Device::cpu(), xs, DType::f32);
  // Output (0, 0)'s window starts at (-1, -1): index 0 is padding. 9 and 200 are past the window.
  for (uint8_t b : {uint8_t{9}, uint8_t{200}, kNoWinner}) {
    fill_bytes(ctx, where, b);
    where.data<uint8_t>()[0] = 0;
    test::poison(ctx, dx);
    maxpool_backward_where(ctx, pool, where, dy, dx);
    EXPECT_EQ(test::host_values(dx), std::vector<float>(xs.numel(), 0.f)) << int(b);
  }
}

TEST(MaxPoolWhere, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor x(Device::cpu(), {1, 8, 8, 3}, DType::f32), y(Device::cpu(), {1, 4, 4, 3}, DType::f32);
  OwnedTensor where(Device::cpu(), {1, 4, 4, 3}, DType::u8), wrong_type(Device::cpu(), {1, 4, 4, 3}, DType::f32);
  OwnedTensor wrong_shape(Device::cpu(), {1, 4, 4, 2}, DType::u8);
  EXPECT_NO_THROW(maxpool_forward_where(ctx, PoolShape{3, 2, 1}, x, y, where));
  EXPECT_THROW(maxpool_forward_where(ctx, PoolShape{3, 2, 1}, x, y, wrong_type), Error);
  EXPECT_THROW(maxpool_forward_where(ctx, PoolShape{3, 2, 1}, x, y, wrong_shape), Error);
  EXPECT_THROW(maxpool_backward_where(ctx, PoolShape{3, 2, 1}, wrong_shape, y, x), Error);
  EXPECT_THROW(maxpool_backward_where(ctx, PoolShape{3, 2, 1}, where, y, y), Error);
  OwnedTensor big(Device::cpu(), {1, 16, 16, 1}, DType::f32), one(Device::cpu(), {1, 1, 1, 1}, DType::f32);
  OwnedTensor w1(Device::cpu(), {1, 1, 1, 1}, DType::u8);
  try {
    maxpool_forward_where(ctx, PoolShape{16, 1, 0}, big, one, w1);
    ADD_FAILURE() << "a 16x16 window was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("window 16"), std::string::npos) << e.what();
  }
}

std::vector<float> naive_avgpool(const std::vector<float>& x, const Shape& s) {
  const int64_t N = s[0], HW = s[1] * s[2], C = s[3];
  std::vector<float> y(static_cast<size_t>(N * C));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      double sum = 0;
      for (int64_t i = 0; i < HW; ++i) sum += x[(n * HW + i) * C + c];
      y[n * C + c] = static_cast<float>(sum / HW);
    }
  return y;
}

const Shape kAvgShapes[] = {{2, 7, 7, 5}, {1, 3, 5, 33}, {3, 1, 1, 4}, {1, 4, 4, 64}};

TEST(GlobalAvgPool, ForwardMatchesNaive) {
  Context ctx(Device::cpu());
  uint32_t seed = 200;
  for (const Shape& s : kAvgShapes) {
    std::vector<float> xv = test::random_floats(s.numel(), seed++);
    OwnedTensor x = test::host_tensor(s, xv);
    OwnedTensor y(Device::cpu(), {s[0], s[3]}, DType::f32);
    test::poison(ctx, y);
    global_avgpool_forward(ctx, x, y);
    EXPECT_LT(test::rel_error(test::host_values(y), naive_avgpool(xv, s)), 1e-6) << s.str();
  }
}

TEST(GlobalAvgPool, BackwardMatchesFiniteDifferences) {
  Context ctx(Device::cpu());
  uint32_t seed = 300;
  for (const Shape& s : kAvgShapes) {
    const Shape ys{s[0], s[3]};
    OwnedTensor x = test::host_tensor(s, test::random_floats(s.numel(), seed++));
    std::vector<float> w = test::random_floats(ys.numel(), seed++);
    OwnedTensor y(Device::cpu(), ys, DType::f32);
    auto loss = [&] {
      global_avgpool_forward(ctx, x, y);
      return test::weighted_sum(test::host_values(y), w);
    };
    OwnedTensor dy = test::host_tensor(ys, w);
    OwnedTensor dx(Device::cpu(), s, DType::f32);
    test::poison(ctx, dx);
    global_avgpool_backward(ctx, dy, dx);
    test::expect_gradient(loss, x.data<float>(), s.numel(), test::host_values(dx), "avgpool dx");
  }
}

TEST(GlobalAvgPool, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor x(Device::cpu(), {2, 3, 3, 4}, DType::f32);
  OwnedTensor y(Device::cpu(), {2, 4}, DType::f32), bad(Device::cpu(), {4, 2}, DType::f32);
  OwnedTensor empty(Device::cpu(), {2, 0, 3, 4}, DType::f32);
  EXPECT_THROW(global_avgpool_forward(ctx, x, bad), Error);
  EXPECT_THROW(global_avgpool_forward(ctx, empty, y), Error);
  EXPECT_THROW(global_avgpool_backward(ctx, bad, x), Error);
  EXPECT_THROW(global_avgpool_backward(ctx, y, y), Error);
}

class PoolCuda : public ::testing::TestWithParam<DType> {};

// kCases, ResNet-50's stem pool at a small batch, and whole 16-byte vectors of channels (the
// vector kernels for every dtype at 8, 16, 24 channels): padded edges, non-overlapping windows,
// stride 1 with many windows per element.
std::vector<PoolCase> gpu_cases() {
  std::vector<PoolCase> cases(std::begin(kCases), std::end(kCases));
  cases.push_back({{4, 56, 56, 64}, {3, 2, 1}});
  cases.push_back({{2, 9, 9, 8}, {3, 2, 1}});
  cases.push_back({{1, 7, 7, 16}, {2, 2, 0}});
  cases.push_back({{1, 5, 6, 24}, {3, 1, 1}});
  cases.push_back({{2, 6, 6, 8}, {3, 3, 0}});
  return cases;
}

TEST_P(PoolCuda, MaxPoolMatchesCpu) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  uint32_t seed = 400;
  for (const PoolCase& pc : gpu_cases()) {
    const Shape ys = pooled(pc);
    // Rounded to dt: bf16 / f16 values repeat, so windows hold ties and the rule is exercised.
    std::vector<float> xv = test::rounded(test::random_floats(pc.x.numel(), seed++), dt);
    std::vector<float> dyv = test::rounded(test::random_floats(ys.numel(), seed++), dt);
    OwnedTensor hx = test::host_tensor(pc.x, xv), hdy = test::host_tensor(ys, dyv);
    OwnedTensor hy(Device::cpu(), ys, DType::f32), hdx(Device::cpu(), pc.x, DType::f32);
    maxpool_forward(cpu, pc.pool, hx, hy);
    maxpool_backward(cpu, pc.pool, hx, hy, hdy, hdx);

    // Aligned tensors (the vector kernels where C allows) and tensors one element off (scalar).
    for (bool misalign : {false, true}) {
      OwnedTensor dx = test::device_tensor(gpu, pc.x, xv, dt), ddy = test::device_tensor(gpu, ys, dyv, dt);
      OwnedTensor dy(gpu.device(), ys, dt), ddx(gpu.device(), pc.x, dt);
      test::poison(gpu, dy);
      test::poison(gpu, ddx);
      test::Placer place(gpu, misalign);
      Tensor &x = place(dx.view()), &y = place(dy.view()), &gy = place(ddy.view()), &gx = place(ddx.view());
      maxpool_forward(gpu, pc.pool, x, y);
      maxpool_backward(gpu, pc.pool, x, y, gy, gx);
      // The maximum is exact in any dtype.
      EXPECT_EQ(test::to_host_f32(gpu, y), test::host_values(hy)) << pc.x.str() << (misalign ? " scalar path" : "");
      EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gx), test::host_values(hdx)), test::tolerance(dt))
          << pc.x.str() << " window " << pc.pool.window << " stride " << pc.pool.stride
          << (misalign ? " scalar path" : "");
    }
  }
  OwnedTensor x(gpu.device(), {1, 8, 8, 3}, dt), y(gpu.device(), {1, 4, 4, 3}, dt);
  OwnedTensor other(gpu.device(), {1, 4, 4, 3}, dt == DType::f32 ? DType::f16 : DType::f32);
  EXPECT_THROW(maxpool_forward(gpu, PoolShape{3, 2, 1}, x, other), Error);
  EXPECT_THROW(maxpool_forward(gpu, PoolShape{2, 2, 2}, x, y), Error);
}

// All-equal windows: each output's gradient goes to its window's first element. With 8 channels
// (the vector kernels) every channel follows the rule on its own: channel k holds 1 everywhere
// except that it is raised to 2 at element k of the 3x3 image, so its maxima move with k.
TEST_P(PoolCuda, TiesMatchCpu) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context gpu(Device::cuda(0)), cpu(Device::cpu());
  OwnedTensor x = test::device_tensor(gpu, {1, 3, 3, 1}, std::vector<float>(9, 1.f), dt);
  OwnedTensor y(gpu.device(), {1, 3, 3, 1}, dt), dx(gpu.device(), {1, 3, 3, 1}, dt);
  OwnedTensor dy = test::device_tensor(gpu, {1, 3, 3, 1}, {1, 2, 4, 8, 16, 32, 64, 128, 256}, dt);
  test::poison(gpu, y);
  test::poison(gpu, dx);
  maxpool_forward(gpu, PoolShape{3, 1, 1}, x, y);
  maxpool_backward(gpu, PoolShape{3, 1, 1}, x, y, dy, dx);
  EXPECT_EQ(test::to_host_f32(gpu, dx), (std::vector<float>{27, 36, 0, 192, 256, 0, 0, 0, 0}));

  const Shape s{1, 3, 3, 8};
  std::vector<float> xv(s.numel(), 1.f), dyv(s.numel());
  for (int k = 0; k < 8; ++k) xv[k * 8 + k] = 2.f;
  for (int64_t i = 0; i < s.numel(); ++i) dyv[i] = static_cast<float>(1 << (i / 8));
  OwnedTensor hx = test::host_tensor(s, xv), hdy = test::host_tensor(s, dyv);
  OwnedTensor hy(Device::cpu(), s, DType::f32), hdx(Device::cpu(), s, DType::f32);
  maxpool_forward(cpu, PoolShape{3, 1, 1}, hx, hy);
  maxpool_backward(cpu, PoolShape{3, 1, 1}, hx, hy, hdy, hdx);
  OwnedTensor gx = test::device_tensor(gpu, s, xv, dt), gdy = test::device_tensor(gpu, s, dyv, dt);
  OwnedTensor gy(gpu.device(), s, dt), gdx(gpu.device(), s, dt);
  test::poison(gpu, gy);
  test::poison(gpu, gdx);
  maxpool_forward(gpu, PoolShape{3, 1, 1}, gx, gy);
  maxpool_backward(gpu, PoolShape{3, 1, 1}, gx, gy, gdy, gdx);
  EXPECT_EQ(test::to_host_f32(gpu, gy), test::host_values(hy));
  EXPECT_EQ(test::to_host_f32(gpu, gdx), test::rounded(test::host_values(hdx), dt));
}

// The recorded winners and the backward from them on the GPU: the same bytes as the CPU's, y
// exact, dx exactly the CPU's rounded to the dtype (the same f32 sums in the same order), on the
// vector path and, one element off, the scalar one; random values and tie-heavy ones with NaNs.
TEST_P(PoolCuda, MaxPoolWhereMatchesCpu) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context cpu(Device::cpu()), gpu(Device::cuda(0));
  uint32_t seed = 700;
  for (const PoolCase& pc : gpu_cases())
    for (bool ties : {false, true}) {
      const Shape ys = pooled(pc);
      const std::vector<float> xv =
          test::rounded(ties ? tie_values(pc.x.numel(), seed++) : test::random_floats(pc.x.numel(), seed++), dt);
      const std::vector<float> dyv = test::rounded(test::random_floats(ys.numel(), seed++), dt);
      OwnedTensor hx = test::host_tensor(pc.x, xv), hdy = test::host_tensor(ys, dyv);
      OwnedTensor hy(Device::cpu(), ys, DType::f32), hw(Device::cpu(), ys, DType::u8), hdx(Device::cpu(), pc.x, DType::f32);
      maxpool_forward_where(cpu, pc.pool, hx, hy, hw);
      maxpool_backward_where(cpu, pc.pool, hw, hdy, hdx);
      for (bool misalign : {false, true}) {
        SCOPED_TRACE(pc.x.str() + " window " + std::to_string(pc.pool.window) + " stride " +
                     std::to_string(pc.pool.stride) + (ties ? " ties" : "") + (misalign ? " scalar path" : ""));
        OwnedTensor dx = test::device_tensor(gpu, pc.x, xv, dt), ddy = test::device_tensor(gpu, ys, dyv, dt);
        OwnedTensor dy(gpu.device(), ys, dt), dw(gpu.device(), ys, DType::u8), ddx(gpu.device(), pc.x, dt);
        for (Tensor* t : {&dy.view(), &dw.view(), &ddx.view()}) test::poison(gpu, *t);
        test::Placer place(gpu, misalign);
        Tensor &x = place(dx.view()), &y = place(dy.view()), &w = place(dw.view()), &gy = place(ddy.view()),
               &gx = place(ddx.view());
        maxpool_forward_where(gpu, pc.pool, x, y, w);
        maxpool_backward_where(gpu, pc.pool, w, gy, gx);
        EXPECT_TRUE(same_bits(test::to_host_f32(gpu, y), test::host_values(hy)));
        EXPECT_EQ(host_bytes(gpu, w), host_bytes(cpu, hw));
        EXPECT_TRUE(same_bits(test::to_host_f32(gpu, gx), test::rounded(test::host_values(hdx), dt)));
      }
    }
}

TEST_P(PoolCuda, GlobalAvgPoolMatchesCpu) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  std::vector<Shape> shapes(std::begin(kAvgShapes), std::end(kAvgShapes));
  shapes.push_back({32, 7, 7, 2048});  // ResNet-50's head
  uint32_t seed = 500;
  for (const Shape& s : shapes) {
    const Shape ys{s[0], s[3]};
    std::vector<float> xv = test::rounded(test::random_floats(s.numel(), seed++), dt);
    std::vector<float> dyv = test::rounded(test::random_floats(ys.numel(), seed++), dt);
    OwnedTensor hx = test::host_tensor(s, xv), hdy = test::host_tensor(ys, dyv);
    OwnedTensor hy(Device::cpu(), ys, DType::f32), hdx(Device::cpu(), s, DType::f32);
    global_avgpool_forward(cpu, hx, hy);
    global_avgpool_backward(cpu, hdy, hdx);

    OwnedTensor dx = test::device_tensor(gpu, s, xv, dt), ddy = test::device_tensor(gpu, ys, dyv, dt);
    OwnedTensor dy(gpu.device(), ys, dt), ddx(gpu.device(), s, dt);
    test::poison(gpu, dy);
    test::poison(gpu, ddx);
    global_avgpool_forward(gpu, dx, dy);
    global_avgpool_backward(gpu, ddy, ddx);
    EXPECT_LT(test::rel_error(test::to_host_f32(gpu, dy), test::host_values(hy)), test::tolerance(dt)) << s.str();
    EXPECT_LT(test::rel_error(test::to_host_f32(gpu, ddx), test::host_values(hdx)), test::tolerance(dt)) << s.str();
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, PoolCuda, ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lockstep
