// The entry points of `lockstep train` and `lockstep eval`: given a validated config, run it and
// return the process exit status. Errors are thrown (lockstep::Error; ConfigError for a setting
// found unusable only once work starts), never turned into exit codes here.
#pragma once

#include "engine/config.h"

namespace lockstep::engine {

int run_train(const TrainConfig& config);
int run_eval(const TrainConfig& config);

}  // namespace lockstep::engine
