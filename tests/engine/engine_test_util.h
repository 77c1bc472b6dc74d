// A small CPU training config for the sync-mode tests: synthetic 8 px images, fp32, a cosine
// schedule without warmup or scaling (so the rate does not depend on the batch), no checkpoints.
// Each test sets its mode and sizes on top and calls validate().
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "engine/config.h"

namespace lockstep::engine::test_util {

inline TrainConfig cpu_config(const std::string& out, const std::string& arch, int workers, int batch) {
  TrainConfig c;
  c.arch = arch;
  c.classes = 10;
  c.image_size = 8;
  c.synthetic = true;
  c.device = Device::cpu();
  c.precision = DType::f32;
  c.workers = workers;
  c.batch_size = batch;
  c.epochs = 2;
  c.steps_per_epoch = 5;
  c.base_lr = 0.2;
  c.lr_scaling = false;
  c.warmup_epochs = 0;
  c.schedule = ScheduleKind::cosine;
  c.weight_decay = 1e-3;
  c.checkpoints = false;
  c.log_every = 100;
  c.out_dir = ::testing::TempDir() + "/" + out;
  return c;
}

}  // namespace lockstep::engine::test_util
