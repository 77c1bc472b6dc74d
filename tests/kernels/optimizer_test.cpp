// Tests of the SGD update: CPU against a naive torch.optim.SGD loop (momentum, dampening 0,
// nesterov, weight decay only inside segments, grad_scale), one hand-computed two-step case,
// argument errors, and CUDA against CPU after three steps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/copy.h"
#include "kernels/optimizer.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

// A u32 (S, 2) segment tensor on ctx's device.
OwnedTensor segment_tensor(Context& ctx, const std::vector<uint32_t>& begin_end) {
  const Shape s{static_cast<int64_t>(begin_end.size() / 2), 2};
  OwnedTensor h(Device::cpu(), s, DType::u32);
  if (!begin_end.empty()) std::memcpy(h.view().raw(), begin_end.data(), h.bytes());
  OwnedTensor d(ctx.device(), s, DType::u32);
  copy(ctx, h, d);
  return d;
}

// torch.optim.SGD.step (dampening 0), with grad_scale applied to the raw gradient first and
// weight decay only where decayed[i]. `step` counts from 0: the first step initializes buf = d_p.
void naive_sgd(const SgdArgs& a, std::vector<float>& p, const std::vector<float>& grad,
               std::vector<float>& buf, const std::vector<bool>& decayed, int step) {
  for (size_t i = 0; i < p.size(); ++i) {
    float d_p = grad[i] * a.grad_scale;
    if (a.weight_decay != 0 && decayed[i]) d_p = d_p + a.weight_decay * p[i];
    if (a.momentum != 0) {
      if (step == 0) buf[i] = d_p;
      else buf[i] = a.momentum * buf[i] + d_p;
      if (a.nesterov) d_p = d_p + a.momentum * buf[i];
      else d_p = buf[i];
    }
    p[i] = p[i] - a.lr * d_p;
  }
}

std::vector<bool> membership(int64_t n, const std::vector<uint32_t>& seg) {
  std::vector<bool> in(static_cast<size_t>(n), false);
  for (size_t s = 0; s + 1 < seg.size(); s += 2)
    for (uint32_t i = seg[s]; i < seg[s + 1]; ++i) in[i] = true;
  return in;
}

void expect_close(const std::vector<float>& out, const std::vector<float>& ref, double rel, const char* what) {
  ASSERT_EQ(out.size(), ref.size());
  EXPECT_LT(test::rel_error(out, ref), rel) << what;
  int bad = 0;
  for (size_t i = 0; i < out.size() && bad < 5; ++i) {
    if (!(std::fabs(out[i] - ref[i]) <= rel * std::max(1.0f, std::fabs(ref[i])))) {
      ++bad;
      ADD_FAILURE() << what << "[" << i << "]: " << out[i] << " vs " << ref[i];
    }
  }
}

struct SgdCase {
  SgdArgs args;
  int64_t n;
  std::vector<uint32_t> segments;
};

std::vector<SgdCase> sgd_cases() {
  std::vector<SgdCase> cases;
  // The defaults of a ResNet run: momentum, weight decay on some tensors only.
  cases.push_back({{0.1f, 0.9f, 1e-4f * 500, false, 1.0f}, 1001, {0, 10, 100, 400, 999, 1001}});
  cases.push_back({{0.05f, 0.9f, 0.01f, true, 0.25f}, 777, {3, 4, 5, 300, 301, 700}});
  cases.push_back({{0.2f, 0.5f, 0.1f, false, 1.0f / 3}, 64, {}});               // no decay at all
  cases.push_back({{0.2f, 0.9f, 0.1f, true, 2.0f}, 33, {0, 33}});               // decay everywhere
  cases.push_back({{0.3f, 0.9f, 0.0f, false, 1.0f}, 50, {10, 20}});             // wd 0 inside segments
  cases.push_back({{0.3f, 0.8f, 0.2f, false, 1.0f}, 50, {10, 10, 10, 20, 20, 20, 31, 32}});  // empty ones
  cases.push_back({{0.1f, 0.99f, 0.05f, true, 0.5f}, 1, {0, 1}});
  return cases;
}

TEST(SgdCpu, MatchesTorchSgdOverSeveralSteps) {
  Context ctx(Device::cpu());
  uint32_t seed = 1;
  for (const SgdCase& c : sgd_cases()) {
    std::vector<float> p = test::random_floats(c.n, seed++, -2.f, 2.f), buf_ref(p.size(), 0.f);
    std::vector<float> p_ref = p;
    const std::vector<bool> decayed = membership(c.n, c.segments);
    OwnedTensor params = test::host_tensor({c.n}, p);
    OwnedTensor buf = test::host_tensor({c.n}, std::vector<float>(p.size(), 0.f));
    OwnedTensor seg = segment_tensor(ctx, c.segments);
    for (int step = 0; step < 4; ++step) {
      std::vector<float> g = test::random_floats(c.n, seed++, -3.f, 3.f);
      OwnedTensor grads = test::host_tensor({c.n}, g);
      sgd_update(ctx, c.args, params, grads, buf, seg);
      naive_sgd(c.args, p_ref, g, buf_ref, decayed, step);
    }
    expect_close(test::host_values(params), p_ref, 1e-6, "params");
    expect_close(test::host_values(buf), buf_ref, 1e-6, "momentum buffer");
  }
}

