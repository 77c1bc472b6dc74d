// Which scalars a run's log records become in TensorBoard: the tags, their values and their
// step. The x axis of every chart is the optimizer update count (StepRecord::update and
// EvalRecord::update), so training and evaluation charts line up and a resumed run continues
// where its checkpoint left off; the epoch of an evaluation is its own chart (eval/epoch).
//
//   step records   train/loss, train/top1, train/top5, train/lr, train/images_per_s,
//                  train/data_wait_fraction    (wait_s / interval_s: rank 0's time waiting for data)
//                  train/comm_exposed_fraction (comm_s / interval_s; in the server modes the
//                                               time in the exchanges with the server)
//                  train/bytes_sent_per_step   (bytes_sent / interval_updates: per optimizer update)
//                  train/skipped_steps         (updates skipped by fp16 loss scaling, run total)
//   eval records   eval/loss, eval/top1, eval/top5, eval/epoch
//   {"type":"async"}   async/staleness_mean, async/staleness_max, async/active_workers (per epoch)
//   {"type":"backup"}  backup/dropped_gradients (the epoch's drops, all workers)
// Accuracies are fractions in [0, 1], as in log.jsonl. A rate or fraction over an empty
// interval is 0.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/metrics.h"
#include "engine/tensorboard/event_record.h"

namespace lockstep::engine::tensorboard {

struct ScalarEvent {
  int64_t step = 0;             // the optimizer update count
  std::vector<Scalar> scalars;  // empty: nothing to chart
};

ScalarEvent step_scalars(const StepRecord& r);
ScalarEvent eval_scalars(const EvalRecord& r);
// Another log record (RunLog::log_record): async staleness and backup drops; others chart nothing.
ScalarEvent record_scalars(const nlohmann::json& record);

}  // namespace lockstep::engine::tensorboard
