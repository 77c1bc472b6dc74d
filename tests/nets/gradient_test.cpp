// Whole-net gradients: the tiny net's backward (every layer kind: stem, BasicBlocks with and
// without projection, fused BN+add+ReLU, pooling, fc) against central finite differences on CPU;
// gradient accumulation; and resnet50 on CUDA against the CPU path (GPU only).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "kernels/random.h"
#include "nets/resnet.h"
#include "tests/kernels/test_util.h"

namespace lockstep::nets {
namespace {

struct Net {
  Context ctx;
  Model model;
  Net(Device dev, const std::string& arch, int classes, int image, int batch, DType dt)
      : ctx(dev), model([&] {
          ModelOptions o;
          o.arch = arch;
          o.classes = classes;
          o.image_size = image;
          o.batch = batch;
          o.dtype = dt;
          return o;
        }()) {
    model.setup(ctx);
  }
};

class NetGradient : public ::testing::TestWithParam<const char*> {};

TEST_P(NetGradient, BackwardMatchesFiniteDifferences) {
  Net n(Device::cpu(), GetParam(), 5, 8, 3, DType::f32);
  Model& m = n.model;
  // No zero-init: every path must carry gradient.
  m.init(n.ctx, 11, /*zero_init_residual=*/false);
  OwnedTensor x = test::host_tensor(m.input_shape(), test::random_floats(m.input_shape().numel(), 1));
  std::vector<float> r = test::random_floats(m.output_shape().numel(), 2);
  OwnedTensor dlogits = test::host_tensor(m.output_shape(), r);

  m.forward(n.ctx, x, Mode::train);
  m.backward(n.ctx, dlogits);
  std::vector<float> grads = test::host_values(m.params().grads());

  // Running statistics change with every training forward; the loss does not depend on them.
  auto loss = [&] { return test::weighted_sum(test::host_values(m.forward(n.ctx, x, Mode::train)), r); };
  float* p = m.params().params().data<float>();
  // Checked per parameter so each kind is covered, a few elements each.
  for (const ParamSpec& s : m.params().specs()) {
    std::vector<float> g(grads.begin() + s.offset, grads.begin() + s.offset + s.numel());
    test::GradCheckOptions o;
    o.eps = 1e-2f;
    o.tol = 3e-2;
    o.max_checks = 6;
    test::expect_gradient(loss, p + s.offset, s.numel(), g, s.name.c_str(), o);
  }
}

INSTANTIATE_TEST_SUITE_P(SmallNets, NetGradient, ::testing::Values("tiny", "tiny_nobn"));

TEST(TinyNet, AccumulationAddsMicroBatches) {
  Net n(Device::cpu(), "tiny", 4, 8, 2, DType::f32);
  Model& m = n.model;
  m.init(n.ctx, 3, false);
  OwnedTensor x = test::host_tensor(m.input_shape(), test::random_floats(m.input_shape().numel(), 4));
  OwnedTensor dl = test::host_tensor(m.output_shape(), test::random_floats(m.output_shape().numel(), 5));
  m.forward(n.ctx, x, Mode::train);
  m.backward(n.ctx, dl);
  std::vector<float> once = test::host_values(m.params().grads());
  m.forward(n.ctx, x, Mode::train);
  m.backward(n.ctx, dl, /*accumulate=*/true);
  std::vector<float> twice = test::host_values(m.params().grads());
  for (size_t i = 0; i < once.size(); ++i) ASSERT_NEAR(twice[i], 2 * once[i], 1e-5 + 1e-5 * std::fabs(once[i])) << i;
}

TEST(TinyNet, GradSinkHearsEveryParameterOnce) {
  struct Counter : GradSink {
    std::vector<int> seen;
    void grad_ready(Context&, int p) override { seen.push_back(p); }
  } sink;
  Net n(Device::cpu(), "tiny", 4, 8, 2, DType::f32);
  Model& m = n.model;
  m.init(n.ctx, 3, true);
  m.params().set_sink(&sink);
  OwnedTensor x = test::host_tensor(m.input_shape(), test::random_floats(m.input_shape().numel(), 4));
  OwnedTensor dl = test::host_tensor(m.output_shape(), test::random_floats(m.output_shape().numel(), 5));
  m.forward(n.ctx, x, Mode::train);
  m.backward(n.ctx, dl);
  std::vector<int> sorted = sink.seen;
  std::sort(sorted.begin(), sorted.end());
  ASSERT_EQ(sorted.size(), m.params().specs().size());
  for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], static_cast<int>(i));
  EXPECT_EQ(m.params().specs()[sink.seen.front()].name, "fc.weight");  // the head finishes first
  EXPECT_EQ(m.params().specs()[sink.seen.back()].name, "conv1.weight");
}