TEST(SgdCpu, WeightDecayOnlyInsideSegments) {
  // Zero gradients: only the decay moves a parameter, so those outside segments stay put.
  Context ctx(Device::cpu());
  const int64_t n = 20;
  std::vector<uint32_t> segs = {2, 5, 9, 10, 15, 20};
  std::vector<bool> in = membership(n, segs);
  OwnedTensor params = test::host_tensor({n}, std::vector<float>(n, 1.f));
  OwnedTensor grads = test::host_tensor({n}, std::vector<float>(n, 0.f));
  OwnedTensor buf = test::host_tensor({n}, std::vector<float>(n, 0.f));
  OwnedTensor seg = segment_tensor(ctx, segs);
  sgd_update(ctx, {0.5f, 0.9f, 0.1f, false, 1.0f}, params, grads, buf, seg);
  std::vector<float> p = test::host_values(params);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(p[i], in[i] ? 1.f - 0.5f * 0.1f : 1.f) << i;
}

TEST(SgdCpu, MomentumZeroIgnoresAnEmptyBuffer) {
  Context ctx(Device::cpu());
  const int64_t n = 37;
  std::vector<float> p = test::random_floats(n, 11), g = test::random_floats(n, 12);
  std::vector<uint32_t> segs = {0, 7, 20, 30};
  OwnedTensor params = test::host_tensor({n}, p);
  OwnedTensor grads = test::host_tensor({n}, g);
  Tensor empty(nullptr, Shape{0}, DType::f32, Device::cpu());
  OwnedTensor seg = segment_tensor(ctx, segs);
  SgdArgs a{0.1f, 0.0f, 0.01f, false, 0.5f};
  std::vector<float> unused;
  naive_sgd(a, p, g, unused, membership(n, segs), 0);
  sgd_update(ctx, a, params, grads, empty, seg);
  EXPECT_EQ(test::host_values(params), p);
  // A default (undefined) tensor is also accepted as the buffer when momentum is 0.
  Tensor undefined;
  EXPECT_NO_THROW(sgd_update(ctx, a, params, grads, undefined, seg));
}

TEST(SgdCpu, HandComputedTwoSteps) {
  // lr 0.1, momentum 0.9, wd 0.1, grad_scale 0.5, raw grads 1 (so g = 0.5 before decay).
  // Element 0 (decayed), p = 1:
  //   step 1: g = 0.5 + 0.1 * 1 = 0.6,      buf = 0.6,                 p = 1 - 0.06 = 0.94
  //   step 2: g = 0.5 + 0.1 * 0.94 = 0.594, buf = 0.54 + 0.594 = 1.134, p = 0.94 - 0.1134 = 0.8266
  // Element 1 (not decayed), p = 1:
  //   step 1: buf = 0.5, p = 0.95;  step 2: buf = 0.45 + 0.5 = 0.95, p = 0.95 - 0.095 = 0.855
  // Nesterov, element 0: step 1: p = 1 - 0.1 * (0.6 + 0.54) = 0.886; step 2: g = 0.5 + 0.0886
  //   = 0.5886, buf = 0.54 + 0.5886 = 1.1286, p = 0.886 - 0.1 * (0.5886 + 1.01574) = 0.725566
  Context ctx(Device::cpu());
  OwnedTensor seg = segment_tensor(ctx, {0, 1});
  for (bool nesterov : {false, true}) {
    OwnedTensor params = test::host_tensor({2}, {1.f, 1.f});
    OwnedTensor grads = test::host_tensor({2}, {1.f, 1.f});
    OwnedTensor buf = test::host_tensor({2}, {0.f, 0.f});
    SgdArgs a{0.1f, 0.9f, 0.1f, nesterov, 0.5f};
    sgd_update(ctx, a, params, grads, buf, seg);
    sgd_update(ctx, a, params, grads, buf, seg);
    std::vector<float> p = test::host_values(params), b = test::host_values(buf);
    if (!nesterov) {
      EXPECT_NEAR(p[0], 0.8266f, 1e-6);
      EXPECT_NEAR(b[0], 1.134f, 1e-6);
      EXPECT_NEAR(p[1], 0.855f, 1e-6);
      EXPECT_NEAR(b[1], 0.95f, 1e-6);
    } else {
      EXPECT_NEAR(p[0], 0.725566f, 1e-6);
      EXPECT_NEAR(b[0], 1.1286f, 1e-6);
    }
  }
}

