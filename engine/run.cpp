// The entry points of `lockstep train` and `lockstep eval`.
#include "engine/run.h"

#include "engine/trainer.h"

namespace lockstep::engine {

int run_train(const TrainConfig& config) {
  Progress progress = Progress::for_stdout();
  Trainer trainer(config, progress);
  trainer.run();
  return 0;
}

int run_eval(const TrainConfig& config) {
  Progress progress = Progress::for_stdout();
  Trainer trainer(config, progress);
  EvalRecord r = trainer.evaluate(0, 0, 0.0);
  progress.eval(r);
  return 0;
}

}  // namespace lockstep::engine
