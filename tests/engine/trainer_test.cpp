// The single-worker training loop: learning a synthetic problem, determinism, the optimizer's
// weight-decay segments, loss scaling, and the seams later issues plug into.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "data/synthetic_source.h"
#include "engine/trainer.h"
#include "kernels/copy.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

using data::SyntheticSource;
using data::SyntheticSpec;

TrainConfig tiny_config(const std::string& out) {
  TrainConfig c;
  c.arch = "tiny";
  c.classes = 10;
  c.image_size = 16;
  c.synthetic = true;
  c.device = Device::cpu();
  c.precision = DType::f32;
  c.batch_size = 32;
  c.epochs = 4;
  c.steps_per_epoch = 25;
  c.eval_steps = 4;
  c.base_lr = 0.1;
  c.lr_scaling = false;
  c.warmup_epochs = 0;
  c.schedule = ScheduleKind::cosine;
  c.log_every = 5;
  c.out_dir = ::testing::TempDir() + "/" + out;
  c.validate();
  return c;
}

std::vector<double> logged_losses(const std::string& dir) {
  std::ifstream in(dir + "/log.jsonl");
  std::vector<double> losses;
  std::string line;
  while (std::getline(in, line)) {
    auto p = line.find("\"loss\":");
    if (p != std::string::npos && line.find("\"type\":\"step\"") != std::string::npos)
      losses.push_back(std::stod(line.substr(p + 7)));
  }
  return losses;
}

TEST(Trainer, TinyNetLearnsTheSyntheticProblem) {
  TrainConfig c = tiny_config("learn");
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  RunSummary s = t.run();
  EXPECT_EQ(s.updates, 100);
  EXPECT_GT(s.final_top1, 0.95) << out.str();
  ASSERT_TRUE(s.has_eval);
  EXPECT_GT(s.last_eval.top1, 0.95) << out.str();
  std::vector<double> losses = logged_losses(c.out_dir);
  ASSERT_EQ(losses.size(), 20u);
  for (double l : losses) EXPECT_TRUE(std::isfinite(l));
  EXPECT_LT(losses.back(), 0.5 * losses.front());
}

TEST(Trainer, SameSeedSameRunBitForBit) {
  TrainConfig a = tiny_config("det-a"), b = tiny_config("det-b");
  a.epochs = b.epochs = 1;
  a.steps_per_epoch = b.steps_per_epoch = 6;
  std::ostringstream out;
  Progress progress(out, false);
  Trainer ta(a, progress), tb(b, progress);
  ta.run();
  tb.run();
  EXPECT_EQ(test::host_values(ta.worker().model().params().params()),
            test::host_values(tb.worker().model().params().params()));
  EXPECT_EQ(logged_losses(a.out_dir), logged_losses(b.out_dir));
}

TEST(Trainer, AccumulationAndLarsTrain) {
  TrainConfig c = tiny_config("accum-lars");
  c.batch_size = 16;
  c.accumulate = 2;
  c.steps_per_epoch = 50;
  c.optimizer = OptimizerKind::lars;
  c.base_lr = 2.0;  // LARS scales each layer by eta * |w| / |g|: the global rate is larger
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  RunSummary s = t.run();
  EXPECT_EQ(s.updates, 100);  // 4 epochs x 50 micro-batches / 2
  std::vector<double> losses = logged_losses(c.out_dir);
  EXPECT_LT(losses.back(), 0.5 * losses.front()) << out.str();
}

TEST(Optimizer, WeightDecayOnlyOnConvAndFcWeightsUnlessAsked) {
  Context ctx(Device::cpu());
  nets::ModelOptions mo;
  mo.arch = "tiny";
  mo.classes = 3;
  mo.image_size = 8;
  mo.batch = 1;
  nets::Model m(mo);
  m.setup(ctx);
  OptimizerConfig oc;
  Optimizer plain(ctx, m.params(), oc);
  int64_t decayed = 0, weights = 0;
  for (auto [b, e] : plain.decay_segments()) decayed += e - b;
  for (const auto& s : m.params().specs())
    if (s.is_weight()) weights += s.numel();
  EXPECT_EQ(decayed, weights);
  // conv weights are not adjacent in the flat buffer (BN parameters sit between them)
  EXPECT_GT(plain.decay_segments().size(), 1u);
  oc.wd_on_bn = true;
  Optimizer all(ctx, m.params(), oc);
  ASSERT_EQ(all.decay_segments().size(), 1u);
  EXPECT_EQ(all.decay_segments()[0].second - all.decay_segments()[0].first, m.params().count());
}

