// PhaseTimer: laps add the time since the previous mark or lap to their phase (a scripted clock
// makes every figure exact: nothing here is timed), and the worker and trainer lap every phase
// of a step exactly once while a timer is set (and nothing before or after).
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/phase_timer.h"
#include "engine/trainer.h"
#include "kernels/context.h"
#include "kernels/error.h"

namespace lockstep::engine {
namespace {

// Returns 0, 1, 2, ... seconds: each reading of the clock advances it by one.
PhaseTimer::Clock counting_clock(std::shared_ptr<int>& reads) {
  reads = std::make_shared<int>(0);
  return [r = reads] { return static_cast<double>((*r)++); };
}

// Returns the given times in turn.
PhaseTimer::Clock scripted_clock(std::vector<double> times) {
  auto i = std::make_shared<size_t>(0);
  return [times = std::move(times), i] { return times.at((*i)++); };
}

TEST(PhaseTimer, LapsAddTheTimeSinceThePreviousBoundary) {
  PhaseTimer t(nullptr, scripted_clock({10.0, 10.5, 12.0, 15.0, 22.0, 22.25, 23.0, 30.0, 30.5, 31.0}));
  t.mark();                    // 10.0
  t.lap(Phase::data);          // 0.5
  t.lap(Phase::h2d);           // 1.5
  t.lap(Phase::forward);       // 3
  t.lap(Phase::backward);      // 7
  t.lap(Phase::comm);          // 0.25
  t.lap(Phase::optimizer);     // 0.75
  t.mark();                    // 30.0: the gap 23 -> 30 belongs to no phase
  t.lap(Phase::data);          // 0.5
  t.lap(Phase::data);          // 0.5 more
  EXPECT_EQ(t.seconds(Phase::data), 1.5);
  EXPECT_EQ(t.seconds(Phase::h2d), 1.5);
  EXPECT_EQ(t.seconds(Phase::forward), 3.0);
  EXPECT_EQ(t.seconds(Phase::backward), 7.0);
  EXPECT_EQ(t.seconds(Phase::comm), 0.25);
  EXPECT_EQ(t.seconds(Phase::optimizer), 0.75);
  EXPECT_EQ(t.total_seconds(), 14.0);
  EXPECT_EQ(t.laps(Phase::data), 3);
  EXPECT_EQ(t.laps(Phase::optimizer), 1);
}

TEST(PhaseTimer, LapBeforeMarkThrowsAndResetForgetsEverything) {
  std::shared_ptr<int> reads;
  PhaseTimer t(nullptr, counting_clock(reads));
  EXPECT_THROW(t.lap(Phase::forward), Error);
  t.mark();
  t.lap(Phase::forward);
  EXPECT_EQ(t.seconds(Phase::forward), 1.0);
  t.reset();
  EXPECT_EQ(t.total_seconds(), 0.0);
  EXPECT_EQ(t.laps(Phase::forward), 0);
  EXPECT_THROW(t.lap(Phase::forward), Error);  // a reset timer needs a mark again
}

TEST(PhaseTimer, WaitsForACpuContextAndReadsTheClockOncePerBoundary) {
  Context ctx(Device::cpu());
  std::shared_ptr<int> reads;
  PhaseTimer t(&ctx, counting_clock(reads));
  t.mark();
  for (Phase p : kPhases) t.lap(p);
  EXPECT_EQ(*reads, 1 + kPhaseCount);
  for (Phase p : kPhases) EXPECT_EQ(t.seconds(p), 1.0) << phase_name(p);
}

TEST(PhaseTimer, PhaseNamesAreTheBenchJsonKeys) {
  std::set<std::string> names;
  for (Phase p : kPhases) names.insert(std::string(phase_name(p)));
  EXPECT_EQ(names, (std::set<std::string>{"data", "h2d", "forward", "backward", "comm", "optimizer"}));
}

TrainConfig bench_like_config(const std::string& out, int workers) {
  TrainConfig c;
  c.arch = "tiny";
  c.classes = 10;
  c.image_size = 16;
  c.synthetic = true;
  c.device = Device::cpu();
  c.precision = DType::f32;
  c.workers = workers;
  c.batch_size = 4;
  c.epochs = 1;
  c.steps_per_epoch = 6;
  c.eval_steps = 0;
  c.warmup_epochs = 0;
  c.checkpoints = false;
  c.out_dir = ::testing::TempDir() + "/" + out;
  c.validate();
  return c;
}

// What lockstep bench train does: a step hook switches each worker's timer on at step 3 and off
// at step 6, so steps 3, 4 and 5 are profiled: every phase lapped exactly once per step, the
// exposed communication by the trainer after the sync strategy's finish().
void expect_three_profiled_steps(int workers) {
  TrainConfig c = bench_like_config("phase-timer-" + std::to_string(workers), workers);
  std::ostringstream log;
  Progress progress(log, false);
  Trainer trainer(c, progress);
  std::vector<std::unique_ptr<PhaseTimer>> timers;
  std::vector<std::shared_ptr<int>> reads(static_cast<size_t>(workers));
  for (int r = 0; r < workers; ++r)
    timers.push_back(std::make_unique<PhaseTimer>(&trainer.worker(r).ctx(), counting_clock(reads[static_cast<size_t>(r)])));
  trainer.set_step_hook([&](int r, int, int64_t step) {
    if (step == 3) trainer.worker(r).set_phase_timer(timers[static_cast<size_t>(r)].get());
    if (step == 6) trainer.worker(r).set_phase_timer(nullptr);
  });
  EXPECT_EQ(trainer.run().updates, 6);
  for (int r = 0; r < workers; ++r) {
    for (Phase p : kPhases) EXPECT_EQ(timers[static_cast<size_t>(r)]->laps(p), 3) << "rank " << r << " " << phase_name(p);
    // One mark (the first step's data fetch), then six laps a step: the phases run on from step to step.
    EXPECT_EQ(*reads[static_cast<size_t>(r)], 1 + 3 * kPhaseCount) << "rank " << r;
  }
}

// The server modes: the worker laps data, h2d, forward and backward, and its exchange with the
// server as comm (backup: push and read, once a step; async: the read and the push); the server
// updates, so no optimizer phase. Backup with no backup workers and async with one worker run a
// fixed schedule, so the counts are exact.
void expect_server_mode_laps(SyncKind sync, int workers, int64_t comm_laps_per_step) {
  TrainConfig c = bench_like_config(std::string("phase-timer-") + std::string(sync_name(sync)), workers);
  c.sync = sync;
  c.async_ramp_epochs = 0;
  c.validate();
  std::ostringstream log;
  Progress progress(log, false);
  Trainer trainer(c, progress);
  std::vector<std::unique_ptr<PhaseTimer>> timers;
  for (int r = 0; r < workers; ++r) timers.push_back(std::make_unique<PhaseTimer>(&trainer.worker(r).ctx()));
  trainer.set_step_hook([&](int r, int, int64_t step) {
    PhaseTimer* t = timers[static_cast<size_t>(r)].get();
    if (step == 3) {
      trainer.worker(r).set_phase_timer(t);
      t->mark();
    }
    if (step == 6) trainer.worker(r).set_phase_timer(nullptr);
  });
  EXPECT_EQ(trainer.run().updates, sync == SyncKind::async ? 6 * workers : 6);
  for (int r = 0; r < workers; ++r) {
    const PhaseTimer& t = *timers[static_cast<size_t>(r)];
    for (Phase p : {Phase::data, Phase::h2d, Phase::forward, Phase::backward})
      EXPECT_EQ(t.laps(p), 3) << "rank " << r << " " << phase_name(p);
    EXPECT_EQ(t.laps(Phase::comm), 3 * comm_laps_per_step) << "rank " << r;
    EXPECT_EQ(t.laps(Phase::optimizer), 0) << "rank " << r;
  }
}

TEST(PhaseTimer, BackupWorkersLapTheirExchangeAsComm) { expect_server_mode_laps(SyncKind::backup, 2, 1); }
TEST(PhaseTimer, AsyncWorkerLapsReadAndPushAsComm) { expect_server_mode_laps(SyncKind::async, 1, 2); }

TEST(PhaseTimer, TrainerAndWorkerLapEveryPhaseOncePerStep) { expect_three_profiled_steps(1); }
TEST(PhaseTimer, EveryWorkerLapsItsOwnPhases) { expect_three_profiled_steps(2); }

}  // namespace
}  // namespace lockstep::engine
