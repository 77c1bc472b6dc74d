// Tests of ReLU forward/backward and add: exact CPU values, ReLU backward against finite
// differences, aliasing, argument errors, and CUDA against CPU for f32 / bf16 / f16.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/elementwise.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

// Random values at least `gap` away from 0, so a finite-difference step never crosses the kink.
std::vector<float> away_from_zero(int64_t n, uint32_t seed, float gap) {
  std::vector<float> v = test::random_floats(n, seed);
  for (auto& x : v)
    if (std::fabs(x) < gap) x = x < 0 ? x - gap : x + gap;
  return v;
}

TEST(Elementwise, ReluForwardExact) {
  Context ctx(Device::cpu());
  OwnedTensor x = test::host_tensor({2, 3}, {-2.f, -0.f, 0.f, 0.5f, 3.f, -1e-30f});
  OwnedTensor y(Device::cpu(), {2, 3}, DType::f32);
  test::poison(ctx, y);
  relu_forward(ctx, x, y);
  EXPECT_EQ(test::host_values(y), (std::vector<float>{0.f, 0.f, 0.f, 0.5f, 3.f, 0.f}));
  // In place, and NaN stays NaN.
  OwnedTensor z = test::host_tensor({3}, {-1.f, NAN, 2.f});
  relu_forward(ctx, z, z);
  std::vector<float> zv = test::host_values(z);
  EXPECT_EQ(zv[0], 0.f);
  EXPECT_TRUE(std::isnan(zv[1]));
  EXPECT_EQ(zv[2], 2.f);
}

TEST(Elementwise, ReluBackwardExactAndInPlace) {
  Context ctx(Device::cpu());
  OwnedTensor y = test::host_tensor({4}, {0.f, 1.f, 0.f, 2.f});
  OwnedTensor dy = test::host_tensor({4}, {5.f, 6.f, 7.f, 8.f});
  relu_backward(ctx, y, dy, dy);  // dx aliases dy
  EXPECT_EQ(test::host_values(dy), (std::vector<float>{0.f, 6.f, 0.f, 8.f}));
}

TEST(Elementwise, ReluBackwardMatchesFiniteDifferences) {
  Context ctx(Device::cpu());
  for (Shape s : {Shape{1, 5, 7, 3}, Shape{2, 3, 3, 33}, Shape{17}}) {
    const int64_t n = s.numel();
    OwnedTensor x = test::host_tensor(s, away_from_zero(n, 11, 0.05f));
    std::vector<float> w = test::random_floats(n, 12);
    OwnedTensor y(Device::cpu(), s, DType::f32);
    auto loss = [&] {
      relu_forward(ctx, x, y);
      return test::weighted_sum(test::host_values(y), w);
    };
    relu_forward(ctx, x, y);
    OwnedTensor dy = test::host_tensor(s, w);
    OwnedTensor dx(Device::cpu(), s, DType::f32);
    test::poison(ctx, dx);
    relu_backward(ctx, y, dy, dx);
    test::expect_gradient(loss, x.data<float>(), n, test::host_values(dx), "relu dx");
  }
}

TEST(Elementwise, AddExactAndAliasing) {
  Context ctx(Device::cpu());
  std::vector<float> av = test::random_small_ints(60, 1), bv = test::random_small_ints(60, 2);
  std::vector<float> ref(60);
  for (int i = 0; i < 60; ++i) ref[i] = av[i] + bv[i];
  OwnedTensor a = test::host_tensor({3, 4, 5}, av), b = test::host_tensor({3, 4, 5}, bv);
  OwnedTensor y(Device::cpu(), {3, 4, 5}, DType::f32);
  test::poison(ctx, y);
  add(ctx, a, b, y);
  EXPECT_EQ(test::host_values(y), ref);
  add(ctx, a, b, a);  // y aliases a
  EXPECT_EQ(test::host_values(a), ref);
  OwnedTensor a2 = test::host_tensor({3, 4, 5}, av);
  add(ctx, a2, b, b);  // y aliases b
  EXPECT_EQ(test::host_values(b), ref);
  OwnedTensor c = test::host_tensor({3, 4, 5}, av);
  add(ctx, c, c, c);  // all three the same
  for (int i = 0; i < 60; ++i) EXPECT_EQ(c.data<float>()[i], 2 * av[i]);
}

