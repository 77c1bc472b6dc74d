// Tests of the SGD update: CPU against a naive torch.optim.SGD loop (momentum, dampening 0,
// nesterov, weight decay only inside segments, grad_scale), one hand-computed two-step case,
// argument errors, CUDA against CPU after three steps, and (lr, grad_scale) read from device memory
// (write_scalars) giving the same update as the arguments, also inside a replayed CUDA graph.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/copy.h"
#include "kernels/graph.h"
#include "kernels/optimizer.h"
#include "kernels/scalars.h"
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

// The same three steps with (lr, grad_scale) from device memory, rewritten before each step, and
// with the arguments' own lr and grad_scale set to nonsense that must be ignored.
void expect_device_scalars_match(Context& ctx, bool nesterov) {
  const int64_t n = 5003;
  const std::vector<uint32_t> seg = {0, 100, 2000, 4000};
  const std::vector<float> p0 = test::random_floats(n, 7, -2.f, 2.f);
  OwnedTensor p_ref = test::host_tensor({n}, p0), b_ref = test::host_tensor({n}, std::vector<float>(p0.size(), 0.f));
  OwnedTensor p = test::device_tensor(ctx, {n}, p0), b = test::device_tensor(ctx, {n}, std::vector<float>(p0.size(), 0.f));
  Context cpu(Device::cpu());
  OwnedTensor s_ref = segment_tensor(cpu, seg), s = segment_tensor(ctx, seg);
  OwnedTensor scalars(ctx.device(), {2}, DType::f32);
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> g = test::random_floats(n, 100 + step, -3.f, 3.f);
    OwnedTensor g_ref = test::host_tensor({n}, g), gd = test::device_tensor(ctx, {n}, g);
    SgdArgs ref{0.1f * (step + 1), 0.9f, 1e-3f, nesterov, 0.5f / (step + 1)};
    sgd_update(cpu, ref, p_ref, g_ref, b_ref, s_ref);
    SgdArgs a = ref;
    a.lr = 1e9f;
    a.grad_scale = -7.f;
    a.device_scalars = &scalars.view();
    write_scalars(ctx, scalars, {ref.lr, ref.grad_scale});
    sgd_update(ctx, a, p, gd, b, s);
  }
  expect_close(test::to_host_f32(ctx, p), test::host_values(p_ref), 1e-6, "params");
  expect_close(test::to_host_f32(ctx, b), test::host_values(b_ref), 1e-6, "momentum buffer");
}

TEST(Sgd, DeviceScalarsReplaceLrAndGradScale) {
  Context ctx(Device::cpu());
  expect_device_scalars_match(ctx, false);
  expect_device_scalars_match(ctx, true);
}

TEST(Sgd, DeviceScalarsAreChecked) {
  Context ctx(Device::cpu());
  OwnedTensor p = test::host_tensor({4}, {1, 2, 3, 4}), g = test::host_tensor({4}, {1, 1, 1, 1});
  OwnedTensor buf = test::host_tensor({4}, {0, 0, 0, 0});
  OwnedTensor seg = segment_tensor(ctx, {});
  OwnedTensor three(Device::cpu(), {3}, DType::f32), ints(Device::cpu(), {2}, DType::i32);
  SgdArgs a;
  a.device_scalars = &three.view();
  EXPECT_THROW(sgd_update(ctx, a, p, g, buf, seg), Error);
  a.device_scalars = &ints.view();
  EXPECT_THROW(sgd_update(ctx, a, p, g, buf, seg), Error);
}

TEST(Scalars, WriteScalarsStoresEachValue) {
  Context ctx(Device::cpu());
  OwnedTensor t = test::host_tensor({5}, {9, 9, 9, 9, 9});
  write_scalars(ctx, t, {1.5f, -2.f, 0.25f});
  EXPECT_EQ(test::host_values(t), (std::vector<float>{1.5f, -2.f, 0.25f, 9, 9}));
  OwnedTensor small(Device::cpu(), {1}, DType::f32), ints(Device::cpu(), {2}, DType::i32);
  EXPECT_THROW(write_scalars(ctx, small, {1.f, 2.f}), Error);
  EXPECT_THROW(write_scalars(ctx, ints, {1.f}), Error);
  EXPECT_THROW(write_scalars(ctx, t, {1, 2, 3, 4, 5, 6, 7, 8, 9}), Error);
}

TEST(SgdCuda, DeviceScalarsReplaceLrAndGradScale) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  expect_device_scalars_match(gpu, false);
  expect_device_scalars_match(gpu, true);
  OwnedTensor t(gpu.device(), {3}, DType::f32);
  write_scalars(gpu, t, {1.5f, -2.f, 0.25f});
  EXPECT_EQ(test::to_host_f32(gpu, t), (std::vector<float>{1.5f, -2.f, 0.25f}));
}

