// Trainer: drives a run from a validated TrainConfig — builds the worker, the batch sources,
// the learning-rate schedule and the run log, then loops epochs of micro-batches and updates,
// reads loss and accuracy back every --log-every steps, evaluates after each epoch when a
// validation source exists, and returns the summary. A loss that turns non-finite stops the
// run with an error naming where (a diverged run only burns compute).
#pragma once

#include <memory>

#include "engine/config.h"
#include "engine/metrics.h"
#include "engine/schedule.h"
#include "engine/worker.h"

namespace lockstep::engine {

// The worker options that a config implies.
WorkerOptions worker_options(const TrainConfig& c);

class Trainer {
 public:
  Trainer(const TrainConfig& config, Progress& progress);
  RunSummary run();
  // One evaluation pass over the validation source (if any); also used by `lockstep eval`.
  EvalRecord evaluate(int epoch, int64_t update, double time);
  Worker& worker() { return *worker_; }

 private:
  TrainConfig config_;
  Progress& progress_;
  std::unique_ptr<Worker> worker_;
  std::unique_ptr<LrSchedule> schedule_;
  int64_t updates_per_epoch_ = 0;
};

}  // namespace lockstep::engine
