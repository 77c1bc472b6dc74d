// --sync average on CPU workers (BatchNorm-free net): averaging once at the end is the average
// of N models trained one by one on their shards (SimuParallelSGD); averaging after every update
// is synchronous all-reduce SGD (momentum and weight decay are linear, so the averages agree).
#include <gtest/gtest.h>

#include <sstream>

#include "data/synthetic_source.h"
#include "engine/trainer.h"
#include "tests/engine/engine_test_util.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

TrainConfig average_config(const std::string& out, int workers, int64_t every) {
  TrainConfig c = test_util::cpu_config(out, "tiny_nobn", workers, 4);
  c.eval_steps = 1;
  c.sync = SyncKind::average;
  c.average_every = every;
  c.validate();
  return c;
}

std::vector<float> trained(const TrainConfig& c, int rank = 0) {
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  return test::host_values(t.worker(rank).model().params().params());
}

// Worker `rank` of `world` trained alone on its shard with the run's schedule.
std::vector<float> trained_alone(const TrainConfig& c, int rank, int world) {
  Worker w(Device::cpu(), worker_options(c));
  data::SyntheticSpec spec;
  spec.classes = c.classes;
  spec.image_size = c.image_size;
  spec.batch = c.batch_size;
  spec.seed = c.seed;
  spec.rank = rank;
  spec.world = world;
  spec.batches_per_epoch = c.steps_per_epoch;
  w.set_sources(std::make_unique<data::SyntheticSource>(spec), nullptr);
  LrSchedule schedule(c.schedule_config(c.steps_per_epoch));
  int64_t update = 0;
  for (int epoch = 0; epoch < c.epochs; ++epoch) {
    w.train_source()->start_epoch(epoch);
    for (int64_t s = 0; s < c.steps_per_epoch; ++s) {
      w.train_micro_batch(false, 1.f / static_cast<float>(c.batch_size));
      w.update(schedule.lr(update++), 1.f);
    }
  }
  return test::host_values(w.model().params().params());
}

TEST(Average, OnceAtTheEndIsTheAverageOfModelsTrainedOneByOne) {
  const int n = 3;
  const TrainConfig c = average_config("avg0", n, 0);
  std::vector<float> mean;
  for (int r = 0; r < n; ++r) {
    const std::vector<float> p = trained_alone(c, r, n);
    if (mean.empty()) mean.assign(p.size(), 0.f);
    for (size_t i = 0; i < p.size(); ++i) mean[i] += p[i] / n;
  }
  const std::vector<float> a = trained(c, 0), b = trained(c, n - 1);
  EXPECT_EQ(a, b) << "after the final averaging every worker holds the same model";
  EXPECT_LT(test::rel_error(a, mean), 1e-6);
  // The shards differ, so the models trained apart differ: the comparison means something.
  EXPECT_GT(test::rel_error(trained_alone(c, 0, n), trained_alone(c, 1, n)), 1e-3);
}

TEST(Average, EveryUpdateEqualsAllReduce) {
  TrainConfig ar = average_config("avg-ar", 2, 0);
  ar.sync = SyncKind::allreduce;
  ar.average_every = 0;
  const std::vector<float> reference = trained(ar);
  const std::vector<float> every = trained(average_config("avg1", 2, 1));
  EXPECT_LT(test::rel_error(every, reference), 1e-5);
  // Averaging less often is a different algorithm.
  EXPECT_GT(test::rel_error(trained(average_config("avg5", 2, 5)), reference), 1e-4);
}

TEST(Average, OneWorkerIsPlainSgd) {
  TrainConfig sgd = average_config("avg-one-sgd", 1, 0);
  sgd.sync = SyncKind::allreduce;
  EXPECT_EQ(trained(average_config("avg-one", 1, 2)), trained(sgd));
}

// Two workers sharing one GPU (their collectives staged through host memory on the comm stream):
// averaging after every update equals all-reduce there too, eagerly and with the step replayed as
// a CUDA graph. Each average must wait for the update queued (or replayed) on the compute stream
// and the next forward for the average: without that ordering the runs drift apart.
TEST(AverageGpu, EveryUpdateOnASharedGpuEqualsAllReduceEagerAndGraphed) {
  LS_REQUIRE_GPU();
  auto on_gpu = [](TrainConfig c) {
    c.device = Device::cuda(0);
    c.workers_per_gpu = 2;
    c.validate();
    return c;
  };
  auto run = [](const TrainConfig& c) {
    std::ostringstream out;
    Progress progress(out, false);
    Trainer t(c, progress);
    t.run();
    t.worker(0).ctx().make_current();
    return test::to_host_f32(t.worker(0).ctx(), t.worker(0).model().params().params());
  };
  TrainConfig ar = average_config("avg-gpu-ar", 2, 0);
  ar.sync = SyncKind::allreduce;
  const std::vector<float> reference = run(on_gpu(ar));
  const std::vector<float> every = run(on_gpu(average_config("avg-gpu-1", 2, 1)));
  EXPECT_LT(test::rel_error(every, reference), 1e-5);
  TrainConfig graphed = average_config("avg-gpu-1-graph", 2, 1);
  graphed.cuda_graph = true;
  EXPECT_LT(test::rel_error(run(on_gpu(graphed)), reference), 1e-5);
  EXPECT_EQ(run(on_gpu(average_config("avg-gpu-1-again", 2, 1))), every) << "the same run twice";
}

}  // namespace
}  // namespace lockstep::engine
