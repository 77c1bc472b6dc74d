// The large-batch driver against hand-computed values (Goyal et al. and the formulas in
// engine/schedule.h). Comparisons are in float with a relative tolerance of a few ulps.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "engine/schedule.h"
#include "kernels/error.h"

namespace lockstep::engine {
namespace {

// 1024 images per update, 10 updates per epoch, 5 warmup epochs, 90 epochs.
ScheduleConfig goyal(ScheduleKind kind = ScheduleKind::step) {
  ScheduleConfig c;
  c.base_lr = 0.1;
  c.global_batch = 1024;
  c.warmup_epochs = 5;
  c.epochs = 90;
  c.updates_per_epoch = 10;
  c.kind = kind;
  return c;
}

#define EXPECT_LR(actual, expected) EXPECT_NEAR((actual), (expected), 1e-6 * std::max(1.0, std::abs(double(expected))))

TEST(Schedule, LinearScalingPeak) {
  LrSchedule s(goyal());
  EXPECT_LR(s.peak(), 0.4);  // 0.1 x 1024 / 256
  EXPECT_EQ(s.total_updates(), 900);
  EXPECT_EQ(s.warmup_updates(), 50);
}

TEST(Schedule, WarmupRampsEveryUpdate) {
  LrSchedule s(goyal());
  EXPECT_LR(s.lr(0), 0.1);                       // first update: base_lr
  EXPECT_LR(s.lr(1), 0.1 + 0.3 * 1 / 50.0);      // already moving after one update
  EXPECT_LR(s.lr(25), 0.25);                     // midway
  EXPECT_LR(s.lr(49), 0.1 + 0.3 * 49 / 50.0);    // last warmup update
  EXPECT_LR(s.lr(50), 0.4);                      // first update after warmup: the peak
  for (int t = 1; t < 50; ++t) EXPECT_GT(s.lr(t), s.lr(t - 1)) << t;
}

TEST(Schedule, StepDecayBoundaries) {
  LrSchedule s(goyal());
  ASSERT_EQ(s.milestones(), (std::vector<int>{30, 60, 80}));
  EXPECT_LR(s.lr(299), 0.4);     // last update of epoch 29
  EXPECT_LR(s.lr(300), 0.04);    // first of epoch 30
  EXPECT_LR(s.lr(599), 0.04);
  EXPECT_LR(s.lr(600), 0.004);
  EXPECT_LR(s.lr(799), 0.004);
  EXPECT_LR(s.lr(800), 0.0004);
  EXPECT_LR(s.lr(899), 0.0004);  // last update
  EXPECT_LR(s.lr(900), 0.0004);  // past the end: clamped
}

TEST(Schedule, StepMilestonesScaleWithEpochs) {
  ScheduleConfig c = goyal();
  c.epochs = 18;  // 30/60/80 of 90 -> 6, 12, 16 (round(17.78))
  c.warmup_epochs = 1;
  LrSchedule s(c);
  EXPECT_EQ(s.milestones(), (std::vector<int>{6, 12, 16}));
  EXPECT_LR(s.lr(59), 0.4);
  EXPECT_LR(s.lr(60), 0.04);
  EXPECT_LR(s.lr(159), 0.004);
  EXPECT_LR(s.lr(160), 0.0004);

  c.epochs = 1;  // milestones never below epoch 1: one epoch never decays
  c.warmup_epochs = 0;
  LrSchedule one(c);
  EXPECT_EQ(one.milestones(), (std::vector<int>{1, 1, 1}));
  EXPECT_LR(one.lr(0), 0.4);
  EXPECT_LR(one.lr(9), 0.4);
}

TEST(Schedule, AccumulationCountsUpdatesAndScalesByGlobalBatch) {
  // 2 workers x 64 images x K=4 accumulation = global batch 512; 100 micro-batches per epoch
  // per worker -> 25 updates per epoch.
  ScheduleConfig c = goyal();
  c.global_batch = 2 * 64 * 4;
  c.updates_per_epoch = updates_per_epoch(100, 4);
  EXPECT_EQ(c.updates_per_epoch, 25);
  LrSchedule s(c);
  EXPECT_LR(s.peak(), 0.2);              // 0.1 x 512 / 256
  EXPECT_EQ(s.warmup_updates(), 125);    // 5 epochs x 25 updates
  EXPECT_EQ(s.total_updates(), 2250);
  EXPECT_LR(s.lr(0), 0.1);
  EXPECT_LR(s.lr(125), 0.2);
  EXPECT_LR(s.lr(749), 0.2);
  EXPECT_LR(s.lr(750), 0.02);            // epoch 30 = update 30 x 25
  EXPECT_EQ(updates_per_epoch(103, 4), 25);  // a trailing partial accumulation is dropped
  EXPECT_THROW(updates_per_epoch(3, 4), Error);
}

TEST(Schedule, Cosine) {
  LrSchedule s(goyal(ScheduleKind::cosine));
  const double W = 50, T = 900;
  auto expect = [&](double t) { return 0.4 * 0.5 * (1 + std::cos(std::numbers::pi * (t - W) / (T - W))); };
  EXPECT_LR(s.lr(25), 0.25);      // still warming up
  EXPECT_LR(s.lr(50), 0.4);       // peak right after warmup
  EXPECT_LR(s.lr(475), 0.2);      // halfway through the decay: half the peak
  EXPECT_LR(s.lr(700), expect(700));
  EXPECT_LR(s.lr(899), expect(899));
  EXPECT_GT(s.lr(899), 0.0f);
  EXPECT_LR(s.lr(900), 0.0);      // the end
}

TEST(Schedule, Poly) {
  ScheduleConfig c = goyal(ScheduleKind::poly);
  c.poly_power = 2;
  LrSchedule s(c);
  EXPECT_LR(s.lr(50), 0.4);
  EXPECT_LR(s.lr(475), 0.4 * 0.25);  // (1 - 0.5)^2
  EXPECT_LR(s.lr(220), 0.4 * 0.8 * 0.8);
  EXPECT_LR(s.lr(899), 0.4 * std::pow(1.0 / 850, 2));
  EXPECT_LR(s.lr(900), 0.0);
}

TEST(Schedule, ScalingOffKeepsBaseAndFlatWarmup) {
  ScheduleConfig c = goyal();
  c.lr_scaling = false;
  LrSchedule s(c);
  EXPECT_LR(s.peak(), 0.1);
  EXPECT_LR(s.lr(0), 0.1);
  EXPECT_LR(s.lr(25), 0.1);
  EXPECT_LR(s.lr(50), 0.1);
  EXPECT_LR(s.lr(300), 0.01);
}

// Below batch 256 the scaled rate is not above --base-lr: nothing to ramp, so no warmup, and the
// decay starts at once (a flat warmup as long as the run kept a cosine run at its peak).
TEST(Schedule, NothingToRampMeansNoWarmup) {
  ScheduleConfig c = goyal();
  c.global_batch = 64;
  c.epochs = 3;
  c.warmup_epochs = 3;
  c.kind = ScheduleKind::cosine;
  LrSchedule s(c);
  EXPECT_EQ(s.warmup_updates(), 0);
  EXPECT_LR(s.lr(0), 0.025);
  EXPECT_LT(s.lr(s.total_updates() / 2), 0.9 * 0.025);
  EXPECT_EQ(s.describe().find("warmup"), std::string::npos) << s.describe();
}

TEST(Schedule, NoWarmup) {
  ScheduleConfig c = goyal();
  c.warmup_epochs = 0;
  LrSchedule s(c);
  EXPECT_EQ(s.warmup_updates(), 0);
  EXPECT_LR(s.lr(0), 0.4);
}

TEST(Schedule, FractionalWarmupRoundsToUpdates) {
  ScheduleConfig c = goyal();
  c.warmup_epochs = 0.25;  // 2.5 updates -> 3 (round half away from zero)
  LrSchedule s(c);
  EXPECT_EQ(s.warmup_updates(), 3);
}

TEST(Schedule, RejectsWhatTheFormulasCannotServe) {
  ScheduleConfig c = goyal();
  c.warmup_epochs = 91;
  EXPECT_THROW(LrSchedule{c}, Error);
  c = goyal();
  c.base_lr = std::nan("");
  EXPECT_THROW(LrSchedule{c}, Error);
  c = goyal();
  c.updates_per_epoch = 0;
  EXPECT_THROW(LrSchedule{c}, Error);
  EXPECT_THROW(LrSchedule(goyal()).lr(-1), Error);
}

TEST(Schedule, DescribeNamesTheNumbers) {
  std::string d = LrSchedule(goyal()).describe();
  EXPECT_NE(d.find("1024/256 = 0.4"), std::string::npos) << d;
  EXPECT_NE(d.find("50 updates"), std::string::npos) << d;
  EXPECT_NE(d.find("30, 60, 80"), std::string::npos) << d;
  EXPECT_NE(d.find("900 updates"), std::string::npos) << d;
}

TEST(Schedule, Names) {
  for (ScheduleKind k : {ScheduleKind::step, ScheduleKind::cosine, ScheduleKind::poly})
    EXPECT_EQ(parse_schedule(schedule_name(k)), k);
  EXPECT_THROW(parse_schedule("linear"), Error);
}

}  // namespace
}  // namespace lockstep::engine
