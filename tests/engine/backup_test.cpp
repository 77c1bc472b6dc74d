// Stragglers: the --straggler specs and their deterministic draws; --sync backup's aggregator
// (stale and late gradients are never applied); b = 0 is all-reduce bit for bit; an always-slow
// worker with one backup is never applied, never waited for, and training still converges; and
// no straggler pattern hangs a run or loses an update (randomized, with a deadline).
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <random>
#include <set>
#include <sstream>

#include "engine/trainer.h"
#include "tests/engine/engine_test_util.h"
#include "tests/kernels/test_util.h"

namespace lockstep::engine {
namespace {

TEST(Straggler, SpecsParseAndBadOnesNameTheFlag) {
  StragglerSpec s = StragglerSpec::parse("rank=3,delay=200ms");
  EXPECT_EQ(s.kind, StragglerSpec::Kind::rank);
  EXPECT_EQ(s.rank, 3);
  EXPECT_DOUBLE_EQ(s.delay_s, 0.2);
  s = StragglerSpec::parse("prob=0.1,delay=exp:50ms");
  EXPECT_TRUE(s.exponential);
  EXPECT_DOUBLE_EQ(s.prob, 0.1);
  EXPECT_EQ(StragglerSpec::parse(s.str()).str(), s.str());
  s = StragglerSpec::parse("slowest=1,factor=3");
  EXPECT_EQ(s.slowest, 1);
  EXPECT_DOUBLE_EQ(s.factor, 3);
  EXPECT_FALSE(StragglerSpec::parse("").active());
  for (const char* bad : {"rank=1", "delay=5ms", "rank=x,delay=1ms", "rank=1,delay=5", "prob=2,delay=1ms",
                          "slowest=0,factor=2", "rank=1,delay=1ms,colour=red", "rank"}) {
    try {
      StragglerSpec::parse(bad);
      ADD_FAILURE() << bad;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.option(), "--straggler") << bad;
    }
  }
}

TEST(Straggler, DrawsAreDeterministicAndFollowTheSpec) {
  StragglerInjector rank(StragglerSpec::parse("rank=2,delay=10ms"), 4, 0);
  for (int64_t step = 0; step < 50; ++step)
    for (int r = 0; r < 4; ++r) EXPECT_DOUBLE_EQ(rank.delay(r, step, 1.0), r == 2 ? 0.01 : 0.0);
  StragglerInjector slowest(StragglerSpec::parse("slowest=1,factor=3"), 4, 7);
  std::set<int> seen;
  for (int64_t step = 0; step < 200; ++step) {
    int slow = 0;
    for (int r = 0; r < 4; ++r)
      if (slowest.delay(r, step, 0.5) > 0) {
        ++slow;
        seen.insert(r);
        EXPECT_DOUBLE_EQ(slowest.delay(r, step, 0.5), 1.0) << "factor 3 of 0.5 s: 1 s late";
      }
    EXPECT_EQ(slow, 1) << "step " << step;
  }
  EXPECT_EQ(seen.size(), 4u) << "the slow worker changes from step to step";
  StragglerInjector expo(StragglerSpec::parse("prob=0.25,delay=exp:50ms"), 4, 3);
  double sum = 0;
  int hits = 0;
  for (int64_t step = 0; step < 20000; ++step) {
    const double d = expo.delay(1, step, 0);
    EXPECT_EQ(d, expo.delay(1, step, 0));
    if (d > 0) {
      sum += d;
      ++hits;
    }
  }
  EXPECT_NEAR(hits / 20000.0, 0.25, 0.02);
  EXPECT_NEAR(sum / hits, 0.05, 0.005);
  EXPECT_THROW(StragglerInjector(StragglerSpec::parse("rank=4,delay=1ms"), 4, 0), ConfigError);
}

TEST(BackupAggregator, StaleAndLateGradientsAreNeverApplied) {
  BackupOptions o;
  o.needed = 2;
  o.momentum = 0;
  o.weight_decay = 0;
  BackupAggregator agg({0.f, 0.f}, {}, 3, o, [](int64_t) { return 1.f; });
  std::vector<std::pair<int64_t, std::vector<int>>> updates;
  agg.set_update_hook([&](int64_t t, const std::vector<int>& ranks) { updates.emplace_back(t, ranks); });
  const std::vector<float> g0{1, 2}, g1{3, 4}, huge{1000, 1000};
  EXPECT_TRUE(agg.push(1, 0, g1.data()));
  EXPECT_TRUE(agg.push(0, 0, g0.data()));  // the second of step 0: x = -(g0 + g1) / 2
  EXPECT_FALSE(agg.push(2, 0, huge.data())) << "late for step 0";
  std::vector<float> x(2);
  EXPECT_EQ(agg.read(1, x.data()), 1);
  EXPECT_EQ(x, (std::vector<float>{-2, -3}));
  EXPECT_FALSE(agg.push(2, 0, huge.data())) << "a gradient of step 0 during step 1 is stale";
  EXPECT_TRUE(agg.push(2, 1, g0.data()));
  EXPECT_TRUE(agg.push(0, 1, g0.data()));
  agg.read(2, x.data());
  EXPECT_EQ(x, (std::vector<float>{-3, -5}));
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(updates[0].second, (std::vector<int>{0, 1}));
  EXPECT_EQ(updates[1].second, (std::vector<int>{0, 2}));
  EXPECT_EQ(agg.dropped(), (std::vector<int64_t>{0, 0, 2}));
  EXPECT_EQ(agg.accepted(), (std::vector<int64_t>{2, 1, 1}));
}

TrainConfig backup_config(const std::string& out, int workers, int backups, const std::string& arch = "tiny_nobn") {
  TrainConfig c = test_util::cpu_config(out, arch, workers, 4);
  c.sync = SyncKind::backup;
  c.backup_workers = backups;
  c.validate();
  return c;
}

TEST(Backup, NoBackupsAndNoStragglersIsAllReduceBitForBit) {
  for (const char* arch : {"tiny_nobn", "tiny"}) {
    TrainConfig ar = backup_config(std::string("bk-ar-") + arch, 3, 0, arch);
    ar.sync = SyncKind::allreduce;
    std::ostringstream out;
    Progress progress(out, false);
    Trainer a(ar, progress);
    a.run();
    Trainer b(backup_config(std::string("bk-0-") + arch, 3, 0, arch), progress);
    b.run();
    EXPECT_EQ(b.backup_aggregator()->params(), test::host_values(a.worker(0).model().params().params())) << arch;
    EXPECT_EQ(b.backup_aggregator()->dropped(), (std::vector<int64_t>{0, 0, 0}));
  }
}

struct TimedRun {
  RunSummary summary;
  double seconds = 0;
  std::string output;
};

// Trains c to the end, timed; `inspect` sees the trainer before it goes.
TimedRun run_timed(const TrainConfig& c, const std::function<void(Trainer&)>& inspect = {}) {
  std::ostringstream out;
  Progress progress(out, false);
  Trainer t(c, progress);
  const auto t0 = std::chrono::steady_clock::now();
  TimedRun r;
  r.summary = t.run();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.output = out.str();
  if (inspect) inspect(t);
  return r;
}

TEST(Backup, AnAlwaysSlowWorkerIsNeverAppliedNeverWaitedForAndTrainingConverges) {
  TrainConfig c = backup_config("bk-slow", 3, 1, "tiny");
  c.image_size = 16;
  c.batch_size = 16;
  c.epochs = 3;
  c.steps_per_epoch = 25;
  c.eval_steps = 4;
  c.base_lr = 0.1;
  c.schedule = ScheduleKind::step;
  c.straggler = "rank=2,delay=100ms";
  c.validate();
  const TimedRun r = run_timed(c, [](Trainer& t) {
    EXPECT_EQ(t.backup_aggregator()->accepted()[2], 0) << "the slow worker's gradients are never applied";
    EXPECT_GT(t.backup_aggregator()->dropped()[2], 0);
    EXPECT_EQ(t.backup_aggregator()->accepted()[0] + t.backup_aggregator()->accepted()[1], 150);
  });
  EXPECT_EQ(r.summary.updates, 75);
  // Waiting for it would take 75 x 100 ms; not waiting costs at most one delay per epoch end.
  EXPECT_LT(r.seconds, 3.75) << "the run waited for the slow worker";
  EXPECT_GT(r.summary.last_eval.top1, 0.8) << "training converges without the slow worker";
  EXPECT_NE(r.output.find("backup: gradients dropped per worker: 0 0 "), std::string::npos) << r.output;
}

// With no backup, rank 0 waits for a slow peer inside its exchange with the aggregator (the read of
// the next step's parameters): that wait is its exposed communication, and the summary says so.
TEST(Backup, WaitingForASlowPeerIsExposedCommunication) {
  TrainConfig c = backup_config("bk-wait", 2, 0, "tiny");
  c.epochs = 1;
  c.steps_per_epoch = 8;
  c.straggler = "rank=1,delay=60ms";
  c.validate();
  const TimedRun r = run_timed(c);
  EXPECT_GT(r.summary.comm_seconds, 7 * 0.060 * 0.8) << "rank 0 waited for rank 1 at (almost) every step";
  EXPECT_LT(r.summary.comm_seconds, r.seconds);
  EXPECT_EQ(r.output.find("exposed communication 0:00:00 (0.0%)"), std::string::npos) << r.output;
}

TEST(Stragglers, NoPatternHangsARunOrLosesAnUpdate) {
  std::mt19937 rng(12345);
  const std::vector<std::string> patterns{"prob=0.3,delay=exp:2ms", "slowest=1,factor=4", "rank=0,delay=3ms",
                                          "prob=1,delay=1ms", "slowest=2,delay=exp:1ms"};
  for (int trial = 0; trial < 6; ++trial) {
    const std::string pattern = patterns[rng() % patterns.size()];
    const bool async = trial % 2 == 1;
    const int workers = 3 + static_cast<int>(rng() % 2);
    TrainConfig c = backup_config("straggle-" + std::to_string(trial), workers, async ? 0 : 1 + static_cast<int>(rng() % 2));
    if (async) {
      c.sync = SyncKind::async;
      c.async_ramp_epochs = 0;
    }
    c.straggler = pattern;
    c.validate();
    SCOPED_TRACE(pattern + (async ? " async " : " backup ") + std::to_string(workers) + " workers");
    auto run = std::async(std::launch::async, [c] {
      std::ostringstream out;
      Progress progress(out, false);
      Trainer t(c, progress);
      RunSummary s = t.run();
      return std::make_pair(s.updates, t.parameter_server() ? t.parameter_server()->staleness().updates : s.updates);
    });
    ASSERT_EQ(run.wait_for(std::chrono::seconds(120)), std::future_status::ready) << "hung";
    const auto [updates, applied] = run.get();
    const int64_t want = async ? int64_t{workers} * c.steps_per_epoch * c.epochs : c.steps_per_epoch * c.epochs;
    EXPECT_EQ(updates, want);
    EXPECT_EQ(applied, want);
  }
}

}  // namespace
}  // namespace lockstep::engine
