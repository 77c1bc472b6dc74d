// --sync async: the parameter server's arithmetic, staleness and moving average by hand; one
// worker against the server is plain SGD bit for bit; a round-robin interleaving of three workers
// follows a scalar model of the same order (trajectory and staleness); free-running workers lose
// no update; the ramp-up of active workers follows its schedule.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "data/synthetic_source.h"
#include "engine/trainer.h"
#include "tests/engine/engine_test_util.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

TEST(ParameterServer, AppliesSgdWithMomentumDecayEmaAndStalenessByHand) {
  ParameterServerOptions o;
  o.shards = 3;
  o.momentum = 0.5f;
  o.weight_decay = 0.1f;
  o.ema = 0.75;
  ParameterServer ps({1, 2, 3, 4}, {{2, 4}}, o, [](int64_t u) { return u == 0 ? 1.f : 0.5f; });
  std::vector<float> x(4);
  EXPECT_EQ(ps.read(x.data()), 0);
  const std::vector<float> g{1, 1, 1, 1};
  EXPECT_EQ(ps.push(g.data(), 0), 0);
  // m = g + wd x (elements 2, 3 decay); x -= 1 * m
  const std::vector<float> m1{1, 1, 1 + 0.1f * 3, 1 + 0.1f * 4};
  std::vector<float> x1{1 - m1[0], 2 - m1[1], 3 - m1[2], 4 - m1[3]};
  ps.read(x.data());
  EXPECT_EQ(x, x1);
  EXPECT_EQ(ps.push(g.data(), 0), 1) << "read at version 0, applied as update 1";
  std::vector<float> x2(4), ema(4), want_ema(4);
  for (int i = 0; i < 4; ++i) {
    const float gi = 1 + (i >= 2 ? 0.1f * x1[i] : 0.f);
    const float mi = 0.5f * m1[i] + gi;
    x2[i] = x1[i] - 0.5f * mi;
    const float e1 = 0.75f * std::vector<float>{1, 2, 3, 4}[i] + 0.25f * x1[i];
    want_ema[i] = 0.75f * e1 + 0.25f * x2[i];
  }
  ps.read(x.data());
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(x[i], x2[i]) << i;
  ps.read_ema(ema.data());
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(ema[i], want_ema[i]) << i;
  const StalenessStats s = ps.staleness();
  EXPECT_EQ(s.updates, 2);
  EXPECT_EQ(s.histogram, (std::vector<int64_t>{1, 1}));
  EXPECT_DOUBLE_EQ(s.mean(), 0.5);
  EXPECT_EQ(ps.updates(), 2);
}

TEST(ParameterServer, StalenessAwareRateDividesByStalenessPlusOne) {
  ParameterServerOptions o;
  o.shards = 1;
  o.momentum = 0;
  o.weight_decay = 0;
  o.staleness_lr = true;
  ParameterServer ps({0}, {}, o, [](int64_t) { return 1.f; });
  const float g = 1;
  ps.push(&g, 0);  // staleness 0: x = -1
  ps.push(&g, 0);  // staleness 1: x = -1 - 1/2
  ps.push(&g, 0);  // staleness 2: x = -1.5 - 1/3
  float x;
  ps.read(&x);
  EXPECT_FLOAT_EQ(x, -1.f - 0.5f - 1.f / 3.f);
}

TEST(ParameterServer, RoundRobinOrder) {
  using Op = AsyncEvent::Op;
  const std::vector<AsyncEvent> e = round_robin_events(2, 2);
  const std::vector<AsyncEvent> want{{Op::read, 0}, {Op::read, 1}, {Op::push, 0}, {Op::read, 0},
                                     {Op::push, 1}, {Op::read, 1}, {Op::push, 0}, {Op::push, 1}};
  EXPECT_EQ(e, want);
}

TrainConfig async_config(const std::string& out, int workers, const std::string& arch = "tiny_nobn") {
  TrainConfig c = test_util::cpu_config(out, arch, workers, 4);
  c.steps_per_epoch = 4;
  c.sync = SyncKind::async;
  c.async_ramp_epochs = 0;
  c.validate();
  return c;
}

struct Ran {
  std::vector<float> params;
  StalenessStats staleness;
  int64_t updates = 0;
};

Ran run(const TrainConfig& c) {
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  t.run();
  Ran r;
  r.params = t.parameter_server()->params();
  r.staleness = t.parameter_server()->staleness();
  r.updates = t.parameter_server()->updates();
  EXPECT_EQ(r.params, test::host_values(t.worker(0).model().params().params()))
      << "after the run every worker holds the server's parameters";
  return r;
}

TEST(Async, OneWorkerIsPlainSgdBitForBit) {
  for (const char* arch : {"tiny", "tiny_nobn"}) {
    TrainConfig sync = async_config(std::string("sgd-") + arch, 1, arch);
    sync.sync = SyncKind::allreduce;
    std::ostringstream out;
    Progress progress(out, false);
    Trainer t(sync, progress);
    t.run();
    const Ran a = run(async_config(std::string("async1-") + arch, 1, arch));
    EXPECT_EQ(a.params, test::host_values(t.worker(0).model().params().params())) << arch;
    EXPECT_EQ(a.staleness.max, 0);
    EXPECT_EQ(a.updates, 8);
  }
}