TEST(TinyNet, EvalUsesRunningStatistics) {
  Net n(Device::cpu(), "tiny", 4, 8, 2, DType::f32);
  Model& m = n.model;
  m.init(n.ctx, 3, false);
  OwnedTensor x = test::host_tensor(m.input_shape(), test::random_floats(m.input_shape().numel(), 4));
  std::vector<float> e1 = test::host_values(m.forward(n.ctx, x, Mode::eval));
  std::vector<float> e2 = test::host_values(m.forward(n.ctx, x, Mode::eval));
  EXPECT_EQ(e1, e2);
  m.forward(n.ctx, x, Mode::train);  // moves the running statistics
  EXPECT_NE(test::host_values(m.forward(n.ctx, x, Mode::eval)), e1);
}

// resnet50 forward and backward on CUDA against the CPU path on one small batch: the wiring of
// 53 layers (each op is checked against the CPU alone in kernels_tests). What tolerances mean
// here, from an H100 (2026-11-26): training-mode BN over few values cancels in its backward, so
// rounding grows with depth. In f32, with 2 images of 64 px (BN over 8 values at the end), the
// head's gradients agreed to 1e-4 and the first layers' to 6%; with 4 images of 128 px (64
// values) the worst was 3.4%. In bf16 the logits differed by 12% and the gradients below the
// head were as good as uncorrelated (rel error ~1.4), while the fc's agreed to 13%. A wiring
// error (a wrong tensor, layout or op) is off by O(1) in f32, so f32 checks every parameter at
// 0.1; bf16 checks the logits and the fc's gradients, and that every gradient is finite.
void compare_resnet50(DType dt) {
  const int batch = 4, image = 128, classes = 10;
  const bool f32 = dt == DType::f32;
  Net cpu(Device::cpu(), "resnet50", classes, image, batch, DType::f32);
  Net gpu(Device::cuda(0), "resnet50", classes, image, batch, dt);
  cpu.model.init(cpu.ctx, 9, false);
  gpu.model.init(gpu.ctx, 9, false);
  // Same master weights on both sides (normal draws may differ in the last bit between libms).
  copy(gpu.ctx, cpu.model.params().params(), gpu.model.params().params());
  gpu.model.parameters_updated(gpu.ctx);
  std::vector<float> xv = test::rounded(test::random_floats(cpu.model.input_shape().numel(), 21), dt);
  OwnedTensor xc = test::host_tensor(cpu.model.input_shape(), xv);
  OwnedTensor xg = test::device_tensor(gpu.ctx, gpu.model.input_shape(), xv, dt);
  std::vector<float> r = test::random_floats(cpu.model.output_shape().numel(), 22);
  OwnedTensor dc = test::host_tensor(cpu.model.output_shape(), r);
  OwnedTensor dg = test::device_tensor(gpu.ctx, gpu.model.output_shape(), r, dt);

  std::vector<float> yc = test::host_values(cpu.model.forward(cpu.ctx, xc, Mode::train));
  std::vector<float> yg = test::to_host_f32(gpu.ctx, gpu.model.forward(gpu.ctx, xg, Mode::train));
  EXPECT_LT(test::rel_error(yg, yc), f32 ? 1e-3 : 0.25) << "logits, " << dtype_name(dt);
  cpu.model.backward(cpu.ctx, dc);
  gpu.model.backward(gpu.ctx, dg);
  std::vector<float> gc = test::host_values(cpu.model.params().grads());
  std::vector<float> gg = test::to_host_f32(gpu.ctx, gpu.model.params().grads());
  for (float g : gg) ASSERT_TRUE(std::isfinite(g)) << "a GPU gradient is not finite, " << dtype_name(dt);
  // On failure one message lists the worst parameters and the head's (where backward starts),
  // which tells an op that is off from error growing with depth.
  std::vector<std::pair<double, std::string>> errs;
  size_t over = 0, checked = 0;
  for (const ParamSpec& s : cpu.model.params().specs()) {
    std::vector<float> a(gg.begin() + s.offset, gg.begin() + s.offset + s.numel());
    std::vector<float> b(gc.begin() + s.offset, gc.begin() + s.offset + s.numel());
    errs.emplace_back(test::rel_error(a, b), s.name);
    if (f32 || s.name.rfind("fc.", 0) == 0) {
      ++checked;
      if (errs.back().first >= (f32 ? 0.1 : 0.3)) ++over;
    }
  }
  EXPECT_GT(checked, 0u);
  std::ostringstream head;
  for (size_t i = errs.size(); i-- > 0 && errs.size() - i <= 6;)
    head << " " << errs[i].second << "=" << errs[i].first;
  auto sorted = errs;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  std::ostringstream worst;
  for (size_t i = 0; i < sorted.size() && i < 8; ++i) worst << " " << sorted[i].second << "=" << sorted[i].first;
  EXPECT_EQ(over, 0u) << over << " of " << checked << " checked gradients over tolerance, " << dtype_name(dt)
                      << "\n worst:" << worst.str() << "\n head:" << head.str();
}

TEST(Resnet50, CudaMatchesCpuF32) {
  LS_REQUIRE_GPU();
  compare_resnet50(DType::f32);
}

TEST(Resnet50, CudaMatchesCpuBf16) {
  LS_REQUIRE_GPU();
  compare_resnet50(DType::bf16);
}

}  // namespace
}  // namespace lockstep::nets