// One SGD update captured as a CUDA graph, replayed three times with a new learning rate written
// before each replay: the graph reads each step's rate from memory, so it matches the CPU's steps.
TEST(SgdCuda, GraphReplayReadsEachStepsLearningRate) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  Context cpu(Device::cpu());
  const int64_t n = 4099;
  const std::vector<uint32_t> seg = {10, 3000};
  const std::vector<float> p0 = test::random_floats(n, 3, -2.f, 2.f), g0 = test::random_floats(n, 4, -1.f, 1.f);
  OwnedTensor p_ref = test::host_tensor({n}, p0), b_ref = test::host_tensor({n}, std::vector<float>(p0.size(), 0.f));
  OwnedTensor g_ref = test::host_tensor({n}, g0), s_ref = segment_tensor(cpu, seg);
  OwnedTensor p = test::device_tensor(gpu, {n}, p0), b = test::device_tensor(gpu, {n}, std::vector<float>(p0.size(), 0.f));
  OwnedTensor g = test::device_tensor(gpu, {n}, g0), s = segment_tensor(gpu, seg);
  OwnedTensor scalars(gpu.device(), {2}, DType::f32);
  SgdArgs a{0.f, 0.9f, 1e-3f, false, 1.f};
  a.device_scalars = &scalars.view();
  gpu.synchronize();
  CudaGraph graph;
  {
    GraphCapture cap(gpu);
    sgd_update(gpu, a, p, g, b, s);
    graph = cap.finish("an SGD update");
  }
  EXPECT_GE(graph.nodes(), 1u);
  for (int step = 0; step < 3; ++step) {
    const float lr = 0.05f * (step + 1);
    SgdArgs ref{lr, 0.9f, 1e-3f, false, 1.f};
    sgd_update(cpu, ref, p_ref, g_ref, b_ref, s_ref);
    write_scalars(gpu, scalars, {lr, 1.f});
    graph.launch(gpu);
  }
  expect_close(test::to_host_f32(gpu, p), test::host_values(p_ref), 1e-6, "params after three replays");
}

// A host synchronization inside a capture is refused with a clear error, and the stream stays
// usable for ordinary work afterwards.
TEST(SgdCuda, GraphCaptureRefusesHostSync) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  OwnedTensor d = test::device_tensor(gpu, {4}, {1, 2, 3, 4});
  OwnedTensor h(Device::cpu(), {4}, DType::f32);
  EXPECT_THROW(
      {
        GraphCapture cap(gpu);
        copy(gpu, d, h);  // device-to-host: waits on the host
        cap.finish("a read-back");
      },
      Error);
  write_scalars(gpu, d, {5.f, 6.f});
  EXPECT_EQ(test::to_host_f32(gpu, d), (std::vector<float>{5, 6, 3, 4}));
}

// The moving average on fresh random values, by the formula; the CUDA op against the CPU op.
std::vector<float> ema_on_cpu(const std::vector<float>& e0, const std::vector<float>& p, float alpha) {
  Context cpu(Device::cpu());
  OwnedTensor e = test::host_tensor({static_cast<int64_t>(e0.size())}, e0);
  OwnedTensor pt = test::host_tensor({static_cast<int64_t>(p.size())}, p);
  ema_update(cpu, e, pt, alpha);
  return test::host_values(e);
}

TEST(Ema, CpuMatchesTheFormula) {
  const int64_t n = 3001;
  const std::vector<float> e0 = test::random_floats(n, 21, -1.f, 1.f), p = test::random_floats(n, 22, -1.f, 1.f);
  const std::vector<float> got = ema_on_cpu(e0, p, 0.9f);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], 0.9f * e0[i] + (1.f - 0.9f) * p[i]) << i;
  Context cpu(Device::cpu());
  OwnedTensor e = test::host_tensor({4}, {1, 2, 3, 4}), short_p = test::host_tensor({3}, {1, 2, 3});
  EXPECT_THROW(ema_update(cpu, e, short_p, 0.5f), Error);
}

TEST(EmaCuda, MatchesCpu) {
  LS_REQUIRE_GPU();
  const int64_t n = 3001;
  const std::vector<float> e0 = test::random_floats(n, 23, -1.f, 1.f), p = test::random_floats(n, 24, -1.f, 1.f);
  const std::vector<float> got = ema_on_cpu(e0, p, 0.9f);
  Context gpu(Device::cuda(0));
  OwnedTensor eg = test::device_tensor(gpu, {n}, e0), pg = test::device_tensor(gpu, {n}, p);
  ema_update(gpu, eg, pg, 0.9f);
  expect_close(test::to_host_f32(gpu, eg), got, 1e-6, "ema");
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