TEST(Async, RoundRobinFollowsTheScalarModelOfItsInterleaving) {
  const int n = 3;
  TrainConfig c = async_config("rr", n);
  c.async_round_robin = true;
  c.validate();
  const Ran got = run(c);

  // The model: each worker on its own shard, reads and pushes in round_robin_events' order, and
  // the server's SGD written out here.
  std::vector<std::unique_ptr<Worker>> workers;
  for (int r = 0; r < n; ++r) {
    workers.push_back(std::make_unique<Worker>(Device::cpu(), worker_options(c)));
    data::SyntheticSpec spec;
    spec.classes = c.classes;
    spec.image_size = c.image_size;
    spec.batch = c.batch_size;
    spec.seed = c.seed;
    spec.rank = r;
    spec.world = n;
    spec.batches_per_epoch = c.steps_per_epoch;
    workers.back()->set_sources(std::make_unique<data::SyntheticSource>(spec), nullptr);
  }
  nets::ParamTable& t0 = workers[0]->model().params();
  std::vector<float> x = test::host_values(t0.params()), m(x.size(), 0.f);
  std::vector<bool> decays(x.size(), false);
  for (const auto& [b, e] : workers[0]->optimizer().decay_segments())
    for (uint32_t i = b; i < e; ++i) decays[i] = true;
  ScheduleConfig sc = c.schedule_config(c.steps_per_epoch * n);
  sc.global_batch = c.batch_size;
  const LrSchedule schedule(sc);
  std::vector<int64_t> read_at(n, 0);
  StalenessStats want;
  int64_t u = 0;
  for (int epoch = 0; epoch < c.epochs; ++epoch) {
    for (auto& w : workers) w->train_source()->start_epoch(epoch);
    for (const AsyncEvent& e : round_robin_events(n, c.steps_per_epoch)) {
      Worker& w = *workers[e.rank];
      nets::ParamTable& t = w.model().params();
      if (e.op == AsyncEvent::Op::read) {
        OwnedTensor h = test::host_tensor(t.params().shape(), x);
        copy(w.ctx(), h, t.params());
        w.model().parameters_updated(w.ctx());
        read_at[e.rank] = u;
        w.train_micro_batch(false, 1.f / static_cast<float>(c.batch_size));
        continue;
      }
      const std::vector<float> g = test::host_values(t.grads());
      const float lr = schedule.lr(u);
      for (size_t i = 0; i < x.size(); ++i) {
        const float gi = g[i] + (decays[i] ? static_cast<float>(c.weight_decay) * x[i] : 0.f);
        m[i] = static_cast<float>(c.momentum) * m[i] + gi;
        x[i] -= lr * m[i];
      }
      want.add(u - read_at[e.rank]);
      ++u;
    }
  }
  EXPECT_EQ(got.updates, u);
  EXPECT_EQ(got.staleness.histogram, want.histogram);
  EXPECT_EQ(got.staleness.histogram, (std::vector<int64_t>{2, 2, 20})) << "first rounds r, then N - 1";
  EXPECT_LT(test::rel_error(got.params, x), 1e-6);
  // Reproducible: the same order gives the same bits.
  EXPECT_EQ(run(c).params, got.params);
}

TEST(Async, FreeRunningWorkersLoseNoUpdateAndRampUpFollowsItsSchedule) {
  TrainConfig c = async_config("free", 4);
  c.epochs = 5;
  c.steps_per_epoch = 12;
  c.async_ramp_epochs = 3;
  c.eval_steps = 1;
  c.validate();
  const Ran got = run(c);
  // Active workers per epoch: 1 + floor(3 (e - 1) / 3) = 1, 2, 3, 4, 4.
  EXPECT_EQ(got.updates, (1 + 2 + 3 + 4 + 4) * 12);
  EXPECT_EQ(got.staleness.updates, got.updates);
  std::ifstream log(c.out_dir + "/log.jsonl");
  std::vector<int> active;
  std::string line;
  while (std::getline(log, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["type"] == "async") active.push_back(j["active_workers"].get<int>());
  }
  EXPECT_EQ(active, (std::vector<int>{1, 2, 3, 4, 4}));
}

// The schedule is laid out for every worker active; through the ramp the server's updates map
// to the same fraction of the same epoch, so a schedule's epochs are the run's epochs.
TEST(Async, TheScheduleFollowsEpochsThroughTheRamp) {
  TrainConfig c = async_config("ramp-lr", 4);
  c.epochs = 5;
  c.steps_per_epoch = 12;
  c.async_ramp_epochs = 3;
  c.validate();
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  // Active workers 1, 2, 3, 4, 4: epochs start at server updates 0, 12, 36, 72, 120 (168 in all);
  // the full layout's epochs are 48 updates.
  for (const auto& [u, want] : {std::pair<int64_t, int64_t>{0, 0}, {6, 24}, {12, 48}, {24, 72}, {36, 96}, {72, 144},
                                {120, 192}, {167, 239}, {168, 240}})
    EXPECT_EQ(t.schedule_index(u), want) << "update " << u;
  c.async_ramp_epochs = 0;
  c.out_dir += "-flat";
  Trainer flat(c, progress);
  EXPECT_EQ(flat.schedule_index(100), 100);
}

}  // namespace
}  // namespace lockstep::engine