TEST(Elementwise, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor a(Device::cpu(), {2, 3}, DType::f32), b(Device::cpu(), {3, 2}, DType::f32);
  OwnedTensor h(Device::cpu(), {2, 3}, DType::bf16);
  EXPECT_THROW(relu_forward(ctx, a, b), Error);
  EXPECT_THROW(relu_forward(ctx, h, h), Error);  // CPU is f32 only
  EXPECT_THROW(relu_backward(ctx, a, b, a), Error);
  EXPECT_THROW(add(ctx, a, b, a), Error);
  EXPECT_THROW(add(ctx, a, a, b), Error);
  EXPECT_THROW(add(ctx, a, h, a), Error);
}

class ElementwiseCuda : public ::testing::TestWithParam<DType> {};

TEST_P(ElementwiseCuda, MatchesCpu) {
  LS_REQUIRE_GPU();
  const DType dt = GetParam();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  // Vectors and a tail, one element (tail only), whole vectors only.
  for (Shape s : {Shape{2, 7, 5, 33}, Shape{1}, Shape{4099}, Shape{64, 8}}) {
    const int64_t n = s.numel();
    std::vector<float> xv = test::rounded(test::random_floats(n, 21), dt);
    std::vector<float> bv = test::rounded(test::random_floats(n, 22), dt);
    std::vector<float> dyv = test::rounded(test::random_floats(n, 23), dt);
    OwnedTensor hx = test::host_tensor(s, xv), hb = test::host_tensor(s, bv), hdy = test::host_tensor(s, dyv);
    OwnedTensor hy(Device::cpu(), s, DType::f32), hs(Device::cpu(), s, DType::f32), hdx(Device::cpu(), s, DType::f32);
    relu_forward(cpu, hx, hy);
    relu_backward(cpu, hy, hdy, hdx);
    add(cpu, hx, hb, hs);

    OwnedTensor dx = test::device_tensor(gpu, s, xv, dt), db = test::device_tensor(gpu, s, bv, dt);
    OwnedTensor ddy = test::device_tensor(gpu, s, dyv, dt);
    // Aligned operands (16-byte vectors plus a tail) and operands one element off (one at a time).
    for (bool misalign : {false, true}) {
      OwnedTensor dy(gpu.device(), s, dt), ds(gpu.device(), s, dt), ddx(gpu.device(), s, dt);
      test::poison(gpu, dy);
      test::poison(gpu, ds);
      test::poison(gpu, ddx);
      test::Placer place(gpu, misalign);
      Tensor &x = place(dx.view()), &b = place(db.view()), &g = place(ddy.view());
      Tensor &y = place(dy.view()), &sum = place(ds.view()), &gx = place(ddx.view());
      relu_forward(gpu, x, y);
      relu_backward(gpu, y, g, gx);
      add(gpu, x, b, sum);
      const std::string where = s.str() + (misalign ? " scalar path" : "");
      EXPECT_LT(test::rel_error(test::to_host_f32(gpu, y), test::host_values(hy)), test::tolerance(dt)) << where;
      EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gx), test::host_values(hdx)), test::tolerance(dt)) << where;
      EXPECT_LT(test::rel_error(test::to_host_f32(gpu, sum), test::host_values(hs)), test::tolerance(dt)) << where;
    }

    // In place on the device: relu(x) into x, x + b into b.
    relu_forward(gpu, dx, dx);
    EXPECT_LT(test::rel_error(test::to_host_f32(gpu, dx), test::host_values(hy)), test::tolerance(dt)) << s.str();
    OwnedTensor dx2 = test::device_tensor(gpu, s, xv, dt);
    add(gpu, dx2, db, db);
    EXPECT_LT(test::rel_error(test::to_host_f32(gpu, db), test::host_values(hs)), test::tolerance(dt)) << s.str();
  }
  // Mixed dtypes and host tensors are refused.
  OwnedTensor a(gpu.device(), {4}, dt), b(gpu.device(), {4}, dt == DType::f32 ? DType::bf16 : DType::f32);
  OwnedTensor h(Device::cpu(), {4}, dt);
  EXPECT_THROW(add(gpu, a, b, a), Error);
  EXPECT_THROW(relu_forward(gpu, h, a), Error);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ElementwiseCuda, ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lockstep