TEST(LossScaler, HalvesAndSkipsOnOverflowDoublesAfterCleanSteps) {
  LossScaler s(true, 1024.f, 3);
  EXPECT_TRUE(s.update(false));
  EXPECT_FALSE(s.update(true));
  EXPECT_EQ(s.scale(), 512.f);
  EXPECT_EQ(s.skipped(), 1);
  EXPECT_TRUE(s.update(false));
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.scale(), 512.f);
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.scale(), 1024.f);
  LossScaler off(false);
  EXPECT_TRUE(off.update(true));
  EXPECT_EQ(off.scale(), 1.f);
}

// fp16 on the GPU: an overflowing gradient skips the update (parameters untouched, scale halved)
// and the next clean step applies.
TEST(LossScaler, Fp16SkipsAnInjectedOverflowAndRecovers) {
  LS_REQUIRE_GPU();
  TrainConfig c = tiny_config("fp16");
  c.device = Device::cuda(0);
  c.precision = DType::f16;
  WorkerOptions o = worker_options(c);
  Worker w(c.device, o);
  SyntheticSpec spec;
  spec.classes = c.classes;
  spec.image_size = c.image_size;
  spec.batch = c.batch_size;
  SyntheticSource src(spec);
  src.start_epoch(0);
  const float scale0 = w.loss_scaler().scale();
  std::vector<float> before = test::to_host_f32(w.ctx(), w.model().params().params());
  w.forward_backward(src.next(), false, 1.f / c.batch_size);
  OwnedTensor inf = test::host_tensor({1}, {INFINITY});
  Tensor first = w.model().params().grads().slice(0, 1);
  copy(w.ctx(), inf, first);
  EXPECT_FALSE(w.update(0.1f, 1.f));
  EXPECT_EQ(w.loss_scaler().scale(), scale0 / 2);
  EXPECT_EQ(w.loss_scaler().skipped(), 1);
  EXPECT_EQ(test::to_host_f32(w.ctx(), w.model().params().params()), before);
  w.forward_backward(src.next(), false, 1.f / c.batch_size);
  EXPECT_TRUE(w.update(0.1f, 1.f));
  EXPECT_NE(test::to_host_f32(w.ctx(), w.model().params().params()), before);
}

// The batch upload on the copy stream: the synthetic source rewrites one pinned buffer at every
// next(), so a worker that asked for the next batch before the previous upload had finished would
// train on a torn batch. Steps through train_micro_batch (the upload waited for only before the
// next batch is asked for) must equal steps through forward_backward (which waits at once).
TEST(WorkerGpu, CopyStreamUploadsNeverTearTheSourcesBuffer) {
  LS_REQUIRE_GPU();
  TrainConfig c = tiny_config("upload");
  c.device = Device::cuda(0);
  c.image_size = 64;
  c.batch_size = 64;
  const WorkerOptions o = worker_options(c);
  SyntheticSpec spec;
  spec.classes = c.classes;
  spec.image_size = c.image_size;
  spec.batch = c.batch_size;
  spec.batches_per_epoch = 12;
  Worker deferred(c.device, o), immediate(c.device, o);
  deferred.set_sources(std::make_unique<SyntheticSource>(spec), nullptr);
  deferred.train_source()->start_epoch(0);
  SyntheticSource src(spec);
  src.start_epoch(0);
  const float scale = 1.f / static_cast<float>(c.batch_size);
  for (int step = 0; step < 12; ++step) {
    deferred.train_micro_batch(false, scale);
    deferred.update(0.05f, 1.f);
    immediate.forward_backward(src.next(), false, scale);
    immediate.update(0.05f, 1.f);
  }
  EXPECT_EQ(test::to_host_f32(deferred.ctx(), deferred.model().params().params()),
            test::to_host_f32(immediate.ctx(), immediate.model().params().params()));
  // Bit for bit: the CUDA loss sums in a fixed order (kernels/cuda/loss.cu).
  EXPECT_EQ(deferred.take_train_stats().loss(), immediate.take_train_stats().loss());
}

}  // namespace
}  // namespace lockstep::engine