TEST(SgdCpu, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor p(Device::cpu(), {10}, DType::f32), g(Device::cpu(), {10}, DType::f32);
  OwnedTensor buf(Device::cpu(), {10}, DType::f32), short_buf(Device::cpu(), {9}, DType::f32);
  OwnedTensor g_i32(Device::cpu(), {10}, DType::i32), g_short(Device::cpu(), {9}, DType::f32);
  test::poison(ctx, p);
  OwnedTensor seg = segment_tensor(ctx, {0, 5});
  OwnedTensor seg_flat(Device::cpu(), {4}, DType::u32);
  OwnedTensor seg_f32(Device::cpu(), {1, 2}, DType::f32);
  SgdArgs a;
  EXPECT_THROW(sgd_update(ctx, a, p, g_i32, buf, seg), Error);
  EXPECT_THROW(sgd_update(ctx, a, p, g_short, buf, seg), Error);
  EXPECT_THROW(sgd_update(ctx, a, p, g, short_buf, seg), Error);
  EXPECT_THROW(sgd_update(ctx, a, p, g, buf, seg_flat), Error);
  EXPECT_THROW(sgd_update(ctx, a, p, g, buf, seg_f32), Error);
  EXPECT_THROW(sgd_update(ctx, a, p, g, buf, segment_tensor(ctx, {0, 11})), Error);        // past the end
  EXPECT_THROW(sgd_update(ctx, a, p, g, buf, segment_tensor(ctx, {4, 6, 5, 8})), Error);   // overlapping
  EXPECT_THROW(sgd_update(ctx, a, p, g, buf, segment_tensor(ctx, {6, 4})), Error);         // reversed
  Tensor elsewhere(p.view().raw(), Shape{10}, DType::f32, Device::cuda(0));
  EXPECT_THROW(sgd_update(ctx, a, elsewhere, g, buf, seg), Error);
}

TEST(SgdCuda, MatchesCpuAfterThreeSteps) {
  LS_REQUIRE_GPU();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  uint32_t seed = 100;
  std::vector<SgdCase> cases = sgd_cases();
  cases.push_back({{0.1f, 0.9f, 5e-4f, true, 1.0f / 1024}, 1000003, {0, 1000, 5000, 70001, 70001, 70002, 999999, 1000003}});
  cases.push_back({{0.1f, 0.0f, 5e-3f, false, 1.0f}, 4099, {100, 200}});  // momentum 0
  for (const SgdCase& c : cases) {
    SCOPED_TRACE(c.n);
    const std::vector<float> p0 = test::random_floats(c.n, seed++, -2.f, 2.f);
    OwnedTensor p_cpu = test::host_tensor({c.n}, p0);
    OwnedTensor b_cpu = test::host_tensor({c.n}, std::vector<float>(p0.size(), 0.f));
    OwnedTensor p_gpu = test::device_tensor(gpu, {c.n}, p0);
    OwnedTensor b_gpu = test::device_tensor(gpu, {c.n}, std::vector<float>(p0.size(), 0.f));
    OwnedTensor s_cpu = segment_tensor(cpu, c.segments), s_gpu = segment_tensor(gpu, c.segments);
    Tensor empty_cpu(nullptr, Shape{0}, DType::f32, Device::cpu());
    Tensor empty_gpu(nullptr, Shape{0}, DType::f32, gpu.device());
    const bool no_momentum = c.args.momentum == 0.0f;
    for (int step = 0; step < 3; ++step) {
      std::vector<float> g = test::random_floats(c.n, seed++, -3.f, 3.f);
      OwnedTensor g_cpu = test::host_tensor({c.n}, g);
      OwnedTensor g_gpu = test::device_tensor(gpu, {c.n}, g);
      sgd_update(cpu, c.args, p_cpu, g_cpu, no_momentum ? empty_cpu : b_cpu.view(), s_cpu);
      sgd_update(gpu, c.args, p_gpu, g_gpu, no_momentum ? empty_gpu : b_gpu.view(), s_gpu);
    }
    expect_close(test::to_host_f32(gpu, p_gpu), test::host_values(p_cpu), 1e-6, "params");
    if (!no_momentum)
      expect_close(test::to_host_f32(gpu, b_gpu), test::host_values(b_cpu), 1e-6, "momentum buffer");
  }
}

TEST(SgdCuda, ArgumentErrors) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  OwnedTensor p(gpu.device(), {10}, DType::f32), g(gpu.device(), {10}, DType::f32);
  OwnedTensor buf(gpu.device(), {9}, DType::f32);
  OwnedTensor g_host(Device::cpu(), {10}, DType::f32);
  OwnedTensor seg = segment_tensor(gpu, {0, 5});
  SgdArgs a;
  EXPECT_THROW(sgd_update(gpu, a, p, g, buf, seg), Error);
  EXPECT_THROW(sgd_update(gpu, a, p, g_host, buf, seg), Error);
}

}  // namespace
}  // namespace lockstep
