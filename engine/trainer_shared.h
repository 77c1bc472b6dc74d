// What the worker threads of one Trainer::run() share: the run log and summary (rank 0 writes
// them), the agreement on where to stop, and each rank's staged checkpoint state. Internal to
// trainer.cpp and trainer_checkpoint.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/trainer.h"

namespace lockstep::engine {

struct Trainer::Shared {
  std::unique_ptr<RunLog> log;
  RunSummary summary;
  std::chrono::steady_clock::time_point start;

  // Stop agreement (should_stop): the highest update any rank has reached at a boundary, and the
  // update after which every rank stops once the stop flag was seen (-1: not yet).
  std::mutex stop_mutex;
  int64_t max_update = -1;
  int64_t stop_at = -1;
  // Across processes the stop is agreed by an all-reduce of each rank's flag at every update:
  // the flag on the host and on the worker's device, allocated before training starts.
  std::vector<float> stop_host;
  std::vector<OwnedTensor> stop_word;

  // A checkpoint's per-rank state, written by each rank before the barrier, read by rank 0.
  struct Staged {
    WorkerCheckpoint worker;
    std::vector<float> buffers;        // ranks >= 1: BN running statistics
    std::vector<float> params;         // ranks >= 1, --sync average: the rank's own model
    std::vector<float> momentum;       // per-rank optimizer state: Signum's (sign) or SGD's (average)
  };
  std::vector<Staged> staged;  // [global rank]; other processes' entries arrive by gather_staged
  nlohmann::json last_step = nlohmann::json::object();  // rank 0's last step record (metrics at save)
};

}  // namespace lockstep::engine
