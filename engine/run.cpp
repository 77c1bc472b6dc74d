// TEMPORARY stand-in until the Trainer lands (the integrator replaces this file): prints the
// resolved config so that the `lockstep` binary links and its option handling can be tested.
#include "engine/run.h"

#include <iostream>

#include <nlohmann/json.hpp>

namespace lockstep::engine {

int run_train(const TrainConfig& config) {
  std::cout << config.to_json().dump(2) << "\n";
  return 0;
}

int run_eval(const TrainConfig& config) {
  std::cout << config.to_json().dump(2) << "\n";
  return 0;
}

}  // namespace lockstep::engine
