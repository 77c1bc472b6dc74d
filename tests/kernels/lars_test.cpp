// LARS gradient preparation: a hand-computed case, the zero-norm rule, and CUDA against CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/lars.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

OwnedTensor u32_tensor(Context& ctx, Shape s, const std::vector<uint32_t>& v) {
  OwnedTensor h(Device::cpu(), s, DType::u32);
  std::copy(v.begin(), v.end(), h.data<uint32_t>());
  OwnedTensor d(ctx.device(), s, DType::u32);
  copy(ctx, h, d);
  return d;
}

OwnedTensor u8_tensor(Context& ctx, Shape s, const std::vector<uint8_t>& v) {
  OwnedTensor h(Device::cpu(), s, DType::u8);
  std::copy(v.begin(), v.end(), h.data<uint8_t>());
  OwnedTensor d(ctx.device(), s, DType::u8);
  copy(ctx, h, d);
  return d;
}

TEST(Lars, TrustRatioByHand) {
  // ||w|| = 2, ||g|| = 0.5, wd = 1e-4, eta = 0.001: 0.002 / 0.5002 = 0.0039984006...
  EXPECT_NEAR(lars_trust(2.0f, 0.5f, 1e-4f, 0.001f), 0.0039984006, 1e-9);
  EXPECT_FLOAT_EQ(lars_trust(3.f, 4.f, 0.5f, 0.001f), 0.001f * 3.f / (4.f + 1.5f));
  EXPECT_EQ(lars_trust(0.f, 4.f, 0.5f, 0.001f), 1.f);
  EXPECT_EQ(lars_trust(3.f, 0.f, 0.5f, 0.001f), 1.f);
}

TEST(Lars, CpuScalesEachSegment) {
  Context ctx(Device::cpu());
  // segment 0 = [0, 2): w = (3, 4) |w| = 5, g = (0, 2), scale 0.5 -> |g| = 1: adapt + decay
  // segment 1 = [2, 3): a bias, neither adapts nor decays
  // segment 2 = [3, 5): zero weights (freshly zero-initialised): ratio 1, decays
  OwnedTensor w = test::host_tensor({5}, {3, 4, 7, 0, 0});
  OwnedTensor g = test::host_tensor({5}, {0, 2, 8, 2, -2});
  OwnedTensor seg = u32_tensor(ctx, {3, 2}, {0, 2, 2, 3, 3, 5});
  OwnedTensor flags = u8_tensor(ctx, {3}, {3, 0, 2});
  OwnedTensor norms(Device::cpu(), {3, 2}, DType::f32);
  const float wd = 0.1f, eta = 0.01f;
  lars_scale_gradients(ctx, w, g, seg, flags, wd, eta, 0.5f, norms);
  const float t0 = eta * 5.f / (1.f + wd * 5.f);
  std::vector<float> got = test::host_values(g);
  EXPECT_FLOAT_EQ(got[0], t0 * (0.f + wd * 3.f));
  EXPECT_FLOAT_EQ(got[1], t0 * (1.f + wd * 4.f));
  EXPECT_FLOAT_EQ(got[2], 4.f);
  EXPECT_FLOAT_EQ(got[3], 1.f);
  EXPECT_FLOAT_EQ(got[4], -1.f);
  EXPECT_FLOAT_EQ(norms.data<float>()[0], 5.f);
  EXPECT_FLOAT_EQ(norms.data<float>()[1], 1.f);
}

TEST(Lars, RejectsBadSegments) {
  Context ctx(Device::cpu());
  OwnedTensor w = test::host_tensor({2}, {1, 2});
  OwnedTensor g = test::host_tensor({2}, {1, 2});
  OwnedTensor seg = u32_tensor(ctx, {1, 2}, {0, 3});
  OwnedTensor flags = u8_tensor(ctx, {1}, {1});
  OwnedTensor norms(Device::cpu(), {1, 2}, DType::f32);
  EXPECT_THROW(lars_scale_gradients(ctx, w, g, seg, flags, 0.f, 1.f, 1.f, norms), Error);
  OwnedTensor bad_norms(Device::cpu(), {1}, DType::f32);
  OwnedTensor seg_ok = u32_tensor(ctx, {1, 2}, {0, 2});
  EXPECT_THROW(lars_scale_gradients(ctx, w, g, seg_ok, flags, 0.f, 1.f, 1.f, bad_norms), Error);
}

TEST(Lars, CudaMatchesCpu) {
  LS_REQUIRE_GPU();
  Context cpu(Device::cpu()), gpu(Device::cuda(0));
  const int64_t n = 300007;
  std::vector<uint32_t> segs = {0, 64, 64, 100000, 100000, 100001, 100001, 300007};
  std::vector<uint8_t> fl = {3, 1, 0, 2};
  std::vector<float> wv = test::random_floats(n, 1), gv = test::random_floats(n, 2);
  OwnedTensor wc = test::host_tensor({n}, wv), gc = test::host_tensor({n}, gv);
  OwnedTensor wg = test::device_tensor(gpu, {n}, wv), gg = test::device_tensor(gpu, {n}, gv);
  OwnedTensor sc = u32_tensor(cpu, {4, 2}, segs), sg = u32_tensor(gpu, {4, 2}, segs);
  OwnedTensor fc = u8_tensor(cpu, {4}, fl), fg = u8_tensor(gpu, {4}, fl);
  OwnedTensor nc(Device::cpu(), {4, 2}, DType::f32), ng(gpu.device(), {4, 2}, DType::f32);
  test::poison(gpu, ng);
  lars_scale_gradients(cpu, wc, gc, sc, fc, 1e-4f, 0.001f, 0.25f, nc);
  lars_scale_gradients(gpu, wg, gg, sg, fg, 1e-4f, 0.001f, 0.25f, ng);
  EXPECT_LT(test::rel_error(test::to_host_f32(gpu, gg), test::host_values(gc)), 1e-5);
  EXPECT_LT(test::rel_error(test::to_host_f32(gpu, ng), test::host_values(nc)), 1e-5);
}

}  // namespace
}  // namespace lockstep
